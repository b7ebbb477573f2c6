package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/plinth-data/plinth"
)

// The audit trail is kept in four tables, created by Prepare:
//
//   - plinth_audit_log: records appended and not yet chained, keyed by
//     log_id (INTEGER PRIMARY KEY AUTOINCREMENT: never reused). Writers
//     insert here only, inside their write transaction (Tx.AppendAudit) or
//     in a batch of their own (Store.AppendAudit).
//   - plinth_audit: the chain, one row per chained plinth.AuditRecord,
//     keyed by its sequence; the principal, the filters and the record ids
//     as JSON; the time as UTC text at a fixed width (so text order is time
//     order). Expression indexes on the principal's subject, e-mail and
//     consumer, and indexes on (domain, time) and time, serve AuditRecords.
//   - plinth_audit_record_ids: (record_id, sequence, through) for every
//     record id of every chaining batch: the first and the last sequence of
//     the batch's records that name it, so "who touched record 12345" is an
//     index lookup and a look at the records of each range (through is
//     NULL in rows written before it came: one row per record). One row
//     per id and batch, not per id and record: a list's record names 20
//     ids, mostly the ones the lists before named (first pages, common
//     filters), and a row each was 5–13 % of serve's CPU per first page
//     (BENCHMARKS.md, "2026-12-01, eighth session").
//   - plinth_audit_head: one row, the sequence and hash of the newest
//     chained record, written by the chainer only. It outlives the rows, so
//     a deleted tail shows up as a gap when the next record is chained.
//
// SQLite has one writer at a time (every write transaction begins
// IMMEDIATE), and log_id is drawn while the writer holds that lock, so log
// order is commit order and UnchainedAudit may return every row it sees.
// ChainAudit moves rows from the log into the chain in one transaction:
// it copies each log row's columns verbatim (so the hash the chainer
// computed over what UnchainedAudit returned matches what is stored),
// deletes the log row and moves the head, conditional on the head being
// where the chainer thinks it is.
//
// Plinth never updates or deletes a chained row. Text is normalised before
// hashing as in the postgres store (invalid UTF-8 and U+0000 become
// U+FFFD), so a trail moves between the stores unchanged.

var (
	_ plinth.AuditStore = (*Store)(nil)
	_ plinth.AuditTx    = (*tx)(nil)
)

// maxAtomicBatch is how many records one AppendAudit or ChainAudit takes:
// SQLite commits any number atomically; this bounds how long one chaining
// transaction holds the write lock.
const maxAtomicBatch = 1000

// chainLeaseName is the lease the chainer holds (in plinth_relay_lease).
const chainLeaseName = "audit-chain"

// auditRecordColumns are the columns of a record in the audit log and in
// the chain alike (the chain adds sequence and hashes).
const auditRecordColumns = `	"time" TEXT NOT NULL,
	"correlation_id" TEXT NOT NULL,
	"environment" TEXT NOT NULL,
	"domain" TEXT NOT NULL,
	"entity" TEXT NOT NULL,
	"operation" TEXT NOT NULL,
	"method" TEXT NOT NULL,
	"route" TEXT NOT NULL,
	"filters" TEXT,
	"principal" TEXT NOT NULL,
	"decision" TEXT NOT NULL,
	"reason" TEXT NOT NULL,
	"status" INTEGER NOT NULL,
	"record_ids" TEXT NOT NULL,
	"count" INTEGER NOT NULL,
	"duration_ms" REAL NOT NULL,
	"client_address" TEXT NOT NULL,
	"user_agent" TEXT NOT NULL`

var auditSchema = []string{
	`CREATE TABLE IF NOT EXISTS "plinth_audit" (
	"sequence" INTEGER PRIMARY KEY NOT NULL,
` + auditRecordColumns + `,
	"prev_hash" TEXT NOT NULL,
	"hash" TEXT NOT NULL
)`,
	`CREATE INDEX IF NOT EXISTS "plinth_audit__by_subject" ON "plinth_audit" (json_extract("principal", '$.subject'), "sequence")`,
	`CREATE INDEX IF NOT EXISTS "plinth_audit__by_email" ON "plinth_audit" (json_extract("principal", '$.email'), "sequence")`,
	`CREATE INDEX IF NOT EXISTS "plinth_audit__by_consumer" ON "plinth_audit" (json_extract("principal", '$.consumer'), "sequence")`,
	`CREATE INDEX IF NOT EXISTS "plinth_audit__by_domain_time" ON "plinth_audit" ("domain", "time")`,
	`CREATE INDEX IF NOT EXISTS "plinth_audit__by_time" ON "plinth_audit" ("time")`,
	`CREATE TABLE IF NOT EXISTS "plinth_audit_record_ids" (
	"record_id" TEXT NOT NULL,
	"sequence" INTEGER NOT NULL,
	"through" INTEGER,
	PRIMARY KEY ("record_id", "sequence")
) WITHOUT ROWID`,
	`CREATE TABLE IF NOT EXISTS "plinth_audit_head" (
	"one" INTEGER PRIMARY KEY NOT NULL CHECK ("one" = 1),
	"sequence" INTEGER NOT NULL,
	"hash" TEXT NOT NULL
)`,
	`INSERT INTO "plinth_audit_head" ("one", "sequence", "hash")
SELECT 1, coalesce(max("sequence"), 0),
	coalesce((SELECT "hash" FROM "plinth_audit" ORDER BY "sequence" DESC LIMIT 1), '')
FROM "plinth_audit"
WHERE true
ON CONFLICT ("one") DO NOTHING`,
	`CREATE TABLE IF NOT EXISTS "plinth_audit_log" (
	"log_id" INTEGER PRIMARY KEY AUTOINCREMENT,
` + auditRecordColumns + `
)`,
}

// recordCols are the columns of a record's content, in the log and in the
// chain.
const recordCols = `"time", "correlation_id", "environment", "domain", "entity", "operation", "method", "route",
	"filters", "principal", "decision", "reason", "status", "record_ids", "count", "duration_ms", "client_address",
	"user_agent"`

const auditCols = `"sequence", ` + recordCols + `, "prev_hash", "hash"`

// logRecordCols are recordCols of the log (as l).
const logRecordCols = `l."time", l."correlation_id", l."environment", l."domain", l."entity", l."operation", l."method",
	l."route", l."filters", l."principal", l."decision", l."reason", l."status", l."record_ids", l."count",
	l."duration_ms", l."client_address", l."user_agent"`

