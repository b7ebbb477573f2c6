package main

import (
	"bytes"
	"errors"
	"net/http"
	"strings"
	"testing"
)

// TestLoggerMasksPersonalData: the CLI's logger, and net/http's error log
// made from it, mask what may be personal data in error text.
func TestLoggerMasksPersonalData(t *testing.T) {
	var buf bytes.Buffer
	logger := newLoggerTo(&buf, "info")
	logger.Error("seeding residents", "error", errors.New(`postgres: bulk load: ERROR: invalid input syntax for type date: "Zebulonia" DETAIL: Key (nhs_number)=(9990000018) already exists`))
	logger.Warn("relay", "error", errors.New("publish 9990000018 for zeb@example.org failed"))
	newHTTPServer(http.NotFoundHandler(), logger).ErrorLog.Printf(`http: panic serving 127.0.0.1:5555: cannot parse "Quastlethwaite"`)
	out := buf.String()
	for _, v := range []string{"Zebulonia", "9990000018", "zeb@example.org", "Quastlethwaite"} {
		if strings.Contains(out, v) {
			t.Errorf("the log holds %q:\n%s", v, out)
		}
	}
	if strings.Count(out, "\n") != 3 || !strings.Contains(out, "seeding residents") {
		t.Errorf("lines lost:\n%s", out)
	}
}
