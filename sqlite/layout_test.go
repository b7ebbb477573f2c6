package sqlite

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/plinth-data/plinth/storetest"
)

// TestLayoutsArePerStore: each store keeps its own cache of table layouts
// (as the postgres store does), so two stores never share one.
func TestLayoutsArePerStore(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "plinth.db")
	ds := storetest.Domains(t)
	var stores [2]*Store
	for i := range stores {
		s, err := Open(ctx, path)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		stores[i] = s
	}
	if err := stores[0].Prepare(ctx, ds); err != nil {
		t.Fatal(err)
	}
	n := 0
	stores[1].tables.Range(func(any, any) bool { n++; return true })
	if n != 0 {
		t.Fatalf("a store that has not been used caches %d layouts", n)
	}
	e := ds[0].Entities[0]
	t0, _ := stores[0].table(e)
	t1, _ := stores[1].table(e)
	again, _ := stores[0].table(e)
	if t0 != again || t0 == t1 {
		t.Errorf("layouts: cached in a store %v, shared between stores %v; want true, false", t0 == again, t0 == t1)
	}
}