const (
	auditHeadSQL      = `SELECT "sequence", "hash" FROM "plinth_audit_head"`
	moveAuditHeadSQL  = `UPDATE "plinth_audit_head" SET "sequence" = ?, "hash" = ? WHERE "sequence" = ? AND "hash" = ?`
	insertAuditLogSQL = `INSERT INTO "plinth_audit_log" (` + recordCols + `) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	// Chaining copies the batch's records from the log, fills their record
	// ids and empties the log with one statement each. They take the
	// batch as one JSON array: [log id, previous hash, hash] per record,
	// in order; the records' sequences follow on from the first
	// (checkLinks). One statement for the batch instead of one per record:
	// 47–52 → 32–42 CPU µs per chained record (BenchmarkChainAudit).
	chainAuditSQL = `INSERT INTO "plinth_audit" (` + auditCols + `)
SELECT ? + c."key", ` + logRecordCols + `, c."value" ->> 1, c."value" ->> 2
FROM json_each(?) c JOIN "plinth_audit_log" l ON l."log_id" = c."value" ->> 0
ORDER BY c."key"`
	// The batch's record ids come as one JSON array: [record id, first
	// sequence, last sequence] per id (recordIDRanges).
	chainAuditIDsSQL = `INSERT OR IGNORE INTO "plinth_audit_record_ids" ("record_id", "sequence", "through")
SELECT c."value" ->> 0, c."value" ->> 1, c."value" ->> 2 FROM json_each(?) c`
	// recordIDRangesSQL is the search's term for a record id ($1, after
	// the sequence $2): the chained records of its ranges that name it.
	recordIDRangesSQL = `"sequence" IN (SELECT a."sequence" FROM "plinth_audit_record_ids" r
	JOIN "plinth_audit" a ON a."sequence" BETWEEN r."sequence" AND coalesce(r."through", r."sequence")
	WHERE r."record_id" = ? AND coalesce(r."through", r."sequence") > ?
		AND EXISTS (SELECT 1 FROM json_each(a."record_ids") j WHERE j."value" = r."record_id"))`
	deleteAuditLogSQL  = `DELETE FROM "plinth_audit_log" WHERE "log_id" IN (SELECT "value" FROM json_each(?))`
	selectAuditSQL     = `SELECT ` + auditCols + ` FROM "plinth_audit"`
	unchainedAuditSQL  = `SELECT "log_id", ` + recordCols + `, '', '' FROM "plinth_audit_log" ORDER BY "log_id"`
	unchainedIDsSQL    = `SELECT "log_id" FROM "plinth_audit_log" ORDER BY "log_id"`
	countUnchainedSQL  = `SELECT count(*) FROM "plinth_audit_log"`
	errNoAuditHeadText = "the head row of the audit trail (plinth_audit_head) is missing; restore it with the sequence and hash of the newest record of plinth_audit"
	auditBatchTooLarge = "sqlite: %s: %d records, more than the %d one call takes (MaxAtomicBatch)"
)

// scanBatch is how many records ScanAudit reads per query.
const scanBatch = 1000

// prepareAudit creates the audit tables when they are missing.
func (x *tx) prepareAudit(ctx context.Context) error {
	for _, q := range auditSchema {
		if _, err := x.tx.ExecContext(ctx, q); err != nil {
			return err
		}
	}
	// A trail from before the record ids' ranges gets their column.
	var n int
	if err := x.tx.QueryRowContext(ctx, `SELECT count(*) FROM pragma_table_info('plinth_audit_record_ids') WHERE "name" = 'through'`).Scan(&n); err != nil {
		return err
	}
	if n == 0 {
		_, err := x.tx.ExecContext(ctx, `ALTER TABLE "plinth_audit_record_ids" ADD COLUMN "through" INTEGER`)
		return err
	}
	return nil
}

// MaxAtomicBatch is the most records one AppendAudit or ChainAudit takes.
func (s *Store) MaxAtomicBatch() int { return maxAtomicBatch }

// AppendAudit makes records durable in the audit log in one transaction,
// in order, and returns them as stored, unchained, with their LogID. Time
// is kept in UTC to the microsecond (a zero Time becomes plinth.Now()).
// The batch joins the group commit of concurrent writes (group.go), so
// audited reads and writes share syncs.
func (s *Store) AppendAudit(ctx context.Context, recs []plinth.AuditRecord) ([]plinth.AuditRecord, error) {
	if len(recs) == 0 {
		return nil, nil
	}
	if len(recs) > maxAtomicBatch {
		return nil, fmt.Errorf(auditBatchTooLarge, "append audit records", len(recs), maxAtomicBatch)
	}
	out := make([]plinth.AuditRecord, len(recs))
	err := s.grouped(ctx, func(ctx context.Context, x *tx) error {
		for i, r := range recs {
			var err error
			if out[i], err = x.AppendAudit(ctx, r); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// AppendAudit adds a record to the audit log within the write transaction
// and returns it as it will be stored, unchained, with its LogID. Inside a
// Write, append through the Tx: Store.AppendAudit would wait for the
// transaction it is called from.
func (x *tx) AppendAudit(ctx context.Context, rec plinth.AuditRecord) (plinth.AuditRecord, error) {
	r := plinth.NormalizeAudit(rec)
	r.Sequence, r.PrevHash, r.Hash, r.LogID = 0, "", "", ""
	if r.DurationMs == 0 {
		r.DurationMs = 0 // SQLite keeps -0 as 0: return it as it reads back
	}
	const what = "append an audit record"
	principal, err := json.Marshal(r.Principal)
	if err != nil {
		return plinth.AuditRecord{}, fmt.Errorf("sqlite: %s: %w", what, err)
	}
	var filters any
	if len(r.Filters) > 0 {
		b, err := json.Marshal(r.Filters)
		if err != nil {
			return plinth.AuditRecord{}, fmt.Errorf("sqlite: %s: %w", what, err)
		}
		filters = string(b)
	}
	ids, err := json.Marshal(nonNil(r.RecordIDs))
	if err != nil {
		return plinth.AuditRecord{}, fmt.Errorf("sqlite: %s: %w", what, err)
	}
	st, err := x.stmt(ctx, insertAuditLogSQL)
	if err != nil {
		return plinth.AuditRecord{}, fail(what, err)
	}
	res, err := st.ExecContext(ctx, formatStoredTime(r.Time), r.CorrelationID, r.Environment, r.Domain,
		r.Entity, r.Operation, r.Method, r.Route, filters, string(principal), r.Decision, r.Reason, r.Status,
		string(ids), r.Count, r.DurationMs, r.ClientAddress, r.UserAgent)
	if err != nil {
		return plinth.AuditRecord{}, fail(what, err)
	}
	id, err := res.LastInsertId()
	if err != nil {
		return plinth.AuditRecord{}, fail(what, err)
	}
	r.LogID = strconv.FormatInt(id, 10)
	return r, nil
}

// UnchainedAudit returns up to limit (plinth.DefaultLimit when <= 0)
// records of the audit log in log order, which is commit order.
func (s *Store) UnchainedAudit(ctx context.Context, limit int) ([]plinth.AuditRecord, error) {
	if limit <= 0 {
		limit = plinth.DefaultLimit
	}
	recs, err := s.readAudit(ctx, "read unchained audit records", unchainedAuditSQL+limitSQL(limit))
	if err != nil {
		return nil, err
	}
	for i := range recs {
		recs[i].LogID, recs[i].Sequence = strconv.FormatInt(recs[i].Sequence, 10), 0
	}
	return recs, nil
}

// UnchainedAuditIDs returns the log ids of the records UnchainedAudit
// would return, without reading the records: the chainer takes the
// content of the records its own process appended from memory (see
// audit.Chainer.Hold; AppendAudit returns records exactly as they read
// back, storetest AppendedHashesAsStored).
func (s *Store) UnchainedAuditIDs(ctx context.Context, limit int) ([]string, error) {
	if limit <= 0 {
		limit = plinth.DefaultLimit
	}
	const what = "read unchained audit log ids"
	rows, err := s.query(ctx, unchainedIDsSQL+limitSQL(limit))
	if err != nil {
		return nil, fail(what, err)
	}
	defer rows.Close()
	ids := []string{}
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, fail(what, err)
		}
		ids = append(ids, strconv.FormatInt(id, 10))
	}
	if err := rows.Err(); err != nil {
		return nil, fail(what, err)
	}
	return ids, nil
}

// CountUnchainedAudit returns how many records wait in the audit log.
func (s *Store) CountUnchainedAudit(ctx context.Context) (int64, error) {
	var n int64
	if err := s.read.QueryRowContext(ctx, countUnchainedSQL).Scan(&n); err != nil {
		return 0, fail("count unchained audit records", err)
	}
	return n, nil
}

// AuditHead returns the sequence and hash of the newest chained record.
func (s *Store) AuditHead(ctx context.Context) (int64, string, error) {
	var seq int64
	var hash string
	err := s.read.QueryRowContext(ctx, auditHeadSQL).Scan(&seq, &hash)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, "", errors.New("sqlite: read the audit head: " + errNoAuditHeadText)
	}
	if err != nil {
		return 0, "", fail("read the audit head", err)
	}
	return seq, hash, nil
}

// ChainAudit moves records from the audit log into the chain in one
// transaction (see the top of this file), which joins the group commit of
// concurrent writes (group.go); plinth.ErrConflict when the head is not
// where recs say or a record is no longer in the log.
func (s *Store) ChainAudit(ctx context.Context, recs []plinth.AuditRecord) error {
	if len(recs) == 0 {
		return nil
	}
	what := fmt.Sprintf("chain %d audit records from %d", len(recs), recs[0].Sequence)
	if len(recs) > maxAtomicBatch {
		return fmt.Errorf(auditBatchTooLarge, what, len(recs), maxAtomicBatch)
	}
	if err := checkLinks(recs); err != nil {
		return fmt.Errorf("sqlite: %s: %w", what, err)
	}
	ids, err := logIDs(recs)
	if err != nil {
		return fmt.Errorf("sqlite: %s: %w", what, err)
	}
	return s.grouped(ctx, func(ctx context.Context, x *tx) error { return x.chainAudit(ctx, what, recs, ids) })
}

// chainAudit is ChainAudit's transaction: recs are checked, ids are their
// log ids.
func (x *tx) chainAudit(ctx context.Context, what string, recs []plinth.AuditRecord, ids []int64) error {
	st, err := x.stmt(ctx, chainAuditSQL)
	if err != nil {
		return fail(what, err)
	}
	batch, err := chainList(recs, ids)
	if err != nil {
		return fail(what, err)
	}
	res, err := st.ExecContext(ctx, recs[0].Sequence, batch)
	if err != nil {
		if isKeyConflict(err) {
			return fmt.Errorf("sqlite: %s: a sequence is taken: %w", what, plinth.ErrConflict)
		}
		return fail(what, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fail(what, err)
	} else if n != int64(len(recs)) {
		return fmt.Errorf("sqlite: %s: %d of the records are no longer in the audit log: %w", what, int64(len(recs))-n, plinth.ErrConflict)
	}
	if st, err = x.stmt(ctx, chainAuditIDsSQL); err != nil {
		return fail(what, err)
	}
	ranges, err := recordIDRanges(recs)
	if err != nil {
		return fail(what, err)
	}
	if _, err := st.ExecContext(ctx, ranges); err != nil {
		return fail(what, err)
	}
	list := intList(ids)
	// A log id twice in recs copies one row twice above, and is caught
	// here: fewer rows than records leave the log.
	if st, err = x.stmt(ctx, deleteAuditLogSQL); err != nil {
		return fail(what, err)
	}
	res, err = st.ExecContext(ctx, list)
	if err != nil {
		return fail(what, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fail(what, err)
	} else if n != int64(len(recs)) {
		return fmt.Errorf("sqlite: %s: %d of the records are no longer in the audit log: %w", what, int64(len(recs))-n, plinth.ErrConflict)
	}
	last := recs[len(recs)-1]
	if st, err = x.stmt(ctx, moveAuditHeadSQL); err != nil {
		return fail(what, err)
	}
	res, err = st.ExecContext(ctx, last.Sequence, last.Hash, recs[0].Sequence-1, recs[0].PrevHash)
	if err != nil {
		return fail(what, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fail(what, err)
	} else if n != 1 {
		return fmt.Errorf("sqlite: %s: the head is not record %d: %w", what, recs[0].Sequence-1, plinth.ErrConflict)
	}
	return nil
}

// logIDs parses the records' log ids.
func logIDs(recs []plinth.AuditRecord) ([]int64, error) {
	ids := make([]int64, len(recs))
	for i, r := range recs {
		id, err := strconv.ParseInt(r.LogID, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("log id %q: %w", r.LogID, err)
		}
		ids[i] = id
	}
	return ids, nil
}

// intList encodes ids as a JSON array, for json_each.
func intList(ids []int64) string {
	b := make([]byte, 0, len(ids)*8+2)
	b = append(b, '[')
	for i, id := range ids {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, id, 10)
	}
	return string(append(b, ']'))
}

// recordIDRanges is chainAuditIDsSQL's batch: each record id the records
// name, with the first and the last sequence of those that name it, as
// JSON.
func recordIDRanges(recs []plinth.AuditRecord) (string, error) {
	type span struct{ first, last int64 }
	spans := map[string]*span{}
	var order []string
	for _, r := range recs {
		for _, id := range r.RecordIDs {
			if sp := spans[id]; sp != nil {
				sp.last = r.Sequence
			} else {
				spans[id] = &span{r.Sequence, r.Sequence}
				order = append(order, id)
			}
		}
	}
	// encoding/json, as AppendAudit writes record_ids (invalid UTF-8
	// becomes U+FFFD alike, so the search's ids match the records').
	list := make([][3]any, len(order))
	for i, id := range order {
		list[i] = [3]any{id, spans[id].first, spans[id].last}
	}
	b, err := json.Marshal(list)
	return string(b), err
}

// chainList is chainAuditSQL's batch: [log id, previous hash, hash] per
// record, as JSON.
func chainList(recs []plinth.AuditRecord, ids []int64) (string, error) {
	list := make([][3]any, len(recs))
	for i, r := range recs {
		list[i] = [3]any{ids[i], r.PrevHash, r.Hash}
	}
	b, err := json.Marshal(list)
	return string(b), err
}

// checkLinks checks that recs follow on from each other, as ChainAudit
// requires.
func checkLinks(recs []plinth.AuditRecord) error {
	for i, r := range recs {
		if r.LogID == "" || r.Hash == "" {
			return fmt.Errorf("record %d has no log id or hash", r.Sequence)
		}
		if i > 0 && (r.Sequence != recs[i-1].Sequence+1 || r.PrevHash != recs[i-1].Hash) {
			return fmt.Errorf("record %d does not follow on from record %d", r.Sequence, recs[i-1].Sequence)
		}
	}
	if recs[0].Sequence < 1 {
		return fmt.Errorf("sequence %d", recs[0].Sequence)
	}
	return nil
}

// AcquireChainLease makes holder the active chainer until ttl from now, or
// renews its lease; false when another holder's lease has not expired.
func (s *Store) AcquireChainLease(ctx context.Context, holder string, ttl time.Duration) (bool, error) {
	return s.acquireLease(ctx, chainLeaseName, holder, ttl)
}

// scanAudit reads one row of selectAuditSQL.
func scanAudit(scan func(...any) error) (plinth.AuditRecord, error) {
	var (
		r                 plinth.AuditRecord
		t, principal, ids string
		filters           sql.NullString
	)
	err := scan(&r.Sequence, &t, &r.CorrelationID, &r.Environment, &r.Domain, &r.Entity, &r.Operation, &r.Method,
		&r.Route, &filters, &principal, &r.Decision, &r.Reason, &r.Status, &ids, &r.Count, &r.DurationMs,
		&r.ClientAddress, &r.UserAgent, &r.PrevHash, &r.Hash)
	if err != nil {
		return r, err
	}
	if r.Time, err = parseStoredTime(t); err != nil {
		return r, fmt.Errorf("audit record %d: time: %w", r.Sequence, err)
	}
	if filters.Valid {
		if err := json.Unmarshal([]byte(filters.String), &r.Filters); err != nil {
			return r, fmt.Errorf("audit record %d: filters: %w", r.Sequence, err)
		}
	}
	if err := json.Unmarshal([]byte(principal), &r.Principal); err != nil {
		return r, fmt.Errorf("audit record %d: principal: %w", r.Sequence, err)
	}
	if err := json.Unmarshal([]byte(ids), &r.RecordIDs); err != nil {
		return r, fmt.Errorf("audit record %d: record_ids: %w", r.Sequence, err)
	}
	if len(r.RecordIDs) == 0 {
		r.RecordIDs = nil
	}
	return r, nil
}

// readAudit runs a query of selectAuditSQL on the read pool.
func (s *Store) readAudit(ctx context.Context, what, query string, args ...any) ([]plinth.AuditRecord, error) {
	rows, err := s.query(ctx, query, args...)
	if err != nil {
		return nil, fail(what, err)
	}
	defer rows.Close()
	recs := []plinth.AuditRecord{}
	for rows.Next() {
		r, err := scanAudit(rows.Scan)
		if err != nil {
			return nil, fmt.Errorf("sqlite: %s: %w", what, err)
		}
		recs = append(recs, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fail(what, err)
	}
	return recs, nil
}

// AuditRecords returns up to q.Limit (plinth.DefaultLimit when <= 0)
// matching records in sequence order after q.After; more reports whether
// others follow. User matches the principal's subject, e-mail or
// service-token consumer exactly.
func (s *Store) AuditRecords(ctx context.Context, q plinth.AuditQuery) ([]plinth.AuditRecord, bool, error) {
	limit := q.Limit
	if limit <= 0 {
		limit = plinth.DefaultLimit
	}
	where := []string{`"sequence" > ?`}
	args := []any{q.After}
	if q.User != "" {
		where = append(where, `(json_extract("principal", '$.subject') = ? OR json_extract("principal", '$.email') = ? OR json_extract("principal", '$.consumer') = ?)`)
		args = append(args, q.User, q.User, q.User)
	}
	if q.EntityID != "" {
		where = append(where, recordIDRangesSQL)
		args = append(args, q.EntityID, q.After)
	}
	if q.Domain != "" {
		where = append(where, `"domain" = ?`)
		args = append(args, q.Domain)
	}
	if !q.Since.IsZero() {
		where = append(where, `"time" >= ?`)
		args = append(args, formatStoredTime(q.Since))
	}
	if !q.Until.IsZero() {
		where = append(where, `"time" < ?`)
		args = append(args, formatStoredTime(q.Until))
	}
	query := selectAuditSQL + " WHERE " + strings.Join(where, " AND ") + ` ORDER BY "sequence"` + limitSQL(limit+1)
	recs, err := s.readAudit(ctx, "search the audit trail", query, args...)
	if err != nil {
		return nil, false, err
	}
	if len(recs) > limit {
		return recs[:limit], true, nil
	}
	return recs, false, nil
}

// ScanAudit calls fn for every record after the sequence after, in
// sequence order, exactly as stored (nothing is recomputed), reading a
// batch at a time. An error from fn stops the scan and is returned as is.
func (s *Store) ScanAudit(ctx context.Context, after int64, fn func(plinth.AuditRecord) error) error {
	query := selectAuditSQL + ` WHERE "sequence" > ? ORDER BY "sequence"` + limitSQL(scanBatch)
	for {
		batch, err := s.readAudit(ctx, "scan the audit trail", query, after)
		if err != nil {
			return err
		}
		for _, r := range batch {
			if err := fn(r); err != nil {
				return err
			}
			after = r.Sequence
		}
		if len(batch) < scanBatch {
			return nil
		}
	}
}

// TrimAudit deletes chained records up to through, but never the head
// (plinth.AuditTrimmer).
func (s *Store) TrimAudit(ctx context.Context, through int64) (int64, error) {
	head, _, err := s.AuditHead(ctx)
	if err != nil {
		return 0, err
	}
	through = min(through, head-1)
	if through < 1 {
		return 0, nil
	}
	x, err := s.begin(ctx)
	if err != nil {
		return 0, err
	}
	defer x.tx.Rollback()
	if _, err := x.tx.ExecContext(ctx, `DELETE FROM "plinth_audit_record_ids" WHERE coalesce("through", "sequence") <= ?`, through); err != nil {
		return 0, fail("trim the audit trail", err)
	}
	res, err := x.tx.ExecContext(ctx, `DELETE FROM "plinth_audit" WHERE "sequence" <= ?`, through)
	if err != nil {
		return 0, fail("trim the audit trail", err)
	}
	n, _ := res.RowsAffected()
	if err := x.tx.Commit(); err != nil {
		return 0, fail("trim the audit trail: commit", err)
	}
	return n, nil
}
