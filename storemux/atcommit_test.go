package storemux_test

import (
	"testing"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/plinthtest"
	"github.com/plinth-data/plinth/plinthtest/pgtest"
	"github.com/plinth-data/plinth/postgres"
	"github.com/plinth-data/plinth/sqlite"
	"github.com/plinth-data/plinth/storemux"
)

// TestAuditAtCommitForwarded: a write through the mux sends its audit record
// with the commit where the bound store can (PostgreSQL) and appends it at
// once where it cannot (SQLite); either way the Writer gets the record as
// the store keeps it.
func TestAuditAtCommitForwarded(t *testing.T) {
	ctx := t.Context()
	ds := plinthtest.Domains(t)
	e := plinthtest.Entity(t, ds, "residents")
	pg, err := postgres.Open(ctx, pgtest.Database(t))
	if err != nil {
		t.Fatal(err)
	}
	lite, err := sqlite.Open(ctx, t.TempDir()+"/p.db")
	if err != nil {
		t.Fatal(err)
	}
	for name, st := range map[string]storemux.Store{"postgres": pg, "sqlite": lite} {
		t.Run(name, func(t *testing.T) {
			m := storemux.New(st, nil)
			defer m.Close()
			if err := m.Prepare(ctx, ds); err != nil {
				t.Fatal(err)
			}
			err := m.Write(ctx, func(tx plinth.Tx) error {
				if _, ok := tx.(plinth.AuditAtCommitTx); !ok {
					t.Error("the mux's transaction does not offer AppendAuditAtCommit")
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			w, err := plinth.NewWriter(ctx, plinth.WriterConfig{Store: m, Environment: "development", Events: true, Audit: true})
			if err != nil {
				t.Fatal(err)
			}
			doc, err := e.Validate(map[string]any{"mosaicId": 1, "firstName": "Ada", "lastName": "Lovelace"}, false)
			if err != nil {
				t.Fatal(err)
			}
			res, err := w.Create(ctx, e, doc, plinth.Origin{CorrelationID: "at-commit"})
			if err != nil {
				t.Fatal(err)
			}
			log, err := st.UnchainedAudit(ctx, 10)
			if err != nil {
				t.Fatal(err)
			}
			if len(log) != 1 || !res.Audited.Stored() || res.Audited.LogID != log[0].LogID || log[0].CorrelationID != "at-commit" {
				t.Fatalf("the Writer got %+v; the store's log holds %+v", res.Audited, log)
			}
		})
	}
}
