// Package legacytest holds what the change-capture tests of every source
// kind share: a source with its mapping, a target store with its write
// path, and the checks made on them.
package legacytest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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

// Loaded reports whether the target equals the source and change capture
// has stored that its initial load is done. A test that stops capture to
// restart it from its stored position waits for both: the load's last
// step, storing SnapshotDone, comes after the data, and a capture stopped
// before it loads again on restart instead of reading on from its
// position (TestPurgedBinlogResnapshots once failed so: no notice).
func (f *CDC) Loaded(t testing.TB) bool {
	if !f.Clean(t) {
		return false
	}
	saved, found, err := f.St.Checkpoint(context.Background(), f.M.CheckpointName("cdc"))
	var status legacy.CDCStatus
	if err != nil || !found || json.Unmarshal(saved.Value, &status) != nil || !status.SnapshotDone {
		t.Logf("%s not yet: the initial load is not stored as done (%v)", time.Now().Format("15:04:05.000"), err)
		return false
	}
	return true
}

// Held is a store whose write transactions wait while it is held: the
// applier of change capture held back, its reading going on.
type Held struct {
	plinth.Store
	gate sync.RWMutex
}

// Hold makes write transactions wait until Release.
func (h *Held) Hold() { h.gate.Lock() }

// Release lets write transactions go on.
func (h *Held) Release() { h.gate.Unlock() }

func (h *Held) Write(ctx context.Context, fn func(plinth.Tx) error) error {
	h.gate.RLock()
	defer h.gate.RUnlock()
	return h.Store.Write(ctx, fn)
}

// CheckBacklog starts change capture from c with its applier writing
// through a Held store, waits for the initial load, holds the applier
// back and runs change(i) for ten persons: the backlog reported must then
// show bytes of change log and received changes not yet applied, in the
// callback and in the store (for plinth migrate status); released, the
// target catches up and both return to 0.
func (f *CDC) CheckBacklog(t *testing.T, c legacy.Capture, change func(i int)) {
	t.Helper()
	held := &Held{Store: f.St}
	w, err := plinth.NewWriter(context.Background(), plinth.WriterConfig{Store: held, Environment: "development", Events: true, Audit: true})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var last legacy.CDCBacklog
	backlog := func() legacy.CDCBacklog { mu.Lock(); defer mu.Unlock(); return last }
	g := *f
	g.W = w
	stop := g.Start(c, legacy.CDCOptions{BacklogEvery: 100 * time.Millisecond, OnBacklog: func(b legacy.CDCBacklog) {
		mu.Lock()
		last = b
		mu.Unlock()
	}})
	defer func() {
		if err := stop(); err != nil {
			t.Error(err)
		}
	}()
	eventually(t, 30*time.Second, func() bool { return backlog().Bytes == 0 && f.Clean(t) }, "the initial load and a backlog of 0 (last %+v)", backlog)
	held.Hold()
	holding := true
	defer func() { // a failure while held must not leave the applier stuck
		if holding {
			held.Release()
		}
	}()
	for i := 1; i <= 10; i++ {
		change(i)
	}
	eventually(t, 20*time.Second, func() bool { b := backlog(); return b.Bytes > 0 && b.Pending > 0 }, "no backlog while the applier is held back (last %+v)", backlog)
	stored, found, err := f.St.Checkpoint(context.Background(), f.M.CheckpointName("cdc-backlog"))
	var kept legacy.CDCBacklog
	if err != nil || !found || json.Unmarshal(stored.Value, &kept) != nil || kept.Bytes <= 0 {
		t.Errorf("the stored backlog %s (%v): want bytes > 0", stored.Value, err)
	}
	held.Release()
	holding = false
	eventually(t, 30*time.Second, func() bool { b := backlog(); return b.Bytes == 0 && b.Pending == 0 && f.Clean(t) }, "the backlog did not return to 0 (last %+v)", backlog)
}

// eventually polls cond every 50 ms until it holds or the time is up.
func eventually(t *testing.T, within time.Duration, cond func() bool, msg string, last func() legacy.CDCBacklog) {
	t.Helper()
	for end := time.Now().Add(within); !cond(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf(msg, last())
		}
	}
}

// Interrupt runs change capture from c until its initial load has
// committed its first batch of n rows, then stops it there as a kill
// would: the load's checkpoint and the pinned position stay behind.
func (f *CDC) Interrupt(t testing.TB, c legacy.Capture, n int) {
	t.Helper()
	killed := errors.New("killed mid-load")
	err := legacy.RunCDC(context.Background(), f.Src, f.St, f.W, f.M, c, legacy.CDCOptions{LoadBatch: n, AfterLoadBatch: func(int) error { return killed }})
	if !errors.Is(err, killed) {
		t.Fatalf("the interrupted load: %v", err)
	}
}

// StaleSnapshots updates dm_persons row 1's last_name to Version1 …
// VersionN on another goroutine while it reads stream (opened before the
// updates, a batch per transaction): for each batch it calls
// legacy.AwaitVisible, then reads the row in a new snapshot, and counts
// the snapshots that show the row older than the batch's last change.
// Change capture re-reads changed rows as each batch arrives, so a stale
// snapshot is a lost update.
func (f *CDC) StaleSnapshots(t testing.TB, stream legacy.Stream, n int) int {
	t.Helper()
	ctx := context.Background()
	go func() {
		for i := 1; i <= n; i++ {
			if _, err := f.Src.DB.Exec(fmt.Sprintf("UPDATE dm_persons SET last_name = 'Version%d' WHERE person_id = 1", i)); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	version := func(v any) int {
		var i int
		fmt.Sscanf(fmt.Sprint(v), "Version%d", &i)
		return i
	}
	stale := 0
	for seen := 0; seen < n; {
		b, err := stream.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		seen += len(b.Changes)
		if len(b.Changes) == 0 {
			continue
		}
		if err := legacy.AwaitVisible(ctx, f.Src, f.M, b); err != nil {
			t.Fatal(err)
		}
		snap, err := f.Src.Snapshot(ctx)
		if err != nil {
			t.Fatal(err)
		}
		rows, err := snap.Query(ctx, "SELECT last_name FROM dm_persons WHERE person_id = 1")
		snap.Close()
		if err != nil || len(rows) != 1 {
			t.Fatalf("reading person 1: %v, %d rows", err, len(rows))
		}
		last := b.Changes[len(b.Changes)-1]
		after := version(last.After["last_name"])
		if after == 0 {
			t.Fatalf("a change without the new last name: %+v", last)
		}
		if version(rows[0]["last_name"]) < after {
			stale++
		}
	}
	return stale
}
