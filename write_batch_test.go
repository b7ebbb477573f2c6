package plinth_test

import (
	"context"
	"errors"
	"testing"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/plinthtest"
)

// TestApplyWritesChangesWithTheirPositionOrNothing: Writer.Apply commits
// several changes, each with its event and audit record, together with
// what then writes (a replica's position), or none of them; changes that
// find the record already so write nothing, not even an audit record.
func TestApplyWritesChangesWithTheirPositionOrNothing(t *testing.T) {
	ds := plinthtest.Domains(t)
	e := plinthtest.Entity(t, ds, "residents")
	ctx := context.Background()
	for name, st := range writeStores(t, ds) {
		t.Run(name, func(t *testing.T) {
			commits := 0
			w, err := plinth.NewWriter(ctx, plinth.WriterConfig{Store: st, Environment: "development", Events: true, Audit: true,
				OnCommit: func(plinth.AuditRecord, bool) { commits++ }})
			if err != nil {
				t.Fatal(err)
			}
			valid := func(doc map[string]any) map[string]any {
				d, err := e.Validate(doc, false)
				if err != nil {
					t.Fatal(err)
				}
				return d
			}
			a := valid(map[string]any{"mosaicId": 1, "firstName": "Ada", "lastName": "Lovelace"})
			b := valid(map[string]any{"mosaicId": 2, "firstName": "Alan", "lastName": "Turing"})
			origin := plinth.Origin{SourceSystem: "Mosaic", CorrelationID: "cdc-1"}
			position := func(p string) func(plinth.Tx, []plinth.Written) error {
				return func(tx plinth.Tx, done []plinth.Written) error {
					return tx.SetCheckpoint(ctx, "position", []byte(p))
				}
			}
			done, err := w.Apply(ctx, e, []plinth.BatchChange{{Data: a}, {Data: b}, {Key: int64(3)}}, origin, position("1"))
			if err != nil || len(done) != 3 || !done[0].Created || !done[1].Created || done[2].Changed {
				t.Fatalf("first batch: %+v %v", done, err)
			}
			check := func(when string, events, audits, commitsWant int, pos string) {
				t.Helper()
				if n := pending(t, st); n != events {
					t.Errorf("%s: %d events, want %d", when, n, events)
				}
				if n := auditCount(t, st); n != audits {
					t.Errorf("%s: %d audit records, want %d", when, n, audits)
				}
				if commits != commitsWant {
					t.Errorf("%s: told of %d commits, want %d", when, commits, commitsWant)
				}
				if c, _, err := st.Checkpoint(ctx, "position"); err != nil || string(c.Value) != pos {
					t.Errorf("%s: position %q %v, want %q", when, c.Value, err, pos)
				}
			}
			check("first batch", 2, 2, 2, "1")

			// The position's write fails: the changes before it roll back.
			b2 := valid(map[string]any{"mosaicId": 2, "firstName": "Alan", "lastName": "Kay"})
			boom := errors.New("disk full")
			_, err = w.Apply(ctx, e, []plinth.BatchChange{{Data: a}, {Data: b2}}, origin, func(plinth.Tx, []plinth.Written) error { return boom })
			if !errors.Is(err, boom) {
				t.Fatalf("failing position: %v", err)
			}
			if r, err := st.Get(ctx, e, int64(2)); err != nil || r.Version != 1 || r.Data["lastName"] != "Turing" {
				t.Fatalf("after the failed batch: %+v %v", r, err)
			}
			check("failed batch", 2, 2, 2, "1")

			// A replay of what is already there writes nothing; a delete
			// writes its event and audit record.
			done, err = w.Apply(ctx, e, []plinth.BatchChange{{Data: a}, {Key: int64(2)}}, origin, position("2"))
			if err != nil || done[0].Changed || !done[1].Changed {
				t.Fatalf("third batch: %+v %v", done, err)
			}
			if _, err := st.Get(ctx, e, int64(2)); !errors.Is(err, plinth.ErrNotFound) {
				t.Fatalf("record 2 after its delete: %v", err)
			}
			check("third batch", 3, 3, 3, "2")
		})
	}
}
