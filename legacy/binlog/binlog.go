// Package binlog captures changes from MariaDB and MySQL sources by
// reading their row-based binary log as a replica does
// (go-mysql-org/go-mysql's replication package). The source needs
// log_bin on and binlog_format=ROW, and the user REPLICATION SLAVE (and
// REPLICATION CLIENT) privileges; nothing is written to it.
package binlog

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"

	"github.com/plinth-data/plinth/legacy"
)

// Method is how a capture learns the binlog position its snapshot
// starts from.
type Method string

const (
	// Auto picks by the server's flavor (SELECT VERSION()): Snapshot on
	// MariaDB, Before on MySQL.
	Auto Method = ""
	// Snapshot reads the position of the consistent-snapshot transaction
	// itself (MariaDB's binlog_snapshot_file and _position status).
	Snapshot Method = "snapshot"
	// Before reads the binlog's end (SHOW MASTER STATUS, or SHOW BINARY
	// LOG STATUS from MySQL 8.2 on; the REPLICATION CLIENT privilege, not
	// RELOAD) before the snapshot opens, waits Settle, then opens it: the
	// snapshot holds everything before the position and perhaps changes
	// after it, which are then read again from the binlog and leave their
	// records alone (see legacy.PositionFirst). Works on MySQL 5.7 and
	// 8.x and on MariaDB.
	Before Method = "before"
)

// Capture reads a MariaDB/MySQL source's binary log.
type Capture struct {
	cfg     replication.BinlogSyncerConfig
	db      *sql.DB // the source, for the binlog's status
	version string  // SELECT VERSION()
	mariadb bool
	schema  string
	tables  map[string]*legacy.TableInfo // the mapping's tables, by lower-case name
	// Method is how the snapshot's position is found (Auto by default).
	Method Method
	// Settle is how long Before waits between reading the binlog's end
	// and opening the snapshot. MySQL writes a transaction to the binlog
	// just before it commits it in InnoDB (group commit's flush, sync and
	// commit stages); one caught between the two when the position is read
	// is before the position yet would be missing from a snapshot opened at
	// once. After Settle it is missed only if its engine commit lags its
	// binlog write by more than that.
	Settle time.Duration
	// afterPosition, when set, runs after Before read the position and
	// before the snapshot opens (tests write to the source then).
	afterPosition func()
	// MaxBatch is how many changes a batch gathers at most; a batch also
	// ends Gather after its first commit (under steady traffic there is
	// no pause to wait for).
	MaxBatch int
	Gather   time.Duration
}

// position is a binlog file and offset.
type position struct {
	File string
	Pos  uint32
}

// New prepares a capture of the mapping's tables from the source at
// rawURL (mariadb:// or mysql://).
func New(ctx context.Context, src *legacy.Source, rawURL string, m *legacy.Mapping) (*Capture, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, errors.New("the source URL does not parse")
	}
	port := 3306
	if p := u.Port(); p != "" {
		port, _ = strconv.Atoi(p)
	}
	pass, _ := u.User.Password()
	var version string
	if err := src.DB.QueryRowContext(ctx, "SELECT VERSION()").Scan(&version); err != nil {
		return nil, fmt.Errorf("reading the source's version: %w", err)
	}
	// The server says what it is, whatever the URL's scheme.
	mariadb := strings.Contains(strings.ToLower(version), "mariadb")
	flavor := "mysql"
	if mariadb {
		flavor = "mariadb"
	}
	schema, err := src.Schema(ctx)
	if err != nil {
		return nil, err
	}
	tables := map[string]*legacy.TableInfo{}
	for _, t := range m.Tables() {
		if schema[t] == nil {
			return nil, fmt.Errorf("table %s is not in the source", t)
		}
		tables[t] = schema[t]
	}
	return &Capture{
		cfg: replication.BinlogSyncerConfig{
			ServerID: 1000 + rand.Uint32N(1<<30), Flavor: flavor, Host: u.Hostname(), Port: uint16(port),
			User: u.User.Username(), Password: pass, HeartbeatPeriod: time.Second, ParseTime: true,
			TimestampStringLocation: time.UTC, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		},
		db: src.DB, version: version, mariadb: mariadb,
		schema: src.Name, tables: tables, MaxBatch: 2000, Gather: 20 * time.Millisecond, Settle: time.Second,
	}, nil
}

