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

// scanFetch is how many rows each FETCH of a scan brings: enough that round
// trips do not dominate. Memory does not grow with it: rows are decoded as
// they arrive and handed on scanChunk records at a time.
// (A variable so that benchmarks can compare sizes.)
var scanFetch = 4000

// scanChunk is how many records travel together from the goroutine that
// fetches and decodes rows to the one that calls fn (see scanpipe): at
// most two chunks are in flight.
const scanChunk = 256

// Scan calls fn with every matching record in key order. It reads in a
// REPEATABLE READ, READ ONLY transaction, so every row comes from the
// snapshot taken at its first statement (which reads that snapshot,
// the scan's watermark: see changes.go), through a server-side cursor,
// fetched scanFetch rows at a time, so memory stays flat. (A cursor is
// planned for its first rows: PostgreSQL prefers walking the key index to
// sorting the whole table before the first row.) The snapshot blocks no
// writer, but holds back vacuum of the rows it can see until it ends.
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
	args = append([]any{pgx.QueryExecModeCacheDescribe}, args...)
	if _, err := ptx.Exec(ctx, "DECLARE plinth_scan NO SCROLL CURSOR FOR "+query, args...); err != nil {
		return "", ctxErr(ctx, s.wrap(what, err))
	}
	sc := t.scanner(q.NestedJSON)
	if q.ReuseData {
		sc.maps = scanpipe.NewMaps(scanChunk)
	}
	fnErr, err := scanpipe.Run(ctx, scanChunk, sc.maps, func(emit func(plinth.Record) error) error {
		for {
			n, err := fetchScan(ctx, ptx, sc, emit)
			if err != nil || n < scanFetch {
				return err
			}
		}
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

// rawFetches counts the fetches decoded from the binary wire form, so a
// test can tell that the fast path is taken.
var rawFetches atomic.Int64

// fetchScan passes the next batch of the scan's cursor to emit. It returns
// how many rows came.
func fetchScan(ctx context.Context, ptx pgx.Tx, sc *scanner, emit func(plinth.Record) error) (n int, err error) {
	// Described afresh each time: the text is the same for every
	// entity, so a cached description would be another table's.
	rows, err := ptx.Query(ctx, fmt.Sprintf("FETCH FORWARD %d FROM plinth_scan", scanFetch), pgx.QueryExecModeDescribeExec)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	raw := sc.rawDecodable(rows.FieldDescriptions())
	if raw {
		rawFetches.Add(1)
	}
	for rows.Next() {
		n++
		var r plinth.Record
		var err error
		if raw {
			r, err = sc.rawRecord(rows.RawValues())
		} else {
			r, err = sc.record(rows)
		}
		if err != nil {
			return n, err
		}
		if err := emit(r); err != nil {
			return n, err
		}
	}
	return n, rows.Err()
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
