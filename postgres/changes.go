package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"
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
// A snapshot's watermark is pg_snapshot_xmin(pg_current_snapshot()), taken
// inside the REPEATABLE READ transaction that reads: every transaction
// with a smaller id had ended before the snapshot, so its writes are in it
// (or were rolled back). Transactions with an id at or above it may not
// be, so Since=W selects _change_txid >= W. That is exactly the
// late-commit case (a transaction that wrote before the snapshot and
// committed after it has an id >= xmin), at the price of re-sending rows
// whose transactions were in flight, or had ended but had ids above the
// oldest one in flight, when the snapshot was taken. Rows written before
// the column existed hold NULL, which no comparison selects: they are
// older than every watermark.
//
// xid8 never wraps around. A watermark is only meaningful in the database
// (cluster) that made it: one ahead of the current snapshot's xmax is
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
	snapshotSQL = `SELECT pg_snapshot_xmin(s)::text, pg_snapshot_xmax(s)::text FROM pg_current_snapshot() AS s`
	horizonSQL  = `SELECT "purged_before", "change_txid"::text FROM "plinth"."tombstone_horizon"`
	tombsSQL    = `SELECT "record_key", "deleted_at" FROM "plinth"."tombstones"
WHERE "entity" = $1 AND "change_txid" >= $2::text::xid8 ORDER BY "change_txid", "id"`
	purgeTombsSQL = `WITH gone AS (DELETE FROM "plinth"."tombstones" WHERE "deleted_at" < $1 RETURNING "change_txid"),
h AS (INSERT INTO "plinth"."tombstone_horizon" AS h ("id", "purged_before", "change_txid")
	SELECT true, $1, coalesce(max("change_txid"), '0'::xid8) FROM gone
	ON CONFLICT ("id") DO UPDATE SET "purged_before" = greatest(h."purged_before", EXCLUDED."purged_before"),
		"change_txid" = greatest(h."change_txid", EXCLUDED."change_txid"))
SELECT count(*) FROM gone`
)

// snapshot reads the bounds of the transaction's snapshot (taking it, when
// it is the first statement) and decodes since against them.
func snapshot(ctx context.Context, ptx pgx.Tx, since plinth.Watermark) (xmin, pos uint64, err error) {
	var lo, hi string
	if err := ptx.QueryRow(ctx, snapshotSQL).Scan(&lo, &hi); err != nil {
		return 0, 0, err
	}
	if xmin, err = strconv.ParseUint(lo, 10, 64); err != nil {
		return 0, 0, err
	}
	xmax, err := strconv.ParseUint(hi, 10, 64)
	if err != nil {
		return 0, 0, err
	}
	if pos, err = since.Position(watermarkKind); err != nil {
		return 0, 0, err
	}
	if pos > xmax {
		return 0, 0, plinth.BadWatermark(since, "it is ahead of this database, so it was made by another one: take a full extract")
	}
	return xmin, pos, nil
}

// readSnapshot begins the REPEATABLE READ, READ ONLY transaction of a scan
// or a Deletions and reads its snapshot's bounds.
func (s *Store) readSnapshot(ctx context.Context, what string, since plinth.Watermark) (ptx pgx.Tx, xmin, pos uint64, err error) {
	ptx, err = s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, 0, 0, ctxErr(ctx, s.wrap(what, err))
	}
	xmin, pos, err = snapshot(ctx, ptx, since)
	if err != nil {
		ptx.Rollback(context.WithoutCancel(ctx))
		if errors.Is(err, plinth.ErrBadWatermark) {
			return nil, 0, 0, err
		}
		return nil, 0, 0, ctxErr(ctx, s.wrap(what, err))
	}
	return ptx, xmin, pos, nil
}

// Deletions calls fn with the tombstones of the entity's deletions after
// since (see plinth.Store), in the order of their transactions' ids, then
// of the deletions within a transaction.
func (s *Store) Deletions(ctx context.Context, e *plinth.Entity, since plinth.Watermark, fn func(plinth.Tombstone) error) (plinth.Watermark, error) {
	t := s.layout(e)
	what := "deletions of " + t.label
	ptx, xmin, pos, err := s.readSnapshot(ctx, what, since)
	if err != nil {
		return "", err
	}
	defer ptx.Rollback(context.WithoutCancel(ctx))
	if since != "" {
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
			if purged > 0 && purged >= pos { // a purged tombstone would have been listed
				return "", &plinth.WatermarkExpiredError{Since: since, Oldest: before.UTC()}
			}
		}
	}
	rows, err := ptx.Query(ctx, tombsSQL, t.label, strconv.FormatUint(pos, 10))
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
	return plinth.NewWatermark(watermarkKind, xmin), nil
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
