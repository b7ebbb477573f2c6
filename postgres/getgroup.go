package postgres

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/plinth-data/plinth"
)

// Concurrent Gets of one table share queries. Every query costs a round
// trip, and on virtual machines the system calls that wake a sleeping
// PostgreSQL backend and then the waiting goroutine cost far more than
// reading a row by its key (a view's write to the server alone was a fifth
// of serve's CPU). So while getsInFlight queries of a table are running,
// further Gets of it wait, and the next query reads all of their rows at
// once (WHERE key = ANY, as a join on unnest … WITH ORDINALITY so that each
// row names the Get it answers). A Get that finds a query free runs its own
// at once, as before: a lone request waits for nothing. A grouped Get
// reads what every Get reads, only sooner or later within the same wait,
// and its snapshot is taken after it arrived, so it sees every write
// committed before it began.

// getsInFlight is how many queries of one table's Gets run at once before
// further Gets wait to share the next one: half the pool's connections
// (the rest serve lists, writes and the audit), at least two.
func getsInFlight(poolSize int32) int { return max(2, int(poolSize)/2) }

// maxGetGroup bounds the keys one shared query reads.
const maxGetGroup = 64

// getGroupTimeout bounds a shared query, which no one caller's context
// may cancel: the callers waiting for it stop waiting when their own
// context ends.
const getGroupTimeout = 30 * time.Second

// sharedGets counts shared queries, so a test can tell they ran.
var sharedGets atomic.Int64

// getGroup gathers a table's waiting Gets.
type getGroup struct {
	limit   int // getsInFlight
	mu      sync.Mutex
	running int        // queries running for this table's Gets
	waiting []*getCall // Gets waiting for the next shared query
}

// getCall is one Get waiting for a shared query.
type getCall struct {
	key  any // the key as keyParam encodes it
	done chan struct{}
	// Set before done is closed:
	fds  []pgconn.FieldDescription // the columns after the ordinal
	vals [][]byte                  // the row (owned), or nil: no such key
	err  error
}

// groupedGet reads one record by its encoded key k, sharing a query with
// concurrent Gets of the table when getsInFlight are running already.
func (t *table) groupedGet(ctx context.Context, pool querier, k any, form readForm) (plinth.Record, error) {
	g := &t.gets
	g.mu.Lock()
	if g.running < max(g.limit, 1) {
		g.running++
		g.mu.Unlock()
		r, err := t.readOne(ctx, pool, t.getSQL, k, form)
		t.runWaiting(pool)
		return r, err
	}
	c := &getCall{key: k, done: make(chan struct{})}
	g.waiting = append(g.waiting, c)
	g.mu.Unlock()
	select {
	case <-c.done:
	case <-ctx.Done():
		// The shared query still runs; its answer for c is dropped.
		return plinth.Record{}, ctx.Err()
	}
	if c.err != nil {
		return plinth.Record{}, c.err
	}
	if c.vals == nil {
		return plinth.Record{}, pgx.ErrNoRows
	}
	r, ok, err := t.decodeRow(c.fds, c.vals, form)
	if !ok { // not the binary form expected: read it alone, through pgx
		return t.readOne(ctx, pool, t.getSQL, k, form)
	}
	return r, err
}

// runWaiting is called as one of the table's queries ends: it starts a
// shared query for the Gets that have waited meanwhile, or frees the slot.
func (t *table) runWaiting(pool querier) {
	g := &t.gets
	g.mu.Lock()
	if len(g.waiting) == 0 {
		g.running--
		g.mu.Unlock()
		return
	}
	n := min(len(g.waiting), maxGetGroup)
	calls := g.waiting[:n:n]
	g.waiting = g.waiting[n:]
	if len(g.waiting) == 0 {
		g.waiting = nil
	}
	g.mu.Unlock()
	go func() {
		t.getShared(pool, calls)
		t.runWaiting(pool)
	}()
}

// getShared reads the rows of calls in one query and hands each its row.
func (t *table) getShared(pool querier, calls []*getCall) {
	ctx, cancel := context.WithTimeout(context.Background(), getGroupTimeout)
	defer cancel()
	err := t.readShared(ctx, pool, calls)
	for _, c := range calls {
		if err != nil {
			c.vals, c.err = nil, err
		}
		close(c.done)
	}
}

func (t *table) readShared(ctx context.Context, pool querier, calls []*getCall) error {
	keys, err := t.groupKeys(calls)
	if err != nil {
		return err
	}
	sharedGets.Add(1)
	rows, err := pool.Query(ctx, t.groupGetSQL, keys)
	if err != nil {
		return err
	}
	defer rows.Close()
	var fds []pgconn.FieldDescription
	for rows.Next() {
		if fds == nil {
			fds = rows.FieldDescriptions()[1:]
		}
		vals := rows.RawValues()
		if len(vals[0]) != 8 || rows.FieldDescriptions()[0].Format != pgx.BinaryFormatCode {
			return errBadBinary
		}
		i := int64(binary.BigEndian.Uint64(vals[0]))
		if i < 1 || i > int64(len(calls)) {
			return fmt.Errorf("a shared read returned the row of Get %d of %d", i, len(calls))
		}
		calls[i-1].vals = ownRow(vals[1:])
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, c := range calls {
		c.fds = fds
	}
	return nil
}

// groupKeys are the calls' keys as the shared query's array parameter,
// of the key column's type (bigint, uuid or text: the three key types).
func (t *table) groupKeys(calls []*getCall) (any, error) {
	switch t.key.sqlType {
	case typeBigint:
		return keysOf[int64](calls)
	case typeUUID:
		return keysOf[pgtype.UUID](calls)
	}
	return keysOf[string](calls)
}

func keysOf[K any](calls []*getCall) ([]K, error) {
	keys := make([]K, len(calls))
	for i, c := range calls {
		k, ok := c.key.(K)
		if !ok {
			return nil, fmt.Errorf("a key encoded as %T, not %T", c.key, k)
		}
		keys[i] = k
	}
	return keys, nil
}

// groupGetQuery is the shared query of a table's Gets: the ordinal of each
// key in $1, then the select list, for the keys that have a row.
func (t *table) groupGetQuery(sel []string) string {
	q := "SELECT u.i"
	for _, c := range sel {
		q += ", x." + c
	}
	return q + " FROM unnest($1::" + t.key.sqlType + "[]) WITH ORDINALITY AS u(k, i) JOIN " + t.ident +
		" AS x ON x." + t.key.ident() + " = u.k"
}

// ownRow copies a row's raw values into memory of its own.
func ownRow(vals [][]byte) [][]byte {
	size := 0
	for _, v := range vals {
		size += len(v)
	}
	buf := make([]byte, 0, size)
	out := make([][]byte, len(vals))
	for i, v := range vals {
		if v == nil {
			continue
		}
		start := len(buf)
		buf = append(buf, v...)
		out[i] = buf[start:len(buf):len(buf)]
	}
	return out
}

// decodeRow decodes a row a shared query read, as readOne decodes its
// own; false when its columns are not in the binary form rawRecord needs.
func (t *table) decodeRow(fds []pgconn.FieldDescription, vals [][]byte, form readForm) (plinth.Record, bool, error) {
	sc := t.scanner(form != readDecoded)
	if !sc.rawDecodable(fds) {
		return plinth.Record{}, false, nil
	}
	if form == readJSON {
		b, r, err := sc.appendJSON(make([]byte, 0, t.jsonRoom(vals)), vals)
		r.JSON = b
		return r, true, err
	}
	r, err := sc.rawRecord(vals)
	return r, true, err
}
