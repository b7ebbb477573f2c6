package ordered

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"
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
		o := New(context.Background(), 3)
		var out []<-chan error
		for i := range 8 {
			out = append(out, o.Submit(func(beforeCommit func() error) error {
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
		o.Close()
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
