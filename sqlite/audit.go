package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/plinth-data/plinth"
)

// The audit trail is kept in three tables, created by Prepare:
//
//   - plinth_audit: one row per plinth.AuditRecord, keyed by its sequence;
//     the principal, the filters and the record ids as JSON; the time as
//     UTC text at a fixed width (so text order is time order). Expression
//     indexes on the principal's subject, e-mail and consumer, and indexes
//     on (domain, time) and time, serve AuditRecords.
//   - plinth_audit_record_ids: (record_id, sequence) for every record id of
//     every record, so "who touched record 12345" is an index lookup.
//   - plinth_audit_head: one row, the sequence and hash of the newest
//     record. SQLite has one writer, so appends are serialised already;
//     the head outlives the rows, so a deleted tail shows up as a gap when
//     the next record is appended.
//
// Plinth never updates or deletes an audit row. Text is normalised before
// hashing as in the postgres store (invalid UTF-8 and U+0000 become
// U+FFFD), so a trail moves between the stores unchanged.

var (
	_ plinth.AuditStore = (*Store)(nil)
	_ plinth.AuditTx    = (*tx)(nil)
)

var auditSchema = []string{
	`CREATE TABLE IF NOT EXISTS "plinth_audit" (
	"sequence" INTEGER PRIMARY KEY NOT NULL,
	"time" TEXT NOT NULL,
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
	"user_agent" TEXT NOT NULL,
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
}

const auditCols = `"sequence", "time", "correlation_id", "environment", "domain", "entity", "operation", "method", "route",
	"filters", "principal", "decision", "reason", "status", "record_ids", "count", "duration_ms", "client_address",
	"user_agent", "prev_hash", "hash"`

const (
	auditHeadSQL       = `SELECT "sequence", "hash" FROM "plinth_audit_head"`
	updateAuditHeadSQL = `UPDATE "plinth_audit_head" SET "sequence" = ?, "hash" = ?`
	insertAuditSQL     = `INSERT INTO "plinth_audit" (` + auditCols + `) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	insertAuditIDSQL   = `INSERT OR IGNORE INTO "plinth_audit_record_ids" ("record_id", "sequence") VALUES (?, ?)`
	selectAuditSQL     = `SELECT ` + auditCols + ` FROM "plinth_audit"`
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
	return nil
}

// AppendAudit stores records in one transaction, in order, assigning each
// its Sequence, PrevHash and Hash, and returns them as stored. Time is kept
// in UTC to the microsecond (a zero Time becomes plinth.Now()).
func (s *Store) AppendAudit(ctx context.Context, recs []plinth.AuditRecord) ([]plinth.AuditRecord, error) {
	if len(recs) == 0 {
		return nil, nil
	}
	x, err := s.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer x.tx.Rollback()
	out := make([]plinth.AuditRecord, len(recs))
	for i, r := range recs {
		if out[i], err = x.AppendAudit(ctx, r); err != nil {
			return nil, err
		}
	}
	if err := x.tx.Commit(); err != nil {
		return nil, fail(fmt.Sprintf("append %d audit records: commit", len(recs)), err)
	}
	return out, nil
}

// AppendAudit adds a record to the chain within the write transaction and
// returns it as it will be stored. Inside a Write, append through the Tx:
// Store.AppendAudit would wait for the transaction it is called from.
func (x *tx) AppendAudit(ctx context.Context, rec plinth.AuditRecord) (plinth.AuditRecord, error) {
	r := plinth.NormalizeAudit(rec)
	if !x.auditRead {
		st, err := x.stmt(ctx, auditHeadSQL)
		if err != nil {
			return plinth.AuditRecord{}, fail("append an audit record: read the head", err)
		}
		err = st.QueryRowContext(ctx).Scan(&x.auditSeq, &x.auditHash)
		if errors.Is(err, sql.ErrNoRows) {
			return plinth.AuditRecord{}, errors.New("sqlite: append an audit record: the head row of the audit trail (plinth_audit_head) is missing; restore it with the sequence and hash of the newest record of plinth_audit")
		}
		if err != nil {
			return plinth.AuditRecord{}, fail("append an audit record: read the head", err)
		}
		x.auditRead = true
	}
	r.Sequence = x.auditSeq + 1
	r.PrevHash = x.auditHash
	r.Hash = r.ComputeHash()
	what := fmt.Sprintf("append audit record %d", r.Sequence)
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
	st, err := x.stmt(ctx, insertAuditSQL)
	if err != nil {
		return plinth.AuditRecord{}, fail(what, err)
	}
	if _, err := st.ExecContext(ctx, r.Sequence, formatStoredTime(r.Time), r.CorrelationID, r.Environment, r.Domain,
		r.Entity, r.Operation, r.Method, r.Route, filters, string(principal), r.Decision, r.Reason, r.Status,
		string(ids), r.Count, r.DurationMs, r.ClientAddress, r.UserAgent, r.PrevHash, r.Hash); err != nil {
		return plinth.AuditRecord{}, fail(what, err)
	}
	if len(r.RecordIDs) > 0 {
		st, err := x.stmt(ctx, insertAuditIDSQL)
		if err != nil {
			return plinth.AuditRecord{}, fail(what, err)
		}
		for _, id := range r.RecordIDs {
			if _, err := st.ExecContext(ctx, id, r.Sequence); err != nil {
				return plinth.AuditRecord{}, fail(what, err)
			}
		}
	}
	st, err = x.stmt(ctx, updateAuditHeadSQL)
	if err != nil {
		return plinth.AuditRecord{}, fail(what, err)
	}
	if _, err := st.ExecContext(ctx, r.Sequence, r.Hash); err != nil {
		return plinth.AuditRecord{}, fail(what, err)
	}
	x.auditSeq, x.auditHash = r.Sequence, r.Hash
	return r, nil
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
		where = append(where, `"sequence" IN (SELECT "sequence" FROM "plinth_audit_record_ids" WHERE "record_id" = ? AND "sequence" > ?)`)
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
	query := selectAuditSQL + " WHERE " + strings.Join(where, " AND ") + ` ORDER BY "sequence" LIMIT ?`
	args = append(args, limit+1)
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
	query := selectAuditSQL + ` WHERE "sequence" > ? ORDER BY "sequence" LIMIT ?`
	for {
		batch, err := s.readAudit(ctx, "scan the audit trail", query, after, scanBatch)
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
