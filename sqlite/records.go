package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/internal/scanpipe"
)

// timeLayout is how datetimes are stored: UTC with a fixed number of
// fractional digits, so that text order is time order (RFC 3339 as
// written by FormatTime drops trailing zeros, and "10:00:00.5Z" would sort
// before "10:00:00Z").
const timeLayout = "2006-01-02T15:04:05.000000000Z"

func formatStoredTime(t time.Time) string { return t.UTC().Format(timeLayout) }

func parseStoredTime(s string) (time.Time, error) {
	t, err := time.Parse(timeLayout, s)
	if err != nil {
		t, err = time.Parse(time.RFC3339Nano, s) // written by another tool
	}
	return t.UTC(), err
}

// encodeValue turns a canonical value into what its column holds.
func encodeValue(f *plinth.Field, v any) (any, error) {
	if v == nil {
		return nil, nil
	}
	switch f.Type {
	case plinth.TypeString, plinth.TypeDate, plinth.TypeUUID:
		if s, ok := v.(string); ok {
			return s, nil
		}
	case plinth.TypeDateTime:
		if s, ok := v.(string); ok {
			t, err := time.Parse(time.RFC3339Nano, s)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", f.Name, err)
			}
			return formatStoredTime(t), nil
		}
	case plinth.TypeInteger:
		switch n := v.(type) {
		case int64:
			return n, nil
		case int:
			return int64(n), nil
		case json.Number:
			return n.Int64()
		}
	case plinth.TypeNumber:
		switch n := v.(type) {
		case float64:
			return n, nil
		case int64:
			return float64(n), nil
		case int:
			return float64(n), nil
		case json.Number:
			return n.Float64()
		}
	case plinth.TypeBoolean:
		if b, ok := v.(bool); ok {
			if b {
				return int64(1), nil
			}
			return int64(0), nil
		}
	case plinth.TypeObject, plinth.TypeArray:
		var b bytes.Buffer
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(v); err != nil {
			return nil, fmt.Errorf("%s: %w", f.Name, err)
		}
		return string(bytes.TrimSuffix(b.Bytes(), []byte("\n"))), nil
	}
	return nil, fmt.Errorf("%s: a %s field cannot hold %T", f.Name, f.Type, v)
}

// decodeValue turns what a column holds back into the canonical value.
func decodeValue(f *plinth.Field, v any) (any, error) {
	if v == nil {
		return nil, nil
	}
	switch f.Type {
	case plinth.TypeInteger:
		switch n := v.(type) {
		case int64:
			return n, nil
		case float64:
			return int64(n), nil
		}
	case plinth.TypeNumber:
		switch n := v.(type) {
		case float64:
			return n, nil
		case int64:
			return float64(n), nil
		}
	case plinth.TypeBoolean:
		if n, ok := v.(int64); ok {
			return n != 0, nil
		}
	case plinth.TypeDateTime:
		if s, ok := v.(string); ok {
			t, err := parseStoredTime(s)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", f.Name, err)
			}
			return plinth.FormatTime(t), nil
		}
	case plinth.TypeObject, plinth.TypeArray:
		s, ok := v.(string)
		if !ok {
			break
		}
		return f.DecodeStored([]byte(s))
	default:
		if s, ok := v.(string); ok {
			return s, nil
		}
	}
	return nil, fmt.Errorf("%s: a %s field holds %T", f.Name, f.Type, v)
}

// keyArg turns a key as callers pass it into the key column's value.
func (t *table) keyArg(id any) (any, error) {
	switch t.e.Key.Type {
	case plinth.KeyInteger:
		switch k := id.(type) {
		case int64:
			return k, nil
		case int:
			return int64(k), nil
		case float64:
			if k == math.Trunc(k) {
				return int64(k), nil
			}
		case json.Number:
			return k.Int64()
		case string:
			return strconv.ParseInt(k, 10, 64)
		}
	case plinth.KeyUUID:
		if s, ok := id.(string); ok {
			u, err := uuid.Parse(s)
			if err != nil {
				return nil, err
			}
			return u.String(), nil
		}
	default:
		if s, ok := id.(string); ok && s != "" {
			return s, nil
		}
	}
	return nil, fmt.Errorf("%v is not a %s key", id, t.e.Key.Type)
}

// fieldArgs returns the values of the write columns (see writeCols).
func (t *table) fieldArgs(data map[string]any) ([]any, error) {
	for name := range data {
		if t.byName[name] == nil {
			return nil, fmt.Errorf("%q is not a field of %s", name, t.e.Name)
		}
	}
	args := make([]any, 0, len(t.fields)+4)
	for _, c := range t.fields {
		v, err := encodeValue(c.field, data[c.field.Name])
		if err != nil {
			return nil, err
		}
		args = append(args, v)
		if c.fold {
			args = append(args, foldOf(v))
		}
	}
	return args, nil
}

