package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/plinth-data/plinth"
)

// Change tracking, for incremental extracts (plinth.Watermark).
//
// SQLite has one writer at a time, so write transactions commit in the
// order they write. The one-row table plinth_changes holds a counter; the
// first data write of a transaction (insert, update, delete) increments
// it, and every row the transaction writes carries the new value in the
// column _change_seq (a name no field's column can have: those start with
// a letter), every tombstone in change_seq. A read transaction sees the
// counter as of its snapshot, W: every transaction with a number up to W
// committed before the snapshot (its writes are in it), every one above
// committed after. So Since=W selects _change_seq > W and misses nothing,
// and re-sends nothing either. Rows written before the column existed hold
// NULL, older than every watermark.
//
// Tombstones live in plinth_tombstones; plinth_tombstone_horizon remembers
// the highest change number and the latest time PurgeTombstones removed.

// watermarkKind marks the watermarks of this store.
const watermarkKind = "sqlite"

// changeColumn is the change number of an entity table's rows.
const changeColumn = "_change_seq"

var changesSchema = []string{
	`CREATE TABLE IF NOT EXISTS "plinth_changes" (
	"id" INTEGER PRIMARY KEY CHECK ("id" = 1),
	"seq" INTEGER NOT NULL
)`,
	`INSERT OR IGNORE INTO "plinth_changes" ("id", "seq") VALUES (1, 0)`,
	// record_key has no declared type, so it keeps the key's own type
	// (INTEGER or TEXT) without conversion.
	`CREATE TABLE IF NOT EXISTS "plinth_tombstones" (
	"id" INTEGER PRIMARY KEY AUTOINCREMENT,
	"entity" TEXT NOT NULL,
	"record_key" NOT NULL,
	"deleted_at" TEXT NOT NULL,
	"change_seq" INTEGER NOT NULL
)`,
	`CREATE INDEX IF NOT EXISTS "plinth_tombstones__by_change" ON "plinth_tombstones" ("entity", "change_seq")`,
	`CREATE INDEX IF NOT EXISTS "plinth_tombstones__by_time" ON "plinth_tombstones" ("entity", "deleted_at")`,
	`CREATE INDEX IF NOT EXISTS "plinth_tombstones__deleted_at" ON "plinth_tombstones" ("deleted_at")`,
	`CREATE TABLE IF NOT EXISTS "plinth_tombstone_horizon" (
	"id" INTEGER PRIMARY KEY CHECK ("id" = 1),
	"purged_before" TEXT NOT NULL,
	"change_seq" INTEGER NOT NULL
)`,
}

const (
	nextChangeSQL    = `UPDATE "plinth_changes" SET "seq" = "seq" + 1 WHERE "id" = 1 RETURNING "seq"`
	currentChangeSQL = `SELECT "seq" FROM "plinth_changes" WHERE "id" = 1`
	insertTombSQL    = `INSERT INTO "plinth_tombstones" ("entity", "record_key", "deleted_at", "change_seq") VALUES (?, ?, ?, ?)`
	horizonSQL       = `SELECT "purged_before", "change_seq" FROM "plinth_tombstone_horizon" WHERE "id" = 1`
	tombstonesSQL    = `SELECT "record_key", "deleted_at" FROM "plinth_tombstones" WHERE "entity" = ? AND "change_seq" > ? ORDER BY "change_seq", "id"`
	purgeCountSQL    = `SELECT count(*), coalesce(max("change_seq"), 0) FROM "plinth_tombstones" WHERE "deleted_at" < ?`
	purgeSQL         = `DELETE FROM "plinth_tombstones" WHERE "deleted_at" < ?`
	setHorizonSQL    = `INSERT INTO "plinth_tombstone_horizon" ("id", "purged_before", "change_seq") VALUES (1, ?, ?)
ON CONFLICT ("id") DO UPDATE SET "purged_before" = max("purged_before", excluded."purged_before"),
	"change_seq" = max("change_seq", excluded."change_seq")`
)

// prepareChanges creates the change counter and the tombstone tables.
func (x *tx) prepareChanges(ctx context.Context) error {
	for _, q := range changesSchema {
		if _, err := x.tx.ExecContext(ctx, q); err != nil {
			return err
		}
	}
	return nil
}

// change returns the change number of the transaction, drawing it at the
// first call.
func (x *tx) change(ctx context.Context) (int64, error) {
	if x.seq != 0 {
		return x.seq, nil
	}
	st, err := x.stmt(ctx, nextChangeSQL)
	if err != nil {
		return 0, err
	}
	if err := st.QueryRowContext(ctx).Scan(&x.seq); err != nil {
		return 0, err
	}
	return x.seq, nil
}

// tombstone records the deletion of key in the transaction.
func (x *tx) tombstone(ctx context.Context, t *table, key any) error {
	seq, err := x.change(ctx)
	if err != nil {
		return err
	}
	st, err := x.stmt(ctx, insertTombSQL)
	if err != nil {
		return err
	}
	_, err = st.ExecContext(ctx, t.name, key, formatStoredTime(plinth.Now()), seq)
	return err
}

