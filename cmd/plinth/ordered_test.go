package main

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/plinth-data/plinth"
)

// failingStore fails the load of the batch whose records say "batch":
// failBatch (by batch, not by call: loads run concurrently, so calls come
// in any order).
type failingStore struct {
	plinth.Store
	failBatch int
}

func (s *failingStore) BulkLoad(_ context.Context, _ *plinth.Entity, docs []map[string]any, opts plinth.BulkOptions) (plinth.BulkResult, error) {
	if len(docs) > 0 && docs[0]["batch"] == s.failBatch {
		return plinth.BulkResult{}, errors.New("disk full")
	}
	return plinth.BulkResult{}, opts.BeforeCommit()
}

// A failed batch stops the seed with its error, also while later batches
// wait for records that will never be generated.
func TestSeedBatchesStopOnFailure(t *testing.T) {
	results := make([]chan generated, 6)
	for i := range results {
		results[i] = make(chan generated, 1)
	}
	for i := range 3 { // batches 3 … 5 never arrive
		results[i] <- generated{docs: []map[string]any{{"batch": i}}}
	}
	st := &failingStore{failBatch: 1}
	var committed []int
	done := make(chan error, 1)
	go func() {
		done <- loadSeedBatches(context.Background(), st, &plinth.Entity{Plural: "things"}, results, 2, func(i int) { committed = append(committed, i) })
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "disk full") {
			t.Fatalf("error %v, want the failed batch's", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the seed hung after a failed batch")
	}
	if !slices.Equal(committed, []int{0}) {
		t.Errorf("committed %v, want only batch 0", committed)
	}
}
