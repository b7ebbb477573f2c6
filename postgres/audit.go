package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/plinth-data/plinth"
)

// The audit trail lives in the system schema:
//
//   - plinth.audit_log: records appended and not yet chained, keyed by
//     log_id, drawn from the sequence plinth.audit_log_sequence. Writers
//     insert here only: Tx.AppendAudit inside the write transaction,
//     Store.AppendAudit for the auditor's group commit. Nothing every
//     writer shares is locked or updated, so concurrent writes do not wait
//     for each other's audit records.
//   - plinth.audit: the chain, one row per chained plinth.AuditRecord,
//     keyed by its sequence. The principal and the filters are jsonb, the
//     record ids a text[] (in order, duplicates kept); every other field
//     has a column of its own. Indexes serve the searches of AuditRecords:
//     by principal subject, e-mail and service-token consumer (expression
//     indexes on the principal), by record id (GIN on record_ids), by
//     domain and time, and by time.
//   - plinth.audit_head: exactly one row, the sequence and hash of the
//     newest chained record. Only the chainer (one lease holder at a time)
//     moves it, conditionally, so two chainers cannot both extend the
//     chain; and because it outlives the rows, a deleted tail shows up as a
//     gap when the next record is chained.
//
// Log order. UnchainedAudit must not return a record while one with a
// lower log_id may still commit, or the chain would not be in log order.
// The log uses the outbox's remedy for the sequence-gap trap (see
// outbox.go): a writer's first audit append takes a shared,
// transaction-scoped advisory lock keyed auditLockBase plus the log
// sequence's last_value before it draws its number, in the same round
// trip; the chainer reads the lowest number not yet drawn and the least
// announced key, and takes only rows below both. A transaction left open
// after appending holds back the chaining of later records (never loses
// or reorders them) until it ends. And since the chainer takes whatever is
// left in the log rather than reading on from a position, a record cannot
// be skipped whatever happens.
//
// ChainAudit moves rows into the chain in one transaction: it moves the
// head (only if it is where the chainer thinks), inserts the chained rows
// by copying each log row's columns (so what is stored is what the
// chainer hashed), and deletes the log rows; a count that does not match
// rolls it all back with plinth.ErrConflict.
//
// Plinth never updates or deletes a chained row. Operators can make that a
// database guarantee by revoking the rights from the role plinth connects
// as, once Prepare has run (as the owner, or a superuser):
//
//	REVOKE UPDATE, DELETE, TRUNCATE ON plinth.audit FROM plinth_app;
//
// (the head row must stay updatable, and the chainer deletes from
// plinth.audit_log). The hash chain makes any edit that gets past that
// visible to plinth audit verify.
//
// Text is stored as PostgreSQL can hold it: the store turns invalid UTF-8
// and the character U+0000, which text and jsonb refuse, into U+FFFD
// before hashing, so a request with such bytes in a header or a filter is
// still audited, and the stored record verifies.

var (
	_ plinth.AuditStore = (*Store)(nil)
	_ plinth.AuditTx    = (*tx)(nil)
)

// auditRecordColumns are the columns of a record in the audit log and in
// the chain alike (the chain adds sequence and hashes).
const auditRecordColumns = `	"time" timestamptz NOT NULL,
	"correlation_id" text NOT NULL,
	"environment" text NOT NULL,
	"domain" text COLLATE "C" NOT NULL,
	"entity" text NOT NULL,
	"operation" text NOT NULL,
	"method" text NOT NULL,
	"route" text NOT NULL,
	"filters" jsonb,
	"principal" jsonb NOT NULL,
	"decision" text NOT NULL,
	"reason" text NOT NULL,
	"status" integer NOT NULL,
	"record_ids" text[] NOT NULL,
	"count" integer NOT NULL,
	"duration_ms" double precision NOT NULL,
	"client_address" text NOT NULL,
	"user_agent" text NOT NULL`

// recordIDsIndexOptions are the storage parameters of the chain's index on
// record ids (see auditTables).
const recordIDsIndexOptions = "fastupdate = on, gin_pending_list_limit = 256"

