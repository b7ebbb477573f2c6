package sqlite

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/plinth-data/plinth"
)

// The transactional outbox is kept in two tables, created by Prepare:
//
//   - plinth_outbox: one row per event, written by Tx.AppendEvent in the
//     transaction of the change; the payload is a BLOB, the event's bytes
//     exactly as they will be published, or (payload_encoding 's2') those
//     bytes compressed with S2, which PendingEvents undoes. A row is never
//     changed: sent_at is only set in rows an older Plinth marked.
//     Compressing is for the page: a resident's event is about 1.9 KB, and
//     SQLite fits only one row of that size in a 4 KB page, so every event
//     took a page of its own (half of it empty) in the file and in the
//     WAL; compressed to about 0.9 KB, three share one (BENCHMARKS.md,
//     "2026-12-02, twelfth session").
//   - plinth_outbox_sent: the sequence of every event MarkEventsSent
//     marked, and when. Marking rewrote each event's row with its payload
//     before (about 4 KB of WAL for every two events; 4.5 % of serve's CPU
//     per create on the embedded store, BENCHMARKS.md, "2026-12-01, eighth
//     session"); a narrow row fills a page with hundreds.
//   - plinth_relay_lease: one row per lease (the relay uses "outbox", the
//     audit chainer "audit-chain"): who holds it and until when.
//
// SQLite has one writer at a time, also across processes (every write
// transaction begins IMMEDIATE), and a transaction draws its sequence
// number while it holds the write lock. So sequence order is commit order,
// no row can commit behind a higher-numbered one (the sequence-gap trap of
// polling outboxes cannot happen), and PendingEvents may return every
// unsent row it sees. AUTOINCREMENT keeps numbers of rolled-back or
// purged rows from being handed out again.

var (
	_ plinth.OutboxStore = (*Store)(nil)
	_ plinth.EventTx     = (*tx)(nil)
)

// relayLeaseName is the lease the relay of OutboxStore holds.
const relayLeaseName = "outbox"

var outboxSchema = []string{
	`CREATE TABLE IF NOT EXISTS "plinth_outbox" (
	"sequence" INTEGER PRIMARY KEY AUTOINCREMENT,
	"domain" TEXT NOT NULL,
	"subject" TEXT NOT NULL,
	"event_id" TEXT NOT NULL UNIQUE,
	"payload" BLOB NOT NULL,
	"created_at" TEXT NOT NULL,
	"sent_at" TEXT,
	"trace" TEXT,
	"payload_encoding" TEXT
)`,
	// An index of unsent rows (sent_at IS NULL) was made here until
	// marks moved to plinth_outbox_sent: every row stays unsent in the
	// table, so it indexed every row in sequence order, as the table is,
	// and PendingEvents's plan never used it; it cost each write's commit
	// a page. It is dropped from older files.
	`DROP INDEX IF EXISTS "plinth_outbox__unsent"`,
	`CREATE INDEX IF NOT EXISTS "plinth_outbox__sent_at" ON "plinth_outbox" ("sent_at") WHERE "sent_at" IS NOT NULL`,
	`CREATE TABLE IF NOT EXISTS "plinth_outbox_sent" (
	"sequence" INTEGER PRIMARY KEY NOT NULL,
	"sent_at" TEXT NOT NULL
)`,
	`CREATE TABLE IF NOT EXISTS "plinth_relay_lease" (
	"name" TEXT PRIMARY KEY NOT NULL,
	"holder" TEXT NOT NULL,
	"expires_at" TEXT NOT NULL
) WITHOUT ROWID`,
}

