package postgres

import (
	"context"
	"fmt"
	"strconv"

	"github.com/plinth-data/plinth"
)

var _ plinth.AuditedReader = (*Store)(nil)

// auditedRead wraps read, a query of a table's select list whose
// parameters are $1 to $n, into one statement that also appends the
// read's audit record to the log, so that both see one snapshot and
// commit together. The record is announced to the chainer before it
// draws its log id, as AppendAudit announces (see the top of audit.go):
// the insert reads from the announcement's row, so the lock is taken
// before its default draws the number. status, ids and count are the SQL
// of the record's status, record ids and count over r, the rows read;
// $n+1 to $n+16 are auditedArgs'. The statement returns the rows read in
// key order, or one row of NULLs when there are none, each followed by the
// record's columns auditTail reads (NULLs when when, a WHERE clause over
// r, held the record back); the duration is the record's plus the
// statement's time up to the insert.
func auditedRead(read string, n int, key, status, ids, count, when string) string {
	p := func(i int) string { return "$" + strconv.Itoa(n+i) }
	from := `a LEFT JOIN r ON true` // a always holds the record
	if when != "" {
		from = `(SELECT) one LEFT JOIN r ON true LEFT JOIN a ON true`
	}
	return `WITH r AS (` + read + `),
announced AS (SELECT pg_advisory_xact_lock_shared(` + p(1) + `::bigint + last_value) FROM "plinth"."audit_log_sequence"),
a AS (INSERT INTO "plinth"."audit_log" (` + recordCols + `)
SELECT ` + p(2) + `::timestamptz, ` + p(3) + `::text, ` + p(4) + `::text, ` + p(5) + `::text, ` + p(6) + `::text, ` +
		p(7) + `::text, ` + p(8) + `::text, ` + p(9) + `::text, ` + p(10) + `::text::jsonb, ` + p(11) + `::text::jsonb, ` +
		p(12) + `::text, ` + p(13) + `::text, ` + status + `, ` + ids + `, ` + count + `,
	round(` + p(14) + `::double precision::numeric + 1000 * extract(epoch FROM clock_timestamp() - statement_timestamp()), 3)::double precision,
	` + p(15) + `::text, ` + p(16) + `::text
FROM announced` + when + `
RETURNING "log_id", "status", "duration_ms", "record_ids", "count")
SELECT r.*, a.* FROM ` + from + ` ORDER BY r.` + key
}

// getAuditedStatement is GetAudited's statement for a table whose Get is
// getSQL: status 200 when the row is there and 404 when it is not; the
// record's ids and count as given ($18, $19).
func getAuditedStatement(getSQL, key string) string {
	return auditedRead(getSQL, 1, key, `CASE WHEN EXISTS (SELECT FROM r) THEN 200 ELSE 404 END`, `$18::text[]`, `$19::integer`, "")
}

// auditTail receives the columns auditedRead's statement adds to each row:
// what the store made of the record.
type auditTail struct {
	logID      *int64 // nil: nothing was appended
	status     *int32
	durationMs *float64
	ids        []string
	count      *int32
}

func (a *auditTail) dest() []any {
	return []any{&a.logID, &a.status, &a.durationMs, &a.ids, &a.count}
}

// stored returns rec (normalised) as the statement stored it, or a zero
// record when the statement appended nothing.
func (a *auditTail) stored(rec plinth.AuditRecord) plinth.AuditRecord {
	if a.logID == nil || a.status == nil || a.durationMs == nil || a.count == nil {
		return plinth.AuditRecord{}
	}
	rec.LogID = strconv.FormatInt(*a.logID, 10)
	rec.Status, rec.DurationMs, rec.Count = int(*a.status), *a.durationMs, int(*a.count)
	rec.RecordIDs = nil
	if len(a.ids) > 0 {
		rec.RecordIDs = a.ids
	}
	return rec
}

// auditedArgs are auditedRead's arguments for rec (normalised), and its
// record ids and count.
func auditedArgs(rec plinth.AuditRecord) (args []any, ids, count any, err error) {
	row, err := auditRowArgs(rec) // insertAuditRowSQL's: ids, count and status at 12–14
	if err != nil {
		return nil, nil, nil, err
	}
	args = append(append([]any{auditLockBase}, row[:12]...), row[15:]...)
	return args, row[13], row[14], nil
}

