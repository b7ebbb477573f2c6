package legacy

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// Source is a connection to a legacy database, read only. The database/sql
// drivers are registered by the binary (cmd/plinth) and the tests:
// "mysql" (go-sql-driver/mysql) for MariaDB and MySQL, "pgx" for
// PostgreSQL, "sqlserver" for SQL Server.
type Source struct {
	DB   *sql.DB
	Kind Kind
	// Name is the database (schema) the source's tables are in.
	Name string
}

// DriverName is the database/sql driver of a kind.
func DriverName(k Kind) string {
	switch k {
	case KindMariaDB, KindMySQL:
		return "mysql"
	case KindPostgres:
		return "pgx"
	case KindSQLServer:
		return "sqlserver"
	}
	return ""
}

// KindOfURL says which kind of source a URL names.
func KindOfURL(u string) (Kind, error) {
	scheme, _, ok := strings.Cut(u, "://")
	if ok {
		switch scheme {
		case "mysql":
			return KindMySQL, nil
		case "mariadb":
			return KindMariaDB, nil
		case "postgres", "postgresql":
			return KindPostgres, nil
		case "sqlserver":
			return KindSQLServer, nil
		}
	}
	return "", fmt.Errorf("the source %s is not a URL of mariadb://, mysql://, postgres:// or sqlserver://", Redact(u))
}

// Redact hides the password in a URL, for messages and logs.
func Redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(a connection string that does not parse)"
	}
	if _, has := u.User.Password(); has {
		return strings.Replace(u.Redacted(), ":xxxxx@", ":***@", 1)
	}
	return u.String()
}

// ConnectionURL reads the connection string the mapping names from the
// environment.
func (m *Mapping) ConnectionURL() (string, error) {
	v := os.Getenv(m.Connection)
	if v == "" {
		return "", fmt.Errorf("%s: set the environment variable %s to the source's connection URL (%s://user@host/database)", m.File, m.Connection, m.Kind)
	}
	return v, nil
}

// Open connects to the source at a URL (mariadb://, mysql://, postgres://,
// sqlserver://). Errors never show the password.
func Open(ctx context.Context, rawURL string) (*Source, error) {
	kind, err := KindOfURL(rawURL)
	if err != nil {
		return nil, err
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("the source URL does not parse")
	}
	dsn, name := rawURL, strings.TrimPrefix(u.Path, "/")
	switch kind {
	case KindMariaDB, KindMySQL:
		dsn = mysqlDSN(u)
	case KindPostgres:
		u.Scheme = "postgres"
		dsn = u.String()
	case KindSQLServer:
		name = u.Query().Get("database")
	}
	db, err := sql.Open(DriverName(kind), dsn)
	if err != nil {
		return nil, fmt.Errorf("opening the source %s: %w", Redact(rawURL), err)
	}
	pctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := db.PingContext(pctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("connecting to the source %s: %s", Redact(rawURL), scrub(err.Error(), u))
	}
	if kind == KindPostgres && name == "" {
		_ = db.QueryRowContext(ctx, "SELECT current_database()").Scan(&name)
	}
	return &Source{DB: db, Kind: kind, Name: name}, nil
}

// scrub removes a password from a driver's message.
func scrub(msg string, u *url.URL) string {
	if p, ok := u.User.Password(); ok && p != "" {
		msg = strings.ReplaceAll(msg, p, "***")
	}
	return msg
}

// mysqlDSN turns mysql://user:pass@host:port/db?x=y into the driver's
// user:pass@tcp(host:port)/db?x=y, with times parsed and UTF-8 text.
func mysqlDSN(u *url.URL) string {
	var b strings.Builder
	if u.User != nil {
		b.WriteString(u.User.Username())
		if p, ok := u.User.Password(); ok {
			b.WriteString(":" + p)
		}
		b.WriteString("@")
	}
	host := u.Host
	if u.Port() == "" {
		host += ":3306"
	}
	fmt.Fprintf(&b, "tcp(%s)/%s", host, strings.TrimPrefix(u.Path, "/"))
	q := u.Query()
	q.Set("parseTime", "true")
	q.Set("loc", "UTC")
	// Bind parameters client-side: one round trip per query instead of
	// prepare, execute and close.
	q.Set("interpolateParams", "true")
	if q.Get("charset") == "" {
		q.Set("charset", "utf8mb4")
	}
	b.WriteString("?" + q.Encode())
	return b.String()
}

// Close closes the connection pool.
func (s *Source) Close() error { return s.DB.Close() }

