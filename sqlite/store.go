// Package sqlite is a plinth.Store on an SQLite database file (through the
// pure-Go modernc.org/sqlite driver), for development, tests and small
// single-machine deployments.
//
// Each entity is a table named {domain}__{plural}, with one column per
// top-level scalar field, object and array fields as JSON text, and the
// system columns version, created_at and updated_at. Filters are served by
// indexes, by folded shadow columns ({column}__fold) for prefix and
// contains filters, and by side tables ({table}__{param}) for filters that
// reach into arrays of objects. All of them are maintained in the same
// transaction as the record.
//
// SQLite allows one writer at a time, so the store writes through a single
// connection whose transactions start with BEGIN IMMEDIATE, and reads
// through a pool of read-only connections; in WAL mode readers never wait
// for the writer.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/plinth-data/plinth"
)

// busyTimeoutMS is how long a connection waits for a lock held by another
// process before reporting the database busy.
const busyTimeoutMS = 5000

// Store is a plinth.Store on one SQLite database file. It is safe for
// concurrent use.
type Store struct {
	path   string
	write  *sql.DB    // exactly one connection: SQLite has a single writer
	read   *sql.DB    // several read-only connections
	rstmts *stmtCache // prepared reads
	wstmts *stmtCache // prepared writes, on the writer's connection
	// missed holds writes prepared inside a transaction that wstmts does
	// not have yet; begin prepares them on the writer while it is free.
	missedMu sync.Mutex
	missed   []string

	// Group commit (group.go): whose turn it is, and the open group
	// (touched only by the Write holding the turn).
	turns  turns
	open   *group
	tables sync.Map // *plinth.Entity → *table
	// outboxFloor is the least sequence that may be unsent; outboxBusy
	// says the last poll found events (PendingEvents).
	outboxFloor atomic.Int64
	outboxBusy  atomic.Bool
}

var _ plinth.Store = (*Store)(nil)

// Open opens (creating it and its directory when needed) the database file
// at path.
func Open(ctx context.Context, path string) (*Store, error) {
	if path == "" {
		return nil, errors.New("sqlite: open: the database path is empty")
	}
	if strings.ContainsRune(path, '?') {
		return nil, fmt.Errorf("sqlite: open %s: the path must not contain '?'", path)
	}
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
		}
	}
	// The database holds personal data: create it readable by its owner
	// only. SQLite gives the -wal and -shm files the database's mode.
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	f.Close()
	common := fmt.Sprintf("_pragma=busy_timeout(%d)&_pragma=foreign_keys(1)", busyTimeoutMS)
	// The writer opens first so that the file exists in WAL mode before any
	// reader connects. BEGIN IMMEDIATE takes the write lock at the start of
	// every transaction, so a Tx.Get followed by Tx.Update cannot interleave
	// with another writer.
	// temp_store(MEMORY) keeps the writer's sub-journal (the pages a
	// savepoint changed, so that one write of a group can be rolled back:
	// group.go) in memory: SQLite spills it to a temporary file past 64 KB
	// otherwise, a pwrite per page. It is never needed after a crash (the
	// WAL holds only committed transactions), so durability is unchanged.
	write, err := sql.Open("sqlite", path+"?"+common+"&_pragma=journal_mode(WAL)&_pragma=temp_store(2)&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	write.SetMaxOpenConns(1)
	write.SetMaxIdleConns(1)
	write.SetConnMaxIdleTime(0)
	write.SetConnMaxLifetime(0)
	if err := write.PingContext(ctx); err != nil {
		write.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	read, err := sql.Open("sqlite", path+"?"+common+"&_pragma=query_only(1)")
	if err != nil {
		write.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	n := max(4, runtime.GOMAXPROCS(0))
	read.SetMaxOpenConns(n)
	read.SetMaxIdleConns(n)
	s := &Store{path: path, write: write, read: read, rstmts: newStmtCache(read), wstmts: newStmtCache(write)}
	if err := s.Ping(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Ping checks that the database answers reads.
func (s *Store) Ping(ctx context.Context) error {
	var one int
	if err := s.read.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
		return fail("ping", err)
	}
	return nil
}

// Close closes the database. It first lets SQLite refresh the statistics
// its query planner uses, which is cheap when nothing changed.
func (s *Store) Close() error {
	s.rstmts.close()
	s.wstmts.close()
	_, _ = s.write.Exec("PRAGMA optimize")
	return errors.Join(s.read.Close(), s.write.Close())
}

func (s *Store) begin(ctx context.Context) (*tx, error) {
	s.prepareMissed(ctx)
	t, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return nil, fail("begin transaction", err)
	}
	return &tx{s: s, tx: t, stmts: map[string]*sql.Stmt{}}, nil
}

// tx is a write transaction; it implements plinth.Tx.
type tx struct {
	s     *Store
	tx    *sql.Tx
	stmts map[string]*sql.Stmt // statements bound to this transaction
	seq   int64                // the change number, once drawn (see changes.go)
}

// stmt returns the prepared statement for query bound to this
// transaction. A statement cannot be prepared on the database while the
// transaction holds the writer's only connection, so the first use of a
// query prepares it on the transaction and notes it; the next begin
// prepares it on the database, and later transactions reuse that (no
// parsing: preparing was a tenth of the writer's CPU).
func (x *tx) stmt(ctx context.Context, query string) (*sql.Stmt, error) {
	if st, ok := x.stmts[query]; ok {
		return st, nil
	}
	var st *sql.Stmt
	if shared := x.s.wstmts.lookup(query); shared != nil {
		st = x.tx.StmtContext(ctx, shared)
	} else {
		var err error
		if st, err = x.tx.PrepareContext(ctx, query); err != nil {
			return nil, err
		}
		x.s.noteMissed(query)
	}
	x.stmts[query] = st
	return st, nil
}

func (s *Store) noteMissed(query string) {
	s.missedMu.Lock()
	s.missed = append(s.missed, query)
	s.missedMu.Unlock()
}

// prepareMissed prepares the writes noted by noteMissed on the writer's
// connection. A failure only means the query is prepared per transaction
// once more.
func (s *Store) prepareMissed(ctx context.Context) {
	s.missedMu.Lock()
	missed := s.missed
	s.missed = nil
	s.missedMu.Unlock()
	for _, q := range missed {
		_, _ = s.wstmts.get(ctx, q)
	}
}

// stmtCache keeps prepared statements by their SQL. Lists with many
// different filter combinations could make many statements, so the cache
// is bounded; beyond the bound statements are prepared per use.
type stmtCache struct {
	db *sql.DB
	mu sync.Mutex
	m  map[string]*sql.Stmt
}

const maxCachedStmts = 512

func newStmtCache(db *sql.DB) *stmtCache { return &stmtCache{db: db, m: map[string]*sql.Stmt{}} }

// get returns the cached statement for query, or nil when the cache is
// full. It prepares without holding the lock: preparing waits for a
// connection, which may be held by a caller of lookup.
func (c *stmtCache) get(ctx context.Context, query string) (*sql.Stmt, error) {
	c.mu.Lock()
	st, ok := c.m[query]
	full := len(c.m) >= maxCachedStmts
	c.mu.Unlock()
	if ok || full {
		return st, nil
	}
	st, err := c.db.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if had, ok := c.m[query]; ok { // prepared meanwhile by another caller
		st.Close()
		return had, nil
	}
	c.m[query] = st
	return st, nil
}

// lookup returns the cached statement for query, or nil.
func (c *stmtCache) lookup(query string) *sql.Stmt {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[query]
}

// close closes every cached statement.
func (c *stmtCache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for q, st := range c.m {
		st.Close()
		delete(c.m, q)
	}
}

// query runs a read on the read pool through a cached statement.
func (s *Store) query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	st, err := s.rstmts.get(ctx, query)
	if err != nil {
		return nil, err
	}
	if st == nil {
		return s.read.QueryContext(ctx, query, args...)
	}
	return st.QueryContext(ctx, args...)
}

// fail wraps a driver error with what was being done, marking lock
// timeouts as plinth.ErrUnavailable.
func fail(op string, err error) error {
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff {
		case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED:
			return fmt.Errorf("sqlite: %s: %w: %w", op, plinth.ErrUnavailable, err)
		}
	}
	return fmt.Errorf("sqlite: %s: %w", op, err)
}

// isKeyConflict reports whether err is a primary key violation.
func isKeyConflict(err error) bool {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return false
	}
	c := se.Code()
	return c == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY || c == sqlite3.SQLITE_CONSTRAINT_UNIQUE
}

// limitSQL is a LIMIT clause with n written out. SQLite reads the value
// of a bound LIMIT parameter when it plans the query, and so marks the
// statement to be prepared again whenever the parameter is bound again:
// "LIMIT ?" parsed and planned a cached statement on every run (a tenth of
// serve's CPU on lists). n is an int, so writing it into the SQL is safe;
// each limit is its own cached statement.
func limitSQL(n int) string { return " LIMIT " + strconv.Itoa(n) }

// quote quotes an SQL identifier.
func quote(name string) string { return `"` + strings.ReplaceAll(name, `"`, `""`) + `"` }
