package postgres

import (
	"context"
	"fmt"

	"github.com/plinth-data/plinth"
)

// BeginBulkLoad prepares an entity's table for a large load. When the
// table is empty, the indexes that serve its filters are dropped, and
// finish builds each again in one pass over the loaded rows — several times
// faster than maintaining trigram and array indexes row by row. When the
// table already has rows nothing changes and finish does nothing. If the
// load fails, call finish anyway: the next Prepare would otherwise rebuild
// the missing indexes (CONCURRENTLY) on its own.
func (s *Store) BeginBulkLoad(ctx context.Context, e *plinth.Entity) (finish func(context.Context) error, err error) {
	t := layout(e)
	noop := func(context.Context) error { return nil }
	var hasRows bool
	if err := s.pool.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM "+t.ident+")").Scan(&hasRows); err != nil {
		return nil, s.wrap("check "+t.label+" before a bulk load", err)
	}
	if hasRows {
		return noop, nil
	}
	indexes := t.wantIndexes()
	for _, ix := range indexes {
		if _, err := s.pool.Exec(ctx, fmt.Sprintf("DROP INDEX IF EXISTS %s.%s", quote(t.schema), quote(ix.name))); err != nil {
			return nil, s.wrap("drop index "+ix.name+" for a bulk load", err)
		}
	}
	return func(ctx context.Context) error {
		for _, ix := range indexes {
			stmt := fmt.Sprintf("CREATE INDEX IF NOT EXISTS %s ON %s %s", quote(ix.name), t.ident, ix.create)
			if _, err := s.pool.Exec(ctx, stmt); err != nil {
				return s.wrap("rebuild index "+ix.name+" after a bulk load", err)
			}
		}
		_, err := s.pool.Exec(ctx, "ANALYZE "+t.ident)
		return s.wrap("analyze "+t.label+" after a bulk load", err)
	}, nil
}
