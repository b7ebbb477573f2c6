package sqlite

import (
	"context"
	"errors"
	"fmt"
	"time"

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
	if err := opts.CheckMetadata(len(data)); err != nil {
		return plinth.BulkResult{}, err
	}
	use, dropped := plinth.DistinctKeys(e, data, opts.OnConflict)
	var res plinth.BulkResult
	err := s.writeAlone(ctx, func(ptx plinth.Tx) error { // alone: never grouped (group.go)
		x := ptx.(*tx)
		res = plinth.BulkResult{Skipped: dropped}
		for i, d := range data {
			if use != nil && !use[i] {
				continue
			}
			key, err := x.load(ctx, e, d, opts.OnConflict, &res)
			if err == nil && key != nil && opts.Metadata != nil {
				err = x.setMeta(ctx, e, key, opts.Metadata[i])
			}
			if err != nil {
				return fmt.Errorf("record %d: %w", i, err)
			}
		}
		if opts.BeforeCommit != nil {
			if err := opts.BeforeCommit(); err != nil {
				return err
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

// load writes one record of a bulk load under the conflict policy and
// returns its key when it inserted or replaced it (nil when it skipped it).
func (x *tx) load(ctx context.Context, e *plinth.Entity, d map[string]any, policy plinth.Conflict, res *plinth.BulkResult) (any, error) {
	if d[e.Key.Name] == nil || policy == plinth.ConflictFail {
		r, err := x.Insert(ctx, e, d)
		if err != nil {
			return nil, err
		}
		res.Inserted++
		return r.Data[e.Key.Name], nil
	}
	if policy == plinth.ConflictSkip {
		// A failed INSERT undoes only itself, so the transaction goes on.
		r, err := x.Insert(ctx, e, d)
		switch {
		case err == nil:
			res.Inserted++
			return r.Data[e.Key.Name], nil
		case errors.Is(err, plinth.ErrConflict):
			res.Skipped++
			return nil, nil
		default:
			return nil, err
		}
	}
	u, err := x.Upsert(ctx, e, d)
	if err != nil {
		return nil, err
	}
	switch u.Change {
	case plinth.Created:
		res.Inserted++
	case plinth.Updated:
		res.Replaced++
	default:
		res.Skipped++
		return nil, nil
	}
	return u.Record.Data[e.Key.Name], nil
}

// setMeta gives the record just written the version and times of m
// (BulkOptions.Metadata).
func (x *tx) setMeta(ctx context.Context, e *plinth.Entity, key any, m plinth.RecordMeta) error {
	if m == (plinth.RecordMeta{}) {
		return nil
	}
	t, err := x.s.table(e)
	if err != nil {
		return err
	}
	k, err := t.keyArg(key)
	if err != nil {
		return err
	}
	// A zero field keeps what the insert or replace just wrote.
	var version, created, updated any
	if m.Version > 0 {
		version = m.Version
	}
	if !m.CreatedAt.IsZero() {
		created = formatStoredTime(m.CreatedAt.Truncate(time.Microsecond))
	}
	if !m.UpdatedAt.IsZero() {
		updated = formatStoredTime(m.UpdatedAt.Truncate(time.Microsecond))
	}
	st, err := x.stmt(ctx, fmt.Sprintf(`UPDATE %s SET "version" = coalesce(?, "version"), "created_at" = coalesce(?, "created_at"), "updated_at" = coalesce(?, "updated_at") WHERE %s = ?`,
		quote(t.name), quote(t.key.name)))
	if err != nil {
		return err
	}
	_, err = st.ExecContext(ctx, version, created, updated, k)
	return err
}

// Upsert inserts, replaces or leaves the record (see plinth.Tx). The write
// lock the transaction holds keeps the read and the write together.
func (x *tx) Upsert(ctx context.Context, e *plinth.Entity, data map[string]any) (plinth.UpsertResult, error) {
	return plinth.UpsertVia(ctx, x, e, data)
}