func foldOf(v any) any {
	if s, ok := v.(string); ok {
		return plinth.Fold(s)
	}
	return nil
}

// rowBuf holds the scan targets of a row, reused from row to row.
type rowBuf struct {
	vals, ptrs []any
	// nestedJSON: object and array fields as plinth.JSONText (see
	// plinth.ScanQuery.NestedJSON).
	nestedJSON bool
	maps       *scanpipe.Maps // Data maps to reuse (plinth.ScanQuery.ReuseData), or nil
	// pos, when not nil, asks for records in field order
	// (plinth.ScanQuery.FieldValues): each column's place in the entity's
	// Fields, the key's first.
	pos []int
	// json, when not nil, asks for records as the API's JSON
	// (plinth.Query.RecordJSON): each is written into *json, which the
	// records read share, from values kept in scratch from row to row.
	json    *[]byte
	scratch []any
	text    []byte // scratch's nested values' JSON text, reused likewise
}

// recordJSON makes buf give records as the API's JSON (Record.JSON and
// Record.Key), written into *out. No map or slice is made per record:
// reading a page into maps and writing them out again cost serve 9–12 %
// more CPU per first page, 5 % per contains page and 4 % per view
// (BENCHMARKS.md, "2026-12-01, seventh session").
func (t *table) recordJSON(buf *rowBuf, out *[]byte) {
	t.fieldOrder(buf)
	buf.nestedJSON, buf.json, buf.scratch = true, out, make([]any, len(t.e.Fields))
}

// fieldOrder makes buf give records in field order (Record.Values).
func (t *table) fieldOrder(buf *rowBuf) {
	buf.pos = []int{slices.Index(t.e.Fields, t.key.field)}
	for _, c := range t.fields {
		buf.pos = append(buf.pos, slices.Index(t.e.Fields, c.field))
	}
}

func (t *table) newRowBuf() *rowBuf {
	vals := make([]any, len(t.fields)+4)
	ptrs := make([]any, len(vals))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	return &rowBuf{vals: vals, ptrs: ptrs}
}

// scanRecordBuf reads one row selected with selectCols, with scan targets
// kept in buf.
func (t *table) scanRecordBuf(buf *rowBuf, scan func(...any) error) (plinth.Record, error) {
	n := len(t.fields) + 1
	vals := buf.vals
	clear(vals)
	if err := scan(buf.ptrs...); err != nil {
		return plinth.Record{}, err
	}
	var r plinth.Record
	var text []byte // the nested fields' JSON text, one allocation per record
	switch {
	case buf.json != nil:
		clear(buf.scratch)
		r.Values, text = buf.scratch, buf.text[:0]
	case buf.pos != nil:
		r.Values = buf.maps.Values(len(t.e.Fields))
	default:
		r.Data = buf.maps.Get(n)
	}
	for i := 0; i < n; i++ {
		c := t.key
		if i > 0 {
			c = t.fields[i-1]
		}
		var v any
		var err error
		if s, ok := vals[i].(string); ok && buf.nestedJSON && c.field.IsNested() {
			var t plinth.JSONText
			if text, t, err = c.field.StoredJSONText(text, []byte(s), false); t != nil {
				v = t
			}
		} else {
			v, err = decodeValue(c.field, vals[i])
		}
		switch {
		case err != nil:
			return plinth.Record{}, err
		case v == nil:
		case r.Values != nil:
			r.Values[buf.pos[i]] = v
		default:
			r.Data[c.field.Name] = v
		}
	}
	r.Version, _ = vals[n].(int64)
	var err error
	if r.CreatedAt, err = scanTime(vals[n+1]); err != nil {
		return plinth.Record{}, err
	}
	if r.UpdatedAt, err = scanTime(vals[n+2]); err != nil {
		return plinth.Record{}, err
	}
	if buf.json != nil {
		buf.text = text
		start := len(*buf.json)
		*buf.json = t.e.AppendRecord(*buf.json, r)
		r.JSON, r.Key, r.Values = (*buf.json)[start:len(*buf.json):len(*buf.json)], t.e.KeyOf(r), nil
	}
	return r, nil
}

func scanTime(v any) (time.Time, error) {
	s, ok := v.(string)
	if !ok {
		return time.Time{}, fmt.Errorf("a system time column holds %T", v)
	}
	return parseStoredTime(s)
}