// auditTables are the system tables of the audit trail; audit_head must
// follow audit, whose newest row seeds it.
var auditTables = []accessTable{
	{
		name: "audit",
		what: "audit trail",
		cols: []string{"sequence", "time", "correlation_id", "environment", "domain", "entity", "operation", "method",
			"route", "filters", "principal", "decision", "reason", "status", "record_ids", "count", "duration_ms",
			"client_address", "user_agent", "prev_hash", "hash"},
		create: []string{`CREATE TABLE IF NOT EXISTS "plinth"."audit" (
	"sequence" bigint PRIMARY KEY,
` + auditRecordColumns + `,
	"prev_hash" text NOT NULL,
	"hash" text NOT NULL
)`,
			`CREATE INDEX IF NOT EXISTS "audit__by_subject" ON "plinth"."audit" (("principal"->>'subject'), "sequence")`,
			`CREATE INDEX IF NOT EXISTS "audit__by_email" ON "plinth"."audit" (("principal"->>'email'), "sequence")`,
			`CREATE INDEX IF NOT EXISTS "audit__by_consumer" ON "plinth"."audit" (("principal"->>'consumer'), "sequence")`,
			// With fastupdate and a small pending list: only the chainer
			// inserts here, and merging a few hundred records' ids at once
			// costs PostgreSQL a fraction of inserting each: a list's
			// record names 20 ids, mostly the same ones as the lists before
			// (first pages, common filters): 15 against 46–52 µs per record
			// in pgbench (BENCHMARKS.md, "The record ids' index"). 256 kB
			// keeps each merge (done by the chaining transaction that fills
			// the list) short, and the part of the list a search scans small.
			`CREATE INDEX IF NOT EXISTS "audit__by_record_id" ON "plinth"."audit" USING gin ("record_ids") WITH (` + recordIDsIndexOptions + `)`,
			`CREATE INDEX IF NOT EXISTS "audit__by_domain_time" ON "plinth"."audit" ("domain", "time")`,
			`CREATE INDEX IF NOT EXISTS "audit__by_time" ON "plinth"."audit" ("time")`,
			`COMMENT ON TABLE "plinth"."audit" IS 'The hash-chained audit trail of every request that touches data or access. Kept by plinth, which never updates or deletes a row; operators may REVOKE UPDATE, DELETE, TRUNCATE ON plinth.audit FROM the application role.'`,
		},
		indexOptions: map[string]string{"audit__by_record_id": recordIDsIndexOptions},
	},
	{
		name: "audit_head",
		what: "audit trail head (the newest sequence and hash)",
		cols: []string{"one", "sequence", "hash"},
		create: []string{`CREATE TABLE IF NOT EXISTS "plinth"."audit_head" (
	"one" boolean PRIMARY KEY DEFAULT true CHECK ("one"),
	"sequence" bigint NOT NULL,
	"hash" text NOT NULL
)`,
			// Seeded from the newest audit row, so a head recreated next to
			// an existing trail continues it.
			`INSERT INTO "plinth"."audit_head" ("one", "sequence", "hash")
SELECT true, coalesce(max("sequence"), 0),
	coalesce((SELECT "hash" FROM "plinth"."audit" ORDER BY "sequence" DESC LIMIT 1), '')
FROM "plinth"."audit"
ON CONFLICT ("one") DO NOTHING`,
			`COMMENT ON TABLE "plinth"."audit_head" IS 'The sequence and hash of the newest chained audit record; only the chainer moves it. Kept by plinth.'`,
		},
	},
	{
		name: "audit_log",
		what: "audit log (records not yet chained)",
		cols: []string{"log_id", "time", "correlation_id", "environment", "domain", "entity", "operation", "method",
			"route", "filters", "principal", "decision", "reason", "status", "record_ids", "count", "duration_ms",
			"client_address", "user_agent"},
		create: []string{
			`CREATE SEQUENCE IF NOT EXISTS "plinth"."audit_log_sequence" AS bigint CACHE 1`,
			`CREATE TABLE IF NOT EXISTS "plinth"."audit_log" (
	"log_id" bigint PRIMARY KEY DEFAULT nextval('"plinth"."audit_log_sequence"'),
` + auditRecordColumns + `
)`,
			`ALTER SEQUENCE "plinth"."audit_log_sequence" OWNED BY "plinth"."audit_log"."log_id"`,
			`COMMENT ON TABLE "plinth"."audit_log" IS 'Audit records appended and not yet chained; the chainer moves them into plinth.audit. Kept by plinth.'`,
			`COMMENT ON SEQUENCE "plinth"."audit_log_sequence" IS 'Numbers the audit log. Keep CACHE 1: the chainer relies on last_value (see postgres/audit.go).'`,
		},
	},
}