const (
	insertEventSQL = `INSERT INTO "plinth_outbox" ("domain", "subject", "event_id", "payload", "created_at", "trace", "payload_encoding")
VALUES (?, ?, ?, ?, ?, NULLIF(?, ''), NULLIF(?, ''))`
	// newestEventSQL is the newest row's sequence, 0 when there is none.
	newestEventSQL = `SELECT coalesce(max("sequence"), 0) FROM "plinth_outbox"`
	// pendingEventsSQL reads from a floor (PendingEvents).
	pendingEventsSQL = `SELECT "sequence", "domain", "subject", "event_id", "payload", coalesce("trace", ''),
	coalesce("payload_encoding", '') FROM "plinth_outbox" o
WHERE "sent_at" IS NULL AND "sequence" >= ?
	AND NOT EXISTS (SELECT 1 FROM "plinth_outbox_sent" s WHERE s."sequence" = o."sequence")
ORDER BY "sequence"`
	markEventsSentSQL = `INSERT OR IGNORE INTO "plinth_outbox_sent" ("sequence", "sent_at")
SELECT "sequence", ? FROM "plinth_outbox" WHERE "event_id" IN (SELECT "value" FROM json_each(?)) AND "sent_at" IS NULL`
	acquireLeaseSQL = `INSERT INTO "plinth_relay_lease" ("name", "holder", "expires_at") VALUES (?, ?, ?)
ON CONFLICT ("name") DO UPDATE SET "holder" = excluded."holder", "expires_at" = excluded."expires_at"
WHERE "plinth_relay_lease"."holder" = excluded."holder" OR "plinth_relay_lease"."expires_at" <= ?
RETURNING "holder"`
	purgeSentEventsSQL = `DELETE FROM "plinth_outbox" WHERE "sent_at" < ?1
	OR "sequence" IN (SELECT "sequence" FROM "plinth_outbox_sent" WHERE "sent_at" < ?1)`
	purgeSentMarksSQL = `DELETE FROM "plinth_outbox_sent" WHERE "sent_at" < ?`
)

// prepareOutbox creates the outbox tables when they are missing, and adds
// the columns added since the first release (trace, payload_encoding) to
// an older outbox.
func (x *tx) prepareOutbox(ctx context.Context) error {
	for _, q := range outboxSchema {
		if _, err := x.tx.ExecContext(ctx, q); err != nil {
			return err
		}
	}
	for _, col := range []string{"trace", "payload_encoding"} {
		var has bool
		if err := x.tx.QueryRowContext(ctx, `SELECT count(*) > 0 FROM pragma_table_info('plinth_outbox') WHERE "name" = ?`, col).Scan(&has); err != nil {
			return err
		}
		if !has {
			if _, err := x.tx.ExecContext(ctx, `ALTER TABLE "plinth_outbox" ADD COLUMN "`+col+`" TEXT`); err != nil {
				return err
			}
		}
	}
	return nil
}

// AppendEvent adds the event to the outbox within the write transaction.
// plinth.ErrConflict when its event ID is already there.
func (x *tx) AppendEvent(ctx context.Context, e plinth.OutboxEntry) error {
	what := fmt.Sprintf("append event %q to the outbox", e.EventID)
	if e.EventID == "" {
		return errors.New("sqlite: append an event to the outbox: the event has no ID")
	}
	payload, encoding := encodePayload(e.Payload)
	st, err := x.stmt(ctx, insertEventSQL)
	if err != nil {
		return fail(what, err)
	}
	if _, err := st.ExecContext(ctx, e.Domain, e.Subject, e.EventID, payload, formatStoredTime(plinth.Now()), e.Trace, encoding); err != nil {
		if isKeyConflict(err) {
			return fmt.Errorf("sqlite: %s: %w", what, plinth.ErrConflict)
		}
		return fail(what, err)
	}
	return nil
}

