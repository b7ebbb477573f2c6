package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/plinth-data/plinth"
)

// testBulkBeforeCommit: BulkOptions.BeforeCommit runs once, after the
// records are written and before the checkpoint and the commit; its error
// rolls the whole call back (records and checkpoint) and is returned.
// Two calls that name one checkpoint, the later waiting in BeforeCommit
// for the earlier to commit, both commit (the checkpoint's lock is taken
// after BeforeCommit).
func (su *suite) testBulkBeforeCommit(t *testing.T) {
	s := su.open(t)
	e := su.categories
	stop := errors.New("an earlier batch failed")
	calls := 0
	_, err := s.BulkLoad(t.Context(), e, categoryDocs(t, e, 0, 300, "Refused"), plinth.BulkOptions{
		Checkpoint:   plinth.Checkpoint{Name: "ordered", Value: []byte("c0299")},
		BeforeCommit: func() error { calls++; return stop },
	})
	if !errors.Is(err, stop) || calls != 1 {
		t.Fatalf("BeforeCommit failing: %v after %d calls; want its error after 1 call", err, calls)
	}
	if n := count(t, s, e); n != 0 {
		t.Errorf("BeforeCommit failed, yet %d categories were kept", n)
	}
	if _, found, _ := s.Checkpoint(t.Context(), "ordered"); found {
		t.Error("BeforeCommit failed, yet the checkpoint was kept")
	}
	calls = 0
	bulkLoad(t, s, e, categoryDocs(t, e, 0, 300, "Kept"), plinth.BulkOptions{
		BeforeCommit: func() error {
			calls++
			return nil
		},
	})
	if n := count(t, s, e); calls != 1 || n != 300 {
		t.Errorf("BeforeCommit passing: %d calls, %d categories; want 1 and 300", calls, n)
	}
	if _, ok := s.(plinth.BulkLoader); ok {
		checkOrderedCommits(t, s, e)
	}
}

// checkOrderedCommits: on a store that loads concurrent calls in parallel,
// a later call waiting in BeforeCommit for an earlier one (same
// checkpoint) does not block it.
func checkOrderedCommits(t *testing.T, s plinth.Store, e *plinth.Entity) {
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	cp := func(v string) plinth.Checkpoint { return plinth.Checkpoint{Name: "ordered", Value: []byte(v)} }
	waiting, earlierDone := make(chan struct{}), make(chan struct{})
	later := make(chan error, 1)
	laterDocs := categoryDocs(t, e, 400, 500, "Later")
	go func() {
		_, err := s.BulkLoad(ctx, e, laterDocs, plinth.BulkOptions{Checkpoint: cp("later"),
			BeforeCommit: func() error {
				close(waiting)
				select {
				case <-earlierDone:
					return nil
				case <-ctx.Done():
					return ctx.Err()
				}
			}})
		later <- err
	}()
	<-waiting
	_, err := s.BulkLoad(ctx, e, categoryDocs(t, e, 300, 400, "Earlier"), plinth.BulkOptions{Checkpoint: cp("earlier")})
	close(earlierDone)
	if err != nil {
		t.Fatalf("the earlier call, while a later one waits in BeforeCommit: %v", err)
	}
	if err := <-later; err != nil {
		t.Fatalf("the later call: %v", err)
	}
	if c, _, _ := s.Checkpoint(t.Context(), "ordered"); string(c.Value) != "later" {
		t.Errorf("checkpoint %q after both, want the later call's", c.Value)
	}
}

// testBulkKeepsMetadata: with BulkOptions.Metadata each record keeps the
// version, createdAt and updatedAt given (a bundle load, an obfuscated
// copy); a zero entry gets the defaults; skipped records keep theirs;
// replaced records take the new ones.
func (su *suite) testBulkKeepsMetadata(t *testing.T) {
	s := su.open(t)
	e := su.categories
	created := time.Date(2019, 3, 4, 5, 6, 7, 123456000, time.UTC)
	updated := time.Date(2024, 11, 12, 13, 14, 15, 654321000, time.UTC)
	docs := categoryDocs(t, e, 0, 3, "Kept")
	meta := []plinth.RecordMeta{
		{Version: 7, CreatedAt: created, UpdatedAt: updated},
		{Version: 42, CreatedAt: created.Add(time.Hour), UpdatedAt: created.Add(2 * time.Hour)},
		{},
	}
	if _, err := s.BulkLoad(t.Context(), e, docs, plinth.BulkOptions{Metadata: meta[:2]}); err == nil {
		t.Error("3 records with 2 metadata entries: no error")
	}
	if n := count(t, s, e); n != 0 {
		t.Fatalf("a refused bulk load kept %d categories", n)
	}
	before := plinth.Now()
	bulkLoad(t, s, e, docs, plinth.BulkOptions{Metadata: meta})
	for i, want := range meta[:2] {
		r := get(t, s, e, docs[i]["code"])
		if r.Version != want.Version || !r.CreatedAt.Equal(want.CreatedAt) || !r.UpdatedAt.Equal(want.UpdatedAt) {
			t.Errorf("record %d: version %d, created %s, updated %s; want %d, %s, %s", i,
				r.Version, r.CreatedAt, r.UpdatedAt, want.Version, want.CreatedAt, want.UpdatedAt)
		}
	}
	if r := get(t, s, e, docs[2]["code"]); r.Version != 1 || r.CreatedAt.Before(before) || !r.UpdatedAt.Equal(r.CreatedAt) {
		t.Errorf("zero metadata: version %d, created %s, updated %s; want 1 and the load's time", r.Version, r.CreatedAt, r.UpdatedAt)
	}
	// Skipped: left as they were. Replaced (data differs): the new metadata.
	again := categoryDocs(t, e, 0, 2, "Kept")
	again[1]["title"] = "Changed"
	later := updated.Add(24 * time.Hour)
	res := bulkLoad(t, s, e, again, plinth.BulkOptions{OnConflict: plinth.ConflictSkip,
		Metadata: []plinth.RecordMeta{{Version: 99, UpdatedAt: later}, {Version: 99, UpdatedAt: later}}})
	if res.Skipped != 2 {
		t.Errorf("skip over stored keys: %+v, want 2 skipped", res)
	}
	if r := get(t, s, e, docs[0]["code"]); r.Version != 7 || !r.UpdatedAt.Equal(updated) {
		t.Errorf("a skipped record changed: version %d, updated %s", r.Version, r.UpdatedAt)
	}
	res = bulkLoad(t, s, e, again, plinth.BulkOptions{OnConflict: plinth.ConflictReplace,
		Metadata: []plinth.RecordMeta{{Version: 99, UpdatedAt: later}, {Version: 43, CreatedAt: created, UpdatedAt: later}}})
	if res.Replaced != 1 || res.Skipped != 1 {
		t.Errorf("replace: %+v, want 1 replaced and 1 unchanged", res)
	}
	if r := get(t, s, e, docs[0]["code"]); r.Version != 7 || !r.UpdatedAt.Equal(updated) {
		t.Errorf("an unchanged record changed: version %d, updated %s", r.Version, r.UpdatedAt)
	}
	r := get(t, s, e, docs[1]["code"])
	if r.Version != 43 || !r.CreatedAt.Equal(created) || !r.UpdatedAt.Equal(later) || r.Data["title"] != "Changed" {
		t.Errorf("replaced record: version %d, created %s, updated %s, title %v; want 43, %s, %s, Changed",
			r.Version, r.CreatedAt, r.UpdatedAt, r.Data["title"], created, later)
	}
}
