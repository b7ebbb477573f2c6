package sqlite_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/audit"
	"github.com/plinth-data/plinth/sqlite"
)

// A trail written before the record ids' ranges (one row per record id and
// record, no "through" column) gets the column on Prepare, and searching
// by record id finds the same records in its older rows as in the ranges
// chained since.
func TestAuditRecordIDsBeforeRanges(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "plinth.db")
	ids := [][]string{{"a"}, {"b"}, {"a", "b"}, {"c"}, {"a"}}
	chain := func(s *sqlite.Store) {
		t.Helper()
		batch := make([]plinth.AuditRecord, len(ids))
		for i := range batch {
			batch[i] = benchAuditRecord
			batch[i].RecordIDs, batch[i].Count = ids[i], len(ids[i])
		}
		if _, err := s.AppendAudit(ctx, batch); err != nil {
			t.Fatal(err)
		}
		if n, err := audit.ChainPending(ctx, s); err != nil || n != int64(len(batch)) {
			t.Fatal(n, err)
		}
	}
	s, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	prepare(t, s, nil)
	chain(s) // sequences 1–5
	s.Close()
	// Rewrite the ids as an older Plinth wrote them, without the column.
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	_, err = db.Exec(`DROP TABLE "plinth_audit_record_ids";
	CREATE TABLE "plinth_audit_record_ids" ("record_id" TEXT NOT NULL, "sequence" INTEGER NOT NULL,
		PRIMARY KEY ("record_id", "sequence")) WITHOUT ROWID;
	INSERT INTO "plinth_audit_record_ids" SELECT j."value", a."sequence" FROM "plinth_audit" a, json_each(a."record_ids") j`)
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	if s, err = sqlite.Open(ctx, path); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	prepare(t, s, nil)
	prepare(t, s, nil) // idempotent
	chain(s)           // sequences 6–10, as ranges
	for id, want := range map[string][]int64{"a": {1, 3, 5, 6, 8, 10}, "b": {2, 3, 7, 8}, "c": {4, 9}, "d": nil} {
		for _, after := range []int64{0, 3, 8} {
			recs, more, err := s.AuditRecords(ctx, plinth.AuditQuery{EntityID: id, After: after, Limit: 100})
			if err != nil || more {
				t.Fatalf("search %s after %d: more %v, %v", id, after, more, err)
			}
			var got, w []int64
			for _, r := range recs {
				got = append(got, r.Sequence)
			}
			for _, seq := range want {
				if seq > after {
					w = append(w, seq)
				}
			}
			if !reflect.DeepEqual(got, w) {
				t.Errorf("search %s after %d: %v, want %v", id, after, got, w)
			}
		}
	}
	// Trimming removes the older rows and the ranges it passes.
	if _, err := s.TrimAudit(ctx, 7); err != nil {
		t.Fatal(err)
	}
	if recs, _, err := s.AuditRecords(ctx, plinth.AuditQuery{EntityID: "a", Limit: 100}); err != nil || len(recs) != 2 ||
		recs[0].Sequence != 8 || recs[1].Sequence != 10 {
		t.Fatalf("after trimming through 7, a: %v, %v", recs, err)
	}
}
