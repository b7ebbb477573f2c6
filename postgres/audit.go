package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/plinth-data/plinth"
)

// The audit trail lives in the system schema, next to the access tables:
//
//   - plinth.audit: one row per plinth.AuditRecord, keyed by its sequence.
//     The principal and the filters are jsonb, the record ids a text[]
//     (in order, duplicates kept); every other field has a column of its
//     own. Indexes serve the searches of AuditRecords: by principal
//     subject, e-mail and service-token consumer (expression indexes on
//     the principal), by record id (GIN on record_ids), by domain and
//     time, and by time.
//   - plinth.audit_head: exactly one row, the sequence and hash of the
//     newest record. Appending locks it (SELECT … FOR UPDATE), so appends
//     from every instance of plinth take turns and sequences have no gaps;
//     and because it outlives the rows, a deleted tail shows up as a gap
//     when the next record is appended.
//
// Plinth never updates or deletes an audit row. Operators can make that a
// database guarantee by revoking the rights from the role plinth connects
// as, once Prepare has run (as the owner, or a superuser):
//
//	REVOKE UPDATE, DELETE, TRUNCATE ON plinth.audit FROM plinth_app;
//
// (the head row must stay updatable). The hash chain makes any edit that
// gets past that visible to plinth audit verify.
//
// Text is stored as PostgreSQL can hold it: the store turns invalid UTF-8
// and the character U+0000, which text and jsonb refuse, into U+FFFD
// before hashing, so a request with such bytes in a header or a filter is
// still audited, and the stored record verifies.

var (
	_ plinth.AuditStore = (*Store)(nil)
	_ plinth.AuditTx    = (*tx)(nil)
)

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
	"time" timestamptz NOT NULL,
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
	"user_agent" text NOT NULL,
	"prev_hash" text NOT NULL,
	"hash" text NOT NULL
)`,
			`CREATE INDEX IF NOT EXISTS "audit__by_subject" ON "plinth"."audit" (("principal"->>'subject'), "sequence")`,
			`CREATE INDEX IF NOT EXISTS "audit__by_email" ON "plinth"."audit" (("principal"->>'email'), "sequence")`,
			`CREATE INDEX IF NOT EXISTS "audit__by_consumer" ON "plinth"."audit" (("principal"->>'consumer'), "sequence")`,
			// Without fastupdate: entries go straight into the index, so an
			// append never pays for flushing the pending list while it holds
			// the head, and searches need not scan that list.
			`CREATE INDEX IF NOT EXISTS "audit__by_record_id" ON "plinth"."audit" USING gin ("record_ids") WITH (fastupdate = off)`,
			`CREATE INDEX IF NOT EXISTS "audit__by_domain_time" ON "plinth"."audit" ("domain", "time")`,
			`CREATE INDEX IF NOT EXISTS "audit__by_time" ON "plinth"."audit" ("time")`,
			`COMMENT ON TABLE "plinth"."audit" IS 'The hash-chained audit trail of every request that touches data or access. Kept by plinth, which never updates or deletes a row; operators may REVOKE UPDATE, DELETE, TRUNCATE ON plinth.audit FROM the application role.'`,
		},
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
			`COMMENT ON TABLE "plinth"."audit_head" IS 'The sequence and hash of the newest audit record; appending locks this row. Kept by plinth.'`,
		},
	},
}

const auditCols = `"sequence", "time", "correlation_id", "environment", "domain", "entity", "operation", "method", "route",
	"filters", "principal", "decision", "reason", "status", "record_ids", "count", "duration_ms", "client_address",
	"user_agent", "prev_hash", "hash"`

const (
	lockAuditHeadSQL   = `SELECT "sequence", "hash" FROM "plinth"."audit_head" FOR UPDATE`
	updateAuditHeadSQL = `UPDATE "plinth"."audit_head" SET "sequence" = $1, "hash" = $2`
	// insertAuditSQL inserts a batch in one statement, one array per
	// column. Record ids come as a JSON array per record (arrays of
	// arrays must be rectangular in PostgreSQL).
	insertAuditSQL = `INSERT INTO "plinth"."audit" (` + auditCols + `)