// method is the Method in force.
func (c *Capture) method() Method {
	if c.Method == Auto {
		if c.mariadb {
			return Snapshot
		}
		return Before
	}
	return c.Method
}

// PositionBefore reads the binlog's end before the snapshot opens, when
// the method is Before (legacy.PositionFirst).
func (c *Capture) PositionBefore(ctx context.Context) (string, bool, error) {
	if c.method() != Before {
		return "", false, nil
	}
	p, err := c.end(ctx)
	if err != nil {
		return "", false, err
	}
	select {
	case <-ctx.Done():
		return "", false, ctx.Err()
	case <-time.After(c.Settle):
	}
	if c.afterPosition != nil {
		c.afterPosition()
	}
	return p.String(), true, nil
}

// end reads the binlog's current file and end offset. MySQL 8.2 renamed
// SHOW MASTER STATUS to SHOW BINARY LOG STATUS, and 8.4 dropped the old
// name; the other is tried when the first fails.
func (c *Capture) end(ctx context.Context) (position, error) {
	queries := []string{"SHOW MASTER STATUS", "SHOW BINARY LOG STATUS"}
	if !c.mariadb && atLeast(c.version, 8, 2) {
		queries[0], queries[1] = queries[1], queries[0]
	}
	var first error
	for _, q := range queries {
		rows, err := c.query(ctx, q)
		if err != nil {
			first = cmp.Or(first, err)
			continue
		}
		if len(rows) == 0 || rows[0]["file"] == "" {
			return position{}, errors.New("the source has no binary log: change capture needs log_bin on and binlog_format=ROW")
		}
		n, _ := strconv.ParseUint(rows[0]["position"], 10, 32)
		return position{File: rows[0]["file"], Pos: uint32(n)}, nil
	}
	return position{}, fmt.Errorf("reading the binlog's position (the user needs REPLICATION CLIENT): %w", first)
}

