// Package postgres is a plinth.Store on PostgreSQL, through pgx and its
// connection pool.
//
// Each domain gets a schema and each entity a table with one typed column
// per top-level field (see layout.go), so that the data is plain to SQL
// users, BI tools and DBAs. Prefix and contains filters compare a folded
// copy of the text (plinth.Fold, computed in Go on every write so that every
// store folds alike) held in a shadow column with a btree or a trigram
// index; array reach-in filters compare a text[] shadow column with a GIN
// index. Prepare creates and additively evolves the schema (see Plan) and
// refuses changes that would lose data.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/plinth-data/plinth"
)

// Store is a plinth.Store on PostgreSQL.
type Store struct {
	pool     *pgxpool.Pool
	where    string   // host:port, database and user, for messages
	password string   // to strip from error texts
	layouts  sync.Map // *plinth.Entity → *table
	// auditFloor is a log id below which the audit log holds no row and
	// never will again (see UnchainedAudit); 0 when unknown.
	auditFloor atomic.Int64
	// outboxFloor is the same for the outbox's unsent rows (see
	// PendingEvents), and outboxFloorSince when it was last forgotten.
	outboxFloor      atomic.Int64
	outboxFloorSince atomic.Int64 // unix nanoseconds
}

var _ plinth.Store = (*Store)(nil)

// defaultConnectTimeout bounds a connection attempt when the URL sets no
// connect_timeout.
const defaultConnectTimeout = 10 * time.Second

// Open connects to the database at url (postgres://user:password@host:port/db
// or a key=value connection string) and checks that it answers. Errors name
// the host, port, database and user, never the password; a server that
// cannot be reached gives an error wrapping plinth.ErrUnavailable.
func Open(ctx context.Context, url string) (*Store, error) {
	password := passwordOf(url)
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// Not wrapped: what pgx wraps may quote the URL, password and all.
		return nil, &redactedError{msg: "postgres: the connection URL is not valid (expected postgres://user:password@host:5432/database): " +
			redact(err.Error(), password)}
	}
	if cfg.ConnConfig.Password != "" {
		password = cfg.ConnConfig.Password
	}
	if !strings.Contains(url, "connect_timeout") {
		cfg.ConnConfig.ConnectTimeout = defaultConnectTimeout
	}
	s := &Store{where: describe(cfg), password: password}
	s.pool, err = pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, &redactedError{msg: fmt.Sprintf("postgres: cannot connect to %s: %s", s.where, s.cause(err))}
	}
	if err := s.pool.Ping(ctx); err != nil {
		s.pool.Close()
		return nil, s.connectError(err)
	}
	return s, nil
}

// describe names the server and database of a configuration.
func describe(cfg *pgxpool.Config) string {
	c := cfg.ConnConfig
	host := c.Host
	if !strings.HasPrefix(host, "/") {
		host += ":" + strconv.Itoa(int(c.Port))
	} else {
		host = "socket " + host
	}
	return fmt.Sprintf("PostgreSQL at %s, database %q, user %q", host, c.Database, c.User)
}

// connectError explains a failed connection without the password.
func (s *Store) connectError(err error) error {
	msg := fmt.Sprintf("postgres: cannot connect to %s: %s", s.where, s.cause(err))
	if unavailable(err) || errors.Is(err, context.DeadlineExceeded) {
		return &redactedError{msg: msg, err: plinth.ErrUnavailable}
	}
	return &redactedError{msg: msg}
}

// cause is the text of an error from pgx, short and without the password.
func (s *Store) cause(err error) string {
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		if inner := ce.Unwrap(); inner != nil {
			err = inner
		}
	}
	// pgx reports each attempt (TLS, then plain text; each address) on a
	// line of its own; say each distinct one once.
	var lines []string
	for _, line := range strings.Split(redact(err.Error(), s.password), "\n") {
		if line = strings.TrimSpace(line); line != "" && !slices.Contains(lines, line) {
			lines = append(lines, line)
		}
	}
	return strings.Join(lines, "; ")
}

// Pool returns the connection pool, for packages that keep more than
// records in the same database.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	return s.wrap("ping", s.pool.Ping(ctx))
}

// Close closes every connection.
func (s *Store) Close() error {
	s.pool.Close()
	return nil
}

// read runs fn, again once if the connection was lost before it answered:
// the pool replaces broken connections, so a read after a database restart
// succeeds instead of failing once per pooled connection.
func (s *Store) read(ctx context.Context, what string, fn func() error) error {
	err := fn()
	if err != nil && unavailable(err) && ctx.Err() == nil {
		err = fn()
	}
	return s.wrap(what, err)
}

// Get returns one record.
func (s *Store) Get(ctx context.Context, e *plinth.Entity, id any) (plinth.Record, error) {
	t := s.layout(e)
	var r plinth.Record
	form := readFormOf(ctx)
	err := s.read(ctx, t.getWhat, func() (err error) {
		r, err = t.get(ctx, s.pool, id, false, form)
		return err
	})
	return r, err
}

// readFormOf is the form a Get's context asks for.
func readFormOf(ctx context.Context) readForm {
	switch {
	case plinth.RecordJSONWanted(ctx):
		return readJSON
	case plinth.NestedJSONWanted(ctx):
		return readNested
	}
	return readDecoded
}

// querier is what a pool, a connection and a transaction share.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// readForm is the form a read gives its records in.
type readForm int

const (
	readDecoded readForm = iota // every value decoded
	readNested                  // object and array fields as JSON text (plinth.WithNestedJSON)
	readJSON                    // the record as the API's JSON (plinth.WithRecordJSON)
)

// get reads one record in the given form (a locked read always decodes).
func (t *table) get(ctx context.Context, q querier, id any, lock bool, form readForm) (plinth.Record, error) {
	k, ok := t.keyParam(id)
	if !ok {
		return plinth.Record{}, fmt.Errorf("%s %s: %w", t.e.Name, plinth.KeyString(id), plinth.ErrNotFound)
	}
	var r plinth.Record
	var err error
	if lock {
		r, err = t.scanner(form != readDecoded).record(q.QueryRow(ctx, t.getSQL+" FOR UPDATE", k))
	} else {
		r, err = t.readOne(ctx, q, t.getSQL, k, form)
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return plinth.Record{}, fmt.Errorf("%s %s: %w", t.e.Name, plinth.KeyString(id), plinth.ErrNotFound)
	}
	return r, err
}

// rawGets counts the Gets decoded from the binary wire form, so a test
// can tell that the fast path is taken.
var rawGets atomic.Int64

// readOne reads the row of sql (a select list of t) as a record, decoded
// from its binary wire form as lists and scans are (rawRecord), or written
// from it as the API's JSON (appendJSON), when the columns allow, through
// pgx's scan plans otherwise; pgx.ErrNoRows when there is none. The view
// route reads one row per request, and pgx's general per-column plans
// cost it more than the decoding itself.
func (t *table) readOne(ctx context.Context, q querier, sql string, k any, form readForm) (plinth.Record, error) {
	rows, err := q.Query(ctx, sql, k)
	if err != nil {
		return plinth.Record{}, err
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return plinth.Record{}, err
		}
		return plinth.Record{}, pgx.ErrNoRows
	}
	r, err := t.rowRecord(rows, form)
	if err != nil {
		return plinth.Record{}, err
	}
	// The row is decoded into memory of its own (rawRecord copies): the
	// rows can be closed, and an error after the row (the statement
	// failing late) must not be lost.
	rows.Close()
	if err := rows.Err(); err != nil {
		return plinth.Record{}, err
	}
	return r, nil
}

// rowRecord decodes the current row, whose columns start with t's select
// list, into a record of the given form (see readOne). The columns after
// the select list, if any, are scanned into tail.
func (t *table) rowRecord(rows pgx.Rows, form readForm, tail ...any) (plinth.Record, error) {
	sc := t.scanner(form != readDecoded)
	n := len(t.selectCols) + 3
	fds := rows.FieldDescriptions()
	if len(fds) != n+len(tail) {
		return plinth.Record{}, fmt.Errorf("a row of %d columns, not %d", len(fds), n+len(tail))
	}
	if !sc.rawDecodable(fds[:n]) {
		return sc.record(rowWithTail{rows, tail})
	}
	rawGets.Add(1)
	var r plinth.Record
	var err error
	if form == readJSON {
		var b []byte
		b, r, err = sc.appendJSON(make([]byte, 0, t.jsonRoom(rows.RawValues())), rows.RawValues())
		r.JSON = b
	} else {
		r, err = sc.rawRecord(rows.RawValues())
	}
	if err != nil || len(tail) == 0 {
		return r, err
	}
	// Scan skips the columns whose destination is nil.
	return r, rows.Scan(append(make([]any, n), tail...)...)
}

