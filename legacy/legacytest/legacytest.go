// Package legacytest holds what the change-capture tests of every source
// kind share: a source with its mapping, a target store with its write
// path, and the checks made on them.
package legacytest

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/legacy"
)

// CDC is a change-capture test's source, mapping and target.
type CDC struct {
	Src *legacy.Source
	M   *legacy.Mapping
	St  plinth.Store
	W   *plinth.Writer
}

// Exec runs statements on the source.
func (f *CDC) Exec(t testing.TB, qs ...string) {
	t.Helper()
	for _, q := range qs {
		if _, err := f.Src.DB.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

// Start runs change capture from c on a goroutine; stop ends it and
// returns its error.
func (f *CDC) Start(c legacy.Capture, opts legacy.CDCOptions) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var runErr error
	wg.Go(func() { runErr = legacy.RunCDC(ctx, f.Src, f.St, f.W, f.M, c, opts) })
	return func() error { cancel(); wg.Wait(); return runErr }
}

// Events counts the outbox's events by type and entity id; every one must
// name source as its source system.
func (f *CDC) Events(t testing.TB, source string) map[string]int {
	t.Helper()
	pending, err := f.St.(plinth.OutboxStore).PendingEvents(context.Background(), 1000)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, p := range pending {
		var ev struct {
			EventType, EntityID, SourceSystem string
		}
		_ = json.Unmarshal(p.Payload, &ev)
		if ev.SourceSystem != source {
			t.Errorf("event from %q", ev.SourceSystem)
		}
		out[ev.EventType+" "+ev.EntityID]++
	}
	return out
}

// Clean reports whether the target equals the source (legacy.Compare),
// logging what differs when not.
func (f *CDC) Clean(t testing.TB) bool {
	rep, err := legacy.Compare(context.Background(), f.Src, f.St, f.M, nil)
	if err != nil || !rep.Clean() {
		t.Logf("%s not yet: %v missing %v extra %v differ %v", time.Now().Format("15:04:05.000"), err, rep.Missing[:min(3, len(rep.Missing))], rep.Extra, rep.Differ)
	}
	return err == nil && rep.Clean()
}