// Get returns one record; plinth.ErrNotFound when there is none.
func (s *Store) Get(ctx context.Context, e *plinth.Entity, id any) (plinth.Record, error) {
	t, err := s.table(e)
	if err != nil {
		return plinth.Record{}, err
	}
	key, err := t.keyArg(id)
	if err != nil {
		return plinth.Record{}, fmt.Errorf("sqlite: %s %v: %w", e.Name, id, plinth.ErrNotFound)
	}
	rows, err := s.query(ctx, t.getSQL, key)
	if err != nil {
		return plinth.Record{}, fail("get "+e.Name, err)
	}
	// The view route only writes the record out (plinth.WithRecordJSON,
	// plinth.WithNestedJSON).
	buf := t.newRowBuf()
	buf.nestedJSON = plinth.NestedJSONWanted(ctx)
	if plinth.RecordJSONWanted(ctx) {
		t.recordJSON(buf, new([]byte))
	}
	return t.one(rows, key, buf)
}

// one reads the single record rows may hold, with buf.
func (t *table) one(rows *sql.Rows, key any, buf *rowBuf) (plinth.Record, error) {
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return plinth.Record{}, fail("get "+t.e.Name, err)
		}
		return plinth.Record{}, fmt.Errorf("sqlite: %s %v: %w", t.e.Name, key, plinth.ErrNotFound)
	}
	r, err := t.scanRecordBuf(buf, rows.Scan)
	if err != nil {
		return plinth.Record{}, fail("get "+t.e.Name, err)
	}
	return r, rows.Close()
}

// Get returns the current record. The write lock, taken when the
// transaction began, keeps other writers out until it ends.
func (x *tx) Get(ctx context.Context, e *plinth.Entity, id any) (plinth.Record, error) {
	t, err := x.s.table(e)
	if err != nil {
		return plinth.Record{}, err
	}
	key, err := t.keyArg(id)
	if err != nil {
		return plinth.Record{}, fmt.Errorf("sqlite: %s %v: %w", e.Name, id, plinth.ErrNotFound)
	}
	st, err := x.stmt(ctx, t.getSQL)
	if err != nil {
		return plinth.Record{}, fail("get "+e.Name, err)
	}
	rows, err := st.QueryContext(ctx, key)
	if err != nil {
		return plinth.Record{}, fail("get "+e.Name, err)
	}
	return t.one(rows, key, t.newRowBuf())
}

// Insert stores a new record with version 1. A generated key is assigned
// when data has none; a key that data carries is kept (migrations keep
// legacy ids).
func (x *tx) Insert(ctx context.Context, e *plinth.Entity, data map[string]any) (plinth.Record, error) {
	t, err := x.s.table(e)
	if err != nil {
		return plinth.Record{}, err
	}
	var key any
	if id, ok := data[e.Key.Name]; ok && id != nil {
		if key, err = t.keyArg(id); err != nil {
			return plinth.Record{}, fmt.Errorf("sqlite: insert %s: %w", e.Name, err)
		}
	} else {
		switch {
		case !e.Key.Generated:
			return plinth.Record{}, fmt.Errorf("sqlite: insert %s: the key %s is required", e.Name, e.Key.Name)
		case e.Key.Type == plinth.KeyUUID:
			// Version 7 UUIDs grow with time, so new rows go to the end
			// of the key index.
			u, err := uuid.NewV7()
			if err != nil {
				return plinth.Record{}, fmt.Errorf("sqlite: insert %s: %w", e.Name, err)
			}
			key = u.String()
		}
		// A generated integer key stays nil: SQLite assigns it.
	}
	fields, err := t.fieldArgs(data)
	if err != nil {
		return plinth.Record{}, fmt.Errorf("sqlite: insert %s: %w", e.Name, err)
	}
	seq, err := x.change(ctx)
	if err != nil {
		return plinth.Record{}, fail("insert "+e.Name, err)
	}
	now := plinth.Now()
	stamp := formatStoredTime(now)
	args := make([]any, 0, len(fields)+6)
	args = append(args, key)
	if t.key.fold {
		args = append(args, foldOf(key))
	}
	args = append(args, fields...)
	args = append(args, int64(1), stamp, stamp, seq)
	st, err := x.stmt(ctx, t.insertSQL)
	if err != nil {
		return plinth.Record{}, fail("insert "+e.Name, err)
	}
	res, err := st.ExecContext(ctx, args...)
	if err != nil {
		if isKeyConflict(err) {
			return plinth.Record{}, fmt.Errorf("sqlite: insert %s %v: %w", e.Name, key, plinth.ErrConflict)
		}
		return plinth.Record{}, fail("insert "+e.Name, err)
	}
	if key == nil {
		id, err := res.LastInsertId()
		if err != nil {
			return plinth.Record{}, fail("insert "+e.Name, err)
		}
		key = id
	}
	if err := x.writeSides(ctx, t, key, data, false); err != nil {
		return plinth.Record{}, err
	}
	out := maps.Clone(data)
	if out == nil {
		out = map[string]any{}
	}
	out[e.Key.Name] = key
	return plinth.Record{Data: out, Version: 1, CreatedAt: now, UpdatedAt: now}, nil
}