// rowWithTail scans a row into the destinations given and then tail.
type rowWithTail struct {
	rows pgx.Rows
	tail []any
}

func (r rowWithTail) Scan(dest ...any) error { return r.rows.Scan(append(dest, r.tail...)...) }

// jsonRoom is room enough, mostly, for the JSON of a row of raw values:
// the row's text and nested JSON with a quarter more for escapes and the
// spaces nested values gain, and the rest of the record (t.jsonFixed). A
// record that needs more grows its buffer.
func (t *table) jsonRoom(vals [][]byte) int {
	n := t.jsonFixed
	for i, c := range t.selectCols {
		if c.sqlType == typeText || c.sqlType == typeJSONB {
			n += len(vals[i]) + len(vals[i])/4
		}
	}
	return n
}

// List returns a page of records in key order.
func (s *Store) List(ctx context.Context, e *plinth.Entity, q plinth.Query) (plinth.Page, error) {
	t := s.layout(e)
	sql, args, limit, err := t.listSQL(q, false)
	if err != nil {
		return plinth.Page{}, err
	}
	var page plinth.Page
	err = s.read(ctx, t.listWhat, func() error {
		// The unnamed statement of QueryExecModeCacheDescribe is planned
		// for its values each time: how selective a filter value is
		// decides between its index and the key order, and a generic plan
		// cached for one value can be slow for another.
		rows, err := s.pool.Query(ctx, sql, append([]any{pgx.QueryExecModeCacheDescribe}, args...)...)
		if err != nil {
			return err
		}
		page, err = t.readPage(rows, q, limit)
		return err
	})
	if err != nil {
		return plinth.Page{}, err
	}
	return page, nil
}

// listSQL is List's query for q, its arguments and the page's size: the
// query reads one record more, to tell whether there are more. The limit
// is a parameter, or with literal written into the SQL: a prepared
// statement's generic plan cannot know a bound limit, so PostgreSQL would
// plan it afresh at every run.
func (t *table) listSQL(q plinth.Query, literal bool) (sql string, args []any, limit int, err error) {
	limit = q.Limit
	if limit <= 0 {
		limit = plinth.DefaultLimit
	}
	where, err := t.where(q.Conditions, &args)
	if err != nil {
		return "", nil, 0, fmt.Errorf("postgres: list %s: %w", t.label, err)
	}
	if q.After != nil {
		k, ok := t.keyParam(q.After)
		if !ok {
			return "", nil, 0, fmt.Errorf("postgres: list %s: the cursor key %v is not a key of %s", t.label, q.After, t.e.Name)
		}
		args = append(args, k)
		where = append(where, fmt.Sprintf("%s > $%d", t.key.ident(), len(args)))
	}
	sql = "SELECT " + t.selectList + " FROM " + t.ident
	if len(where) > 0 {
		sql += " WHERE " + strings.Join(where, " AND ")
	}
	if literal {
		return sql + fmt.Sprintf(" ORDER BY %s LIMIT %d", t.key.ident(), limit+1), args, limit, nil
	}
	args = append(args, limit+1)
	sql += fmt.Sprintf(" ORDER BY %s LIMIT $%d", t.key.ident(), len(args))
	return sql, args, limit, nil
}

// readPage reads the rows of a list query (listSQL's) into a page of at
// most limit records, and closes them. Rows without a key are passed
// over; the columns after the select list, if any, are scanned into tail.
func (t *table) readPage(rows pgx.Rows, q plinth.Query, limit int, tail ...any) (plinth.Page, error) {
	defer rows.Close()
	page := plinth.Page{Records: make([]plinth.Record, 0, limit+1)}
	n := len(t.selectCols) + 3
	if fds := rows.FieldDescriptions(); len(fds) != n+len(tail) {
		return plinth.Page{}, fmt.Errorf("a row of %d columns, not %d", len(fds), n+len(tail))
	}
	sc := t.scanner(q.NestedJSON || q.RecordJSON)
	raw := sc.rawDecodable(rows.FieldDescriptions()[:n])
	// With RecordJSON the records' JSON shares one buffer (the page's,
	// plinth.PageBuffer): each record's JSON stays valid when a later one
	// makes it grow.
	var text []byte
	if q.RecordJSON {
		page.Buffer = plinth.PageBuffer()
		text = *page.Buffer
		defer func() { *page.Buffer = text }()
	}
	for rows.Next() {
		vals := rows.RawValues()
		if vals[0] == nil { // the audited list's row for an empty page
			if err := rows.Scan(append(make([]any, n), tail...)...); err != nil {
				return plinth.Page{}, err
			}
			continue
		}
		var r plinth.Record
		var err error
		switch {
		case !raw:
			r, err = sc.record(rowWithTail{rows, tail})
		case q.RecordJSON:
			if room := t.jsonRoom(vals); cap(text)-len(text) < room {
				text = make([]byte, 0, max(2*cap(text), 2*room))
			}
			start := len(text)
			text, r, err = sc.appendJSON(text, vals)
			r.JSON = text[start:len(text):len(text)]
		default:
			r, err = sc.rawRecord(vals)
		}
		if err == nil && raw && len(tail) > 0 {
			err = rows.Scan(append(make([]any, n), tail...)...)
		}
		if err != nil {
			return plinth.Page{}, err
		}
		page.Records = append(page.Records, r)
	}
	if err := rows.Err(); err != nil {
		return plinth.Page{}, err
	}
	if len(page.Records) > limit {
		page.Records = page.Records[:limit]
		page.More = true
	}
	return page, nil
}

