package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// pipeTx is the transaction of Store.Write. It sends statements whose
// results nobody waits for — BEGIN, and what queue is given (the outbox's
// announcement and insert, the audit record, whose log id is read when the
// results come) — together with the next statement that needs an answer,
// in one round trip, instead of one round trip each. A create
// through the API (record, event, audit record) takes two round trips
// instead of five: BEGIN with the insert, then the event, the audit record
// (tx.AppendAuditAtCommit) and COMMIT.
//
// A queued statement that fails makes the statement sent with it fail
// too (the transaction is aborted either way), so its error reaches the
// caller before the transaction can commit. That holds for COMMIT: a
// round trip is one pipeline ending in one Sync, and after a failed
// statement the server skips the rest of it, COMMIT included.
type pipeTx struct {
	pool    *pgxpool.Pool
	conn    *pgxpool.Conn
	pending []*pgx.QueuedQuery // sent with the next round trip
	begun   bool               // BEGIN has been sent
	closed  bool
}

func beginPiped(ctx context.Context, pool *pgxpool.Pool) (*pipeTx, error) {
	c, err := pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	p := &pipeTx{pool: pool, conn: c}
	p.queue("begin")
	return p, nil
}

// queue adds a statement to send with the next round trip. Its result is
// discarded unless the caller sets a function to read it (the returned
// query's QueryRow, Query or Exec): that runs when the round trip's results
// are read, at the latest at COMMIT, and an error it returns fails the
// transaction as a failed statement does.
func (p *pipeTx) queue(sql string, args ...any) *pgx.QueuedQuery {
	q := &pgx.QueuedQuery{SQL: sql, Arguments: args}
	p.pending = append(p.pending, q)
	return q
}

// send sends the pending statements and then qs in one round trip, reads
// the pending statements' results and returns the rest for the caller to
// read and close. When a pending statement failed, every result of qs
// reports its error.
func (p *pipeTx) send(ctx context.Context, qs ...*pgx.QueuedQuery) pgx.BatchResults {
	b := &pgx.Batch{QueuedQueries: append(p.pending, qs...)}
	n := len(p.pending)
	p.pending = nil
	first := !p.begun
	p.begun = true
	for {
		br := p.conn.SendBatch(ctx, b)
		var err error
		for _, q := range b.QueuedQueries[:n] {
			if q.Fn != nil {
				err = q.Fn(br)
			} else {
				_, err = br.Exec()
			}
			if err != nil {
				br.Close()
				break
			}
		}
		if err == nil {
			return br
		}
		if first && pgconn.SafeToRetry(err) && ctx.Err() == nil {
			// The connection broke before the first round trip left
			// (the database restarted since it was last used): nothing
			// was sent, so the transaction starts again on another.
			first = false
			if err := p.replaceConn(ctx); err == nil {
				continue
			}
		}
		return failedBatch{fmt.Errorf("a statement sent ahead: %w", err)}
	}
}

// replaceConn closes the connection and takes another from the pool.
func (p *pipeTx) replaceConn(ctx context.Context) error {
	_ = p.conn.Conn().Close(ctx)
	p.conn.Release()
	c, err := p.pool.Acquire(ctx)
	if err != nil {
		p.conn = nil
		return err
	}
	p.conn = c
	return nil
}

// flush sends the pending statements on their own.
func (p *pipeTx) flush(ctx context.Context) error {
	if len(p.pending) == 0 {
		return nil
	}
	return p.send(ctx).Close()
}

func (p *pipeTx) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	if len(p.pending) == 0 {
		return p.conn.Exec(ctx, sql, args...)
	}
	br := p.send(ctx, &pgx.QueuedQuery{SQL: sql, Arguments: args})
	tag, err := br.Exec()
	return tag, errors.Join(err, br.Close())
}

func (p *pipeTx) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	if len(p.pending) == 0 {
		return p.conn.QueryRow(ctx, sql, args...)
	}
	br := p.send(ctx, &pgx.QueuedQuery{SQL: sql, Arguments: args})
	return batchRow{br.QueryRow(), br}
}

// Query sends the pending statements first (a separate round trip): the
// rows must be read before the batch can be closed.
func (p *pipeTx) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	if err := p.flush(ctx); err != nil {
		return nil, err
	}
	return p.conn.Query(ctx, sql, args...)
}

func (p *pipeTx) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	if len(p.pending) == 0 {
		return p.conn.SendBatch(ctx, b)
	}
	return p.send(ctx, b.QueuedQueries...)
}

func (p *pipeTx) CopyFrom(ctx context.Context, table pgx.Identifier, columns []string, src pgx.CopyFromSource) (int64, error) {
	if err := p.flush(ctx); err != nil {
		return 0, err
	}
	return p.conn.CopyFrom(ctx, table, columns, src)
}

// Commit sends COMMIT with whatever is still pending. A transaction that
// was given no statement has nothing to commit.
func (p *pipeTx) Commit(ctx context.Context) error {
	if p.closed {
		return pgx.ErrTxClosed
	}
	defer p.release(ctx)
	if !p.begun && len(p.pending) == 1 { // BEGIN alone
		return nil
	}
	tag, err := p.Exec(ctx, "commit")
	if err != nil {
		if p.conn.Conn().PgConn().TxStatus() == 'E' {
			// A statement sent with COMMIT failed, so COMMIT did not
			// run: end the transaction here and keep the connection.
			_, _ = p.conn.Exec(ctx, "rollback")
		}
		return err
	}
	if tag.String() == "ROLLBACK" {
		return pgx.ErrTxCommitRollback
	}
	return nil
}

// Rollback rolls back, or does nothing after Commit (so it can be
// deferred).
func (p *pipeTx) Rollback(ctx context.Context) error {
	if p.closed {
		return pgx.ErrTxClosed
	}
	defer p.release(ctx)
	p.pending = nil
	if !p.begun || p.conn == nil {
		return nil
	}
	_, err := p.conn.Exec(ctx, "rollback")
	return err
}

// release gives the connection back to the pool, closing it first when
// it was left inside a transaction (a failed COMMIT or ROLLBACK), as pgx's
// own transactions do.
func (p *pipeTx) release(ctx context.Context) {
	p.closed = true
	if p.conn == nil { // replaceConn found no other
		return
	}
	if p.begun && p.conn.Conn().PgConn().TxStatus() != 'I' {
		_ = p.conn.Conn().Close(ctx)
	}
	p.conn.Release()
}

// batchRow is a row read from a batch; Scan closes the batch.
type batchRow struct {
	row pgx.Row
	br  pgx.BatchResults
}

func (r batchRow) Scan(dest ...any) error {
	err := r.row.Scan(dest...)
	if cerr := r.br.Close(); err == nil {
		err = cerr
	}
	return err
}

// failedBatch answers every read with the error of a statement sent
// ahead.
type failedBatch struct{ err error }

func (f failedBatch) Exec() (pgconn.CommandTag, error) { return pgconn.CommandTag{}, f.err }
func (f failedBatch) Query() (pgx.Rows, error)         { return nil, f.err }
func (f failedBatch) QueryRow() pgx.Row                { return errRow{f.err} }
func (f failedBatch) Close() error                     { return f.err }
func (f failedBatch) Tx() pgx.Tx                       { return nil }

type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }
