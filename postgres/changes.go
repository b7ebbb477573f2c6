package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/plinth-data/plinth"
)

// Change tracking, for incremental extracts (plinth.Watermark).
//
// Every entity table has the column _change_txid (xid8; a name no field's
// column can have, as those start with a letter), set to
// pg_current_xact_id() by every insert (the column default, which COPY
// also applies), update and upsert: the id of the transaction that last
// wrote the row. Every Tx.Delete writes a tombstone into plinth.tombstones
// in the same statement, whose change_txid is its transaction's id too.
//
// A snapshot's watermark is the snapshot itself (pg_current_snapshot(),
// taken inside the REPEATABLE READ transaction that reads): its xmin, its
// xmax and the ids of the transactions in flight when it was taken. Since=W
// selects the rows whose _change_txid is not visible in W
// (_change_txid >= xmin, through the index, AND NOT
// pg_visible_in_snapshot): exactly the rows written by transactions that
// committed after the snapshot, including the late-commit case (a
// transaction that wrote before the snapshot and committed after it is in
// its in-flight list, or above its xmax if it wrote first after it). Rows
// whose last write the snapshot saw are not sent again. Rows written
// before the column existed hold NULL, which no comparison selects: they
// are older than every watermark. The watermark's text is
// "pg.{xmin}.{xmax-xmin}.{in-flight-xmin}…", so it grows with the number
// of transactions in flight (a few digits each).
//
// xid8 never wraps around. A watermark is only meaningful in the database
// cluster that made it: one ahead of the current snapshot's xmax is
// rejected; one from another cluster that happens to be lower cannot be
// told apart.
//
// Writes made with plain SQL outside plinth do not set _change_txid on
// update (inserts get the default) and leave no tombstone on delete.

// watermarkKind marks the watermarks of this store.
const watermarkKind = "pg"

// changeColumn is the change-tracking column of entity tables.
const changeColumn = "_change_txid"

// changeTables are the system tables of tombstones and their purge horizon.
var changeTables = []accessTable{
	{
		name: "tombstones",
		what: "tombstones of deleted records",
		cols: []string{"id", "entity", "record_key", "deleted_at", "change_txid"},
		create: []string{`CREATE TABLE IF NOT EXISTS "plinth"."tombstones" (
	"id" bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	"entity" text COLLATE "C" NOT NULL,
	"record_key" text COLLATE "C" NOT NULL,
	"deleted_at" timestamptz NOT NULL,
	"change_txid" xid8 NOT NULL DEFAULT pg_current_xact_id()
)`,
			`CREATE INDEX IF NOT EXISTS "tombstones__by_change" ON "plinth"."tombstones" ("entity", "change_txid", "id")`,
			`CREATE INDEX IF NOT EXISTS "tombstones__by_time" ON "plinth"."tombstones" ("entity", "deleted_at")`,
			`CREATE INDEX IF NOT EXISTS "tombstones__deleted_at" ON "plinth"."tombstones" ("deleted_at")`,
			`COMMENT ON TABLE "plinth"."tombstones" IS 'One row per deleted record (entity is schema.table), for incremental extracts; purged after the retention. Kept by plinth.'`,
		},
	},
	{
		name: "tombstone_horizon",
		what: "the purge horizon of tombstones",
		cols: []string{"id", "purged_before", "change_txid"},
		create: []string{`CREATE TABLE IF NOT EXISTS "plinth"."tombstone_horizon" (
	"id" boolean PRIMARY KEY DEFAULT true CHECK ("id"),
	"purged_before" timestamptz NOT NULL,
	"change_txid" xid8 NOT NULL
)`,
			`COMMENT ON TABLE "plinth"."tombstone_horizon" IS 'The latest purge of tombstones: deletions before purged_before, up to transaction change_txid, are no longer listed. Kept by plinth.'`,
		},
	},
}

const (
	// snapshotSQL is the first statement of a reading transaction: it
	// takes the snapshot and reads its bounds.
	snapshotSQL   = `SELECT pg_current_snapshot()::text`
	horizonSQL    = `SELECT "purged_before", "change_txid"::text FROM "plinth"."tombstone_horizon"`
	tombsSQL      = `SELECT "record_key", "deleted_at" FROM "plinth"."tombstones" WHERE "entity" = $1`
	tombsOrder    = ` ORDER BY "change_txid", "id"`
	purgeTombsSQL = `WITH gone AS (DELETE FROM "plinth"."tombstones" WHERE "deleted_at" < $1 RETURNING "change_txid"),
h AS (INSERT INTO "plinth"."tombstone_horizon" AS h ("id", "purged_before", "change_txid")
	SELECT true, $1, coalesce(max("change_txid"), '0'::xid8) FROM gone
	ON CONFLICT ("id") DO UPDATE SET "purged_before" = greatest(h."purged_before", EXCLUDED."purged_before"),
		"change_txid" = greatest(h."change_txid", EXCLUDED."change_txid"))
SELECT count(*) FROM gone`
)