// GetAudited reads one record and appends the audit record of the read in
// one statement, one round trip (plinth.AuditedReader): getAuditedStatement.
// A row that fails to decode after the statement committed leaves its
// record in the log and is reported as not appended, so the caller records
// the failure too: a request recorded twice rather than not at all.
func (s *Store) GetAudited(ctx context.Context, e *plinth.Entity, id any, rec plinth.AuditRecord) (plinth.Record, plinth.AuditRecord, error) {
	t := s.layout(e)
	notFound := s.wrap(t.getWhat, fmt.Errorf("%s %s: %w", t.e.Name, plinth.KeyString(id), plinth.ErrNotFound))
	k, ok := t.keyParam(id)
	if !ok {
		return plinth.Record{}, plinth.AuditRecord{}, notFound // nothing appended: the caller records it
	}
	stored := unchained(rec)
	args, ids, count, err := auditedArgs(stored)
	if err != nil {
		return plinth.Record{}, plinth.AuditRecord{}, s.wrap(t.getWhat, err)
	}
	form := readFormOf(ctx)
	var r plinth.Record
	var tail auditTail
	err = func() error {
		rows, err := s.pool.Query(ctx, t.getAuditedSQL, append(append([]any{k}, args...), ids, count)...)
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
			err = rows.Scan(append(make([]any, len(rows.RawValues())-len(tail.dest())), tail.dest()...)...)
		} else {
			r, err = t.rowRecord(rows, form, tail.dest()...)
		}
		if err != nil {
			return err
		}
		// The statement commits when it completes: only then is the
		// record durable.
		rows.Close()
		return rows.Err()
	}()
	if err != nil {
		return plinth.Record{}, plinth.AuditRecord{}, s.wrap(t.getWhat, err)
	}
	if stored = tail.stored(stored); !stored.Stored() {
		return plinth.Record{}, plinth.AuditRecord{}, s.wrap(t.getWhat, fmt.Errorf("the audited read appended no record"))
	}
	if stored.Status == 404 {
		return plinth.Record{}, stored, notFound
	}
	return r, stored, nil
}

// ListAudited reads a page of records and appends the audit record of the
// read in one statement, one round trip (plinth.AuditedReader): status
// 200, the record ids and count those of the page's records. The
// statement is prepared once per connection and shape (limit, cursor or
// not) and runs a generic plan, which suits a list in key order: planning
// it each time, as List plans a filtered list for its values, cost
// PostgreSQL more than the round trip saves (about 0.2 ms of planning
// against 0.03 ms for List's query). So a filtered list is listed as List
// lists it, and nothing is appended. A page holding a text key longer than
// an audit record keeps (plinth.MaxAuditText; plinth.BoundAudit cuts it)
// is read and not recorded by the statement either: the caller records it.
func (s *Store) ListAudited(ctx context.Context, e *plinth.Entity, q plinth.Query, rec plinth.AuditRecord) (plinth.Page, plinth.AuditRecord, error) {
	t := s.layout(e)
	if len(q.Conditions) > 0 || (t.key.sqlType != typeBigint && t.key.sqlType != typeUUID && t.key.sqlType != typeText) {
		page, err := s.List(ctx, e, q)
		return page, plinth.AuditRecord{}, err
	}
	read, readArgs, limit, err := t.listSQL(q, true)
	if err != nil {
		return plinth.Page{}, plinth.AuditRecord{}, err
	}
	stored := unchained(rec)
	args, _, _, err := auditedArgs(stored)
	if err != nil {
		return plinth.Page{}, plinth.AuditRecord{}, s.wrap(t.listWhat, err)
	}
	key := t.key.ident()
	page := strconv.Itoa(limit) // r holds one row more than the page
	// Qualified: unqualified, ORDER BY would sort by the text it selects.
	ids := `ARRAY(SELECT r.` + key + `::text FROM r ORDER BY r.` + key + ` LIMIT ` + strconv.Itoa(min(limit, plinth.MaxAuditIDs)) + `)`
	count := `(SELECT count(*) FROM (SELECT FROM r LIMIT ` + page + `) p)::integer`
	when := ""
	if t.key.sqlType == typeText {
		when = ` WHERE NOT EXISTS (SELECT FROM r WHERE octet_length(r.` + key + `) > ` + strconv.Itoa(plinth.MaxAuditText) + `)`
	}
	sql := auditedRead(read, len(readArgs), key, `200`, ids, count, when)
	var out plinth.Page
	var tail auditTail
	err = func() error {
		rows, err := s.pool.Query(ctx, sql, append(readArgs, args...)...)
		if err != nil {
			return err
		}
		out, err = t.readPage(rows, q, limit, tail.dest()...)
		return err
	}()
	if err != nil {
		return plinth.Page{}, plinth.AuditRecord{}, s.wrap(t.listWhat, err)
	}
	return out, tail.stored(stored), nil
}
