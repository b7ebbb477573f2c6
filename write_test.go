package plinth_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/audit"
	"github.com/plinth-data/plinth/plinthtest"
	"github.com/plinth-data/plinth/plinthtest/pgtest"
	"github.com/plinth-data/plinth/postgres"
	"github.com/plinth-data/plinth/sqlite"
)

// fullStore is a store with the outbox and the audit trail.
type fullStore interface {
	plinth.Store
	plinth.OutboxStore
	plinth.AuditStore
	plinth.AccessStore
}

func writeStores(t *testing.T, ds []*plinth.Domain) map[string]fullStore {
	t.Helper()
	ctx := context.Background()
	lite, err := sqlite.Open(ctx, t.TempDir()+"/w.db")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lite.Close() })
	pg, err := postgres.Open(ctx, pgtest.Database(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pg.Close() })
	out := map[string]fullStore{"sqlite": lite, "postgres": pg}
	for _, st := range out {
		if err := st.Prepare(ctx, ds); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// faultyAudit fails every audit append inside a write transaction: a fault
// the real stores cannot be made to show on demand.
type faultyAudit struct{ plinth.Store }

func (s faultyAudit) Write(ctx context.Context, fn func(plinth.Tx) error) error {
	return s.Store.Write(ctx, func(tx plinth.Tx) error { return fn(failingAuditTx{tx}) })
}

type failingAuditTx struct{ plinth.Tx }

func (tx failingAuditTx) AppendEvent(ctx context.Context, e plinth.OutboxEntry) error {
	return tx.Tx.(plinth.EventTx).AppendEvent(ctx, e)
}
func (tx failingAuditTx) AppendAudit(context.Context, plinth.AuditRecord) (plinth.AuditRecord, error) {
	return plinth.AuditRecord{}, errors.New("disk full")
}
func (tx failingAuditTx) CreateGrant(ctx context.Context, g plinth.Grant) error {
	return tx.Tx.(plinth.AccessTx).CreateGrant(ctx, g)
}
func (tx failingAuditTx) SetGrantEnabled(ctx context.Context, id string, on bool) (plinth.Grant, error) {
	return tx.Tx.(plinth.AccessTx).SetGrantEnabled(ctx, id, on)
}
func (tx failingAuditTx) PutPolicy(ctx context.Context, p plinth.AccessPolicy) error {
	return tx.Tx.(plinth.AccessTx).PutPolicy(ctx, p)
}
func (tx failingAuditTx) DeletePolicy(ctx context.Context, d, env string) error {
	return tx.Tx.(plinth.AccessTx).DeletePolicy(ctx, d, env)
}

var ada = map[string]any{"firstName": "Ada", "lastName": "Lovelace", "dateOfBirth": "1815-12-10"}

// TestAWriteWithoutItsAuditRecordLeavesNothing: when the audit insert
// fails, the change, its event and its record are all absent.
func TestAWriteWithoutItsAuditRecordLeavesNothing(t *testing.T) {
	ds := plinthtest.Domains(t)
	e := plinthtest.Entity(t, ds, "residents")
	ctx := context.Background()
	for name, st := range writeStores(t, ds) {
		t.Run(name, func(t *testing.T) {
			good, err := plinth.NewWriter(ctx, plinth.WriterConfig{Store: st, Environment: "development", Events: true, Audit: true})
			if err != nil {
				t.Fatal(err)
			}
			data, _ := e.Validate(ada, true)
			w, err := good.Create(ctx, e, data, plinth.Origin{CorrelationID: "c1"})
			if err != nil || !w.Evented {
				t.Fatalf("a good write: %+v %v", w, err)
			}
			id, events, audits := e.KeyOf(w.Record), pending(t, st), auditCount(t, st)

			bad, err := plinth.NewWriter(ctx, plinth.WriterConfig{Store: faultyAudit{st}, Environment: "development", Events: true, Audit: true})
			if err != nil {
				t.Fatal(err)
			}
			rename := func(cur plinth.Record) (map[string]any, error) {
				next := map[string]any{}
				for k, v := range cur.Data {
					next[k] = v
				}
				next["lastName"] = "King"
				return next, nil
			}
			upsert := map[string]any{}
			for k, v := range data {
				upsert[k] = v
			}
			upsert["mosaicId"], upsert["lastName"] = int64(9000), "Byron"
			for op, write := range map[string]func() error{
				"create": func() error { _, err := bad.Create(ctx, e, data, plinth.Origin{}); return err },
				"update": func() error { _, err := bad.Update(ctx, e, id, 1, rename, plinth.Origin{}); return err },
				"delete": func() error { _, err := bad.Delete(ctx, e, id, 1, plinth.Origin{}); return err },
				"upsert": func() error { _, err := bad.Upsert(ctx, e, upsert, plinth.Origin{}); return err },
				"access": func() error {
					_, err := bad.Access(ctx, plinth.Origin{}, func(atx plinth.AccessTx) ([]string, error) {
						return []string{"residents/staging"}, atx.PutPolicy(ctx, plinth.AccessPolicy{Domain: "residents", Environment: "staging", ReadGroups: []string{"x"}})
					})
					return err
				},
			} {
				if err := write(); !errors.Is(err, plinth.ErrUnavailable) || !strings.Contains(err.Error(), "audit") {
					t.Fatalf("%s without its audit record: %v", op, err)
				}
			}
			if n, _ := st.Count(ctx, e); n != 1 {
				t.Fatalf("%d records after the failed writes, want 1", n)
			}
			if rec, _ := st.Get(ctx, e, id); rec.Version != 1 || rec.Data["lastName"] != "Lovelace" {
				t.Fatalf("the record changed: %+v", rec)
			}
			if ps, _ := st.Policies(ctx, "staging"); len(ps) != 0 {
				t.Fatalf("the policy was kept: %+v", ps)
			}
			if got := pending(t, st); got != events {
				t.Fatalf("%d events after the failed writes, want %d", got, events)
			}
			if got := auditCount(t, st); got != audits {
				t.Fatalf("%d audit records after the failed writes, want %d", got, audits)
			}
		})
	}
}

// TestUpsertThroughTheWritePathIsIdempotent: replication applying the same
// change twice makes one version and one event, and audits both.
func TestUpsertThroughTheWritePathIsIdempotent(t *testing.T) {
	ds := plinthtest.Domains(t)
	e := plinthtest.Entity(t, ds, "residents")
	ctx := context.Background()
	for name, st := range writeStores(t, ds) {
		t.Run(name, func(t *testing.T) {
			w, err := plinth.NewWriter(ctx, plinth.WriterConfig{Store: st, Environment: "development", Events: true, Audit: true})
			if err != nil {
				t.Fatal(err)
			}
			data, _ := e.Validate(map[string]any{"mosaicId": 77, "firstName": "Ada", "lastName": "Lovelace"}, false)
			origin := plinth.Origin{SourceSystem: "Mosaic", CorrelationID: "sync-1"}
			first, err := w.Upsert(ctx, e, data, origin)
			if err != nil || !first.Created || !first.Evented {
				t.Fatalf("first upsert: %+v %v", first, err)
			}
			again, err := w.Upsert(ctx, e, data, origin)
			if err != nil || again.Changed || again.Evented || again.Record.Version != 1 {
				t.Fatalf("the same upsert again: %+v %v", again, err)
			}
			data["lastName"] = "King"
			third, err := w.Upsert(ctx, e, data, origin)
			if err != nil || !third.Changed || !third.Evented || third.Record.Version != 2 {
				t.Fatalf("a changed upsert: %+v %v", third, err)
			}
			if n := pending(t, st); n != 2 {
				t.Fatalf("%d events, want 2", n)
			}
			if n := auditCount(t, st); n != 3 {
				t.Fatalf("%d audit records, want 3", n)
			}
		})
	}
}

// TestNewWriterRefusesAStoreWithoutWhatItNeeds: events on a store without
// an outbox are refused, not skipped.
func TestNewWriterRefusesAStoreWithoutWhatItNeeds(t *testing.T) {
	ds := plinthtest.Domains(t)
	ctx := context.Background()
	st := writeStores(t, ds)["sqlite"]
	_, err := plinth.NewWriter(ctx, plinth.WriterConfig{Store: bareTxStore{st}, Events: true, Audit: true})
	if !errors.Is(err, plinth.ErrMissingCapability) || !strings.Contains(err.Error(), "EventTx") || !strings.Contains(err.Error(), "AuditTx") {
		t.Fatalf("a store without an outbox or audit: %v", err)
	}
	if _, err := plinth.NewWriter(ctx, plinth.WriterConfig{Store: st, Events: true, Audit: true}); err != nil {
		t.Fatalf("a full store: %v", err)
	}
}

// bareTxStore hides everything but plinth.Tx from its transactions.
type bareTxStore struct{ plinth.Store }

func (s bareTxStore) Write(ctx context.Context, fn func(plinth.Tx) error) error {
	return s.Store.Write(ctx, func(tx plinth.Tx) error { return fn(struct{ plinth.Tx }{tx}) })
}

func pending(t *testing.T, st fullStore) int {
	t.Helper()
	es, err := st.PendingEvents(context.Background(), 1000)
	if err != nil {
		t.Fatal(err)
	}
	return len(es)
}

func auditCount(t *testing.T, st fullStore) int {
	t.Helper()
	// Chain what is in the audit log, as the chainer would, then count.
	if _, err := audit.ChainPending(context.Background(), st); err != nil {
		t.Fatal(err)
	}
	n := 0
	if err := st.ScanAudit(context.Background(), 0, func(plinth.AuditRecord) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestWritesReportTheAuditRecordsAsStored: every kind of write hands its
// audit record, as the store keeps it (with its log id), to OnCommit and to
// its caller, even where the store sends the record with the commit
// (plinth.AuditAtCommitTx) and learns its log id only then.
func TestWritesReportTheAuditRecordsAsStored(t *testing.T) {
	ds := plinthtest.Domains(t)
	e := plinthtest.Entity(t, ds, "residents")
	ctx := context.Background()
	for name, st := range writeStores(t, ds) {
		t.Run(name, func(t *testing.T) {
			var committed []plinth.AuditRecord
			w, err := plinth.NewWriter(ctx, plinth.WriterConfig{Store: st, Environment: "development", Events: true, Audit: true,
				OnCommit: func(a plinth.AuditRecord, _ bool) { committed = append(committed, a) }})
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
			var returned []plinth.AuditRecord
			keep := func(op string, res plinth.Written, err error) {
				t.Helper()
				if err != nil {
					t.Fatalf("%s: %v", op, err)
				}
				returned = append(returned, res.Audited)
			}
			res, err := w.Create(ctx, e, valid(map[string]any{"mosaicId": 1, "firstName": "Ada", "lastName": "Lovelace"}), plinth.Origin{CorrelationID: "create"})
			keep("create", res, err)
			res, err = w.Update(ctx, e, int64(1), 1, func(cur plinth.Record) (map[string]any, error) {
				return valid(map[string]any{"mosaicId": 1, "firstName": "Ada", "lastName": "King"}), nil
			}, plinth.Origin{CorrelationID: "update"})
			keep("update", res, err)
			res, err = w.Upsert(ctx, e, valid(map[string]any{"mosaicId": 2, "firstName": "Alan", "lastName": "Turing"}), plinth.Origin{CorrelationID: "upsert"})
			keep("upsert", res, err)
			res, err = w.Delete(ctx, e, int64(2), 1, plinth.Origin{CorrelationID: "delete"})
			keep("delete", res, err)
			done, err := w.Apply(ctx, e, []plinth.BatchChange{
				{Data: valid(map[string]any{"mosaicId": 3, "firstName": "Grace", "lastName": "Hopper"})},
				{Data: valid(map[string]any{"mosaicId": 4, "firstName": "Edsger", "lastName": "Dijkstra"})},
			}, plinth.Origin{CorrelationID: "apply"}, nil)
			if err != nil || len(done) != 2 {
				t.Fatalf("apply: %+v %v", done, err)
			}
			returned = append(returned, done[0].Audited, done[1].Audited)
			a, err := w.Access(ctx, plinth.Origin{CorrelationID: "access"}, func(atx plinth.AccessTx) ([]string, error) {
				return []string{"residents/staging"}, atx.PutPolicy(ctx, plinth.AccessPolicy{Domain: "residents", Environment: "staging", ReadGroups: []string{"x"}})
			})
			if err != nil {
				t.Fatal(err)
			}
			returned = append(returned, a)

			log, err := st.UnchainedAudit(ctx, 100)
			if err != nil {
				t.Fatal(err)
			}
			stored := map[string]plinth.AuditRecord{}
			for _, r := range log {
				stored[r.LogID] = r
			}
			if len(committed) != len(returned) || len(log) != len(returned) {
				t.Fatalf("%d records to OnCommit, %d returned, %d in the log; want %d each", len(committed), len(returned), len(log), len(returned))
			}
			for i, r := range returned {
				s, ok := stored[r.LogID]
				switch {
				case !r.Stored() || !ok:
					t.Errorf("write %d returned audit record %+v, not one in the log", i, r)
				case s.CorrelationID != r.CorrelationID || !s.Time.Equal(r.Time) || strings.Join(s.RecordIDs, ",") != strings.Join(r.RecordIDs, ","):
					t.Errorf("write %d returned %+v, the log holds %+v", i, r, s)
				case committed[i].LogID != r.LogID:
					t.Errorf("write %d: OnCommit got log id %q, the caller %q", i, committed[i].LogID, r.LogID)
				}
			}
		})
	}
}