// pgSnapshot is a snapshot as a watermark holds it.
type pgSnapshot struct {
	xmin, xmax uint64
	xip        []uint64 // in flight, ascending, each in [xmin, xmax)
}

// sees reports whether a transaction's effects were visible in the
// snapshot: it finished before the snapshot was taken.
func (s pgSnapshot) sees(txid uint64) bool {
	if txid < s.xmin {
		return true
	}
	return txid < s.xmax && !slices.Contains(s.xip, txid)
}

// parseSnapshot parses pg_snapshot's text form, "xmin:xmax:xip,xip".
func parseSnapshot(s string) (pgSnapshot, error) {
	parts := strings.Split(s, ":")
	if len(parts) != 3 {
		return pgSnapshot{}, fmt.Errorf("unexpected snapshot %q", s)
	}
	var snap pgSnapshot
	var err error
	if snap.xmin, err = strconv.ParseUint(parts[0], 10, 64); err != nil {
		return pgSnapshot{}, err
	}
	if snap.xmax, err = strconv.ParseUint(parts[1], 10, 64); err != nil {
		return pgSnapshot{}, err
	}
	if parts[2] != "" {
		for _, x := range strings.Split(parts[2], ",") {
			n, err := strconv.ParseUint(x, 10, 64)
			if err != nil {
				return pgSnapshot{}, err
			}
			snap.xip = append(snap.xip, n)
		}
	}
	return snap, nil
}

// text is pg_snapshot's text form.
func (s pgSnapshot) text() string {
	xs := make([]string, len(s.xip))
	for i, x := range s.xip {
		xs[i] = strconv.FormatUint(x, 10)
	}
	return fmt.Sprintf("%d:%d:%s", s.xmin, s.xmax, strings.Join(xs, ","))
}

func (s pgSnapshot) watermark() plinth.Watermark {
	pos := []uint64{s.xmin, s.xmax - s.xmin}
	for _, x := range s.xip {
		pos = append(pos, x-s.xmin)
	}
	return plinth.NewWatermark(watermarkKind, pos...)
}

// decodeWatermark returns the snapshot a watermark holds; ok is false for
// the zero Watermark.
func decodeWatermark(w plinth.Watermark) (snap pgSnapshot, ok bool, err error) {
	pos, err := w.Position(watermarkKind)
	if err != nil || len(pos) == 0 {
		return pgSnapshot{}, false, err
	}
	bad := plinth.BadWatermark(w, "it is not a watermark a Plinth store made; pass the watermark of an earlier extract unchanged")
	if len(pos) < 2 || pos[0] == 0 || pos[0]+pos[1] < pos[0] {
		return pgSnapshot{}, false, bad
	}
	snap = pgSnapshot{xmin: pos[0], xmax: pos[0] + pos[1]}
	for _, off := range pos[2:] {
		x := snap.xmin + off
		if off >= pos[1] || (len(snap.xip) > 0 && x <= snap.xip[len(snap.xip)-1]) {
			return pgSnapshot{}, false, bad
		}
		snap.xip = append(snap.xip, x)
	}
	return snap, true, nil
}

// readSnapshot begins the REPEATABLE READ, READ ONLY transaction of a scan
// or a Deletions, takes its snapshot and decodes since, which must not be
// ahead of it.
func (s *Store) readSnapshot(ctx context.Context, what string, since plinth.Watermark) (ptx pgx.Tx, cur, prev pgSnapshot, hasPrev bool, err error) {
	prev, hasPrev, err = decodeWatermark(since)
	if err != nil {
		return nil, cur, prev, false, err
	}
	ptx, err = s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, cur, prev, false, ctxErr(ctx, s.wrap(what, err))
	}
	var text string
	err = ptx.QueryRow(ctx, snapshotSQL).Scan(&text)
	if err == nil {
		cur, err = parseSnapshot(text)
	}
	if err == nil && hasPrev && prev.xmax > cur.xmax {
		err = plinth.BadWatermark(since, "it is ahead of this database, so it was made by another one: take a full extract")
	}
	if err != nil {
		ptx.Rollback(context.WithoutCancel(ctx))
		if errors.Is(err, plinth.ErrBadWatermark) {
			return nil, cur, prev, false, err
		}
		return nil, cur, prev, false, ctxErr(ctx, s.wrap(what, err))
	}
	return ptx, cur, prev, hasPrev, nil
}

// changedSince is the condition that selects rows whose change column the
// snapshot prev did not see, appending its parameters to args.
func changedSince(col string, prev pgSnapshot, args *[]any) string {
	*args = append(*args, strconv.FormatUint(prev.xmin, 10), prev.text())
	n := len(*args)
	return fmt.Sprintf("%s >= $%d::text::xid8 AND NOT pg_visible_in_snapshot(%s, $%d::text::pg_snapshot)", col, n-1, col, n)
}

// Deletions calls fn with the tombstones of the entity's deletions after
// since (see plinth.Store), in the order of their transactions' ids, then
// of the deletions within a transaction.
func (s *Store) Deletions(ctx context.Context, e *plinth.Entity, since plinth.Watermark, fn func(plinth.Tombstone) error) (plinth.Watermark, error) {
	t := s.layout(e)
	what := "deletions of " + t.label
	ptx, cur, prev, hasPrev, err := s.readSnapshot(ctx, what, since)
	if err != nil {
		return "", err
	}
	defer ptx.Rollback(context.WithoutCancel(ctx))
	args := []any{t.label}
	query := tombsSQL
	if hasPrev {
		var before time.Time
		var txid string
		err := ptx.QueryRow(ctx, horizonSQL).Scan(&before, &txid)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
		case err != nil:
			return "", ctxErr(ctx, s.wrap(what, err))
		default:
			purged, err := strconv.ParseUint(txid, 10, 64)
			if err != nil {
				return "", s.wrap(what, err)
			}
			// The newest purged tombstone, if prev's snapshot did not see
			// it, may be one the caller never had: refuse rather than risk
			// missing it. (Older purged ones were seen too, unless they were
			// in flight at prev and older than the retention when purged,
			// which a retention of days rules out.)
			if purged > 0 && !prev.sees(purged) {
				return "", &plinth.WatermarkExpiredError{Since: since, Oldest: before.UTC()}
			}
		}
		query += " AND " + changedSince(`"change_txid"`, prev, &args)
	}
	rows, err := ptx.Query(ctx, query+tombsOrder, args...)
	if err != nil {
		return "", ctxErr(ctx, s.wrap(what, err))
	}
	defer rows.Close()
	var key string
	var at time.Time
	for rows.Next() {
		if err := ctx.Err(); err != nil {
			return "", err
		}
		if err := rows.Scan(&key, &at); err != nil {
			return "", ctxErr(ctx, s.wrap(what, err))
		}
		if err := fn(plinth.Tombstone{Key: t.canonicalKey(key), DeletedAt: at.UTC()}); err != nil {
			return "", err
		}
	}
	if err := rows.Err(); err != nil {
		return "", ctxErr(ctx, s.wrap(what, err))
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	return cur.watermark(), nil
}

// PurgeTombstones deletes the tombstones of deletions before olderThan and
// moves the horizon past them, in one statement.
func (s *Store) PurgeTombstones(ctx context.Context, olderThan time.Time) (int64, error) {
	var n int64
	err := s.pool.QueryRow(ctx, purgeTombsSQL, olderThan).Scan(&n)
	return n, s.wrap("purge tombstones", err)
}

// LastUpdated returns the latest updated_at of the entity's records or
// deleted_at of its tombstones, each read from an index.
func (s *Store) LastUpdated(ctx context.Context, e *plinth.Entity) (time.Time, error) {
	t := s.layout(e)
	var last pgtype.Timestamptz
	err := s.read(ctx, "last update of "+t.label, func() error {
		return s.pool.QueryRow(ctx, fmt.Sprintf(`SELECT greatest((SELECT max(updated_at) FROM %s),
	(SELECT max("deleted_at") FROM "plinth"."tombstones" WHERE "entity" = $1))`, t.ident), t.label).Scan(&last)
	})
	if err != nil || !last.Valid {
		return time.Time{}, err
	}
	return last.Time.UTC(), nil
}

// buildDeleteSQL deletes a record of the version given and leaves its
// tombstone, in one statement; $1 is the key, $2 the version, $3 the
// deletion time.
func (t *table) buildDeleteSQL() string {
	return fmt.Sprintf(`WITH gone AS (DELETE FROM %s WHERE %s = $1 AND version = $2 RETURNING %s::text AS k)
INSERT INTO "plinth"."tombstones" ("entity", "record_key", "deleted_at") SELECT %s, k, $3 FROM gone`,
		t.ident, t.key.ident(), t.key.ident(), literal(t.label))
}
