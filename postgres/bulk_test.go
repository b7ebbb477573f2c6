package postgres

import (
	"context"
	"net/url"
	"testing"
)

func TestBulkLoadBuildsIndexesOnceOnAnEmptyTable(t *testing.T) {
	ctx := context.Background()
	ds := loadDomains(t)
	s, _ := openStore(t, ds)
	e := entity(t, ds, "residents")
	indexCount := func() int {
		var n int
		if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM pg_indexes WHERE schemaname = 'residents' AND tablename = 'residents'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	before := indexCount()
	finish, err := s.BeginBulkLoad(ctx, e)
	if err != nil {
		t.Fatal(err)
	}
	if n := indexCount(); n != 1 { // only the primary key is left
		t.Fatalf("%d indexes during the load, want the primary key alone", n)
	}
	docs := make([]map[string]any, 500)
	for i := range docs {
		docs[i] = resident(t, e, i)
	}
	if err := s.BulkInsert(ctx, e, docs); err != nil {
		t.Fatal(err)
	}
	if err := finish(ctx); err != nil {
		t.Fatal(err)
	}
	if n := indexCount(); n != before {
		t.Fatalf("%d indexes after the load, want %d", n, before)
	}
	plan, err := s.Plan(ctx, ds)
	if err != nil || !plan.Empty() {
		t.Fatalf("schema differs from the spec after a bulk load: %v\n%s", err, plan)
	}
	q, err := e.ParseQuery(url.Values{"postcode": {"E8 7DY"}, "limit": {"100"}})
	if err != nil {
		t.Fatal(err)
	}
	page, err := s.List(ctx, e, q)
	if err != nil || len(page.Records) == 0 {
		t.Fatalf("filtered list after a bulk load: %d records, %v", len(page.Records), err)
	}

	// A table with rows keeps its indexes.
	finish, err = s.BeginBulkLoad(ctx, e)
	if err != nil {
		t.Fatal(err)
	}
	if n := indexCount(); n != before {
		t.Fatalf("indexes dropped on a table with rows: %d, want %d", n, before)
	}
	if err := finish(ctx); err != nil {
		t.Fatal(err)
	}
}