SELECT u.seq, u.t, u.cid, u.env, u.dom, u.ent, u.op, u.meth, u.route, u.filters::jsonb, u.principal::jsonb,
	u.decision, u.reason, u.status,
	ARRAY(SELECT e.v FROM jsonb_array_elements_text(u.ids::jsonb) WITH ORDINALITY AS e(v, i) ORDER BY e.i),
	u.cnt, u.dur, u.addr, u.ua, u.prev, u.hash
FROM unnest($1::bigint[], $2::timestamptz[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
	$9::text[], $10::text[], $11::text[], $12::text[], $13::text[], $14::integer[], $15::text[], $16::integer[],
	$17::double precision[], $18::text[], $19::text[], $20::text[], $21::text[])
	AS u(seq, t, cid, env, dom, ent, op, meth, route, filters, principal, decision, reason, status, ids, cnt, dur,
		addr, ua, prev, hash)`
	selectAuditSQL = `SELECT ` + auditCols + ` FROM "plinth"."audit"`
)

// scanBatch is how many records ScanAudit reads per query, so that a walk
// over a long trail holds no snapshot for long.
const scanBatch = 1000

// AppendAudit stores records in one transaction, in order, assigning each
// its Sequence, PrevHash and Hash, and returns them as stored. Time is kept
// in UTC to the microsecond (a zero Time becomes plinth.Now()).
//
// It takes two round trips: BEGIN with the lock on the head row, then the
// insert of the whole batch (one statement), the new head and COMMIT. The
// head is locked for the second round trip only, which is as short as a
// hash chain allows: every append has to see the committed head of the
// one before. Batching concurrent requests' records into one call (group
// commit) shares that cost among them.
//
// Appends within one process (this and Tx.AppendAudit) take turns in Go
// before they lock the head, so that they do not all wait on the row lock
// and wake together each time it is released (with 16 concurrent callers
// and a 32-connection pool, about 12% more records/s on a 2-core machine;
// the pool's size bounds how many would wait). Each takes its turn while
// holding its connection, so the holder of the turn can always finish.
func (s *Store) AppendAudit(ctx context.Context, recs []plinth.AuditRecord) ([]plinth.AuditRecord, error) {
	if len(recs) == 0 {
		return nil, nil
	}
	what := fmt.Sprintf("append %d audit records", len(recs))
	out := make([]plinth.AuditRecord, len(recs))
	for i, r := range recs {
		out[i] = plinth.NormalizeAudit(r)
	}
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, s.wrap(what, err)
	}
	defer conn.Release()
	// The connection first, then the turn: the holder of the turn then
	// always has what it needs to finish.
	if err := s.takeAuditTurn(ctx); err != nil {
		return nil, s.wrap(what, err)
	}
	defer s.giveAuditTurn()
	inTx := false
	rollback := func() {
		if inTx || conn.Conn().PgConn().TxStatus() != 'I' {
			// A connection left in a transaction is closed by the pool on
			// release, so a failed ROLLBACK does no harm.
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			_, _ = conn.Exec(rctx, "ROLLBACK")
			cancel()
		}
	}
	// Round trip 1: BEGIN and lock the head.
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	b.Queue(lockAuditHeadSQL)
	br := conn.SendBatch(ctx, b)
	_, err = br.Exec()
	if err == nil {
		inTx = true
	}
	var seq int64
	var hash string
	if err == nil {
		err = br.QueryRow().Scan(&seq, &hash)
		if errors.Is(err, pgx.ErrNoRows) {
			err = errNoAuditHead
		}
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		rollback()
		return nil, s.wrap(what, err)
	}
	seq, hash = chain(out, seq, hash)
	args, err := auditArgs(out)
	if err != nil {
		rollback()
		return nil, fmt.Errorf("postgres: %s: %w", what, err)
	}
	// Round trip 2: insert, move the head, commit.
	b = &pgx.Batch{}
	b.Queue(insertAuditSQL, args...)
	b.Queue(updateAuditHeadSQL, seq, hash)
	b.Queue("COMMIT")
	br = conn.SendBatch(ctx, b)
	for range 3 {
		if _, err = br.Exec(); err != nil {
			break
		}
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		rollback()
		return nil, s.wrap(what, err)
	}
	return out, nil
}

// errNoAuditHead is returned when the head row was removed.
var errNoAuditHead = errors.New(`the head row of the audit trail (plinth.audit_head) is missing; restore it with the sequence and hash of the newest record of plinth.audit`)

// AppendAudit adds a record to the chain within the write transaction and
// returns it as it will be stored. The head of the chain stays locked
// until the transaction ends, so other appends wait for it: append the
// audit record last, just before the transaction commits. Inside a Write,
// append through the Tx: Store.AppendAudit would wait for the transaction
// it is called from.
func (x *tx) AppendAudit(ctx context.Context, rec plinth.AuditRecord) (plinth.AuditRecord, error) {
	rec = plinth.NormalizeAudit(rec)
	if !x.auditLocked {
		if !x.auditTurn {
			if err := x.s.takeAuditTurn(ctx); err != nil {
				return plinth.AuditRecord{}, x.s.wrap("append an audit record", err)
			}
			x.auditTurn = true // given back by Write when the transaction ends
		}
		err := x.tx.QueryRow(ctx, lockAuditHeadSQL).Scan(&x.auditSeq, &x.auditHash)
		if errors.Is(err, pgx.ErrNoRows) {
			err = errNoAuditHead
		}
		if err != nil {
			return plinth.AuditRecord{}, x.s.wrap("append an audit record", err)
		}
		x.auditLocked = true
	}
	recs := []plinth.AuditRecord{rec}
	seq, hash := chain(recs, x.auditSeq, x.auditHash)
	args, err := auditArgs(recs)
	if err != nil {
		return plinth.AuditRecord{}, fmt.Errorf("postgres: append an audit record: %w", err)
	}
	b := &pgx.Batch{}
	b.Queue(insertAuditSQL, args...)
	b.Queue(updateAuditHeadSQL, seq, hash)
	br := x.tx.SendBatch(ctx, b)
	_, err = br.Exec()
	if err == nil {
		_, err = br.Exec()
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return plinth.AuditRecord{}, x.s.wrap("append an audit record", err)
	}
	x.auditSeq, x.auditHash = seq, hash
	return recs[0], nil
}

// takeAuditTurn waits for this process's turn to lock the audit head.
func (s *Store) takeAuditTurn(ctx context.Context) error {
	select {
	case s.auditTurn <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *Store) giveAuditTurn() { <-s.auditTurn }

// endAudit gives back the turn a transaction took, once it has ended.
func (x *tx) endAudit() {
	if x.auditTurn {
		x.auditTurn = false
		x.s.giveAuditTurn()
	}
}

// chain links recs after the head (seq, hash) and returns the new head.
func chain(recs []plinth.AuditRecord, seq int64, hash string) (int64, string) {
	for i := range recs {
		seq++
		recs[i].Sequence = seq
		recs[i].PrevHash = hash
		recs[i].Hash = recs[i].ComputeHash()
		hash = recs[i].Hash
	}
	return seq, hash
}

// auditArgs are the column arrays of insertAuditSQL.
func auditArgs(recs []plinth.AuditRecord) ([]any, error) {
	n := len(recs)
	var (
		seqs                                   = make([]int64, n)
		times                                  = make([]time.Time, n)
		cids, envs, doms, ents, ops, meths     = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		routes, decisions, reasons, addrs, uas = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		prevs, hashes, principals, ids         = make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		filters                                = make([]*string, n)
		statuses, counts                       = make([]int32, n), make([]int32, n)
		durs                                   = make([]float64, n)
	)
	for i, r := range recs {
		seqs[i], times[i] = r.Sequence, r.Time
		cids[i], envs[i], doms[i], ents[i], ops[i], meths[i] = r.CorrelationID, r.Environment, r.Domain, r.Entity, r.Operation, r.Method
		routes[i], decisions[i], reasons[i], addrs[i], uas[i] = r.Route, r.Decision, r.Reason, r.ClientAddress, r.UserAgent
		prevs[i], hashes[i] = r.PrevHash, r.Hash
		if r.Status < math.MinInt32 || r.Status > math.MaxInt32 || r.Count < math.MinInt32 || r.Count > math.MaxInt32 {
			return nil, fmt.Errorf("audit record %d: status %d or count %d out of range", r.Sequence, r.Status, r.Count)
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
		b, err = json.Marshal(nonNil(r.RecordIDs))
		if err != nil {
			return nil, err
		}
		ids[i] = string(b)
	}
	return []any{seqs, times, cids, envs, doms, ents, ops, meths, routes, filters, principals, decisions, reasons,
		statuses, ids, counts, durs, addrs, uas, prevs, hashes}, nil
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
