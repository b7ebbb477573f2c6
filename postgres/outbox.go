package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/plinth-data/plinth"
)

// The transactional outbox lives in the system schema:
//
//   - plinth.outbox: one row per event, written by Tx.AppendEvent in the
//     transaction of the change. sequence comes from the sequence
//     plinth.outbox_sequence; txid is the writing transaction; horizon is
//     explained below; payload is bytea, the event's bytes exactly as they
//     will be published; sent_at is set by MarkEventsSent (by event_id).
//     A partial index holds the unsent rows only, so the relay's poll
//     stays cheap however long the table grows (PurgeSentEvents trims it).
//   - plinth.relay_lease: one row per lease (the relay uses "outbox", the
//     audit chainer "audit-chain"): who holds it and until when, on the
//     database's clock.
//
// The sequence-gap trap. Sequence numbers are handed out when a row is
// inserted, not when its transaction commits, so a row can commit after a
// row with a higher number. A relay that publishes what it can see in
// sequence order, and remembers how far it got, would skip the late one.
// PendingEvents therefore returns an entry only when no transaction still
// running can hold a lower number.
//
// The usual remedy, publishing only rows whose txid is below the oldest
// running transaction (pg_snapshot_xmin), is not enough, because txid
// order is not sequence order: a transaction that got its id early (when
// it changed a record) but draws its number late (when it appends the
// event) has a lower txid than a running transaction holding a lower
// number, so its row looks safe while the lower one can still commit (the
// storetest case EarlierTransactionLaterSequence). Ordering by txid instead
// would break per-record order: a transaction that waited for another's
// row lock commits after it, but may have the lower txid.
//
// So writers announce a lower bound of their number before they draw it,
// in a way other sessions can see although nothing is committed: the first
// AppendEvent of a transaction takes a shared, transaction-scoped advisory
// lock whose key is outboxLockBase plus the sequence's last_value, and then
// draws its number with nextval (both in one round trip). The number is at
// least that last_value (sequences only grow; the sequence has CACHE 1 and
// must keep it), and the lock lasts until the transaction ends. The relay
// reads, in this order: the lowest number not yet drawn (next); the least
// key of those locks still held in this database (pg_locks); then, with a
// snapshot taken after both, the unsent rows. It returns rows below both
// bounds. A row below next was drawn before next was read, by a
// transaction that took its lock before that; if the transaction is still
// running the lock bounds the cut below its number, and if it has ended,
// it ended before the rows' snapshot, so its row is visible or rolled back.
// Rows above the cut wait for the next poll.
//
// This holds at any isolation level (the bounds are not read through a
// snapshot) and costs a writer nothing it would notice; a transaction
// that stays open after appending holds back publication of later events
// (never loses or reorders them) until it ends.

var (
	_ plinth.OutboxStore = (*Store)(nil)
	_ plinth.EventTx     = (*tx)(nil)
)

// relayLeaseName is the lease the relay of OutboxStore holds.
const relayLeaseName = "outbox"

// outboxTables are the system tables of the outbox.
var outboxTables = []accessTable{
	{
		name: "outbox",
		what: "event outbox",
		cols: []string{"sequence", "txid", "domain", "subject", "event_id", "payload", "created_at", "sent_at"},
		create: []string{
			`CREATE SEQUENCE IF NOT EXISTS "plinth"."outbox_sequence" AS bigint CACHE 1`,
			`CREATE TABLE IF NOT EXISTS "plinth"."outbox" (
	"sequence" bigint PRIMARY KEY DEFAULT nextval('"plinth"."outbox_sequence"'),
	"txid" xid8 NOT NULL DEFAULT pg_current_xact_id(),
	"domain" text NOT NULL,
	"subject" text NOT NULL,
	"event_id" text NOT NULL UNIQUE,
	"payload" bytea NOT NULL,
	"created_at" timestamptz NOT NULL DEFAULT now(),
	"sent_at" timestamptz,
	"trace" text
)`,
			`ALTER SEQUENCE "plinth"."outbox_sequence" OWNED BY "plinth"."outbox"."sequence"`,
			`CREATE INDEX IF NOT EXISTS "outbox__unsent" ON "plinth"."outbox" ("sequence") WHERE "sent_at" IS NULL`,
			`CREATE INDEX IF NOT EXISTS "outbox__sent_at" ON "plinth"."outbox" ("sent_at") WHERE "sent_at" IS NOT NULL`,
			`COMMENT ON TABLE "plinth"."outbox" IS 'Change events written in the transaction of the change, for the relay to publish in sequence order. Kept by plinth.'`,
			`COMMENT ON SEQUENCE "plinth"."outbox_sequence" IS 'Numbers the outbox. Keep CACHE 1: the relay relies on last_value (see postgres/outbox.go).'`,
		},
		// The W3C traceparent of the traced request that wrote the event.
		added: []string{`"trace" text`},
	},
	{
		name: "relay_lease",
		what: "relay leases (which relay publishes the outbox)",
		cols: []string{"name", "holder", "expires_at"},
		create: []string{`CREATE TABLE IF NOT EXISTS "plinth"."relay_lease" (
	"name" text PRIMARY KEY,
	"holder" text NOT NULL,
	"expires_at" timestamptz NOT NULL
)`,
			`COMMENT ON TABLE "plinth"."relay_lease" IS 'Which relay may publish the outbox, and until when. Kept by plinth.'`,
		},
	},
}

