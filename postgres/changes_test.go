package postgres

import (
	"context"
	"strings"
	"testing"

	"github.com/plinth-data/plinth"
)

// TestChangeTrackingAddedToExistingTable: a table made before change
// tracking gets the column (without rewriting the table: existing rows
// hold NULL, older than every watermark) and its indexes from Plan and
// Prepare, which then has nothing more to do; incremental scans then work.
func TestChangeTrackingAddedToExistingTable(t *testing.T) {
	ctx := context.Background()
	s, d := seeded(t, 20)
	e := d.Entities[0]
	tbl := s.layout(e)
	for _, stmt := range []string{
		"ALTER TABLE " + tbl.ident + " DROP COLUMN " + quote(changeColumn),
		"DROP INDEX " + quote(tbl.schema) + "." + quote(ident(tbl.name+"__updated_at__btree")),
	} {
		if _, err := s.pool.Exec(ctx, stmt); err != nil {
			t.Fatal(err)
		}
	}
	ds := []*plinth.Domain{d}
	p, err := s.Plan(ctx, ds)
	if err != nil {
		t.Fatal(err)
	}
	out := p.String()
	for _, want := range []string{
		`ADD COLUMN IF NOT EXISTS "_change_txid" xid8;`,
		`ALTER COLUMN "_change_txid" SET DEFAULT pg_current_xact_id()`,
		`CREATE INDEX CONCURRENTLY IF NOT EXISTS "residents___change_txid__btree"`,
		`CREATE INDEX CONCURRENTLY IF NOT EXISTS "residents__updated_at__btree"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("plan lacks %s:\n%s", want, out)
		}
	}
	if len(p.Refusals) > 0 {
		t.Fatalf("refusals: %v", p.Refusals)
	}
	if err := s.Prepare(ctx, ds); err != nil {
		t.Fatal(err)
	}
	if p, err := s.Plan(ctx, ds); err != nil || !p.Empty() {
		t.Fatalf("plan after Prepare: %v\n%s", err, p)
	}
	var nulls int
	if err := s.pool.QueryRow(ctx, "SELECT count(*) FROM "+tbl.ident+" WHERE "+quote(changeColumn)+" IS NULL").Scan(&nulls); err != nil || nulls != 20 {
		t.Fatalf("rows stored before the column: %d with NULL, %v; want 20", nulls, err)
	}
	w, err := s.Scan(ctx, e, plinth.ScanQuery{}, func(plinth.Record) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	if _, err := s.Scan(ctx, e, plinth.ScanQuery{Since: w}, func(plinth.Record) error { n++; return nil }); err != nil || n != 0 {
		t.Fatalf("scan since a watermark, over old rows only: %d, %v; want none", n, err)
	}
	if err := s.Write(ctx, func(tx plinth.Tx) error {
		_, err := tx.Insert(ctx, e, resident(t, e, 100))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Scan(ctx, e, plinth.ScanQuery{Since: w}, func(plinth.Record) error { n++; return nil }); err != nil || n != 1 {
		t.Fatalf("scan since a watermark after an insert: %d, %v; want 1", n, err)
	}
}
