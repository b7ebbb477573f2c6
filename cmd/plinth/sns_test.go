package main

import (
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/plinthtest"
	"github.com/plinth-data/plinth/plinthtest/snstest"
)

// serve with eventBus sns://: writes through the API reach the domain's
// FIFO topic and the listener's queue behind it.
func TestServePublishesToSNS(t *testing.T) {
	topics := []string{"plinth-development-residents.fifo", "plinth-development-contacts.fifo"}
	emu := snstest.Start(t, topics...)
	t.Setenv("AWS_ACCESS_KEY_ID", "test")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "test")
	os.Unsetenv("AWS_PROFILE")
	dir := t.TempDir()
	bus := "sns://" + snstest.Region + "/" + snstest.Account + "?endpoint=" + url.QueryEscape(emu.URL)
	srv := startServe(t, dir, "--demo-data=false", "--event-bus", bus)
	ids := writeResidents(t, srv, 3)
	created := map[string]bool{}
	n := 0
	plinthtest.Eventually(t, 20*time.Second, func() bool {
		for _, m := range emu.Receive(t, snstest.Queue(topics[0])) {
			ev, err := plinth.DecodeEvent([]byte(m.Body))
			if err != nil || ev.EventType != "ResidentCreatedEvent" {
				t.Fatalf("message: %v %.200s", err, m.Body)
			}
			created[ev.EntityID] = true
		}
		n = len(created)
		return n >= len(ids)
	}, "%d of %d events in the listener's queue", plinthtest.Last(&n), len(ids))
	for _, id := range ids {
		if !created[id] {
			t.Errorf("no event for resident %s", id)
		}
	}
	srv.stop(t)
	if !strings.Contains(srv.stderr.String(), `"sns":"sns://`) {
		t.Errorf("serve did not log the SNS bus:\n%s", srv.stderr.String())
	}

	// doctor checks the topics: all there, then one missing.
	out, _ := run(t, dir, nil, "doctor", "--event-bus", bus)
	if !regexp.MustCompile(`(?m)^\s*ok\s+bus\b.*every domain's FIFO topic exists`).MatchString(out) {
		t.Errorf("doctor with both topics:\n%s", out)
	}
	other := snstest.Start(t, topics[0])
	out, _ = run(t, dir, nil, "doctor", "--event-bus", "sns://"+snstest.Region+"/"+snstest.Account+"?endpoint="+url.QueryEscape(other.URL))
	if !strings.Contains(out, "plinth-development-contacts.fifo does not exist") {
		t.Errorf("doctor without the contacts topic:\n%s", out)
	}
}
