package postgres

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/plinth-data/plinth"
)

// Bulk loads write PostgreSQL's binary COPY format themselves, from the
// table layout (schema.go keeps every column of the type the layout
// says): each value goes straight from the record into the stream, where
// pgx's CopyFrom would box it, look up its codec and describe the table
// first. Values that are not canonical go through encode, as every other
// write does, so both paths store the same thing.

// copyHeader starts a binary COPY stream: the signature, no flags, no
// header extension.
var copyHeader = []byte("PGCOPY\n\xff\r\n\x00\x00\x00\x00\x00\x00\x00\x00\x00")

// Microseconds and days from the Unix epoch to PostgreSQL's, 2000-01-01.
const (
	pgEpochMicros = 946_684_800_000_000
	pgEpochDays   = 10_957
)

// textOID is the type of a values column's elements.
const textOID = 25

// copyFlushSize is how much a copyReader encodes before handing it on.
const copyFlushSize = 64 << 10

// copyReader is a bulk load's rows as a binary COPY stream.
type copyReader struct {
	t       *table
	rows    loadRows
	skipKey bool // leave the key column out (the identity assigns it)
	now     time.Time
	cols    []*column // the data columns, without the system ones

	i      int // the next row
	buf    []byte
	off    int // what Read has handed out of buf
	done   bool
	maxKey int64 // the greatest integer key encoded
	err    error // why a row could not be encoded
}

func (t *table) copyReader(lr loadRows, skipKey bool) *copyReader {
	cols := t.cols[:len(t.cols)-3]
	if skipKey {
		cols = cols[1:]
	}
	return &copyReader{t: t, rows: lr, skipKey: skipKey, now: plinth.Now(), cols: cols,
		buf: append(make([]byte, 0, copyFlushSize+8<<10), copyHeader...)}
}

// copyFrom copies the rows into the table into (the entity's, or a stage
// table like it) and returns the greatest integer key copied.
func (t *table) copyFrom(ctx context.Context, q pgx.Tx, into pgx.Identifier, lr loadRows, skipKey bool) (int64, error) {
	r := t.copyReader(lr, skipKey)
	cols := r.cols
	names := make([]string, 0, len(cols)+3)
	for _, c := range cols {
		names = append(names, c.ident())
	}
	names = append(names, "version", "created_at", "updated_at")
	sql := "COPY " + into.Sanitize() + " (" + strings.Join(names, ", ") + ") FROM STDIN BINARY"
	_, err := q.Conn().PgConn().CopyFrom(ctx, r, sql)
	if r.err != nil {
		return 0, r.err // the server only saw that the copy failed
	}
	return r.maxKey, err
}

func (r *copyReader) Read(p []byte) (int, error) {
	for r.off == len(r.buf) {
		if r.done {
			return 0, io.EOF
		}
		r.buf, r.off = r.buf[:0], 0
		if err := r.fill(); err != nil {
			return 0, err
		}
	}
	n := copy(p, r.buf[r.off:])
	r.off += n
	return n, nil
}

// fill encodes rows into buf until it holds copyFlushSize bytes or the
// rows end (then with the trailer).
func (r *copyReader) fill() error {
	for len(r.buf) < copyFlushSize {
		if r.i == len(r.rows.data) {
			r.buf = binary.BigEndian.AppendUint16(r.buf, 0xffff) // -1: no more tuples
			r.done = true
			return nil
		}
		b, err := r.appendRow(r.buf, r.i)
		if err != nil {
			r.err = fmt.Errorf("record %d: %w", r.i+1, err)
			return r.err
		}
		r.buf = b
		r.i++
	}
	return nil
}

// appendRow appends row i as a tuple: the data columns, version,
// created_at and updated_at.
func (r *copyReader) appendRow(b []byte, i int) ([]byte, error) {
	t, e := r.t, r.t.e
	d := r.rows.data[i]
	if d[e.Key.Name] == nil && !r.skipKey {
		if !e.Key.Generated || e.Key.Type != plinth.KeyUUID {
			return nil, fmt.Errorf("the key %q is missing", e.Key.Name)
		}
		u, err := uuid.NewV7() // as Insert does
		if err != nil {
			return nil, err
		}
		d = withValue(d, e.Key.Name, u.String())
	}
	b = binary.BigEndian.AppendUint16(b, uint16(len(r.cols)+3))
	var err error
	for _, c := range r.cols {
		switch c.role {
		case roleKey, roleField:
			v := d[c.field.Name]
			if c == t.key && c.sqlType == typeBigint {
				r.noteKey(c, v)
			}
			if b, err = appendCopyField(b, c, v); err != nil {
				return nil, err
			}
		case roleFold:
			s, ok := d[c.field.Name].(string)
			if !ok {
				b = appendCopyNull(b)
				continue
			}
			b = appendCopyText(b, plinth.Fold(s))
		case roleValues:
			b = appendCopyTextArray(b, c.filter, d)
		}
	}
	version, created, updated := r.rows.metaOf(i).Resolve(r.now)
	b = appendCopyInt8(b, version)
	b = appendCopyTime(b, created)
	return appendCopyTime(b, updated), nil
}

// noteKey keeps the greatest integer key.
func (r *copyReader) noteKey(c *column, v any) {
	n, ok := v.(int64)
	if !ok {
		ev, _ := encode(c.field, v) // an error surfaces as the value is appended
		n, ok = ev.(int64)
	}
	if ok && n > r.maxKey {
		r.maxKey = n
	}
}

func appendCopyNull(b []byte) []byte { return binary.BigEndian.AppendUint32(b, math.MaxUint32) }

func appendCopyText(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}

func appendCopyInt8(b []byte, n int64) []byte {
	b = binary.BigEndian.AppendUint32(b, 8)
	return binary.BigEndian.AppendUint64(b, uint64(n))
}

