package legacy

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/plinth-data/plinth"
)

// scripted is a capture that replays fixed batches; the position after
// batch i is "i+1".
type scripted struct{ batches []Batch }

func (s *scripted) SnapshotPosition(context.Context, *Snapshot) (string, error) { return "0", nil }

func (s *scripted) Open(_ context.Context, from string) (Stream, error) {
	n, err := strconv.Atoi(from)
	return &scriptedStream{s: s, next: n}, err
}

type scriptedStream struct {
	s    *scripted
	next int
}

func (st *scriptedStream) Next(ctx context.Context) (Batch, error) {
	if st.next < len(st.s.batches) {
		b := st.s.batches[st.next]
		st.next++
		b.Position = strconv.Itoa(st.next)
		return b, nil
	}
	<-ctx.Done()
	return Batch{}, ctx.Err()
}

func (st *scriptedStream) Close() error { return nil }

// crashingStore fails a transaction's SetCheckpoint while armed: the
// process dying between applying changes and storing their position.
type crashingStore struct {
	plinth.Store
	armed atomic.Bool
}

type fullTx interface {
	plinth.Tx
	plinth.EventTx
	plinth.AuditTx
	plinth.AccessTx
}

type crashingTx struct {
	fullTx
	armed bool
}

func (x crashingTx) SetCheckpoint(ctx context.Context, name string, value []byte) error {
	if x.armed {
		return errInterrupt
	}
	return x.fullTx.SetCheckpoint(ctx, name, value)
}

func (s *crashingStore) SetCheckpoint(ctx context.Context, name string, value []byte) error {
	if s.armed.Load() {
		return errInterrupt
	}
	return s.Store.SetCheckpoint(ctx, name, value)
}

func (s *crashingStore) Write(ctx context.Context, fn func(plinth.Tx) error) error {
	return s.Store.Write(ctx, func(tx plinth.Tx) error {
		return fn(crashingTx{fullTx: tx.(fullTx), armed: s.armed.Load()})
	})
}

// TestCDCPositionCommitsWithItsChanges: change capture stores the source
// position in the transaction that applies the last of its changes. A
// crash there leaves the position and that transaction's changes out (no
// event, no audit record); the restart replays the batch and ends with
// every change applied exactly once.
func TestCDCPositionCommitsWithItsChanges(t *testing.T) {
	for _, pg := range []bool{false, true} {
		t.Run(map[bool]string{false: "sqlite", true: "postgres"}[pg], func(t *testing.T) {
			ctx := context.Background()
			src, m := source(t, KindMariaDB)
			inner := target(t, pg)
			st := &crashingStore{Store: inner}
			w, err := plinth.NewWriter(ctx, plinth.WriterConfig{Store: st, Environment: "development", Events: true, Audit: true})
			if err != nil {
				t.Fatal(err)
			}
			capture := &scripted{}
			run := func() error {
				cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				defer cancel()
				done := make(chan error, 1)
				go func() { done <- RunCDC(cctx, src, st, w, m, capture, CDCOptions{}) }()
				for {
					select {
					case err := <-done:
						return err
					case <-time.After(50 * time.Millisecond):
					}
					if position(t, inner, m) == strconv.Itoa(len(capture.batches)) {
						cancel()
						return <-done
					}
				}
			}
			if err := run(); err != nil { // the initial load
				t.Fatal(err)
			}
			live := livePersons(t, src, 4)
			for _, q := range []string{
				"UPDATE dm_persons SET last_name = 'Firstchange' WHERE person_id = " + live[0],
				"UPDATE dm_persons SET last_name = 'Secondchange' WHERE person_id = " + live[1],
				"UPDATE dm_persons SET last_name = 'Thirdchange' WHERE person_id = " + live[2],
				"DELETE FROM dm_persons WHERE person_id = " + live[3],
			} {
				if _, err := src.DB.ExecContext(ctx, q); err != nil {
					t.Fatal(err)
				}
			}
			var b Batch
			for _, id := range live {
				n, _ := strconv.ParseInt(id, 10, 64)
				b.Changes = append(b.Changes, Change{Table: "dm_persons", After: Row{"person_id": n}})
			}
			capture.batches = append(capture.batches, b)
			// Two records a transaction: the first two commit on their own,
			// the last two with the position, which fails.
			defer func(n int) { cdcChunk = n }(cdcChunk)
			cdcChunk = 2
			st.armed.Store(true)
			if err := run(); !errors.Is(err, errInterrupt) {
				t.Fatalf("the crash: %v", err)
			}
			if p := position(t, inner, m); p != "0" {
				t.Fatalf("position %q after the crash, want 0", p)
			}
			got := changes(t, inner)
			want := map[string]int{"ResidentUpdatedEvent " + live[0]: 1, "ResidentUpdatedEvent " + live[1]: 1}
			if !sameCounts(got, want) {
				t.Fatalf("after the crash: %v, want %v (the failed transaction's changes are not committed)", got, want)
			}
			if _, err := inner.Get(ctx, m.Entity, mustInt(live[3])); err != nil {
				t.Fatalf("person %s was deleted in the transaction that failed: %v", live[3], err)
			}
			st.armed.Store(false)
			if err := run(); err != nil {
				t.Fatal(err)
			}
			got = changes(t, inner)
			want["ResidentUpdatedEvent "+live[2]] = 1
			want["ResidentDeletedEvent "+live[3]] = 1
			if !sameCounts(got, want) {
				t.Fatalf("after the restart: %v, want %v", got, want)
			}
			rep, err := Compare(ctx, src, inner, m, nil)
			if err != nil || !rep.Clean() {
				t.Fatalf("after the restart: %+v %v", rep, err)
			}
		})
	}
}

func position(t *testing.T, st plinth.Store, m *Mapping) string {
	t.Helper()
	c, found, err := st.Checkpoint(context.Background(), m.CheckpointName("cdc"))
	if err != nil {
		t.Fatal(err)
	}
	var s CDCStatus
	if found {
		_ = json.Unmarshal(c.Value, &s)
	}
	if !s.SnapshotDone {
		return ""
	}
	return s.Position
}

// changes counts events by type and entity id, and checks that each has
// exactly one audit record of the same operation.
func changes(t *testing.T, st plinth.Store) map[string]int {
	t.Helper()
	ctx := context.Background()
	pending, err := st.(plinth.OutboxStore).PendingEvents(ctx, 1000)
	if err != nil {
		t.Fatal(err)
	}
	events := map[string]int{}
	for _, p := range pending {
		var ev struct{ EventType, EntityID string }
		_ = json.Unmarshal(p.Payload, &ev)
		events[ev.EventType+" "+ev.EntityID]++
	}
	audits, err := st.(plinth.AuditStore).UnchainedAudit(ctx, 1000)
	if err != nil {
		t.Fatal(err)
	}
	op := map[string]string{"upsert": "ResidentUpdatedEvent", "delete": "ResidentDeletedEvent"}
	audited := map[string]int{}
	for _, a := range audits {
		for _, id := range a.RecordIDs {
			audited[op[a.Operation]+" "+id]++
		}
	}
	if !sameCounts(events, audited) {
		t.Errorf("events %v, audit records %v: want one of each per change", events, audited)
	}
	return events
}

func sameCounts(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, n := range a {
		if b[k] != n {
			return false
		}
	}
	return true
}

func mustInt(s string) int64 {
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil {
		panic(err)
	}
	return n
}
