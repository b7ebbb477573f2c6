package parquet

import (
	"fmt"
	"strconv"
	"time"
	"unsafe"

	pq "github.com/parquet-go/parquet-go"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/internal/jsonscan"
)

// jsonColumns maps a record given as the API's JSON (as an event's state
// carries it) straight to the mapping's column values, without decoding
// it into Go values first: the same values AppendRow gives for the
// decoded record, at a fraction of the cost. Members the entity does not
// have are skipped.
type jsonColumns struct {
	index map[string]int // field name → column; then version, createdAt, updatedAt
	names []string       // by column
	vals  []pq.Value
}

func newJSONColumns(e *plinth.Entity) *jsonColumns {
	c := &jsonColumns{index: map[string]int{}, vals: make([]pq.Value, len(e.Fields)+3)}
	for i, f := range e.Fields {
		c.index[f.Name] = i
		c.names = append(c.names, f.Name)
	}
	n := len(e.Fields)
	c.index["version"], c.index["createdAt"], c.index["updatedAt"] = n, n+1, n+2
	c.names = append(c.names, "version", "createdAt", "updatedAt")
	return c
}

// column returns the column of a member; next is the column after the
// previous member's. The API writes a record's members in column order,
// so the name is most often next's, and is looked up only when not.
func (c *jsonColumns) column(name []byte, next int) (int, bool) {
	if next < len(c.names) && c.names[next] == string(name) {
		return next, true
	}
	i, found := c.index[string(name)]
	return i, found
}

// appendJSON appends the column values of the record raw to row, as
// columns base, base+1 …. ok is false for JSON it cannot walk (the caller
// decodes it instead); err names a value of the wrong type.
func (m *Mapping) appendJSON(row pq.Row, raw []byte, base int) (_ pq.Row, ok bool, err error) {
	if m.json == nil {
		m.json = newJSONColumns(m.e)
	}
	c := m.json
	for i := range c.vals {
		c.vals[i] = pq.NullValue()
	}
	n := len(m.e.Fields)
	next := 0
	walked := jsonscan.Members(raw, func(name, value []byte) bool {
		i, found := c.column(name, next)
		if !found {
			return true
		}
		next = i + 1
		if jsonscan.IsNull(value) {
			return true
		}
		var f *plinth.Field
		switch {
		case i < n:
			f = m.e.Fields[i]
		case i == n:
			f = versionField
		default:
			f = timeField
		}
		c.vals[i], err = c.value(f, value)
		if err != nil {
			err = fmt.Errorf("parquet: %s: %w", name, err)
			return false
		}
		return true
	})
	if err != nil {
		return row, true, err
	}
	if !walked {
		return row, false, nil
	}
	for i, v := range c.vals {
		row = append(row, level(v, base+i))
	}
	return row, true, nil
}

var (
	versionField = &plinth.Field{Name: "version", Type: plinth.TypeInteger}
	timeField    = &plinth.Field{Name: "time", Type: plinth.TypeDateTime}
)

// value converts one raw JSON value of a field. Byte arrays point into
// raw, or into a new slice for a string with escapes, never into a buffer
// reused for the next record: rows wait in batches.
func (c *jsonColumns) value(f *plinth.Field, raw []byte) (pq.Value, error) {
	switch f.Type {
	case plinth.TypeObject, plinth.TypeArray:
		return pq.ByteArrayValue(raw), nil // the API's JSON text as it is
	case plinth.TypeInteger:
		if n, err := strconv.ParseInt(unsafeString(raw), 10, 64); err == nil {
			return pq.Int64Value(n), nil
		}
		return pq.Value{}, fmt.Errorf("an integer field holds %.40s", raw)
	case plinth.TypeNumber:
		x, err := strconv.ParseFloat(unsafeString(raw), 64)
		if err != nil {
			return pq.Value{}, fmt.Errorf("a number field holds %.40s", raw)
		}
		return pq.DoubleValue(x), nil
	case plinth.TypeBoolean:
		switch string(raw) {
		case "true":
			return pq.BooleanValue(true), nil
		case "false":
			return pq.BooleanValue(false), nil
		}
		return pq.Value{}, fmt.Errorf("a boolean field holds %.40s", raw)
	}
	text, _, ok := jsonscan.Text(raw, nil)
	if !ok {
		return pq.Value{}, fmt.Errorf("a %s field holds %.40s", f.Type, raw)
	}
	switch f.Type {
	case plinth.TypeDate:
		d, err := time.Parse(time.DateOnly, unsafeString(text))
		if err != nil {
			return pq.Value{}, err
		}
		return pq.Int32Value(int32(d.Unix() / 86400)), nil
	case plinth.TypeDateTime:
		t, err := time.Parse(time.RFC3339Nano, unsafeString(text))
		if err != nil {
			return pq.Value{}, err
		}
		return pq.Int64Value(t.UnixMicro()), nil
	}
	return pq.ByteArrayValue(text), nil
}

// unsafeString views bytes as a string for parsing, without a copy.
func unsafeString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }
