package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/plinth-data/plinth"
)

// checkpointTables hold the named checkpoints, one row per name, in the
// system schema.
var checkpointTables = []accessTable{
	{
		name: "checkpoints",
		what: "checkpoints (named positions of migrations, change capture and lake consumers)",
		cols: []string{"name", "value", "updated_at"},
		create: []string{`CREATE TABLE IF NOT EXISTS "plinth"."checkpoints" (
	"name" text COLLATE "C" PRIMARY KEY,
	"value" bytea NOT NULL,
	"updated_at" timestamptz NOT NULL
)`,
			`COMMENT ON TABLE "plinth"."checkpoints" IS 'Named positions (migration key ranges, change-capture positions, lake consumer state), written with the data they describe. Kept by plinth.'`,
		},
	},
}

const (
	getCheckpointSQL = `SELECT "value", "updated_at" FROM "plinth"."checkpoints" WHERE "name" = $1`
	setCheckpointSQL = `INSERT INTO "plinth"."checkpoints" ("name", "value", "updated_at") VALUES ($1, $2, $3)
ON CONFLICT ("name") DO UPDATE SET "value" = EXCLUDED."value", "updated_at" = EXCLUDED."updated_at"`
	// A swap's UPDATE waits for a concurrent writer of the row and then
	// checks the value it committed (read committed), so one of two
	// swaps from the same value finds no row.
	swapCheckpointSQL = `UPDATE "plinth"."checkpoints" SET "value" = $3, "updated_at" = $4 WHERE "name" = $1 AND "value" = $2`
	addCheckpointSQL  = `INSERT INTO "plinth"."checkpoints" ("name", "value", "updated_at") VALUES ($1, $2, $3) ON CONFLICT ("name") DO NOTHING`
)

// Checkpoint returns the named checkpoint.
func (s *Store) Checkpoint(ctx context.Context, name string) (plinth.Checkpoint, bool, error) {
	var c plinth.Checkpoint
	var found bool
	err := s.read(ctx, "read checkpoint "+name, func() (err error) {
		c, found, err = getCheckpoint(ctx, s.pool, name)
		return err
	})
	return c, found, err
}

// SetCheckpoint writes the named checkpoint in a transaction of its own.
func (s *Store) SetCheckpoint(ctx context.Context, name string, value []byte) error {
	return s.wrap("set checkpoint "+name, setCheckpoint(ctx, s.pool, name, value))
}

// Checkpoint returns the named checkpoint as the transaction sees it.
func (x *tx) Checkpoint(ctx context.Context, name string) (plinth.Checkpoint, bool, error) {
	c, found, err := getCheckpoint(ctx, x.tx, name)
	return c, found, x.s.wrap("read checkpoint "+name, err)
}

// SetCheckpoint writes the named checkpoint within the transaction.
func (x *tx) SetCheckpoint(ctx context.Context, name string, value []byte) error {
	return x.s.wrap("set checkpoint "+name, setCheckpoint(ctx, x.tx, name, value))
}

// SwapCheckpoint sets the named checkpoint within the transaction if it
// still holds old (is absent, when found is false).
func (x *tx) SwapCheckpoint(ctx context.Context, name string, old []byte, found bool, value []byte) error {
	if value == nil {
		value = []byte{}
	}
	var (
		tag pgconn.CommandTag
		err error
	)
	if found {
		tag, err = x.tx.Exec(ctx, swapCheckpointSQL, name, nonNilBytes(old), value, plinth.Now())
	} else {
		tag, err = x.tx.Exec(ctx, addCheckpointSQL, name, value, plinth.Now())
	}
	var pgErr *pgconn.PgError
	if (err == nil && tag.RowsAffected() == 0) || (errors.As(err, &pgErr) && pgErr.Code == "40001") {
		return fmt.Errorf("postgres: checkpoint %q changed since it was read: %w", name, plinth.ErrVersionConflict)
	}
	return x.s.wrap("swap checkpoint "+name, err)
}

func nonNilBytes(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

func getCheckpoint(ctx context.Context, q querier, name string) (plinth.Checkpoint, bool, error) {
	c := plinth.Checkpoint{Name: name}
	err := q.QueryRow(ctx, getCheckpointSQL, name).Scan(&c.Value, &c.UpdatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return plinth.Checkpoint{}, false, nil
	}
	if err != nil {
		return plinth.Checkpoint{}, false, err
	}
	if c.Value == nil {
		c.Value = []byte{}
	}
	c.UpdatedAt = c.UpdatedAt.UTC()
	return c, true, nil
}

func setCheckpoint(ctx context.Context, q execer, name string, value []byte) error {
	if name == "" {
		return fmt.Errorf("the checkpoint name is empty")
	}
	if value == nil {
		value = []byte{}
	}
	_, err := q.Exec(ctx, setCheckpointSQL, name, value, plinth.Now())
	return err
}