// where turns conditions into SQL, appending their parameters to args.
// Conditions on the same array filter must hold for the same item.
func (t *table) where(conds []plinth.Condition, args *[]any) ([]string, error) {
	arg := func(v any) string {
		*args = append(*args, v)
		return "$" + strconv.Itoa(len(*args))
	}
	var out []string
	ranges := map[*plinth.Filter][]string{} // array range conditions, by filter
	var rangeOrder []*plinth.Filter
	for _, c := range conds {
		f := c.Filter
		if f == nil || f.Field == nil {
			return nil, fmt.Errorf("a condition has no filter")
		}
		if s, ok := c.Value.(string); ok && strings.IndexByte(s, 0) >= 0 {
			return nil, &plinth.ValidationError{Errors: []plinth.FieldError{{Parameter: f.Param,
				Detail: "must not contain the character U+0000 (NUL)"}}}
		}
		if f.Array == nil {
			col := t.byField[f.Field.Name]
			if col == nil {
				return nil, fmt.Errorf("filter %q: field %q is not a field of %s", f.Param, f.Field.Name, t.e.Name)
			}
			switch c.Op {
			case plinth.OpEqual, plinth.OpGTE, plinth.OpLTE:
				v, err := encode(f.Field, c.Value)
				if err != nil {
					return nil, fmt.Errorf("filter %q: %w", f.Param, err)
				}
				op := map[plinth.Op]string{plinth.OpEqual: "=", plinth.OpGTE: ">=", plinth.OpLTE: "<="}[c.Op]
				out = append(out, fmt.Sprintf("%s %s %s", col.ident(), op, arg(v)))
			case plinth.OpPrefix, plinth.OpContains:
				fold := t.foldOf[f.Field.Name]
				s, _ := c.Value.(string)
				if fold == nil {
					return nil, fmt.Errorf("filter %q does not match by prefix or contains", f.Param)
				}
				if c.Op == plinth.OpPrefix {
					cond := fmt.Sprintf("%s >= %s", fold.ident(), arg(s))
					if next, ok := successor(s); ok {
						cond += fmt.Sprintf(" AND %s < %s", fold.ident(), arg(next))
					}
					out = append(out, cond)
				} else {
					out = append(out, fmt.Sprintf("%s LIKE %s", fold.ident(), arg("%"+escapeLike(s)+"%")))
				}
			default:
				return nil, fmt.Errorf("filter %q: unknown comparison %q", f.Param, c.Op)
			}
			continue
		}
		// Array reach-in.
		if f.Match == plinth.MatchRange {
			v, err := encode(f.Field, c.Value)
			if err != nil {
				return nil, fmt.Errorf("filter %q: %w", f.Param, err)
			}
			op := map[plinth.Op]string{plinth.OpEqual: "=", plinth.OpGTE: ">=", plinth.OpLTE: "<="}[c.Op]
			if op == "" {
				return nil, fmt.Errorf("filter %q: unknown comparison %q", f.Param, c.Op)
			}
			if ranges[f] == nil {
				rangeOrder = append(rangeOrder, f)
			}
			ranges[f] = append(ranges[f], fmt.Sprintf("(e->>%s)::%s %s %s", literal(f.Field.Name), sqlType(f.Field), op, arg(v)))
			continue
		}
		vals := t.valuesOf[f.Param]
		if vals == nil {
			return nil, fmt.Errorf("filter %q is not a filter of %s", f.Param, t.e.Name)
		}
		s, ok := text(c.Value)
		if !ok {
			return nil, fmt.Errorf("filter %q: cannot compare %T", f.Param, c.Value)
		}
		switch c.Op {
		case plinth.OpEqual:
			out = append(out, fmt.Sprintf("%s @> ARRAY[%s::text]", vals.ident(), arg(s)))
		case plinth.OpPrefix:
			out = append(out, fmt.Sprintf("EXISTS (SELECT 1 FROM unnest(%s) AS v WHERE starts_with(v, %s))", vals.ident(), arg(s)))
		case plinth.OpContains:
			out = append(out, fmt.Sprintf("EXISTS (SELECT 1 FROM unnest(%s) AS v WHERE strpos(v, %s) > 0)", vals.ident(), arg(s)))
		default:
			return nil, fmt.Errorf("filter %q: unknown comparison %q", f.Param, c.Op)
		}
	}
	for _, f := range rangeOrder {
		arr := t.byField[f.Array.Name]
		out = append(out, fmt.Sprintf("EXISTS (SELECT 1 FROM jsonb_array_elements(CASE WHEN jsonb_typeof(%s) = 'array' THEN %s END) AS e WHERE jsonb_typeof(e) = 'object' AND %s)",
			arr.ident(), arr.ident(), strings.Join(ranges[f], " AND ")))
	}
	return out, nil
}

// successor returns the least string greater than every string with the
// prefix p, in byte (and so code point) order; false when there is none.
func successor(p string) (string, bool) {
	r := []rune(p)
	for i := len(r) - 1; i >= 0; i-- {
		next := r[i] + 1
		if next >= 0xD800 && next <= 0xDFFF {
			next = 0xE000
		}
		if next <= 0x10FFFF {
			return string(r[:i]) + string(next), true
		}
	}
	return "", false
}

// escapeLike escapes the LIKE wildcards (with the default escape, \).
func escapeLike(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

// Count returns how many records the entity has.
func (s *Store) Count(ctx context.Context, e *plinth.Entity) (int64, error) {
	t := s.layout(e)
	var n int64
	err := s.read(ctx, "count "+t.label, func() error {
		return s.pool.QueryRow(ctx, "SELECT count(*) FROM "+t.ident).Scan(&n)
	})
	return n, err
}

// Write runs fn in one transaction.
func (s *Store) Write(ctx context.Context, fn func(plinth.Tx) error) error {
	ptx, err := beginPiped(ctx, s.pool)
	if err != nil && unavailable(err) && ctx.Err() == nil {
		ptx, err = beginPiped(ctx, s.pool) // nothing was done yet: safe to try again
	}
	if err != nil {
		return s.wrap("write: begin a transaction", err)
	}
	x := &tx{s: s, tx: ptx}
	defer x.endAudit() // after the rollback below: deferred calls run last first
	defer ptx.Rollback(context.WithoutCancel(ctx))
	if err := fn(x); err != nil {
		return err
	}
	return s.wrap("commit", ptx.Commit(ctx))
}

type tx struct {
	s  *Store
	tx *pipeTx

	// Whether AppendAudit has announced this transaction to the chainer
	// (see audit.go).
	auditLocked bool

	// Whether AppendEvent has announced this transaction (see outbox.go).
	announced bool
}

func (x *tx) Get(ctx context.Context, e *plinth.Entity, id any) (plinth.Record, error) {
	t := x.s.layout(e)
	r, err := t.get(ctx, x.tx, id, true, readDecoded)
	return r, x.s.wrap("get "+t.label, err)
}

func (x *tx) Insert(ctx context.Context, e *plinth.Entity, data map[string]any) (plinth.Record, error) {
	t := x.s.layout(e)
	r, err := t.insert(ctx, x.tx, data)
	return r, x.s.wrap("insert into "+t.label, err)
}

func (t *table) insert(ctx context.Context, q writer, data map[string]any) (plinth.Record, error) {
	e := t.e
	out := make(map[string]any, len(data)+1)
	for k, v := range data {
		if v != nil {
			out[k] = v
		}
	}
	key, hasKey := out[e.Key.Name]
	if hasKey {
		key = t.canonicalKey(key)
		out[e.Key.Name] = key
	}
	switch {
	case !hasKey && e.Key.Generated && e.Key.Type == plinth.KeyUUID:
		// Version 7, as on every store: keys grow with time, so new rows
		// go to the end of the key index.
		u, err := uuid.NewV7()
		if err != nil {
			return plinth.Record{}, err
		}
		key = u.String()
		out[e.Key.Name] = key
		hasKey = true
	case !hasKey && !e.Key.Generated:
		return plinth.Record{}, fmt.Errorf("%s: the key %q is missing", e.Name, e.Key.Name)
	}
	row, err := t.row(out)
	if err != nil {
		return plinth.Record{}, err
	}
	now := plinth.Now()
	sql := t.insertKey
	if !hasKey {
		sql, row = t.insertNoKey, row[1:]
	}
	row = append(row, int64(1), now, now)
	var k any
	switch e.Key.Type {
	case plinth.KeyInteger:
		var n int64
		err = q.QueryRow(ctx, sql, row...).Scan(&n)
		k = n
	default:
		var s string
		err = q.QueryRow(ctx, sql+"::text", row...).Scan(&s)
		k = s
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return plinth.Record{}, fmt.Errorf("%s %s: %w", e.Name, plinth.KeyString(key), plinth.ErrConflict)
	}
	if err != nil {
		return plinth.Record{}, err
	}
	if hasKey && e.Key.Generated && e.Key.Type == plinth.KeyInteger {
		// An explicit key for an identity column (a migration keeping
		// legacy ids): move the identity past it.
		if _, err := q.Exec(ctx, t.bumpSequence, k); err != nil {
			return plinth.Record{}, err
		}
	}
	out[e.Key.Name] = k
	return plinth.Record{Data: out, Version: 1, CreatedAt: now, UpdatedAt: now}, nil
}

func (x *tx) Update(ctx context.Context, e *plinth.Entity, id any, version int64, data map[string]any) (plinth.Record, error) {
	t := x.s.layout(e)
	r, err := t.updateRecord(ctx, x.tx, id, version, data)
	return r, x.s.wrap("update "+t.label, err)
}

func (t *table) updateRecord(ctx context.Context, q writer, id any, version int64, data map[string]any) (plinth.Record, error) {
	e := t.e
	k, ok := t.keyParam(id)
	if !ok {
		return plinth.Record{}, fmt.Errorf("%s %s: %w", e.Name, plinth.KeyString(id), plinth.ErrNotFound)
	}
	out := make(map[string]any, len(data)+1)
	for name, v := range data {
		if v != nil {
			out[name] = v
		}
	}
	out[e.Key.Name] = t.canonicalKey(id)
	row, err := t.row(out)
	if err != nil {
		return plinth.Record{}, err
	}
	now := plinth.Now()
	row[0] = k
	row = append(row, now, version)
	r := plinth.Record{Data: out, UpdatedAt: now}
	err = q.QueryRow(ctx, t.update, row...).Scan(&r.Version, &r.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return plinth.Record{}, t.missing(ctx, q, id, k, version)
	}
	if err != nil {
		return plinth.Record{}, err
	}
	r.CreatedAt = r.CreatedAt.UTC()
	return r, nil
}

// missing explains why no row had the key and version: ErrNotFound or
// ErrVersionConflict.
func (t *table) missing(ctx context.Context, q writer, id, k any, version int64) error {
	var current int64
	err := q.QueryRow(ctx, "SELECT version FROM "+t.ident+" WHERE "+t.key.ident()+" = $1", k).Scan(&current)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return fmt.Errorf("%s %s: %w", t.e.Name, plinth.KeyString(id), plinth.ErrNotFound)
	case err != nil:
		return err
	}
	return fmt.Errorf("%s %s is at version %d, not %d: %w", t.e.Name, plinth.KeyString(id), current, version, plinth.ErrVersionConflict)
}

func (x *tx) Delete(ctx context.Context, e *plinth.Entity, id any, version int64) error {
	t := x.s.layout(e)
	k, ok := t.keyParam(id)
	if !ok {
		return fmt.Errorf("%s %s: %w", e.Name, plinth.KeyString(id), plinth.ErrNotFound)
	}
	tag, err := x.tx.Exec(ctx, t.delete, k, version, plinth.Now())
	if err == nil && tag.RowsAffected() == 0 {
		err = t.missing(ctx, x.tx, id, k, version)
	}
	return x.s.wrap("delete from "+t.label, err)
}

func withValue(d map[string]any, k string, v any) map[string]any {
	out := make(map[string]any, len(d)+1)
	for name, x := range d {
		out[name] = x
	}
	out[k] = v
	return out
}
