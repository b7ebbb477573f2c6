// Package mssql captures changes from SQL Server sources, by Change
// Tracking (CHANGETABLE: every edition, tables with primary keys) or by
// CDC change tables (cdc.fn_cdc_get_all_changes_<instance>), polling at an
// interval. When the source's retention has passed the stored position
// (CHANGE_TRACKING_MIN_VALID_VERSION, or a CDC low LSN above it) it
// returns legacy.ErrResnapshot and change capture loads a new snapshot
// rather than silently skip changes. It reads only.
package mssql

import (
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/plinth-data/plinth/legacy"
)

// Mode is how changes are read.
type Mode string

// Modes.
const (
	ChangeTracking Mode = "changetracking"
	CDC            Mode = "cdc"
)

// Querier runs a query and returns its rows: the source's connection pool,
// or in tests a driver that replays recorded rows.
type Querier interface {
	Rows(ctx context.Context, query string, args ...any) ([]legacy.Row, error)
}

// DB adapts a *sql.DB to Querier.
type DB struct{ *sql.DB }

// Rows runs the query.
func (d DB) Rows(ctx context.Context, query string, args ...any) ([]legacy.Row, error) {
	rows, err := d.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	var out []legacy.Row
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, err
		}
		r := legacy.Row{}
		for i, c := range cols {
			r[strings.ToLower(c)] = vals[i]
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// Table is a captured table: its name, primary key and the columns a
// change must carry to name its record (the root key, a child's join).
type Table struct {
	Name     string // as the source spells it, in schema dbo
	Key      []string
	Needed   []string // columns beyond the key that name the record
	Instance string   // CDC capture instance (default dbo_<Name>)
	Columns  []string // CDC: every captured column to select
}

// Capture polls a SQL Server source.
type Capture struct {
	q      Querier
	mode   Mode
	tables []Table
	Poll   time.Duration
}

// New makes a capture of the mapping's tables, in a mode.
func New(ctx context.Context, src *legacy.Source, m *legacy.Mapping, mode Mode) (*Capture, error) {
	schema, err := src.Schema(ctx)
	if err != nil {
		return nil, err
	}
	tables, err := TablesOf(m, schema)
	if err != nil {
		return nil, err
	}
	return NewWith(DB{src.DB}, mode, tables), nil
}

// NewWith makes a capture reading through q.
func NewWith(q Querier, mode Mode, tables []Table) *Capture {
	return &Capture{q: q, mode: mode, tables: tables, Poll: time.Second}
}

// TablesOf lists what a mapping needs captured. A change tracked table
// reports a deleted row by its primary key only, so a child table's
// primary key must hold its join columns.
func TablesOf(m *legacy.Mapping, schema map[string]*legacy.TableInfo) ([]Table, error) {
	var out []Table
	add := func(name string, needed []string) error { // needed: the columns that name the record
		t := schema[strings.ToLower(name)]
		if t == nil {
			return fmt.Errorf("table %s is not in the source", name)
		}
		if len(t.PrimaryKey) == 0 {
			return fmt.Errorf("table %s has no primary key: Change Tracking needs one", t.Name)
		}
		var extra []string
		for _, c := range needed {
			if !slices.Contains(t.PrimaryKey, strings.ToLower(c)) {
				extra = append(extra, strings.ToLower(c))
			}
		}
		out = append(out, Table{Name: t.Name, Key: t.PrimaryKey, Needed: extra, Instance: "dbo_" + t.Name, Columns: t.Ordered})
		return nil
	}
	if err := add(m.Table, m.Key.Columns); err != nil {
		return nil, err
	}
	for _, c := range m.Joins() {
		if err := add(c.Table, c.Join); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func quote(name string) string { return "[" + strings.ReplaceAll(name, "]", "]]") + "]" }

// ChangesQuery is the Change Tracking query of a table: the changes after
// @p1 up to @p2, each with its primary key and (for inserts and updates)
// the current values of the other columns that name its record.
func ChangesQuery(t Table) string {
	cols := []string{"ct.SYS_CHANGE_VERSION AS sys_change_version", "ct.SYS_CHANGE_OPERATION AS sys_change_operation"}
	var on []string
	for _, k := range t.Key {
		cols = append(cols, fmt.Sprintf("ct.%s AS %s", quote(k), quote(k)))
		on = append(on, fmt.Sprintf("t.%s = ct.%s", quote(k), quote(k)))
	}
	for _, c := range t.Needed {
		cols = append(cols, fmt.Sprintf("t.%s AS %s", quote(c), quote(c)))
	}
	return fmt.Sprintf("SELECT %s FROM CHANGETABLE(CHANGES [dbo].%s, @p1) AS ct LEFT JOIN [dbo].%s AS t ON %s WHERE ct.SYS_CHANGE_VERSION <= @p2 ORDER BY ct.SYS_CHANGE_VERSION",
		strings.Join(cols, ", "), quote(t.Name), quote(t.Name), strings.Join(on, " AND "))
}

// CDCQuery is the CDC query of a table: every change between two LSNs
// (@p1, @p2) in commit order, with the captured columns.
func CDCQuery(t Table) string {
	cols := []string{"__$start_lsn AS start_lsn", "__$seqval AS seqval", "__$operation AS operation"}
	for _, c := range t.Columns {
		cols = append(cols, quote(c))
	}
	return fmt.Sprintf("SELECT %s FROM cdc.fn_cdc_get_all_changes_%s(@p1, @p2, N'all') ORDER BY __$start_lsn, __$seqval",
		strings.Join(cols, ", "), t.Instance)
}

// Queries of positions and retention.
const (
	CurrentVersionQuery = "SELECT CHANGE_TRACKING_CURRENT_VERSION() AS v"
	MinValidQuery       = "SELECT CHANGE_TRACKING_MIN_VALID_VERSION(OBJECT_ID(@p1)) AS v"
	MaxLSNQuery         = "SELECT sys.fn_cdc_get_max_lsn() AS v"
	MinLSNQuery         = "SELECT sys.fn_cdc_get_min_lsn(@p1) AS v"
	IncrementLSNQuery   = "SELECT sys.fn_cdc_increment_lsn(@p1) AS v"
)

// SnapshotPosition reads the change position inside the snapshot: the
// Change Tracking version, or the highest CDC LSN. (CDC's capture job runs
// behind the log, so changes between that LSN and the snapshot may be
// applied again: harmless, as an unchanged record is not written.)
func (c *Capture) SnapshotPosition(ctx context.Context, snap *legacy.Snapshot) (string, error) {
	q := CurrentVersionQuery
	if c.mode == CDC {
		q = MaxLSNQuery
	}
	rows, err := snap.Query(ctx, q)
	if err != nil || len(rows) == 0 {
		return "", fmt.Errorf("reading the source's change position: %v", err)
	}
	return c.position(rows[0]["v"])
}

func (c *Capture) position(v any) (string, error) {
	switch x := v.(type) {
	case nil:
		if c.mode == CDC {
			return "", errors.New("the source has no CDC position: enable CDC on the database and the mapped tables")
		}
		return "", errors.New("Change Tracking is not enabled on the source database")
	case int64:
		return strconv.FormatInt(x, 10), nil
	case []byte:
		return hex.EncodeToString(x), nil
	case string:
		return x, nil
	}
	return fmt.Sprint(v), nil
}

// Holds reports whether the source still keeps every change after a
// position, so an interrupted initial load may resume under it
// (legacy.PositionHolder): every table's Change Tracking minimum valid
// version, or CDC low LSN, is at most the position (CDC: the LSN after it).
func (c *Capture) Holds(ctx context.Context, position string) (bool, error) {
	s := &stream{c: c, pos: position}
	if c.mode == CDC {
		last, err := hex.DecodeString(position)
		if err != nil {
			return false, nil
		}
		next, err := s.scalar(ctx, IncrementLSNQuery, last)
		if err != nil {
			return false, err
		}
		from, _ := next.([]byte)
		for _, t := range c.tables {
			v, err := s.scalar(ctx, MinLSNQuery, t.Instance)
			if err != nil {
				return false, err
			}
			min, _ := v.([]byte)
			if len(min) == 0 || len(from) == 0 || hex.EncodeToString(min) > hex.EncodeToString(from) {
				return false, nil
			}
		}
		return true, nil
	}
	from, err := strconv.ParseInt(position, 10, 64)
	if err != nil {
		return false, nil
	}
	for _, t := range c.tables {
		v, err := s.scalar(ctx, MinValidQuery, "dbo."+t.Name)
		if err != nil {
			return false, err
		}
		if min, ok := v.(int64); !ok || min > from {
			return false, nil
		}
	}
	return true, nil
}

// Open polls for changes after a position.
func (c *Capture) Open(ctx context.Context, from string) (legacy.Stream, error) {
	return &stream{c: c, pos: from}, nil
}

type stream struct {
	c   *Capture
	pos string
}

func (s *stream) Close() error { return nil }

// change is a captured row with its order.
type change struct {
	order string // version or LSN, zero-padded to sort as text
	seq   string
	ch    legacy.Change
}

// Next polls until the source has changes after the position, and returns
// them in commit order with the new position.
func (s *stream) Next(ctx context.Context) (legacy.Batch, error) {
	for {
		b, found, err := s.poll(ctx)
		if err != nil || found {
			return b, err
		}
		select {
		case <-ctx.Done():
			return legacy.Batch{}, ctx.Err()
		case <-time.After(s.c.Poll):
		}
	}
}

func (s *stream) poll(ctx context.Context) (legacy.Batch, bool, error) {
	if s.c.mode == CDC {
		return s.pollCDC(ctx)
	}
	return s.pollCT(ctx)
}

func (s *stream) scalar(ctx context.Context, q string, args ...any) (any, error) {
	rows, err := s.c.q.Rows(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	if len(rows) == 0 {
		return nil, nil
	}
	return rows[0]["v"], nil
}

func (s *stream) pollCT(ctx context.Context) (legacy.Batch, bool, error) {
	from, err := strconv.ParseInt(s.pos, 10, 64)
	if err != nil {
		return legacy.Batch{}, false, fmt.Errorf("the Change Tracking position %q is not a version", s.pos)
	}
	v, err := s.scalar(ctx, CurrentVersionQuery)
	if err != nil {
		return legacy.Batch{}, false, err
	}
	to, ok := v.(int64)
	if !ok || to <= from {
		return legacy.Batch{}, false, nil
	}
	var all []change
	for _, t := range s.c.tables {
		mv, err := s.scalar(ctx, MinValidQuery, "dbo."+t.Name)
		if err != nil {
			return legacy.Batch{}, false, err
		}
		if min, ok := mv.(int64); ok && min > from {
			return legacy.Batch{}, false, fmt.Errorf("%w: Change Tracking of %s keeps versions from %d, after the stored position %d", legacy.ErrResnapshot, t.Name, min, from)
		}
		rows, err := s.c.q.Rows(ctx, ChangesQuery(t), from, to)
		if err != nil {
			return legacy.Batch{}, false, fmt.Errorf("reading the changes of %s: %w", t.Name, err)
		}
		for _, r := range rows {
			ver, _ := r["sys_change_version"].(int64)
			op := r["sys_change_operation"]
			if b, ok := op.([]byte); ok {
				op = string(b)
			}
			op = strings.TrimSpace(fmt.Sprint(op))
			row := legacy.Row{}
			for k, val := range r {
				if k != "sys_change_version" && k != "sys_change_operation" {
					row[k] = val
				}
			}
			c := legacy.Change{Table: strings.ToLower(t.Name)}
			if op == "D" {
				c.Before = row
			} else {
				c.After = row
			}
			all = append(all, change{order: fmt.Sprintf("%020d", ver), ch: c})
		}
	}
	return batchOf(all, strconv.FormatInt(to, 10)), true, nil
}

func (s *stream) pollCDC(ctx context.Context) (legacy.Batch, bool, error) {
	last, err := hex.DecodeString(s.pos)
	if err != nil {
		return legacy.Batch{}, false, fmt.Errorf("the CDC position %q is not an LSN", s.pos)
	}
	maxV, err := s.scalar(ctx, MaxLSNQuery)
	if err != nil {
		return legacy.Batch{}, false, err
	}
	to, _ := maxV.([]byte)
	if len(to) == 0 || hex.EncodeToString(to) <= s.pos {
		return legacy.Batch{}, false, nil
	}
	fromV, err := s.scalar(ctx, IncrementLSNQuery, last)
	if err != nil {
		return legacy.Batch{}, false, err
	}
	from, _ := fromV.([]byte)
	var all []change
	for _, t := range s.c.tables {
		minV, err := s.scalar(ctx, MinLSNQuery, t.Instance)
		if err != nil {
			return legacy.Batch{}, false, err
		}
		if min, _ := minV.([]byte); len(min) > 0 && hex.EncodeToString(min) > hex.EncodeToString(from) {
			return legacy.Batch{}, false, fmt.Errorf("%w: the CDC instance %s keeps changes from LSN %x, after the stored position %s", legacy.ErrResnapshot, t.Instance, min, s.pos)
		}
		rows, err := s.c.q.Rows(ctx, CDCQuery(t), from, to)
		if err != nil {
			return legacy.Batch{}, false, fmt.Errorf("reading the changes of %s: %w", t.Name, err)
		}
		for _, r := range rows {
			lsn, _ := r["start_lsn"].([]byte)
			seq, _ := r["seqval"].([]byte)
			op, _ := r["operation"].(int64)
			row := legacy.Row{}
			for k, val := range r {
				if k != "start_lsn" && k != "seqval" && k != "operation" {
					row[k] = val
				}
			}
			c := legacy.Change{Table: strings.ToLower(t.Name)}
			switch op {
			case 1: // delete
				c.Before = row
			case 2, 4: // insert, update (after image)
				c.After = row
			default: // 3: update before image; its after image names the record
				continue
			}
			all = append(all, change{order: hex.EncodeToString(lsn), seq: hex.EncodeToString(seq), ch: c})
		}
	}
	return batchOf(all, hex.EncodeToString(to)), true, nil
}

// batchOf orders the changes of every table by commit position.
func batchOf(all []change, pos string) legacy.Batch {
	sort.SliceStable(all, func(i, j int) bool {
		if all[i].order != all[j].order {
			return all[i].order < all[j].order
		}
		return all[i].seq < all[j].seq
	})
	b := legacy.Batch{Position: pos}
	for _, c := range all {
		b.Changes = append(b.Changes, c.ch)
	}
	return b
}