// outboxLockBase is added to a sequence number to make the key of a
// writer's advisory lock: "pl" in the top 16 bits, the number in the low
// 48, so plinth's keys are told from other advisory locks.
const outboxLockBase int64 = 0x706c << 48

const (
	// announceSQL is the first statement of a transaction's first
	// AppendEvent.
	announceSQL    = `SELECT pg_advisory_xact_lock_shared($1::bigint + last_value) FROM "plinth"."outbox_sequence"`
	insertEventSQL = `INSERT INTO "plinth"."outbox" ("domain", "subject", "event_id", "payload", "trace") VALUES ($1, $2, $3, $4, NULLIF($5, ''))`
	// The relay's poll: the lowest number not yet drawn, then the least
	// number announced by a running writer, then the rows.
	nextSequenceSQL   = `SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END FROM "plinth"."outbox_sequence"`
	leastAnnouncedSQL = `SELECT min(((l.classid::bigint << 32) | l.objid::bigint) - $1::bigint) FROM pg_locks l
WHERE l.locktype = 'advisory' AND l.objsubid = 1
	AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
	AND l.classid::bigint BETWEEN ($1::bigint >> 32) AND ($1::bigint >> 32) + 65535`
	pendingEventsSQL = `SELECT "sequence", "domain", "subject", "event_id", "payload", coalesce("trace", '')
FROM "plinth"."outbox" WHERE "sent_at" IS NULL AND "sequence" >= $2 ORDER BY "sequence" LIMIT $1`
	markEventsSentSQL = `UPDATE "plinth"."outbox" SET "sent_at" = now() WHERE "event_id" = ANY($1) AND "sent_at" IS NULL`
	acquireLeaseSQL   = `INSERT INTO "plinth"."relay_lease" AS l ("name", "holder", "expires_at")
VALUES ($1, $2, clock_timestamp() + $3 * interval '1 microsecond')
ON CONFLICT ("name") DO UPDATE SET "holder" = excluded."holder", "expires_at" = excluded."expires_at"
WHERE l."holder" = excluded."holder" OR l."expires_at" <= clock_timestamp()
RETURNING "holder"`
	purgeSentEventsSQL = `DELETE FROM "plinth"."outbox" WHERE "sent_at" < now() - $1 * interval '1 microsecond'`
)

// outboxFloorLife is how long PendingEvents keeps its floor.
var outboxFloorLife = time.Minute

// AppendEvent adds the event to the outbox within the write transaction.
// It costs no round trip of its own: the statements go with the
// transaction's next one (see pipeTx), which is where an error shows —
// plinth.ErrConflict when its event ID is already there. The number the
// event draws, and its announcement, come with that statement too.
func (x *tx) AppendEvent(ctx context.Context, e plinth.OutboxEntry) error {
	if e.EventID == "" {
		return errors.New("postgres: append an event to the outbox: the event has no ID")
	}
	payload := e.Payload
	if payload == nil {
		payload = []byte{}
	}
	if !x.announced {
		x.tx.queue(announceSQL, outboxLockBase)
		x.announced = true
	}
	x.tx.queue(insertEventSQL, e.Domain, e.Subject, e.EventID, payload, e.Trace)
	return nil
}

// PendingEvents returns up to limit (plinth.DefaultLimit when <= 0)
// unsent entries in sequence order, leaving out every entry that a
// transaction still running might precede (see the top of this file).
// It takes one round trip.
//
// It reads from a floor it keeps, as UnchainedAudit does: the index of
// unsent rows keeps the entries of sent ones until VACUUM, so a read from
// the start walks past every event sent since (thousands a minute under
// writes; some servers run without autovacuum). Every number below the cut
// was drawn by a transaction that has ended, so no unsent row below the
// first one a read returns (or below the cut, when it returns none) can
// appear later. The floor is forgotten every outboxFloorLife, so rows put
// back below it (a database restored under a running process) are found.
func (s *Store) PendingEvents(ctx context.Context, limit int) ([]plinth.OutboxEntry, error) {
	return s.PendingEventsAfter(ctx, 0, limit)
}

