package sqlite

import (
	"context"
	"errors"
	"fmt"

	"github.com/plinth-data/plinth"
)

// BulkInsert is BulkLoad with plinth.ConflictFail.
func (s *Store) BulkInsert(ctx context.Context, e *plinth.Entity, data []map[string]any) error {
	_, err := s.BulkLoad(ctx, e, data, plinth.BulkOptions{})
	return err
}

// BulkLoad writes the records, and opts.Checkpoint when named, in one write
// transaction through prepared statements: all of them or, on error, none
// (the rule every store keeps). One transaction is also the fastest way to
// write many rows into SQLite; callers that want readers to see progress
// load in several calls.
func (s *Store) BulkLoad(ctx context.Context, e *plinth.Entity, data []map[string]any, opts plinth.BulkOptions) (plinth.BulkResult, error) {
	use, dropped := plinth.DistinctKeys(e, data, opts.OnConflict)
	var res plinth.BulkResult
	err := s.Write(ctx, func(ptx plinth.Tx) error {
		x := ptx.(*tx)
		res = plinth.BulkResult{Skipped: dropped}
		for i, d := range data {
			if use != nil && !use[i] {
				continue
			}
			if err := x.load(ctx, e, d, opts.OnConflict, &res); err != nil {
				return fmt.Errorf("record %d: %w", i, err)
			}
		}
		if opts.Checkpoint.Name != "" {
			return x.SetCheckpoint(ctx, opts.Checkpoint.Name, opts.Checkpoint.Value)
		}
		return nil
	})
	if err != nil {
		return plinth.BulkResult{}, fmt.Errorf("sqlite: bulk load %s: %w", e.Name, err)
	}
	return res, nil
}

// load writes one record of a bulk load under the conflict policy.
func (x *tx) load(ctx context.Context, e *plinth.Entity, d map[string]any, policy plinth.Conflict, res *plinth.BulkResult) error {
	if d[e.Key.Name] == nil || policy == plinth.ConflictFail {
		_, err := x.Insert(ctx, e, d)
		if err == nil {
			res.Inserted++
		}
		return err
	}
	if policy == plinth.ConflictSkip {
		// A failed INSERT undoes only itself, so the transaction goes on.
		_, err := x.Insert(ctx, e, d)
		switch {
		case err == nil:
			res.Inserted++
		case errors.Is(err, plinth.ErrConflict):
			res.Skipped++
		default:
			return err
		}
		return nil
	}
	u, err := x.Upsert(ctx, e, d)
	if err != nil {
		return err
	}
	switch u.Change {
	case plinth.Created:
		res.Inserted++
	case plinth.Updated:
		res.Replaced++
	default:
		res.Skipped++
	}
	return nil
}

// Upsert inserts, replaces or leaves the record (see plinth.Tx). The write
// lock the transaction holds keeps the read and the write together.
func (x *tx) Upsert(ctx context.Context, e *plinth.Entity, data map[string]any) (plinth.UpsertResult, error) {
	return plinth.UpsertVia(ctx, x, e, data)
}
