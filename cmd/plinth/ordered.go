package main

import (
	"context"
	"errors"
	"sync"
)

// errEarlierLoad fails a load whose predecessor failed: it must not commit
// after a gap.
var errEarlierLoad = errors.New("an earlier batch failed")

// orderedLoads runs bulk loads on several goroutines (so that a store
// that loads concurrent calls in parallel, such as PostgreSQL, works on
// more than one core) and lets them commit only in the order they were
// submitted: what is committed is always a prefix of the input, so a
// resumed run (after the records or the checkpoint it finds) leaves no gap.
// The batches must not share keys: a later load holding a key an earlier
// one also writes would keep the earlier waiting for the key's lock while
// it waits for the earlier to commit.
type orderedLoads struct {
	ctx  context.Context
	work chan func()
	prev chan error // the outcome of the last load submitted
	wg   sync.WaitGroup
}

func newOrderedLoads(ctx context.Context, loaders int) *orderedLoads {
	o := &orderedLoads{ctx: ctx, work: make(chan func())}
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

// submit hands load to a free loader, waiting while all are busy, and
// returns the channel that receives its outcome. load must pass
// beforeCommit as BulkOptions.BeforeCommit: it waits until the load
// submitted before has committed, and fails when that one failed.
func (o *orderedLoads) submit(load func(beforeCommit func() error) error) <-chan error {
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
				return errEarlierLoad
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

// close waits for the submitted loads to end.
func (o *orderedLoads) close() {
	close(o.work)
	o.wg.Wait()
}
