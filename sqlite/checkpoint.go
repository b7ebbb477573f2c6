package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/plinth-data/plinth"
)

// Checkpoints live in plinth_checkpoints, one row per name.
const (
	checkpointSchema = `CREATE TABLE IF NOT EXISTS "plinth_checkpoints" (
	"name" TEXT PRIMARY KEY NOT NULL,
	"value" BLOB NOT NULL,
	"updated_at" TEXT NOT NULL
) WITHOUT ROWID`
	getCheckpointSQL = `SELECT "value", "updated_at" FROM "plinth_checkpoints" WHERE "name" = ?`
	setCheckpointSQL = `INSERT INTO "plinth_checkpoints" ("name", "value", "updated_at") VALUES (?, ?, ?)
ON CONFLICT ("name") DO UPDATE SET "value" = excluded."value", "updated_at" = excluded."updated_at"`
	swapCheckpointSQL = `UPDATE "plinth_checkpoints" SET "value" = ?, "updated_at" = ? WHERE "name" = ? AND "value" = ?`
	addCheckpointSQL  = `INSERT INTO "plinth_checkpoints" ("name", "value", "updated_at") VALUES (?, ?, ?) ON CONFLICT ("name") DO NOTHING`
)

// prepareCheckpoints creates the checkpoint table when it is missing.
func (x *tx) prepareCheckpoints(ctx context.Context) error {
	_, err := x.tx.ExecContext(ctx, checkpointSchema)
	return err
}

// Checkpoint returns the named checkpoint, read on the read pool.
func (s *Store) Checkpoint(ctx context.Context, name string) (plinth.Checkpoint, bool, error) {
	rows, err := s.query(ctx, getCheckpointSQL, name)
	if err != nil {
		return plinth.Checkpoint{}, false, fail("read checkpoint "+name, err)
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return plinth.Checkpoint{}, false, fail("read checkpoint "+name, err)
		}
		return plinth.Checkpoint{}, false, nil
	}
	return scanCheckpoint(name, rows.Scan)
}

// SetCheckpoint writes the named checkpoint in a transaction of its own.
// Inside a Write use the Tx's SetCheckpoint: this one would wait for it.
func (s *Store) SetCheckpoint(ctx context.Context, name string, value []byte) error {
	return s.Write(ctx, func(ptx plinth.Tx) error { return ptx.SetCheckpoint(ctx, name, value) })
}

// Checkpoint returns the named checkpoint as the transaction sees it.
func (x *tx) Checkpoint(ctx context.Context, name string) (plinth.Checkpoint, bool, error) {
	st, err := x.stmt(ctx, getCheckpointSQL)
	if err != nil {
		return plinth.Checkpoint{}, false, fail("read checkpoint "+name, err)
	}
	row := st.QueryRowContext(ctx, name)
	c, found, err := scanCheckpoint(name, row.Scan)
	if errors.Is(err, sql.ErrNoRows) {
		return plinth.Checkpoint{}, false, nil
	}
	return c, found, err
}

// SetCheckpoint writes the named checkpoint within the transaction.
func (x *tx) SetCheckpoint(ctx context.Context, name string, value []byte) error {
	if name == "" {
		return errors.New("sqlite: set checkpoint: the name is empty")
	}
	if value == nil {
		value = []byte{}
	}
	st, err := x.stmt(ctx, setCheckpointSQL)
	if err != nil {
		return fail("set checkpoint "+name, err)
	}
	if _, err := st.ExecContext(ctx, name, value, formatStoredTime(plinth.Now())); err != nil {
		return fail("set checkpoint "+name, err)
	}
	return nil
}

// SwapCheckpoint sets the named checkpoint within the transaction if it
// still holds old (is absent, when found is false).
func (x *tx) SwapCheckpoint(ctx context.Context, name string, old []byte, found bool, value []byte) error {
	if value == nil {
		value = []byte{}
	}
	now := formatStoredTime(plinth.Now())
	var (
		res sql.Result
		err error
	)
	if found {
		if old == nil {
			old = []byte{}
		}
		res, err = x.tx.ExecContext(ctx, swapCheckpointSQL, value, now, name, old)
	} else {
		res, err = x.tx.ExecContext(ctx, addCheckpointSQL, name, value, now)
	}
	if err != nil {
		return fail("swap checkpoint "+name, err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return fmt.Errorf("sqlite: checkpoint %q changed since it was read: %w", name, plinth.ErrVersionConflict)
	}
	return nil
}

func scanCheckpoint(name string, scan func(...any) error) (plinth.Checkpoint, bool, error) {
	c := plinth.Checkpoint{Name: name}
	var stamp string
	if err := scan(&c.Value, &stamp); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return c, false, err
		}
		return plinth.Checkpoint{}, false, fail("read checkpoint "+name, err)
	}
	t, err := parseStoredTime(stamp)
	if err != nil {
		return plinth.Checkpoint{}, false, fmt.Errorf("sqlite: checkpoint %s: %w", name, err)
	}
	if c.Value == nil {
		c.Value = []byte{}
	}
	c.UpdatedAt = t
	return c, true, nil
}