// recordCols are the columns of a record's content, in the log and in the
// chain.
const recordCols = `"time", "correlation_id", "environment", "domain", "entity", "operation", "method", "route",
	"filters", "principal", "decision", "reason", "status", "record_ids", "count", "duration_ms", "client_address",
	"user_agent"`

const auditCols = `"sequence", ` + recordCols + `, "prev_hash", "hash"`

// auditLockBase is added to a log number to make the key of a writer's
// advisory lock: "pa" in the top 16 bits (the outbox uses "pl"), the
// number in the low 48.
const auditLockBase int64 = 0x7061 << 48

// maxAtomicBatch is how many records one AppendAudit or ChainAudit takes:
// PostgreSQL commits any number atomically; this bounds one statement's
// arrays and how long a chaining transaction runs.
const maxAtomicBatch = 1000

// chainLeaseName is the lease the chainer holds (in plinth.relay_lease).
const chainLeaseName = "audit-chain"

// chainLinger is ChainLinger: under concurrent load the chainer starts a
// batch at most every quarter second (while requests hardly overlap, at
// most every audit.ChainerConfig.QuietLinger). Each chaining batch costs
// PostgreSQL far more than its records: on a 2-core machine, audited views at 16 connections
// ran 2,690 req/s with a batch every 20 ms, 2,944 every 50 ms, 3,145 every
// 100 ms, 3,443 every 200 ms and 3,753 every 500 ms, with PostgreSQL's CPU
// per request falling from about 360 to 150–220 µs (BENCHMARKS.md,
// "the chainer's linger on PostgreSQL"): every statement on the log is
// dearer when the chainer empties it every few milliseconds. Under steady
// load a record is searchable up to about this much later; after a quiet
// spell it is chained at once. (Beyond the chainer's heldMax records per
// linger, some 20,000 a second, it reads some records back instead of
// hashing them from memory.)
const chainLinger = 250 * time.Millisecond

// ChainLinger is the least time between two chaining batches under
// concurrent load (audit.ChainerConfig.Linger): chainLinger.
func (s *Store) ChainLinger() time.Duration { return chainLinger }

const (
	auditHeadSQL  = `SELECT "sequence", "hash" FROM "plinth"."audit_head"`
	announceAudit = `SELECT pg_advisory_xact_lock_shared($1::bigint + last_value) FROM "plinth"."audit_log_sequence"`
	// insertAuditLogSQL inserts a batch in one statement, one array per
	// column, in order. Arrays of arrays must be rectangular in
	// PostgreSQL, so the record ids of all the records come as one array
	// ($19), each record's the slice from its first to its last
	// ($14, $20: 1-based, first > last for none). Slicing costs
	// PostgreSQL less than decoding a JSON array per record (a subquery
	// each): 4–7 µs less a record naming one id, 2–3 µs less one naming
	// twenty, of about 40 (BENCHMARKS.md, "2026-12-02, twelfth session").
	insertAuditLogSQL = `INSERT INTO "plinth"."audit_log" (` + recordCols + `)
SELECT u.t, u.cid, u.env, u.dom, u.ent, u.op, u.meth, u.route, u.filters::jsonb, u.principal::jsonb,
	u.decision, u.reason, u.status, coalesce(($19::text[])[u.first:u.last], '{}'), u.cnt, u.dur, u.addr, u.ua
FROM unnest($1::timestamptz[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
	$8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::integer[], $14::integer[],
	$15::integer[], $16::double precision[], $17::text[], $18::text[], $20::integer[]) WITH ORDINALITY
	AS u(t, cid, env, dom, ent, op, meth, route, filters, principal, decision, reason, status, first, cnt, dur,
		addr, ua, last, ord)
ORDER BY u.ord
RETURNING "log_id"`
	moveAuditHeadSQL = `UPDATE "plinth"."audit_head" SET "sequence" = $1, "hash" = $2 WHERE "sequence" = $3 AND "hash" = $4`
	chainAuditSQL    = `INSERT INTO "plinth"."audit" (` + auditCols + `)
SELECT u.seq, l."time", l."correlation_id", l."environment", l."domain", l."entity", l."operation", l."method",
	l."route", l."filters", l."principal", l."decision", l."reason", l."status", l."record_ids", l."count",
	l."duration_ms", l."client_address", l."user_agent", u.prev, u.hash
FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[]) AS u(log_id, seq, prev, hash)
JOIN "plinth"."audit_log" l ON l."log_id" = u.log_id
ORDER BY u.seq`
	deleteAuditLogSQL  = `DELETE FROM "plinth"."audit_log" WHERE "log_id" = ANY($1)`
	selectAuditSQL     = `SELECT ` + auditCols + ` FROM "plinth"."audit"`
	unchainedAuditSQL  = `SELECT "log_id", ` + recordCols + `, '', '' FROM "plinth"."audit_log" WHERE "log_id" >= $2 ORDER BY "log_id" LIMIT $1`
	unchainedIDsSQL    = `SELECT "log_id" FROM "plinth"."audit_log" WHERE "log_id" >= $2 ORDER BY "log_id" LIMIT $1`
	countUnchainedSQL  = `SELECT count(*) FROM "plinth"."audit_log"`
	nextAuditLogSQL    = `SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END FROM "plinth"."audit_log_sequence"`
	auditBatchTooLarge = "postgres: %s: %d records, more than the %d one call takes (MaxAtomicBatch)"
)

// scanBatch is how many records ScanAudit reads per query, so that a walk
// over a long trail holds no snapshot for long.
const scanBatch = 1000

// MaxAtomicBatch is the most records one AppendAudit or ChainAudit takes.
func (s *Store) MaxAtomicBatch() int { return maxAtomicBatch }

// AppendAudit makes records durable in the audit log in one transaction,
// in order, and returns them as stored, unchained, with their LogID. Time
// is kept in UTC to the microsecond (a zero Time becomes plinth.Now()).
// It takes one round trip (announce and insert, pipelined) and
// waits for no other writer.
func (s *Store) AppendAudit(ctx context.Context, recs []plinth.AuditRecord) ([]plinth.AuditRecord, error) {
	if len(recs) == 0 {
		return nil, nil
	}
	what := fmt.Sprintf("append %d audit records", len(recs))
	if len(recs) > maxAtomicBatch {
		return nil, fmt.Errorf(auditBatchTooLarge, what, len(recs), maxAtomicBatch)
	}
	out := make([]plinth.AuditRecord, len(recs))
	for i, r := range recs {
		out[i] = unchained(r)
	}
	insertSQL, args, err := insertAuditLog(out)
	if err != nil {
		return nil, fmt.Errorf("postgres: %s: %w", what, err)
	}
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, s.wrap(what, err)
	}
	defer conn.Release()
	// No BEGIN or COMMIT: the statements of a batch up to its Sync run in
	// one implicit transaction, committed at the Sync or rolled back
	// whole on the first error. Two statements fewer for PostgreSQL to
	// run per batch.
	b := &pgx.Batch{}
	b.Queue(announceAudit, auditLockBase)
	b.Queue(insertSQL, args...)
	br := conn.SendBatch(ctx, b)
	err = func() error {
		if _, err := br.Exec(); err != nil {
			return err
		}
		return readLogIDs(br, out)
	}()
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
		return nil, s.wrap(what, err)
	}
	return out, nil
}

// insertAuditLog returns the statement and arguments that insert recs
// into the log, returning their log ids: one row as plain VALUES (the
// common batch when requests do not overlap; PostgreSQL plans and runs it
// cheaper than the arrays), more as one array per column.
func insertAuditLog(recs []plinth.AuditRecord) (string, []any, error) {
	if len(recs) == 1 {
		args, err := auditRowArgs(recs[0])
		return insertAuditRowSQL, args, err
	}
	args, err := auditArgs(recs)
	return insertAuditLogSQL, args, err
}

// unchained returns r normalised, without chain fields.
func unchained(r plinth.AuditRecord) plinth.AuditRecord {
	r = plinth.NormalizeAudit(r)
	r.Sequence, r.PrevHash, r.Hash, r.LogID = 0, "", "", ""
	return r
}

// readLogIDs reads the log ids insertAuditLogSQL returns into recs. They
// are drawn in insertion order, which is the order of recs; sorting them
// keeps that true whatever order RETURNING reports them in.
func readLogIDs(br pgx.BatchResults, recs []plinth.AuditRecord) error {
	rows, err := br.Query()
	if err != nil {
		return err
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return err
	}
	if len(ids) != len(recs) {
		return fmt.Errorf("inserted %d audit records of %d", len(ids), len(recs))
	}
	slices.Sort(ids)
	for i, id := range ids {
		recs[i].LogID = strconv.FormatInt(id, 10)
	}
	return nil
}

// AppendAudit adds a record to the audit log within the write transaction
// and returns it as it will be stored, unchained, with its LogID. It
// locks nothing other writers wait for; the first append of a transaction
// announces it to the chainer (see the top of this file) in the same
// round trip. Inside a Write, append through the Tx: Store.AppendAudit
// would commit separately. AppendAuditAtCommit (txaudit.go) saves the
// round trip.
func (x *tx) AppendAudit(ctx context.Context, rec plinth.AuditRecord) (plinth.AuditRecord, error) {
	var stored plinth.AuditRecord
	if err := x.AppendAuditAtCommit(ctx, rec, &stored); err != nil {
		return plinth.AuditRecord{}, err
	}
	if err := x.tx.flush(ctx); err != nil {
		return plinth.AuditRecord{}, x.s.wrap("append an audit record", err)
	}
	return stored, nil
}

// endAudit forgets the transaction's audit state once it has ended.
func (x *tx) endAudit() {
	x.auditLocked = false
}

// UnchainedAudit returns up to limit (plinth.DefaultLimit when <= 0)
// records of the audit log in log order, leaving out every record that a
// transaction still running might precede (see the top of this file). It
// takes one round trip.
func (s *Store) UnchainedAudit(ctx context.Context, limit int) ([]plinth.AuditRecord, error) {
	var out []plinth.AuditRecord
	reset := func() { out = []plinth.AuditRecord{} }
	err := s.readUnchained(ctx, "read unchained audit records", unchainedAuditSQL, limit, reset, func(rows pgx.Rows, cut int64) (int64, error) {
		r, err := scanAudit(rows)
		if err != nil || r.Sequence >= cut {
			return r.Sequence, err
		}
		id := r.Sequence
		r.LogID, r.Sequence = strconv.FormatInt(id, 10), 0
		out = append(out, r)
		return id, nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// UnchainedAuditIDs returns the log ids of the records UnchainedAudit
// would return, without reading the records: the chainer takes the
// content of the records its own process appended from memory (see
// audit.Chainer.Hold).
func (s *Store) UnchainedAuditIDs(ctx context.Context, limit int) ([]string, error) {
	var out []string
	reset := func() { out = []string{} }
	err := s.readUnchained(ctx, "read unchained audit log ids", unchainedIDsSQL, limit, reset, func(rows pgx.Rows, cut int64) (int64, error) {
		var id int64
		if err := rows.Scan(&id); err != nil || id >= cut {
			return id, err
		}
		out = append(out, strconv.FormatInt(id, 10))
		return id, nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// readUnchained reads the audit log below the cut with rowsSQL (its
// first column the log id, $1 the limit, $2 the floor in log id order),
// calling reset as each attempt starts and scan for each row; scan keeps
// the row only if its log id is below cut, and returns the log id.
//
// It reads from the store's floor on: the log is a queue that the chainer
// deletes from its low end, and until VACUUM removes them the index
// entries of the deleted rows stay, so a scan from the start walks past
// every row chained since the last VACUUM (tens of thousands under load;
// autovacuum visits at most once a minute, and some servers run without
// it). Every log id below the cut was drawn by a transaction that has
// ended, so the rows below the cut a read sees are all there will ever
// be: no row below the first one it returns (or below the cut, when it
// returns none) can appear later, and that is the next floor.
func (s *Store) readUnchained(ctx context.Context, what, rowsSQL string, limit int, reset func(),
	scan func(rows pgx.Rows, cut int64) (int64, error)) error {
	if limit <= 0 {
		limit = plinth.DefaultLimit
	}
	floor := s.auditFloor.Load()
	return s.readBelowCut(ctx, what, nextAuditLogSQL, auditLockBase, rowsSQL, []any{limit, floor},
		func(cut int64, rows pgx.Rows) error {
			reset()
			next := cut
			for n := 0; rows.Next(); n++ {
				id, err := scan(rows, cut)
				if err != nil {
					return err
				}
				if id >= cut {
					break
				}
				if n == 0 {
					next = id
				}
			}
			if next > floor {
				s.auditFloor.CompareAndSwap(floor, next)
			}
			return nil
		})
}

// CountUnchainedAudit returns how many records wait in the audit log.
func (s *Store) CountUnchainedAudit(ctx context.Context) (int64, error) {
	var n int64
	err := s.read(ctx, "count unchained audit records", func() error {
		return s.pool.QueryRow(ctx, countUnchainedSQL).Scan(&n)
	})
	return n, err
}

// AuditHead returns the sequence and hash of the newest chained record.
//
// It also forgets the floor of UnchainedAudit: a chainer reads the head
// when it starts and after anything went wrong (a conflict, a lost lease),
// and a database restored under a running process may hold log rows below
// the floor again.
func (s *Store) AuditHead(ctx context.Context) (int64, string, error) {
	s.auditFloor.Store(0)
	var seq int64
	var hash string
	err := s.read(ctx, "read the audit head", func() error {
		err := s.pool.QueryRow(ctx, auditHeadSQL).Scan(&seq, &hash)
		if errors.Is(err, pgx.ErrNoRows) {
			return errNoAuditHead
		}
		return err
	})
	return seq, hash, err
}

// errNoAuditHead is returned when the head row was removed.
var errNoAuditHead = errors.New(`the head row of the audit trail (plinth.audit_head) is missing; restore it with the sequence and hash of the newest record of plinth.audit`)

// ChainAudit moves records from the audit log into the chain in one
// transaction (see the top of this file), in two round trips;
// plinth.ErrConflict when the head is not where recs say or a record is no
// longer in the log.
func (s *Store) ChainAudit(ctx context.Context, recs []plinth.AuditRecord) error {
	if len(recs) == 0 {
		return nil
	}
	what := fmt.Sprintf("chain %d audit records from %d", len(recs), recs[0].Sequence)
	if len(recs) > maxAtomicBatch {
		return fmt.Errorf(auditBatchTooLarge, what, len(recs), maxAtomicBatch)
	}
	n := len(recs)
	logIDs, seqs, prevs, hashes := make([]int64, n), make([]int64, n), make([]string, n), make([]string, n)
	for i, r := range recs {
		id, err := strconv.ParseInt(r.LogID, 10, 64)
		if err != nil || r.Hash == "" || r.Sequence < 1 ||
			(i > 0 && (r.Sequence != recs[i-1].Sequence+1 || r.PrevHash != recs[i-1].Hash)) {
			return fmt.Errorf("postgres: %s: record %d (log id %q) does not follow on from the one before, or has no hash", what, r.Sequence, r.LogID)
		}
		logIDs[i], seqs[i], prevs[i], hashes[i] = id, r.Sequence, r.PrevHash, r.Hash
	}
	last := recs[n-1]
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return s.wrap(what, err)
	}
	defer conn.Release()
	// BEGIN is sent with the statements, so a batch takes two round
	// trips: this one, and COMMIT once the row counts are checked.
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	b.Queue(moveAuditHeadSQL, last.Sequence, last.Hash, recs[0].Sequence-1, recs[0].PrevHash)
	b.Queue(chainAuditSQL, logIDs, seqs, prevs, hashes)
	b.Queue(deleteAuditLogSQL, logIDs)
	br := conn.SendBatch(ctx, b)
	err = func() error {
		if _, err := br.Exec(); err != nil {
			return err
		}
		for i, want := range []int64{1, int64(n), int64(n)} {
			tag, err := br.Exec()
			if err != nil {
				return err
			}
			if tag.RowsAffected() != want {
				if i == 0 {
					return fmt.Errorf("the head is not record %d: %w", recs[0].Sequence-1, plinth.ErrConflict)
				}
				return fmt.Errorf("%d of the records are no longer in the audit log: %w", want-tag.RowsAffected(), plinth.ErrConflict)
			}
		}
		return nil
	}()
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		_, err = conn.Exec(ctx, "COMMIT")
		what += ": commit"
	}
	if err != nil {
		if conn.Conn().PgConn().TxStatus() != 'I' {
			// A connection left in a transaction is closed by the pool on
			// release, so a failed ROLLBACK does no harm.
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			_, _ = conn.Exec(rctx, "ROLLBACK")
			cancel()
		}
		return s.wrap(what, err)
	}
	return nil
}

// AcquireChainLease makes holder the active chainer until ttl from now on
// the database's clock, or renews its lease; false when another holder's
// lease has not expired.
func (s *Store) AcquireChainLease(ctx context.Context, holder string, ttl time.Duration) (bool, error) {
	return s.acquireLease(ctx, chainLeaseName, holder, ttl)
}

// auditArgs are the column arrays of insertAuditLogSQL.
func auditArgs(recs []plinth.AuditRecord) ([]any, error) {
	n := len(recs)
	var (
		times                                  = make([]time.Time, n)
		cids, envs, doms, ents, ops, meths     = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		routes, decisions, reasons, addrs, uas = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		principals                             = make([]string, n)
		filters                                = make([]*string, n)
		statuses, counts                       = make([]int32, n), make([]int32, n)
		firsts, lasts                          = make([]int32, n), make([]int32, n)
		durs                                   = make([]float64, n)
		ids                                    []string
	)
	for i, r := range recs {
		times[i] = r.Time
		cids[i], envs[i], doms[i], ents[i], ops[i], meths[i] = r.CorrelationID, r.Environment, r.Domain, r.Entity, r.Operation, r.Method
		routes[i], decisions[i], reasons[i], addrs[i], uas[i] = r.Route, r.Decision, r.Reason, r.ClientAddress, r.UserAgent
		if r.Status < math.MinInt32 || r.Status > math.MaxInt32 || r.Count < math.MinInt32 || r.Count > math.MaxInt32 {
			return nil, fmt.Errorf("audit record %q: status %d or count %d out of range", r.CorrelationID, r.Status, r.Count)
		}
		statuses[i], counts[i], durs[i] = int32(r.Status), int32(r.Count), r.DurationMs
		b, err := json.Marshal(r.Principal)
		if err != nil {
			return nil, err
		}
		principals[i] = string(b)
		if len(r.Filters) > 0 {
			b, err := json.Marshal(r.Filters)
			if err != nil {
				return nil, err
			}
			f := string(b)
			filters[i] = &f
		}
		if len(ids)+len(r.RecordIDs) > math.MaxInt32 {
			return nil, fmt.Errorf("audit record %q: more record ids than one statement takes", r.CorrelationID)
		}
		firsts[i] = int32(len(ids)) + 1
		ids = append(ids, r.RecordIDs...)
		lasts[i] = int32(len(ids))
	}
	return []any{times, cids, envs, doms, ents, ops, meths, routes, filters, principals, decisions, reasons,
		statuses, firsts, counts, durs, addrs, uas, nonNil(ids), lasts}, nil
}

// scanAudit reads one row of selectAuditSQL.
func scanAudit(row pgx.Row) (plinth.AuditRecord, error) {
	var (
		r                  plinth.AuditRecord
		filters, principal []byte
		status, count      int32
	)
	err := row.Scan(&r.Sequence, &r.Time, &r.CorrelationID, &r.Environment, &r.Domain, &r.Entity, &r.Operation,
		&r.Method, &r.Route, &filters, &principal, &r.Decision, &r.Reason, &status, &r.RecordIDs, &count,
		&r.DurationMs, &r.ClientAddress, &r.UserAgent, &r.PrevHash, &r.Hash)
	if err != nil {
		return r, err
	}
	r.Time = r.Time.UTC()
	r.Status, r.Count = int(status), int(count)
	if len(filters) > 0 {
		if err := json.Unmarshal(filters, &r.Filters); err != nil {
			return r, fmt.Errorf("audit record %d: filters: %w", r.Sequence, err)
		}
	}
	if err := json.Unmarshal(principal, &r.Principal); err != nil {
		return r, fmt.Errorf("audit record %d: principal: %w", r.Sequence, err)
	}
	if len(r.RecordIDs) == 0 {
		r.RecordIDs = nil
	}
	return r, nil
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
	args := []any{q.After}
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	where := []string{`"sequence" > $1`}
	if q.User != "" {
		p := arg(q.User)
		where = append(where, fmt.Sprintf(`("principal"->>'subject' = %s OR "principal"->>'email' = %s OR "principal"->>'consumer' = %s)`, p, p, p))
	}
	if q.EntityID != "" {
		where = append(where, fmt.Sprintf(`"record_ids" @> ARRAY[%s::text]`, arg(q.EntityID)))
	}
	if q.Domain != "" {
		where = append(where, `"domain" = `+arg(q.Domain))
	}
	if !q.Since.IsZero() {
		where = append(where, `"time" >= `+arg(ceilMicro(q.Since)))
	}
	if !q.Until.IsZero() {
		where = append(where, `"time" < `+arg(ceilMicro(q.Until)))
	}
	sql := selectAuditSQL + " WHERE " + strings.Join(where, " AND ") + ` ORDER BY "sequence" LIMIT ` + arg(limit+1)
	var recs []plinth.AuditRecord
	err := s.read(ctx, "search the audit trail", func() error {
		recs = []plinth.AuditRecord{}
		// Planned for the values each time (as List is): a generic plan
		// that walks the primary key suits a frequent user and is slow for
		// a rare one.
		rows, err := s.pool.Query(ctx, sql, append([]any{pgx.QueryExecModeCacheDescribe}, args...)...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			r, err := scanAudit(rows)
			if err != nil {
				return err
			}
			recs = append(recs, r)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, false, err
	}
	if len(recs) > limit {
		return recs[:limit], true, nil
	}
	return recs, false, nil
}

// ceilMicro rounds t up to the microsecond. Stored times are whole
// microseconds, so comparing them with the rounded bound gives the same
// answer as with t itself (pgx would truncate it instead).
func ceilMicro(t time.Time) time.Time {
	if u := t.Truncate(time.Microsecond); !u.Equal(t) {
		return u.Add(time.Microsecond)
	}
	return t
}

// ScanAudit calls fn for every record after the sequence after, in
// sequence order, exactly as stored (nothing is recomputed), reading a
// batch at a time. An error from fn stops the scan and is returned as is.
func (s *Store) ScanAudit(ctx context.Context, after int64, fn func(plinth.AuditRecord) error) error {
	sql := selectAuditSQL + ` WHERE "sequence" > $1 ORDER BY "sequence" LIMIT $2`
	for {
		var batch []plinth.AuditRecord
		err := s.read(ctx, "scan the audit trail", func() error {
			batch = batch[:0]
			rows, err := s.pool.Query(ctx, sql, after, scanBatch)
			if err != nil {
				return err
			}
			defer rows.Close()
			for rows.Next() {
				r, err := scanAudit(rows)
				if err != nil {
					return err
				}
				batch = append(batch, r)
			}
			return rows.Err()
		})
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
// (plinth.AuditTrimmer). An operator who revoked DELETE on plinth.audit
// from the application role gets a permission error here.
func (s *Store) TrimAudit(ctx context.Context, through int64) (int64, error) {
	head, _, err := s.AuditHead(ctx)
	if err != nil {
		return 0, err
	}
	through = min(through, head-1)
	if through < 1 {
		return 0, nil
	}
	tag, err := s.pool.Exec(ctx, `DELETE FROM "plinth"."audit" WHERE "sequence" <= $1`, through)
	if err != nil {
		return 0, fmt.Errorf("postgres: trim the audit trail: %w", err)
	}
	return tag.RowsAffected(), nil
}
