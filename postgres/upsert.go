package postgres

import (
	"context"

	"github.com/plinth-data/plinth"
)

// Upsert inserts, replaces or leaves the record (see plinth.Tx). Get locks
// the row (FOR UPDATE) until the transaction ends; when another
// transaction inserts the key between the read and the insert, the insert
// (ON CONFLICT DO NOTHING) waits for it and reports a conflict, and the
// read is repeated.
func (x *tx) Upsert(ctx context.Context, e *plinth.Entity, data map[string]any) (plinth.UpsertResult, error) {
	return plinth.UpsertVia(ctx, x, e, data)
}