// PendingEventsAfter is PendingEvents for the entries past sequence after
// (plinth.PendingAfterReader). Such a read leaves the floor as it is: the
// entries up to after may be unsent still.
func (s *Store) PendingEventsAfter(ctx context.Context, after int64, limit int) ([]plinth.OutboxEntry, error) {
	if limit <= 0 {
		limit = plinth.DefaultLimit
	}
	if now := time.Now().UnixNano(); now-s.outboxFloorSince.Load() > int64(outboxFloorLife) {
		s.outboxFloorSince.Store(now)
		s.outboxFloor.Store(0)
	}
	floor := s.outboxFloor.Load()
	from := max(floor, after+1)
	var out []plinth.OutboxEntry
	err := s.readBelowCut(ctx, "read pending events", nextSequenceSQL, outboxLockBase, pendingEventsSQL, []any{limit, from},
		func(cut int64, rows pgx.Rows) error {
			out = []plinth.OutboxEntry{}
			next := cut
			for rows.Next() {
				var e plinth.OutboxEntry
				if err := rows.Scan(&e.Sequence, &e.Domain, &e.Subject, &e.EventID, &e.Payload, &e.Trace); err != nil {
					return err
				}
				if e.Sequence >= cut {
					break
				}
				if len(out) == 0 {
					next = e.Sequence
				}
				out = append(out, e)
			}
			if after <= 0 && next > floor {
				s.outboxFloor.CompareAndSwap(floor, next)
			}
			return nil
		})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// readBelowCut is the poll of the outbox and of the audit log, in one
// round trip: it reads the lowest number not yet drawn (nextSQL), the
// least number announced by a running writer under lockBase, and then,
// with a snapshot taken after both, the rows (rowsSQL, ordered by their
// number); fn reads the rows and must stop at the first whose number is
// at or above cut.
func (s *Store) readBelowCut(ctx context.Context, what, nextSQL string, lockBase int64, rowsSQL string, args []any,
	fn func(cut int64, rows pgx.Rows) error) error {
	return s.read(ctx, what, func() error {
		conn, err := s.pool.Acquire(ctx)
		if err != nil {
			return err
		}
		defer conn.Release()
		// READ COMMITTED, so that the rows' snapshot is taken after the
		// bounds were read, whatever default_transaction_isolation says.
		b := &pgx.Batch{}
		b.Queue("BEGIN ISOLATION LEVEL READ COMMITTED READ ONLY")
		b.Queue(nextSQL)
		b.Queue(leastAnnouncedSQL, lockBase)
		b.Queue(rowsSQL, args...)
		b.Queue("COMMIT")
		br := conn.SendBatch(ctx, b)
		err = func() error {
			if _, err := br.Exec(); err != nil {
				return err
			}
			var next int64
			var announced *int64
			if err := br.QueryRow().Scan(&next); err != nil {
				return err
			}
			if err := br.QueryRow().Scan(&announced); err != nil {
				return err
			}
			cut := next
			if announced != nil && *announced < cut {
				cut = *announced
			}
			rows, err := br.Query()
			if err != nil {
				return err
			}
			err = fn(cut, rows)
			rows.Close()
			if err != nil {
				return err
			}
			if err := rows.Err(); err != nil {
				return err
			}
			_, err = br.Exec()
			return err
		}()
		if cerr := br.Close(); err == nil {
			err = cerr
		}
		if err != nil && conn.Conn().PgConn().TxStatus() != 'I' {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			_, _ = conn.Exec(rctx, "ROLLBACK")
			cancel()
		}
		return err
	})
}

// MarkEventsSent records that the entries with these event IDs were
// published. Entries already marked keep their first time.
func (s *Store) MarkEventsSent(ctx context.Context, eventIDs []string) error {
	if len(eventIDs) == 0 {
		return nil
	}
	_, err := s.pool.Exec(ctx, markEventsSentSQL, eventIDs)
	return s.wrap(fmt.Sprintf("mark %d events sent", len(eventIDs)), err)
}

// AcquireRelayLease makes holder the active relay until ttl from now on
// the database's clock, or renews its lease; false when another holder's
// lease has not expired.
func (s *Store) AcquireRelayLease(ctx context.Context, holder string, ttl time.Duration) (bool, error) {
	return s.acquireLease(ctx, relayLeaseName, holder, ttl)
}

// acquireLease takes or renews the named lease of plinth.relay_lease (the
// relay's and the audit chainer's).
func (s *Store) acquireLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error) {
	what := fmt.Sprintf("acquire the %s lease", name)
	if holder == "" {
		return false, fmt.Errorf("postgres: %s: the holder has no name", what)
	}
	var got string
	err := s.pool.QueryRow(ctx, acquireLeaseSQL, name, holder, ttl.Microseconds()).Scan(&got)
	var pgErr *pgconn.PgError
	if errors.Is(err, pgx.ErrNoRows) || (errors.As(err, &pgErr) && pgErr.Code == "40001") {
		// Not ours, or (at repeatable read or stricter) another holder
		// changed the lease at the same moment: it won this round.
		return false, nil
	}
	if err != nil {
		return false, s.wrap(what, err)
	}
	return true, nil
}

// PurgeSentEvents deletes the entries published more than olderThan ago
// (7 days is a sensible retention: long enough to replay into a
// rebuilt stream, short enough to keep the table small) and returns how
// many it deleted. Unsent entries are never deleted. The relay may call it
// now and then; nothing else needs it.
func (s *Store) PurgeSentEvents(ctx context.Context, olderThan time.Duration) (int64, error) {
	tag, err := s.pool.Exec(ctx, purgeSentEventsSQL, olderThan.Microseconds())
	if err != nil {
		return 0, s.wrap("purge sent events", err)
	}
	return tag.RowsAffected(), nil
}
