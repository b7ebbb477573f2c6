package postgres

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/plinth-data/plinth"
)

// getAuditedStatement is GetAudited's statement for a table whose Get is
// getSQL: the read and the audit record's insert in one statement, so both
// see one snapshot. The record's status is 200 when the row is there and
// 404 when it is not; its duration ($17, in ms) grows by the time the
// statement took up to the insert. It always returns one row: the select
// list (NULLs when there is no row), then the record's log id, status and
// duration as stored. $2–$18 are insertAuditRowSQL's arguments without the
// status.
func getAuditedStatement(getSQL string) string {
	return `WITH r AS (` + getSQL + `),
a AS (INSERT INTO "plinth"."audit_log" (` + recordCols + `)
SELECT $2::timestamptz, $3::text, $4::text, $5::text, $6::text, $7::text, $8::text, $9::text, $10::text::jsonb,
	$11::text::jsonb, $12::text, $13::text, CASE WHEN EXISTS (SELECT FROM r) THEN 200 ELSE 404 END,
	$14::text[], $15::integer,
	round($16::double precision::numeric + 1000 * extract(epoch FROM clock_timestamp() - statement_timestamp()), 3)::double precision,
	$17::text, $18::text
RETURNING "log_id", "status", "duration_ms")
SELECT r.*, a."log_id", a."status", a."duration_ms" FROM a LEFT JOIN r ON true`
}

// GetAudited reads one record and appends the audit record of the read in
// one implicit transaction (plinth.AuditedGetter): the announcement to the
// chainer (as AppendAudit makes it) and the statement of
// getAuditedStatement, pipelined, committed at the Sync. One round trip
// instead of Get's and then AppendAudit's.
func (s *Store) GetAudited(ctx context.Context, e *plinth.Entity, id any, rec plinth.AuditRecord) (plinth.Record, plinth.AuditRecord, error) {
	t := s.layout(e)
	notFound := s.wrap(t.getWhat, fmt.Errorf("%s %s: %w", t.e.Name, plinth.KeyString(id), plinth.ErrNotFound))
	k, ok := t.keyParam(id)
	if !ok {
		return plinth.Record{}, plinth.AuditRecord{}, notFound // nothing appended: the caller records it
	}
	stored := unchained(rec)
	row, err := auditRowArgs(stored)
	if err != nil {
		return plinth.Record{}, plinth.AuditRecord{}, s.wrap(t.getWhat, err)
	}
	args := append(append([]any{k}, row[:12]...), row[13:]...) // row[12] is the status
	form := readDecoded
	switch {
	case plinth.RecordJSONWanted(ctx):
		form = readJSON
	case plinth.NestedJSONWanted(ctx):
		form = readNested
	}
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return plinth.Record{}, plinth.AuditRecord{}, s.wrap(t.getWhat, err)
	}
	defer conn.Release()
	b := &pgx.Batch{}
	b.Queue(announceAudit, auditLockBase)
	b.Queue(t.getAuditedSQL, args...)
	br := conn.SendBatch(ctx, b)
	var r plinth.Record
	var logID int64
	var status int32
	err = func() error {
		if _, err := br.Exec(); err != nil {
			return err
		}
		rows, err := br.Query()
		if err != nil {
			return err
		}
		defer rows.Close()
		if !rows.Next() {
			if err := rows.Err(); err != nil {
				return err
			}
			return fmt.Errorf("the audited read returned no row")
		}
		if rows.RawValues()[0] == nil { // no record: only the audit columns
			err = rows.Scan(append(make([]any, len(rows.RawValues())-3), &logID, &status, &stored.DurationMs)...)
		} else {
			r, err = t.rowRecord(rows, form, &logID, &status, &stored.DurationMs)
		}
		if err != nil {
			return err
		}
		rows.Close()
		return rows.Err()
	}()
	// The transaction commits at the Sync: only a clean Close says the
	// record is durable.
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		if conn.Conn().PgConn().TxStatus() != 'I' {
			// A connection left in a transaction is closed by the pool on
			// release, so a failed ROLLBACK does no harm.
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			_, _ = conn.Exec(rctx, "ROLLBACK")
			cancel()
		}
		return plinth.Record{}, plinth.AuditRecord{}, s.wrap(t.getWhat, err)
	}
	stored.Status, stored.LogID = int(status), strconv.FormatInt(logID, 10)
	if status == 404 {
		return plinth.Record{}, stored, notFound
	}
	return r, stored, nil
}