// PendingEvents returns up to limit (plinth.DefaultLimit when <= 0)
// unsent entries in sequence order.
//
// It reads from a floor it keeps: rows stay in the index of unsent rows
// once sent (they are not changed), so a read from the start would walk
// every event sent and not yet purged. Sequence order is commit order
// here, so no unsent row can appear below the first one a read returns;
// and when a read returns none, every row up to the newest committed
// before it began is sent, so the floor moves past that row. Without
// that, a process started on a week of sent events walked them all at
// every poll (ten a second) for as long as nothing new was written: a
// second of CPU each at 300,000 events (TestOutboxFloorAfterRestart).
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
	floor := s.outboxFloor.Load()
	// The newest row is read only after a poll that found nothing (under
	// load every poll finds events, and the read cost 1.4 % of serve's CPU
	// per create), and only to raise the floor.
	var newest int64
	if !s.outboxBusy.Load() && after <= 0 {
		var err error
		if newest, err = s.newestEvent(ctx); err != nil {
			return nil, fail("read pending events", err)
		}
	}
	rows, err := s.query(ctx, pendingEventsSQL+limitSQL(limit), max(floor, after+1))
	if err != nil {
		return nil, fail("read pending events", err)
	}
	defer rows.Close()
	out := []plinth.OutboxEntry{}
	for rows.Next() {
		var e plinth.OutboxEntry
		var encoding string
		if err := rows.Scan(&e.Sequence, &e.Domain, &e.Subject, &e.EventID, &e.Payload, &e.Trace, &encoding); err != nil {
			return nil, fail("read pending events", err)
		}
		if e.Payload, err = decodePayload(e.Payload, encoding); err != nil {
			return nil, fmt.Errorf("sqlite: read pending events: outbox entry %d (event %q): %w", e.Sequence, e.EventID, err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fail("read pending events", err)
	}
	next := newest + 1 // read before the rows, so committed before them
	if len(out) > 0 {
		next = out[0].Sequence
	}
	if after <= 0 && next > floor {
		s.outboxFloor.CompareAndSwap(floor, next)
	}
	s.outboxBusy.Store(len(out) > 0)
	return out, nil
}

// newestEvent returns the newest outbox row's sequence, 0 when there is
// none.
func (s *Store) newestEvent(ctx context.Context) (int64, error) {
	rows, err := s.query(ctx, newestEventSQL)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	var newest int64
	if rows.Next() {
		if err := rows.Scan(&newest); err != nil {
			return 0, err
		}
	}
	return newest, rows.Err()
}

// MarkEventsSent records that the entries with these event IDs were
// published. Entries already marked keep their first time. The update
// joins the group commit of concurrent writes (group.go) rather than
// syncing on its own.
func (s *Store) MarkEventsSent(ctx context.Context, eventIDs []string) error {
	if len(eventIDs) == 0 {
		return nil
	}
	list, err := json.Marshal(eventIDs)
	if err != nil {
		return fmt.Errorf("sqlite: mark events sent: %w", err)
	}
	err = s.grouped(ctx, func(ctx context.Context, x *tx) error {
		st, err := x.stmt(ctx, markEventsSentSQL)
		if err != nil {
			return err
		}
		_, err = st.ExecContext(ctx, formatStoredTime(plinth.Now()), string(list))
		return err
	})
	if err != nil {
		return fail(fmt.Sprintf("mark %d events sent", len(eventIDs)), err)
	}
	return nil
}

// AcquireRelayLease makes holder the active relay until ttl from now, or
// renews its lease; false when another holder's lease has not expired.
// The clock is this machine's, which every process sharing the database
// file shares.
func (s *Store) AcquireRelayLease(ctx context.Context, holder string, ttl time.Duration) (bool, error) {
	return s.acquireLease(ctx, relayLeaseName, holder, ttl)
}

// acquireLease takes or renews the named lease of plinth_relay_lease (the
// relay's and the audit chainer's).
func (s *Store) acquireLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error) {
	what := fmt.Sprintf("acquire the %s lease", name)
	if holder == "" {
		return false, fmt.Errorf("sqlite: %s: the holder has no name", what)
	}
	now := time.Now()
	rows, err := s.write.QueryContext(ctx, acquireLeaseSQL, name, holder,
		formatStoredTime(now.Add(ttl)), formatStoredTime(now))
	if err != nil {
		return false, fail(what, err)
	}
	defer rows.Close()
	got := rows.Next()
	if err := rows.Close(); err != nil {
		return false, fail(what, err)
	}
	if err := rows.Err(); err != nil {
		return false, fail(what, err)
	}
	return got, nil
}

// PurgeSentEvents deletes the entries published more than olderThan ago
// (7 days is a sensible retention: long enough to replay into a rebuilt
// stream, short enough to keep the file small) and returns how many it
// deleted. Unsent entries are never deleted.
func (s *Store) PurgeSentEvents(ctx context.Context, olderThan time.Duration) (int64, error) {
	const what = "purge sent events"
	before := formatStoredTime(time.Now().Add(-olderThan))
	x, err := s.begin(ctx)
	if err != nil {
		return 0, err
	}
	defer x.tx.Rollback()
	res, err := x.tx.ExecContext(ctx, purgeSentEventsSQL, before)
	if err != nil {
		return 0, fail(what, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fail(what, err)
	}
	if _, err := x.tx.ExecContext(ctx, purgeSentMarksSQL, before); err != nil {
		return 0, fail(what, err)
	}
	if err := x.tx.Commit(); err != nil {
		return 0, fail(what+": commit", err)
	}
	return n, nil
}