// quote quotes an identifier for the source's dialect.
func (s *Source) quote(name string) string {
	switch s.Kind {
	case KindMariaDB, KindMySQL:
		return "`" + strings.ReplaceAll(name, "`", "``") + "`"
	case KindSQLServer:
		return "[" + strings.ReplaceAll(name, "]", "]]") + "]"
	}
	return `"` + strings.ReplaceAll(name, `"`, `""`) + `"`
}

// placeholder is the n-th (from 1) bind parameter.
func (s *Source) placeholder(n int) string {
	switch s.Kind {
	case KindPostgres:
		return "$" + strconv.Itoa(n)
	case KindSQLServer:
		return "@p" + strconv.Itoa(n)
	}
	return "?"
}

// querier is a snapshot's connection or transaction.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// Snapshot reads the source as of one moment: every query sees the same
// committed state (MariaDB/MySQL: START TRANSACTION WITH CONSISTENT
// SNAPSHOT; PostgreSQL: REPEATABLE READ READ ONLY; SQL Server: SNAPSHOT
// isolation). It never writes.
type Snapshot struct {
	src  *Source
	conn *sql.Conn
	tx   *sql.Tx
	q    querier
}

// Snapshot starts a consistent read.
func (s *Source) Snapshot(ctx context.Context) (*Snapshot, error) {
	conn, err := s.DB.Conn(ctx)
	if err != nil {
		return nil, err
	}
	snap := &Snapshot{src: s, conn: conn}
	switch s.Kind {
	case KindMariaDB, KindMySQL:
		if _, err = conn.ExecContext(ctx, "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ"); err == nil {
			_, err = conn.ExecContext(ctx, "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
		}
		snap.q = conn
	default:
		iso := sql.LevelRepeatableRead
		if s.Kind == KindSQLServer {
			iso = sql.LevelSnapshot
		}
		snap.tx, err = conn.BeginTx(ctx, &sql.TxOptions{Isolation: iso, ReadOnly: s.Kind == KindPostgres})
		snap.q = snap.tx
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("starting a consistent snapshot of the source: %w", err)
	}
	return snap, nil
}

// Close ends the snapshot (it wrote nothing, so it commits or rolls back alike).
func (s *Snapshot) Close() error {
	var err error
	if s.tx != nil {
		err = s.tx.Rollback()
	} else {
		_, err = s.conn.ExecContext(context.Background(), "COMMIT")
	}
	return errors.Join(err, s.conn.Close())
}

// Row is one source row: column name (lower case) → value (nil, int64,
// float64, bool, string, time.Time).
type Row map[string]any

// Query runs a statement in the snapshot (for a capture to read the
// position the snapshot corresponds to).
func (s *Snapshot) Query(ctx context.Context, query string, args ...any) ([]Row, error) {
	return s.query(ctx, query, args...)
}

// query runs a statement and returns its rows with values normalised.
func (s *Snapshot) query(ctx context.Context, query string, args ...any) ([]Row, error) {
	rows, err := s.q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return readRows(rows)
}

func readRows(rows *sql.Rows) ([]Row, error) {
	types, err := rows.ColumnTypes()
	if err != nil {
		return nil, err
	}
	var out []Row
	vals := make([]any, len(types))
	ptrs := make([]any, len(types))
	names := make([]string, len(types))
	dbTypes := make([]string, len(types))
	for i := range vals {
		ptrs[i] = &vals[i]
		names[i] = strings.ToLower(types[i].Name())
		dbTypes[i] = types[i].DatabaseTypeName()
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return nil, err
		}
		r := make(Row, len(types))
		for i := range types {
			r[names[i]] = normalise(dbTypes[i], vals[i])
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// normalise turns a driver's value into one of Row's types: MySQL's text
// protocol gives bytes for numbers too.
func normalise(dbType string, v any) any {
	switch x := v.(type) {
	case []byte:
		s := string(x)
		switch strings.ToUpper(dbType) {
		case "INT", "BIGINT", "SMALLINT", "TINYINT", "MEDIUMINT", "INTEGER", "INT2", "INT4", "INT8", "UNSIGNED INT", "UNSIGNED BIGINT":
			if n, err := strconv.ParseInt(s, 10, 64); err == nil {
				return n
			}
		case "FLOAT", "DOUBLE", "REAL", "FLOAT4", "FLOAT8":
			if f, err := strconv.ParseFloat(s, 64); err == nil {
				return f
			}
		}
		return s
	case int32:
		return int64(x)
	case int16:
		return int64(x)
	case int:
		return int64(x)
	case uint64:
		return int64(x)
	case float32:
		return float64(x)
	case time.Time:
		return x.UTC()
	}
	return v
}