// snapshotPosition reads, in a read transaction whose snapshot it
// establishes, the change number the snapshot sees, and decodes since
// against it.
func snapshotPosition(ctx context.Context, rtx *sql.Tx, since plinth.Watermark) (cur, pos int64, err error) {
	if err := rtx.QueryRowContext(ctx, currentChangeSQL).Scan(&cur); err != nil {
		return 0, 0, err
	}
	ns, err := since.Position(watermarkKind)
	if err != nil {
		return 0, 0, err
	}
	if len(ns) > 1 {
		return 0, 0, plinth.BadWatermark(since, "it is not a watermark a Plinth store made; pass the watermark of an earlier extract unchanged")
	}
	var p uint64
	if len(ns) == 1 {
		p = ns[0]
	}
	if p > uint64(cur) {
		return 0, 0, plinth.BadWatermark(since, "it is ahead of this database, so it was made by another one (or the database was restored from a backup): take a full extract")
	}
	return cur, int64(p), nil
}

// Deletions calls fn with the tombstones of the entity's deletions after
// since, in the order they were made (see plinth.Store).
func (s *Store) Deletions(ctx context.Context, e *plinth.Entity, since plinth.Watermark, fn func(plinth.Tombstone) error) (plinth.Watermark, error) {
	t, err := s.table(e)
	if err != nil {
		return "", err
	}
	what := "deletions of " + e.Name
	rtx, err := s.read.BeginTx(ctx, nil)
	if err != nil {
		return "", ctxErr(ctx, fail(what, err))
	}
	defer rtx.Rollback()
	cur, pos, err := snapshotPosition(ctx, rtx, since)
	if errors.Is(err, plinth.ErrBadWatermark) {
		return "", err
	}
	if err != nil {
		return "", ctxErr(ctx, fail(what, err))
	}
	if since != "" {
		var before string
		var hseq int64
		err := rtx.QueryRowContext(ctx, horizonSQL).Scan(&before, &hseq)
		switch {
		case errors.Is(err, sql.ErrNoRows):
		case err != nil:
			return "", ctxErr(ctx, fail(what, err))
		case hseq > pos:
			oldest, err := parseStoredTime(before)
			if err != nil {
				return "", fail(what, err)
			}
			return "", &plinth.WatermarkExpiredError{Since: since, Oldest: oldest}
		}
	}
	rows, err := rtx.QueryContext(ctx, tombstonesSQL, t.name, pos)
	if err != nil {
		return "", ctxErr(ctx, fail(what, err))
	}
	defer rows.Close()
	for rows.Next() {
		if err := ctx.Err(); err != nil {
			return "", err
		}
		var key any
		var at string
		if err := rows.Scan(&key, &at); err != nil {
			return "", fail(what, err)
		}
		ts := plinth.Tombstone{Key: key}
		if ts.DeletedAt, err = parseStoredTime(at); err != nil {
			return "", fail(what, err)
		}
		if err := fn(ts); err != nil {
			return "", err
		}
	}
	if err := rows.Err(); err != nil {
		return "", ctxErr(ctx, fail(what, err))
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	return plinth.NewWatermark(watermarkKind, uint64(cur)), nil
}

// PurgeTombstones deletes the tombstones of deletions before olderThan and
// moves the horizon past them.
func (s *Store) PurgeTombstones(ctx context.Context, olderThan time.Time) (int64, error) {
	var n int64
	err := s.writeAlone(ctx, func(ptx plinth.Tx) error { // alone: never grouped (group.go)
		x := ptx.(*tx)
		cut := formatStoredTime(olderThan)
		var maxSeq int64
		if err := x.tx.QueryRowContext(ctx, purgeCountSQL, cut).Scan(&n, &maxSeq); err != nil {
			return err
		}
		if _, err := x.tx.ExecContext(ctx, purgeSQL, cut); err != nil {
			return err
		}
		_, err := x.tx.ExecContext(ctx, setHorizonSQL, cut, maxSeq)
		return err
	})
	if err != nil {
		return 0, fail("purge tombstones", err)
	}
	return n, nil
}

// LastUpdated returns the latest updatedAt of the entity's records or
// deletion time of its tombstones; both are read from an index.
func (s *Store) LastUpdated(ctx context.Context, e *plinth.Entity) (time.Time, error) {
	t, err := s.table(e)
	if err != nil {
		return time.Time{}, err
	}
	rows, err := s.query(ctx, t.lastUpdatedSQL, t.name)
	if err != nil {
		return time.Time{}, fail("last update of "+e.Name, err)
	}
	defer rows.Close()
	var rec, del sql.NullString
	if rows.Next() {
		if err := rows.Scan(&rec, &del); err != nil {
			return time.Time{}, fail("last update of "+e.Name, err)
		}
	}
	if err := rows.Err(); err != nil {
		return time.Time{}, fail("last update of "+e.Name, err)
	}
	var last time.Time
	for _, v := range []sql.NullString{rec, del} {
		if !v.Valid {
			continue
		}
		at, err := parseStoredTime(v.String)
		if err != nil {
			return time.Time{}, fail("last update of "+e.Name, err)
		}
		if at.After(last) {
			last = at
		}
	}
	return last, nil
}

func (t *table) buildChangeSQL() {
	t.lastUpdatedSQL = fmt.Sprintf(`SELECT (SELECT max("updated_at") FROM %s), (SELECT max("deleted_at") FROM "plinth_tombstones" WHERE "entity" = ?)`,
		quote(t.name))
}
