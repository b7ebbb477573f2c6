package storetest

import (
	"errors"
	"fmt"
	"testing"

	"github.com/plinth-data/plinth"
)

func categoryDocs(t testing.TB, e *plinth.Entity, from, to int, title string) []map[string]any {
	var docs []map[string]any
	for i := from; i < to; i++ {
		docs = append(docs, validate(t, e, map[string]any{"code": fmt.Sprintf("c%04d", i), "title": title, "rank": i}, true))
	}
	return docs
}

func bulkLoad(t testing.TB, s plinth.Store, e *plinth.Entity, data []map[string]any, opts plinth.BulkOptions) plinth.BulkResult {
	t.Helper()
	res, err := s.BulkLoad(t.Context(), e, data, opts)
	if err != nil {
		t.Fatalf("bulk load %d %s (%s): %v", len(data), e.Plural, opts.OnConflict, err)
	}
	return res
}

// testBulkAtomic: each BulkLoad call is atomic on every store: when any
// record fails, none of the call's records is kept, however many there
// are (SQLite once kept earlier batches).
func (su *suite) testBulkAtomic(t *testing.T) {
	s := su.open(t)
	e := su.categories
	insert(t, s, e, map[string]any{"code": "c2400", "title": "Already here"})
	docs := categoryDocs(t, e, 0, 2500, "Bulk") // c2400 is in there
	err := s.BulkInsert(t.Context(), e, docs)
	if !errors.Is(err, plinth.ErrConflict) {
		t.Fatalf("bulk insert over an existing key: %v, want ErrConflict", err)
	}
	if n := count(t, s, e); n != 1 {
		t.Errorf("after a failed bulk insert of 2500: %d categories, want only the 1 there before", n)
	}
	// A key given twice in one call.
	people := bulkPeople(t, su.people, "Twice", 2500)
	people[10] = withKey(su.people, people[10], int64(9000))
	people[2200] = withKey(su.people, people[2200], int64(9000))
	if err := s.BulkInsert(t.Context(), su.people, people); !errors.Is(err, plinth.ErrConflict) {
		t.Errorf("bulk insert with a key given twice: %v, want ErrConflict", err)
	}
	// A record the store cannot take, late in the load.
	bad := bulkPeople(t, su.people, "Bad", 2500)
	bad[2300] = withKey(su.people, bad[2300], int64(9001))
	bad[2300]["firstName"] = int64(12345) // not a string
	if err := s.BulkInsert(t.Context(), su.people, bad); err == nil {
		t.Error("bulk insert with a number for a string: no error")
	}
	if n := count(t, s, su.people); n != 0 {
		t.Errorf("after failed bulk inserts: %d people, want 0", n)
	}
	// The checkpoint of a failed load is not written either.
	_, err = s.BulkLoad(t.Context(), e, docs, plinth.BulkOptions{Checkpoint: plinth.Checkpoint{Name: "load", Value: []byte("c2499")}})
	if err == nil {
		t.Fatal("bulk load over an existing key: no error")
	}
	if _, found, err := s.Checkpoint(t.Context(), "load"); err != nil || found {
		t.Errorf("checkpoint of a failed bulk load: found %v (%v); want none", found, err)
	}
}

