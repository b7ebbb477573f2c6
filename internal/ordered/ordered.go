// Package ordered runs bulk loads on several goroutines and lets them
// commit only in the order they were submitted.
package ordered

import (
	"context"
	"errors"
	"sync"
)

// ErrEarlierLoad fails a load whose predecessor failed: it must not commit
// after a gap.
var ErrEarlierLoad = errors.New("an earlier batch failed")

// Loads runs bulk loads on several goroutines (so that a store
// that loads concurrent calls in parallel, such as PostgreSQL, works on
// more than one core) and lets them commit only in the order they were
// submitted: what is committed is always a prefix of the input, so a
// resumed run (after the records or the checkpoint it finds) leaves no gap.
// The batches must not share keys: a later load holding a key an earlier
// one also writes would keep the earlier waiting for the key's lock while
// it waits for the earlier to commit.
type Loads struct {
	ctx  context.Context
	work chan func()
	prev chan error // the outcome of the last load submitted
	wg   sync.WaitGroup
}

// New starts loaders goroutines (at least one) that run submitted loads.
func New(ctx context.Context, loaders int) *Loads {
	o := &Loads{ctx: ctx, work: make(chan func())}
	for range max(loaders, 1) {
		o.wg.Add(1)
		go func() {
			defer o.wg.Done()
			for job := range o.work {
				job()
			}
		}()
	}
	return o
}

// Submit hands load to a free loader, waiting while all are busy, and
// returns the channel that receives its outcome. load must pass
// beforeCommit as BulkOptions.BeforeCommit: it waits until the load
// submitted before has committed, and fails when that one failed.
func (o *Loads) Submit(load func(beforeCommit func() error) error) <-chan error {
	prev := o.prev
	done := make(chan error, 1) // read by the next load's beforeCommit
	out := make(chan error, 1)
	o.prev = done
	beforeCommit := func() error {
		if prev == nil {
			return nil
		}
		select {
		case err := <-prev:
			if err != nil {
				return ErrEarlierLoad
			}
			return nil
		case <-o.ctx.Done():
			return o.ctx.Err()
		}
	}
	job := func() {
		err := load(beforeCommit)
		done <- err
		out <- err
	}
	select {
	case o.work <- job:
	case <-o.ctx.Done():
		done <- o.ctx.Err()
		out <- o.ctx.Err()
	}
	return out
}

// Close waits for the submitted loads to end.
func (o *Loads) Close() {
	close(o.work)
	o.wg.Wait()
}