// writeSides brings the record's side table rows up to date.
func (x *tx) writeSides(ctx context.Context, t *table, key any, data map[string]any, replace bool) error {
	for _, sd := range t.sides {
		if replace {
			st, err := x.stmt(ctx, sd.deleteSQL)
			if err != nil {
				return fail("update "+sd.name, err)
			}
			if _, err := st.ExecContext(ctx, key); err != nil {
				return fail("update "+sd.name, err)
			}
		}
		vals, err := sd.values(data)
		if err != nil {
			return fmt.Errorf("sqlite: %s: %w", t.e.Name, err)
		}
		if len(vals) == 0 {
			continue
		}
		st, err := x.stmt(ctx, sd.insertSQL)
		if err != nil {
			return fail("update "+sd.name, err)
		}
		for _, v := range vals {
			if _, err := st.ExecContext(ctx, key, v.value, v.fold); err != nil {
				return fail("update "+sd.name, err)
			}
		}
	}
	return nil
}

// Update replaces the data of the record whose version is version and
// increments the version.
func (x *tx) Update(ctx context.Context, e *plinth.Entity, id any, version int64, data map[string]any) (plinth.Record, error) {
	t, err := x.s.table(e)
	if err != nil {
		return plinth.Record{}, err
	}
	key, err := t.keyArg(id)
	if err != nil {
		return plinth.Record{}, fmt.Errorf("sqlite: update %s %v: %w", e.Name, id, plinth.ErrNotFound)
	}
	fields, err := t.fieldArgs(data)
	if err != nil {
		return plinth.Record{}, fmt.Errorf("sqlite: update %s %v: %w", e.Name, key, err)
	}
	seq, err := x.change(ctx)
	if err != nil {
		return plinth.Record{}, fail("update "+e.Name, err)
	}
	now := plinth.Now()
	args := append(fields, formatStoredTime(now), seq, key, version)
	st, err := x.stmt(ctx, t.updateSQL)
	if err != nil {
		return plinth.Record{}, fail("update "+e.Name, err)
	}
	var newVersion int64
	var created string
	err = st.QueryRowContext(ctx, args...).Scan(&newVersion, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return plinth.Record{}, x.missing(ctx, t, "update", key, version)
	}
	if err != nil {
		return plinth.Record{}, fail("update "+e.Name, err)
	}
	if err := x.writeSides(ctx, t, key, data, true); err != nil {
		return plinth.Record{}, err
	}
	createdAt, err := parseStoredTime(created)
	if err != nil {
		return plinth.Record{}, fail("update "+e.Name, err)
	}
	out := maps.Clone(data)
	if out == nil {
		out = map[string]any{}
	}
	out[e.Key.Name] = key
	return plinth.Record{Data: out, Version: newVersion, CreatedAt: createdAt, UpdatedAt: now}, nil
}

// Delete removes the record whose version is version; its side table rows
// go with it (ON DELETE CASCADE).
func (x *tx) Delete(ctx context.Context, e *plinth.Entity, id any, version int64) error {
	t, err := x.s.table(e)
	if err != nil {
		return err
	}
	key, err := t.keyArg(id)
	if err != nil {
		return fmt.Errorf("sqlite: delete %s %v: %w", e.Name, id, plinth.ErrNotFound)
	}
	st, err := x.stmt(ctx, t.deleteSQL)
	if err != nil {
		return fail("delete "+e.Name, err)
	}
	res, err := st.ExecContext(ctx, key, version)
	if err != nil {
		return fail("delete "+e.Name, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fail("delete "+e.Name, err)
	}
	if n == 0 {
		return x.missing(ctx, t, "delete", key, version)
	}
	if err := x.tombstone(ctx, t, key); err != nil {
		return fail("delete "+e.Name, err)
	}
	return nil
}

// missing explains why no row matched a key and version: there is no such
// record, or it has another version.
func (x *tx) missing(ctx context.Context, t *table, op string, key any, version int64) error {
	st, err := x.stmt(ctx, t.existsSQL)
	if err != nil {
		return fail(op+" "+t.e.Name, err)
	}
	var current int64
	err = st.QueryRowContext(ctx, key).Scan(&current)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("sqlite: %s %s %v: %w", op, t.e.Name, key, plinth.ErrNotFound)
	case err != nil:
		return fail(op+" "+t.e.Name, err)
	}
	return fmt.Errorf("sqlite: %s %s %v: version %d, not %d: %w", op, t.e.Name, key, current, version, plinth.ErrVersionConflict)
}