func appendCopyTime(b []byte, t time.Time) []byte {
	return appendCopyInt8(b, t.Unix()*1_000_000+int64(t.Nanosecond())/1000-pgEpochMicros)
}

// appendCopyField appends a field column's value: canonical values
// directly, anything else as encode makes it.
func appendCopyField(b []byte, c *column, v any) ([]byte, error) {
	if v == nil {
		return appendCopyNull(b), nil
	}
	switch c.sqlType {
	case typeText:
		if s, ok := v.(string); ok {
			if strings.IndexByte(s, 0) >= 0 {
				return nil, nulError(c.field.Name)
			}
			return appendCopyText(b, s), nil
		}
	case typeBigint:
		if n, ok := v.(int64); ok {
			return appendCopyInt8(b, n), nil
		}
	case typeDouble:
		if x, ok := v.(float64); ok {
			b = binary.BigEndian.AppendUint32(b, 8)
			return binary.BigEndian.AppendUint64(b, math.Float64bits(x)), nil
		}
	case typeBoolean:
		if x, ok := v.(bool); ok {
			b = binary.BigEndian.AppendUint32(b, 1)
			if x {
				return append(b, 1), nil
			}
			return append(b, 0), nil
		}
	case typeDate:
		if s, ok := v.(string); ok {
			if days, ok := copyDays(s); ok {
				b = binary.BigEndian.AppendUint32(b, 4)
				return binary.BigEndian.AppendUint32(b, uint32(days)), nil
			}
		}
	case typeJSONB:
		switch v.(type) {
		case map[string]any, []any:
			return appendCopyJSONB(b, c, v)
		}
	}
	ev, err := encode(c.field, v)
	if err != nil {
		return nil, err
	}
	return appendCopyEncoded(b, c, ev)
}

// appendCopyJSONB appends a jsonb value: its format version, 1, and the
// JSON text.
func appendCopyJSONB(b []byte, c *column, v any) ([]byte, error) {
	at := len(b)
	b = append(b, 0, 0, 0, 0, 1)
	b, err := appendJSON(b, v)
	if errors.Is(err, errNUL) || err == nil && bytes.Contains(b[at+5:], []byte(`\u0000`)) {
		return nil, nulError(c.field.Name)
	}
	if err != nil {
		return nil, fmt.Errorf("field %q: %w", c.field.Name, err)
	}
	binary.BigEndian.PutUint32(b[at:], uint32(len(b)-at-4))
	return b, nil
}

// appendCopyEncoded appends what encode made of a value.
func appendCopyEncoded(b []byte, c *column, v any) ([]byte, error) {
	switch x := v.(type) {
	case nil:
		return appendCopyNull(b), nil
	case string:
		return appendCopyText(b, x), nil
	case int64:
		return appendCopyInt8(b, x), nil
	case float64:
		b = binary.BigEndian.AppendUint32(b, 8)
		return binary.BigEndian.AppendUint64(b, math.Float64bits(x)), nil
	case bool:
		b = binary.BigEndian.AppendUint32(b, 1)
		if x {
			return append(b, 1), nil
		}
		return append(b, 0), nil
	case pgtype.Date:
		days := x.Time.Unix()/86400 - pgEpochDays
		b = binary.BigEndian.AppendUint32(b, 4)
		return binary.BigEndian.AppendUint32(b, uint32(int32(days))), nil
	case time.Time:
		return appendCopyTime(b, x), nil
	case pgtype.UUID:
		b = binary.BigEndian.AppendUint32(b, 16)
		return append(b, x.Bytes[:]...), nil
	case json.RawMessage:
		b = binary.BigEndian.AppendUint32(b, uint32(len(x)+1))
		return append(append(b, 1), x...), nil
	}
	return nil, fmt.Errorf("field %q: cannot store %T", c.field.Name, v)
}

// copyDays is the days from 2000-01-01 to a canonical date (YYYY-MM-DD);
// false for anything else.
func copyDays(s string) (int64, bool) {
	if len(s) != 10 || s[4] != '-' || s[7] != '-' {
		return 0, false
	}
	n := 0
	for i, c := range []byte(s) {
		if i == 4 || i == 7 {
			continue
		}
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	y, m, d := n/10000, time.Month(n/100%100), n%100
	t := time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
	if m < 1 || m > 12 || d < 1 || t.Day() != d {
		return 0, false // not a real date: encode says why
	}
	return t.Unix()/86400 - pgEpochDays, true
}

// appendCopyTextArray appends a values column: a one-dimensional text[]
// of arrayValues, or NULL when there are none.
func appendCopyTextArray(b []byte, f *plinth.Filter, data map[string]any) []byte {
	values := arrayValues(f, data)
	if values == nil {
		return appendCopyNull(b)
	}
	at := len(b)
	b = binary.BigEndian.AppendUint32(b, 0)
	if len(values) == 0 { // '{}': no dimensions
		b = binary.BigEndian.AppendUint32(b, 0)
		b = binary.BigEndian.AppendUint32(b, 0)
		b = binary.BigEndian.AppendUint32(b, textOID)
		binary.BigEndian.PutUint32(b[at:], uint32(len(b)-at-4))
		return b
	}
	b = binary.BigEndian.AppendUint32(b, 1) // dimensions
	b = binary.BigEndian.AppendUint32(b, 0) // no nulls
	b = binary.BigEndian.AppendUint32(b, textOID)
	b = binary.BigEndian.AppendUint32(b, uint32(len(values)))
	b = binary.BigEndian.AppendUint32(b, 1) // lower bound
	for _, s := range values {
		b = appendCopyText(b, s)
	}
	binary.BigEndian.PutUint32(b[at:], uint32(len(b)-at-4))
	return b
}