// testBulkConflictPolicies: ConflictSkip passes over stored keys, so a
// re-run of an interrupted load finishes it; ConflictReplace replaces
// stored data, bumping the version only when it differs.
func (su *suite) testBulkConflictPolicies(t *testing.T) {
	s := su.open(t)
	e := su.categories
	// An interrupted load wrote the first 400 records of 1000.
	bulkLoad(t, s, e, categoryDocs(t, e, 0, 400, "First run"), plinth.BulkOptions{})
	all := categoryDocs(t, e, 0, 1000, "Second run")
	res := bulkLoad(t, s, e, all, plinth.BulkOptions{OnConflict: plinth.ConflictSkip,
		Checkpoint: plinth.Checkpoint{Name: "categories", Value: []byte("c0999")}})
	if res != (plinth.BulkResult{Inserted: 600, Skipped: 400}) {
		t.Errorf("re-run with skip: %+v, want 600 inserted, 400 skipped", res)
	}
	recs := listAll(t, s, e, nil, 100)
	if len(recs) != 1000 {
		t.Fatalf("after the re-run: %d categories, want 1000", len(recs))
	}
	for i, r := range recs {
		want := "Second run"
		if i < 400 {
			want = "First run" // skipped: left as they were
		}
		if r.Data["title"] != want || r.Version != 1 {
			t.Fatalf("category %d: %v at version %d; want %q at 1", i, r.Data["title"], r.Version, want)
		}
	}
	if c, found, err := s.Checkpoint(t.Context(), "categories"); err != nil || !found || string(c.Value) != "c0999" {
		t.Errorf("checkpoint written with the load: %q, found %v (%v)", c.Value, found, err)
	}

	// Replace: 200 new, 300 the same as stored, 500 different.
	mixed := slicesConcat(categoryDocs(t, e, 0, 500, "Third run"), categoryDocs(t, e, 500, 800, "Second run"),
		categoryDocs(t, e, 1000, 1200, "Third run"))
	res = bulkLoad(t, s, e, mixed, plinth.BulkOptions{OnConflict: plinth.ConflictReplace})
	if res != (plinth.BulkResult{Inserted: 200, Replaced: 500, Skipped: 300}) {
		t.Errorf("load with replace: %+v, want 200 inserted, 500 replaced, 300 skipped", res)
	}
	for _, tc := range []struct {
		code    string
		title   string
		version int64
	}{{"c0000", "Third run", 2}, {"c0499", "Third run", 2}, {"c0500", "Second run", 1}, {"c0799", "Second run", 1},
		{"c0800", "Second run", 1}, {"c1000", "Third run", 1}, {"c1199", "Third run", 1}} {
		r := get(t, s, e, tc.code)
		if r.Data["title"] != tc.title || r.Version != tc.version {
			t.Errorf("%s after replace: %v at version %d; want %q at %d", tc.code, r.Data["title"], r.Version, tc.title, tc.version)
		}
	}
	// Replacing again with the same data changes nothing.
	if res := bulkLoad(t, s, e, mixed, plinth.BulkOptions{OnConflict: plinth.ConflictReplace}); res != (plinth.BulkResult{Skipped: 1000}) {
		t.Errorf("the same replace again: %+v, want 1000 skipped", res)
	}
	if r := get(t, s, e, "c0000"); r.Version != 2 {
		t.Errorf("c0000 after a repeated replace: version %d, want 2", r.Version)
	}
	su.checkBulkDuplicates(t, s)
	su.checkBulkGeneratedKeys(t, s)
}

// checkBulkDuplicates: a key given twice in one call counts once: skip
// keeps the first record given, replace the last.
func (su *suite) checkBulkDuplicates(t *testing.T, s plinth.Store) {
	e := su.categories
	doc := func(code, title string) map[string]any {
		return validate(t, e, map[string]any{"code": code, "title": title}, true)
	}
	res := bulkLoad(t, s, e, []map[string]any{doc("d1", "first"), doc("d2", "x"), doc("d1", "second")}, plinth.BulkOptions{OnConflict: plinth.ConflictSkip})
	if res != (plinth.BulkResult{Inserted: 2, Skipped: 1}) || get(t, s, e, "d1").Data["title"] != "first" {
		t.Errorf("skip with a key given twice: %+v, d1 %v; want 2 inserted, 1 skipped, the first", res, get(t, s, e, "d1").Data["title"])
	}
	res = bulkLoad(t, s, e, []map[string]any{doc("d3", "first"), doc("d3", "second"), doc("d1", "third"), doc("d1", "fourth")}, plinth.BulkOptions{OnConflict: plinth.ConflictReplace})
	if res != (plinth.BulkResult{Inserted: 1, Replaced: 1, Skipped: 2}) {
		t.Errorf("replace with keys given twice: %+v, want 1 inserted, 1 replaced, 2 skipped", res)
	}
	if r := get(t, s, e, "d3"); r.Data["title"] != "second" || r.Version != 1 {
		t.Errorf("d3: %v at version %d, want the last given at 1", r.Data["title"], r.Version)
	}
	if r := get(t, s, e, "d1"); r.Data["title"] != "fourth" || r.Version != 2 {
		t.Errorf("d1: %v at version %d, want the last given at 2", r.Data["title"], r.Version)
	}
}

// checkBulkGeneratedKeys: records without a key get one under every
// policy, and given keys move the generator past them.
func (su *suite) checkBulkGeneratedKeys(t *testing.T, s plinth.Store) {
	e := su.people
	docs := bulkPeople(t, e, "Gen", 50)
	docs = append(docs, validate(t, e, map[string]any{"personId": 50000, "firstName": "Given", "lastName": "Key"}, false))
	for _, policy := range []plinth.Conflict{plinth.ConflictSkip, plinth.ConflictReplace} {
		if res := bulkLoad(t, s, e, docs, plinth.BulkOptions{OnConflict: policy}); res.Inserted < 50 {
			t.Errorf("%s with generated keys: %+v, want at least 50 inserted", policy, res)
		}
	}
	if n := count(t, s, e); n != 101 {
		t.Errorf("people: %d, want 101 (50 generated twice, the given key once)", n)
	}
	r := insert(t, s, e, map[string]any{"firstName": "After", "lastName": "Load"})
	if k, _ := e.KeyOf(r).(int64); k <= 50000 {
		t.Errorf("insert after a load of key 50000 got key %v; want a greater one", e.KeyOf(r))
	}
}

func slicesConcat(parts ...[]map[string]any) []map[string]any {
	var out []map[string]any
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}
