package storetest

import (
	"errors"
	"strconv"
	"sync"
	"testing"

	"github.com/plinth-data/plinth"
)

// swap runs SwapCheckpoint in a Write of its own.
func swap(t testing.TB, s plinth.Store, name string, old []byte, found bool, value string) error {
	return s.Write(t.Context(), func(tx plinth.Tx) error {
		sw, ok := tx.(plinth.CheckpointSwapper)
		if !ok {
			t.Fatalf("the store's Tx (%T) does not implement plinth.CheckpointSwapper", tx)
		}
		return sw.SwapCheckpoint(t.Context(), name, old, found, []byte(value))
	})
}

// testSwapCheckpoint: a swap sets a checkpoint only while it holds what
// was read, and concurrent read-swap-retry loops lose no increment.
func (su *suite) testSwapCheckpoint(t *testing.T) {
	s := su.open(t)
	if err := swap(t, s, "hub", nil, false, "a"); err != nil {
		t.Fatalf("first swap of an absent checkpoint: %v", err)
	}
	if err := swap(t, s, "hub", nil, false, "b"); !errors.Is(err, plinth.ErrVersionConflict) {
		t.Errorf("swap of a checkpoint read as absent but present: %v, want ErrVersionConflict", err)
	}
	if err := swap(t, s, "hub", []byte("x"), true, "b"); !errors.Is(err, plinth.ErrVersionConflict) {
		t.Errorf("swap from a value it does not hold: %v, want ErrVersionConflict", err)
	}
	if c, _ := checkpoint(t, s, "hub"); string(c.Value) != "a" {
		t.Errorf("after failed swaps: %q, want \"a\"", c.Value)
	}
	if err := swap(t, s, "hub", []byte("a"), true, "b"); err != nil {
		t.Fatalf("swap from the value it holds: %v", err)
	}
	if c, _ := checkpoint(t, s, "hub"); string(c.Value) != "b" {
		t.Errorf("after a swap: %q, want \"b\"", c.Value)
	}

	const workers, each = 4, 5
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range each {
				for attempt := 0; ; attempt++ {
					c, found, err := s.Checkpoint(t.Context(), "counter")
					if err != nil {
						t.Error(err)
						return
					}
					n, _ := strconv.Atoi(string(c.Value))
					err = swap(t, s, "counter", c.Value, found, strconv.Itoa(n+1))
					if err == nil {
						break
					}
					if !errors.Is(err, plinth.ErrVersionConflict) || attempt > 200 {
						t.Errorf("swap %d: %v", attempt, err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	if c, _ := checkpoint(t, s, "counter"); string(c.Value) != strconv.Itoa(workers*each) {
		t.Errorf("after %d concurrent increments: %q", workers*each, c.Value)
	}
}
