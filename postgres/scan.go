package postgres

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"

	"github.com/jackc/pgx/v5"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/internal/scanpipe"
)

// scanChunk is how many records travel together from the goroutine that
// fetches and decodes rows to the one that calls fn (see scanpipe): at
// most two chunks are in flight.
const scanChunk = 256

// Scan calls fn with every matching record in key order. It reads in a
// REPEATABLE READ, READ ONLY transaction, so every row comes from the
// snapshot taken at its first statement (which reads that snapshot,
// the scan's watermark: see changes.go), in one query whose rows are
// decoded as they arrive: the server sends them as fast as they are
// read, held back only by the connection's buffers, so memory stays flat
// and the server never waits for a round trip (a cursor fetched in
// batches left it idle between batches: a third slower). A scan of the
// whole table walks the key index (sorting is turned off for its
// transaction), so rows flow from the first moment rather than after a
// sort of the table on disk; a filtered scan is planned as usual. The
// snapshot blocks no writer, but holds back vacuum of the rows it can see
// until it ends.
//
// Fetching and decoding run on a goroutine of their own while fn works
// through the records before them (scanpipe), so the database, the
// decoding and fn overlap rather than take turns; that goroutine has
// ended, and the transaction is free, by the time Scan returns.
func (s *Store) Scan(ctx context.Context, e *plinth.Entity, q plinth.ScanQuery, fn func(plinth.Record) error) (plinth.Watermark, error) {
	t := s.layout(e)
	what := "scan " + t.label
	ptx, cur, prev, hasPrev, err := s.readSnapshot(ctx, what, q.Since)
	if err != nil {
		return "", err
	}
	defer ptx.Rollback(context.WithoutCancel(ctx))
	var since *pgSnapshot
	if hasPrev {
		since = &prev
	}
	query, args, err := t.scanSQL(q, since)
	if err != nil {
		return "", fmt.Errorf("postgres: scan %s: %w", t.label, err)
	}
	if len(q.Conditions) == 0 && q.UpdatedSince.IsZero() && since == nil {
		if _, err := ptx.Exec(ctx, "SET LOCAL enable_sort = off"); err != nil {
			return "", ctxErr(ctx, s.wrap(what, err))
		}
	}
	sc := t.scanner(q.NestedJSON)
	sc.fieldValues = q.FieldValues
	if q.ReuseData {
		sc.maps = scanpipe.NewMaps(scanChunk)
	}
	fnErr, err := scanpipe.Run(ctx, scanChunk, sc.maps, func(emit func(plinth.Record) error) error {
		return streamScan(ctx, ptx, sc, query, args, emit)
	}, fn)
	switch {
	case fnErr != nil:
		return "", fnErr // unchanged, so callers can compare it
	case err != nil:
		return "", ctxErr(ctx, s.wrap(what, err))
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	return cur.watermark(), nil
}

// rawScans counts the scans decoded from the binary wire form, so a test
// can tell that the fast path is taken.
var rawScans atomic.Int64

// streamScan passes every row of the query to emit as it arrives. When
// emit fails (the consumer stopped), the query is cancelled rather than
// read to its end: closing the rows of a query still running would read
// and throw away the rest of the table. The cancelled connection is
// broken and the pool replaces it.
func streamScan(ctx context.Context, ptx pgx.Tx, sc *scanner, query string, args []any, emit func(plinth.Record) error) error {
	qctx, cancel := context.WithCancel(ctx)
	defer cancel()
	rows, err := ptx.Query(qctx, query, append([]any{pgx.QueryExecModeCacheDescribe}, args...)...)
	if err != nil {
		return err
	}
	defer rows.Close()
	raw := sc.rawDecodable(rows.FieldDescriptions())
	if raw {
		rawScans.Add(1)
	}
	for rows.Next() {
		r, err := sc.decode(rows, raw)
		if err == nil {
			err = emit(r)
		}
		if err != nil {
			cancel()
			return err
		}
	}
	return rows.Err()
}

// scanSQL selects the records of a scan, in key order.
func (t *table) scanSQL(q plinth.ScanQuery, since *pgSnapshot) (string, []any, error) {
	var args []any
	where, err := t.where(q.Conditions, &args)
	if err != nil {
		return "", nil, err
	}
	if !q.UpdatedSince.IsZero() {
		args = append(args, q.UpdatedSince)
		where = append(where, fmt.Sprintf("updated_at >= $%d", len(args)))
	}
	if since != nil {
		where = append(where, changedSince(quote(changeColumn), *since, &args))
	}
	sql := "SELECT " + t.selectList + " FROM " + t.ident
	if len(where) > 0 {
		sql += " WHERE " + strings.Join(where, " AND ")
	}
	return sql + " ORDER BY " + t.key.ident(), args, nil
}

// ctxErr prefers the context's error: a scan stopped by its caller says so
// plainly rather than as a lost connection.
func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}
