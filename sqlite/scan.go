package sqlite

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/internal/scanpipe"
)

// scanChunk is how many records travel together from the goroutine that
// steps and decodes rows to the one that calls fn (see scanpipe): at most
// two chunks are in flight.
const scanChunk = 256

// errRecord is a row that does not decode.
type errRecord struct{ err error }

func (e errRecord) Error() string { return e.err.Error() }

// Scan calls fn with every matching record in key order, from one read
// transaction on a read connection: in WAL mode it sees the database as of
// its first read while writers carry on. Rows are stepped one at a time,
// so memory stays flat. (A long scan holds back WAL checkpoints until it
// ends, so the WAL file may grow meanwhile.) Its first read is the change
// counter, which becomes the scan's watermark (see changes.go).
//
// Stepping and decoding run on a goroutine of their own while fn works
// through the records before them (scanpipe); that goroutine has ended by
// the time Scan returns.
func (s *Store) Scan(ctx context.Context, e *plinth.Entity, q plinth.ScanQuery, fn func(plinth.Record) error) (plinth.Watermark, error) {
	t, err := s.table(e)
	if err != nil {
		return "", err
	}
	what := "scan " + e.Name
	rtx, err := s.read.BeginTx(ctx, nil)
	if err != nil {
		return "", ctxErr(ctx, fail(what, err))
	}
	defer rtx.Rollback()
	cur, pos, err := snapshotPosition(ctx, rtx, q.Since)
	if errors.Is(err, plinth.ErrBadWatermark) {
		return "", err
	}
	if err != nil {
		return "", ctxErr(ctx, fail(what, err))
	}
	query, args, err := t.scanSQL(q, pos)
	if err != nil {
		return "", fmt.Errorf("sqlite: scan %s: %w", e.Name, err)
	}
	rows, err := rtx.QueryContext(ctx, query, args...)
	if err != nil {
		return "", ctxErr(ctx, fail(what, err))
	}
	defer rows.Close()
	buf := t.newRowBuf()
	buf.nestedJSON = q.NestedJSON
	if q.FieldValues {
		t.fieldOrder(buf)
	}
	if q.ReuseData {
		buf.maps = scanpipe.NewMaps(scanChunk)
	}
	fnErr, err := scanpipe.Run(ctx, scanChunk, buf.maps, func(emit func(plinth.Record) error) error {
		for rows.Next() {
			r, err := t.scanRecordBuf(buf, rows.Scan)
			if err != nil {
				return errRecord{err}
			}
			if err := emit(r); err != nil {
				return err
			}
		}
		return rows.Err()
	}, fn)
	var bad errRecord
	switch {
	case fnErr != nil:
		return "", fnErr
	case errors.As(err, &bad):
		return "", fail(what, bad.err)
	case err != nil:
		return "", ctxErr(ctx, fail(what, err))
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	return plinth.NewWatermark(watermarkKind, uint64(cur)), nil
}

// scanSQL selects the records of a scan, in key order; with q.Since, those
// whose change number is above since.
func (t *table) scanSQL(q plinth.ScanQuery, since int64) (string, []any, error) {
	where, args, err := t.where(plinth.Query{Conditions: q.Conditions})
	if err != nil {
		return "", nil, err
	}
	if !q.UpdatedSince.IsZero() {
		where = append(where, `"updated_at" >= ?`)
		args = append(args, formatStoredTime(q.UpdatedSince))
	}
	if q.Since != "" {
		where = append(where, quote(changeColumn)+" > ?")
		args = append(args, since)
	}
	query := t.selectSQL
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	return query + " ORDER BY " + quote(t.key.name), args, nil
}

// ctxErr prefers the context's error: a scan stopped by its caller says so
// plainly rather than as a driver error.
func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}
