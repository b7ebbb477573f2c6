package sqlite_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"

	_ "modernc.org/sqlite"

	"github.com/plinth-data/plinth"
)

// TestChangeTrackingAddedToExistingTable: a table made before change
// tracking gets the column on Prepare; its rows (NULL) are older than every
// watermark, and incremental scans work afterwards.
func TestChangeTrackingAddedToExistingTable(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "plinth.db")
	ds, e := parse(t, evolveV1)
	s := openAt(t, path)
	prepare(t, s, ds)
	insert(t, s, e, map[string]any{"fullName": "Old Row"})
	s.Close()
	// As an older plinth left it.
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	for _, stmt := range []string{
		`DROP INDEX "evolve__club_members___change_seq__idx"`,
		`ALTER TABLE "evolve__club_members" DROP COLUMN "_change_seq"`,
		`DROP TABLE "plinth_changes"`,
	} {
		if _, err := db.Exec(stmt); err != nil {
			db.Close()
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	db.Close()

	s = openAt(t, path)
	prepare(t, s, ds)
	count := func(since plinth.Watermark) (int, plinth.Watermark) {
		t.Helper()
		n := 0
		w, err := s.Scan(ctx, e, plinth.ScanQuery{Since: since}, func(plinth.Record) error { n++; return nil })
		if err != nil {
			t.Fatal(err)
		}
		return n, w
	}
	n, w := count("")
	if n != 1 {
		t.Fatalf("full scan: %d records", n)
	}
	if n, _ := count(w); n != 0 {
		t.Fatalf("scan since a watermark over the old row: %d; want none", n)
	}
	insert(t, s, e, map[string]any{"fullName": "New Row"})
	if n, _ := count(w); n != 1 {
		t.Fatalf("scan since a watermark after an insert: %d; want 1", n)
	}
}

// An outbox made before events carried their trace gets the column on
// Prepare, and traced events keep theirs.
func TestOutboxTraceAddedToExistingTable(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "plinth.db")
	ds, _ := parse(t, evolveV1)
	s := openAt(t, path)
	prepare(t, s, ds)
	s.Close()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	_, err = db.Exec(`ALTER TABLE "plinth_outbox" DROP COLUMN "trace"`) // as an older plinth left it
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	s = openAt(t, path)
	prepare(t, s, ds)
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	if err := s.Write(ctx, func(tx plinth.Tx) error {
		return tx.(plinth.EventTx).AppendEvent(ctx, plinth.OutboxEntry{Domain: "evolve", Subject: "s", EventID: "traced", Payload: []byte("{}"), Trace: tp})
	}); err != nil {
		t.Fatal(err)
	}
	es, err := s.PendingEvents(ctx, 10)
	if err != nil || len(es) != 1 || es[0].Trace != tp {
		t.Fatalf("pending events %+v, %v; want the one traced", es, err)
	}
}
