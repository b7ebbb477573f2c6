package main

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/plinth-data/plinth"
)

// Batches loaded on several goroutines commit in order, and a failed batch
// keeps every later one from committing: what is committed is a prefix,
// so a re-run of seed (which continues after the records it finds) fills
// no gap and repeats nothing.
func TestOrderedLoadsCommitAPrefix(t *testing.T) {
	for _, failAt := range []int{-1, 0, 3, 7} {
		var mu sync.Mutex
		var committed []int
		boom := errors.New("batch failed")
		o := newOrderedLoads(context.Background(), 3)
		var out []<-chan error
		for i := range 8 {
			out = append(out, o.submit(func(beforeCommit func() error) error {
				time.Sleep(time.Duration((8-i)%3) * time.Millisecond) // later batches often finish first
				if i == failAt {
					return boom
				}
				if err := beforeCommit(); err != nil {
					return err
				}
				mu.Lock()
				committed = append(committed, i)
				mu.Unlock()
				return nil
			}))
		}
		var firstErr error
		for i := range out {
			if err := <-out[i]; err != nil {
				firstErr = err
				break
			}
		}
		o.close()
		mu.Lock()
		want := []int{0, 1, 2, 3, 4, 5, 6, 7}
		if failAt >= 0 {
			want = want[:failAt]
		}
		if !slices.Equal(committed, want) {
			t.Errorf("batch %d failing: committed %v, want %v", failAt, committed, want)
		}
		mu.Unlock()
		if failAt >= 0 && !errors.Is(firstErr, boom) || failAt < 0 && firstErr != nil {
			t.Errorf("batch %d failing: first error %v", failAt, firstErr)
		}
	}
}

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
