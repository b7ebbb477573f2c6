package postgres

import (
	"context"
	"testing"

	"github.com/plinth-data/plinth/storetest"
)

// TestLayoutsArePerStore: each store keeps its own cache of table layouts
// (as the sqlite store does), so that nothing outlives a closed store and
// two stores never share one.
func TestLayoutsArePerStore(t *testing.T) {
	ds := storetest.Domains(t)
	s1, dbURL := openStore(t, ds)
	s2, err := Open(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	cached := func(s *Store) (n int) {
		s.layouts.Range(func(any, any) bool { n++; return true })
		return n
	}
	if n := cached(s2); n != 0 {
		t.Fatalf("a store that has not been used caches %d layouts", n)
	}
	e := ds[0].Entities[0]
	if s1.layout(e) != s1.layout(e) {
		t.Error("a store lays out the same entity twice")
	}
	if s1.layout(e) == s2.layout(e) {
		t.Error("two stores share a layout")
	}
	if n := cached(s2); n != 1 {
		t.Errorf("the second store caches %d layouts after using one entity, want 1", n)
	}
}