// query runs a SHOW statement on the source and returns its rows as text
// by lower-case column name.
func (c *Capture) query(ctx context.Context, q string) ([]map[string]string, error) {
	rows, err := c.db.QueryContext(ctx, q)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	var out []map[string]string
	vals := make([]sql.NullString, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return nil, err
		}
		r := map[string]string{}
		for i, col := range cols {
			r[strings.ToLower(col)] = vals[i].String
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// atLeast reports whether a version string (8.0.36-log, 8.4.0) is at
// least major.minor.
func atLeast(version string, major, minor int) bool {
	parts := strings.SplitN(version, ".", 3)
	if len(parts) < 2 {
		return false
	}
	ma, _ := strconv.Atoi(parts[0])
	mi, _ := strconv.Atoi(strings.TrimFunc(parts[1], func(r rune) bool { return r < '0' || r > '9' }))
	return ma > major || ma == major && mi >= minor
}

// SnapshotPosition reads the binlog position the snapshot corresponds to
// (MariaDB keeps it per consistent-snapshot transaction). Under Before it
// is not called: the position was read before the snapshot opened.
func (c *Capture) SnapshotPosition(ctx context.Context, snap *legacy.Snapshot) (string, error) {
	rows, err := snap.Query(ctx, "SHOW STATUS LIKE 'binlog_snapshot_%'")
	if err != nil {
		return "", fmt.Errorf("reading the snapshot's binlog position: %w", err)
	}
	var p position
	for _, r := range rows {
		name, _ := r["variable_name"].(string)
		value, _ := r["value"].(string)
		switch strings.ToLower(name) {
		case "binlog_snapshot_file":
			p.File = value
		case "binlog_snapshot_position":
			n, _ := strconv.ParseUint(value, 10, 32)
			p.Pos = uint32(n)
		}
	}
	if p.File == "" {
		return "", fmt.Errorf("the source has no binary log position for its snapshot: change capture needs log_bin on and binlog_format=ROW, and the snapshot method MariaDB's binlog_snapshot_* status (the server is %s; --binlog-position before works on MySQL too)", c.version)
	}
	return p.String(), nil
}

// Backlog is how many bytes of binary log follow the stored position: to
// the end of its file, every later file, and the current file up to its
// end (SHOW MASTER STATUS and SHOW BINARY LOGS; legacy.Backlogger).
func (c *Capture) Backlog(ctx context.Context, stored string) (int64, error) {
	p, err := parsePosition(stored)
	if err != nil {
		return 0, err
	}
	end, err := c.end(ctx)
	if err != nil {
		return 0, err
	}
	if end.File == p.File {
		return max(0, int64(end.Pos)-int64(p.Pos)), nil
	}
	logs, err := c.query(ctx, "SHOW BINARY LOGS")
	if err != nil {
		return 0, err
	}
	var n int64
	counting := false
	for _, l := range logs {
		size, _ := strconv.ParseInt(l["file_size"], 10, 64)
		switch name := l["log_name"]; {
		case name == p.File:
			counting = true
			n += max(0, size-int64(p.Pos))
		case name == end.File:
			return n + int64(end.Pos), nil
		case counting:
			n += size
		}
	}
	return 0, fmt.Errorf("the binlog file %s is no longer on the source", p.File)
}

// Holds reports whether the source still has the binlog file of a
// position (legacy.PositionHolder).
func (c *Capture) Holds(ctx context.Context, stored string) (bool, error) {
	p, err := parsePosition(stored)
	if err != nil {
		return false, nil
	}
	logs, err := c.query(ctx, "SHOW BINARY LOGS")
	if err != nil {
		return false, err
	}
	for _, l := range logs {
		if l["log_name"] == p.File {
			return true, nil
		}
	}
	return false, nil
}

// String is the position as file:offset.
func (p position) String() string { return fmt.Sprintf("%s:%d", p.File, p.Pos) }

func parsePosition(s string) (position, error) {
	i := strings.LastIndex(s, ":")
	if i < 0 {
		return position{}, fmt.Errorf("the binlog position %q is not file:offset", s)
	}
	n, err := strconv.ParseUint(s[i+1:], 10, 32)
	if err != nil {
		return position{}, fmt.Errorf("the binlog position %q is not file:offset", s)
	}
	return position{File: s[:i], Pos: uint32(n)}, nil
}

// Open starts reading the binlog after a position.
func (c *Capture) Open(ctx context.Context, from string) (legacy.Stream, error) {
	p, err := parsePosition(from)
	if err != nil {
		return nil, err
	}
	if held, err := c.Holds(ctx, from); err != nil {
		return nil, err
	} else if !held {
		return nil, fmt.Errorf("%w: the binlog file %s is no longer on the source (purged)", legacy.ErrResnapshot, p.File)
	}
	syncer := replication.NewBinlogSyncer(c.cfg)
	streamer, err := syncer.StartSync(mysql.Position{Name: p.File, Pos: p.Pos})
	if err != nil {
		syncer.Close()
		return nil, fmt.Errorf("starting to read the binlog at %s:%d: %w", p.File, p.Pos, err)
	}
	return &stream{c: c, syncer: syncer, streamer: streamer, pos: p}, nil
}

type stream struct {
	c        *Capture
	syncer   *replication.BinlogSyncer
	streamer *replication.BinlogStreamer
	pos      position
	pending  []legacy.Change // of the transaction being read
}

func (s *stream) Close() error {
	s.syncer.Close()
	return nil
}

// Next gathers committed transactions until the batch is full or the log
// goes quiet for a moment.
func (s *stream) Next(ctx context.Context) (legacy.Batch, error) {
	var b legacy.Batch
	commits := 0
	var deadline time.Time
	for {
		wait := ctx
		cancel := func() {}
		if commits > 0 {
			wait, cancel = context.WithDeadline(ctx, deadline)
		}
		ev, err := s.streamer.GetEvent(wait)
		cancel()
		if err != nil {
			if commits > 0 && ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
				return b, nil
			}
			return b, err
		}
		if s.handle(ev, &b) {
			if commits == 0 {
				deadline = time.Now().Add(s.c.Gather)
			}
			commits++
			if len(b.Changes) >= s.c.MaxBatch || !time.Now().Before(deadline) {
				return b, nil
			}
		}
	}
}

// handle takes one event; it reports whether a transaction committed.
func (s *stream) handle(ev *replication.BinlogEvent, b *legacy.Batch) bool {
	switch e := ev.Event.(type) {
	case *replication.RotateEvent:
		s.pos = position{File: string(e.NextLogName), Pos: uint32(e.Position)}
	case *replication.RowsEvent:
		s.rows(ev.Header.EventType, e)
	case *replication.XIDEvent:
		s.pos.Pos = ev.Header.LogPos
		b.Changes = append(b.Changes, s.pending...)
		s.pending = s.pending[:0]
		b.Position = s.pos.String()
		b.Committed = time.Unix(int64(ev.Header.Timestamp), 0)
		return true
	case *replication.QueryEvent:
		if ev.Header.LogPos > 0 && string(e.Query) != "BEGIN" {
			// DDL and non-transactional statements commit by themselves.
			s.pos.Pos = ev.Header.LogPos
			b.Changes = append(b.Changes, s.pending...)
			s.pending = s.pending[:0]
			b.Position = s.pos.String()
			return true
		}
	}
	return false
}

// rows turns a rows event of a mapped table into changes, naming columns
// by their position in the table.
func (s *stream) rows(t replication.EventType, e *replication.RowsEvent) {
	if !strings.EqualFold(string(e.Table.Schema), s.c.schema) {
		return
	}
	info := s.c.tables[strings.ToLower(string(e.Table.Table))]
	if info == nil {
		return
	}
	row := func(vals []any) legacy.Row {
		r := make(legacy.Row, len(vals))
		for i, v := range vals {
			if i < len(info.Ordered) {
				r[info.Ordered[i]] = value(v)
			}
		}
		return r
	}
	table := strings.ToLower(info.Name)
	switch t {
	case replication.WRITE_ROWS_EVENTv0, replication.WRITE_ROWS_EVENTv1, replication.WRITE_ROWS_EVENTv2:
		for _, r := range e.Rows {
			s.pending = append(s.pending, legacy.Change{Table: table, After: row(r)})
		}
	case replication.DELETE_ROWS_EVENTv0, replication.DELETE_ROWS_EVENTv1, replication.DELETE_ROWS_EVENTv2:
		for _, r := range e.Rows {
			s.pending = append(s.pending, legacy.Change{Table: table, Before: row(r)})
		}
	case replication.UPDATE_ROWS_EVENTv0, replication.UPDATE_ROWS_EVENTv1, replication.UPDATE_ROWS_EVENTv2:
		for i := 0; i+1 < len(e.Rows); i += 2 {
			s.pending = append(s.pending, legacy.Change{Table: table, Before: row(e.Rows[i]), After: row(e.Rows[i+1])})
		}
	}
}

// value normalises the binlog's Go types to a Row's.
func value(v any) any {
	switch x := v.(type) {
	case int8:
		return int64(x)
	case int16:
		return int64(x)
	case int32:
		return int64(x)
	case int:
		return int64(x)
	case uint8:
		return int64(x)
	case uint16:
		return int64(x)
	case uint32:
		return int64(x)
	case uint64:
		return int64(x)
	case float32:
		return float64(x)
	case []byte:
		return string(x)
	}
	return v
}
