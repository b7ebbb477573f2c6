package main

import (
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/plinth-data/plinth/plinthtest"
)

// TestOperationsMetrics: serve exposes the gauges the alert rules of
// docs/operations.md use, with values that follow what happens: the relay
// becomes active, reads are audited without failures.
func TestOperationsMetrics(t *testing.T) {
	srv := startServe(t, t.TempDir(), "--demo-records", "20")
	defer srv.stop(t)
	metric := func(name string) (float64, bool) {
		body := string(get(t, srv.base+"/metrics", "").body)
		m := regexp.MustCompile(`(?m)^` + name + ` (\S+)$`).FindStringSubmatch(body)
		if m == nil {
			return 0, false
		}
		v, err := strconv.ParseFloat(m[1], 64)
		return v, err == nil
	}
	plinthtest.Eventually(t, 10*time.Second, func() bool {
		v, ok := metric("plinth_relay_active")
		return ok && v == 1
	}, "plinth_relay_active never became 1")
	if res := get(t, srv.base+"/api/v1/residents?limit=2", srv.token); res.status != 200 {
		t.Fatalf("list: %d", res.status)
	}
	for _, name := range []string{"plinth_relay_failing", "plinth_audit_write_failures_total"} {
		if v, ok := metric(name); !ok || v != 0 {
			t.Errorf("%s = %v (present %t), want 0", name, v, ok)
		}
	}
	plinthtest.Eventually(t, 10*time.Second, func() bool {
		v, ok := metric("plinth_audit_unchained_records")
		return ok && v == 0
	}, "the audit chainer left records unchained")
	if _, ok := metric("plinth_relay_published_events_total"); !ok {
		t.Error("no plinth_relay_published_events_total")
	}
}
