package report

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"

	"github.com/plinth-data/plinth"
)

// NestedJSON writes the top-level object and array fields of records as
// the API's JSON text, byte for byte what Entity.MarshalRecord writes for
// them: it writes each with plinth.Field.AppendJSON, the very code
// MarshalRecord writes a field's value with, so the text cannot drift from
// the API's. A value that is that text already (plinth.JSONText, from a
// scan with ScanQuery.NestedJSON) is used as it is.
type NestedJSON struct {
	fields []*plinth.Field
	pos    []int // of each field in the entity's Fields
	index  map[string]int
	spans  [][2]int
	text   [][]byte // JSONText values as given, by field
	buf    []byte
}

// NewNestedJSON returns the writer of the object and array fields of e,
// or nil when e has none.
func NewNestedJSON(e *plinth.Entity) *NestedJSON {
	n := &NestedJSON{index: map[string]int{}}
	for i, f := range e.Fields {
		if f.IsNested() {
			n.index[f.Name] = len(n.fields)
			n.fields = append(n.fields, f)
			n.pos = append(n.pos, i)
		}
	}
	if len(n.fields) == 0 {
		return nil
	}
	n.spans = make([][2]int, len(n.fields))
	n.text = make([][]byte, len(n.fields))
	return n
}

// Load encodes the nested fields of rec; Value then returns them. The
// error is always nil (it was once possible and callers still check it).
func (n *NestedJSON) Load(rec plinth.Record) error {
	b := n.buf[:0]
	for i, f := range n.fields {
		v := rec.Value(n.pos[i], f)
		if t, ok := v.(plinth.JSONText); ok {
			n.text[i] = t
			continue
		}
		n.text[i] = nil
		start := len(b)
		b = f.AppendJSON(b, v)
		n.spans[i] = [2]int{start, len(b)}
	}
	n.buf = b
	return nil
}

// Value returns the JSON text of the named field as last loaded, nil for
// null. The bytes are valid until the next Load.
func (n *NestedJSON) Value(name string) []byte {
	i, ok := n.index[name]
	if !ok {
		return nil
	}
	if n.text[i] != nil {
		return n.text[i]
	}
	v := n.buf[n.spans[i][0]:n.spans[i][1]]
	if string(v) == "null" {
		return nil
	}
	return v
}

// appendScalar appends the text of a scalar value as every text format of
// a report writes it: strings as they are, integers in decimal, numbers as
// the API's JSON writes them, booleans true/false. ok is false for null
// (and for a number JSON cannot hold, NaN or an infinity, which the API
// writes as null).
func appendScalar(b []byte, v any) (_ []byte, ok bool) {
	switch v := v.(type) {
	case nil:
		return b, false
	case string:
		return append(b, v...), true
	case int64:
		return strconv.AppendInt(b, v, 10), true
	case int:
		return strconv.AppendInt(b, int64(v), 10), true
	case float64:
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return b, false
		}
		return appendFloat(b, v), true
	case bool:
		return strconv.AppendBool(b, v), true
	case json.Number:
		return append(b, v...), true
	}
	return fmt.Append(b, v), true
}

// appendFloat formats a number as the API's JSON does (Entity.MarshalRecord):
// shortest round-trip decimal, exponent form below 1e-6 and from 1e21.
func appendFloat(b []byte, x float64) []byte {
	format := byte('f')
	if abs := math.Abs(x); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	return strconv.AppendFloat(b, x, format, -1, 64)
}
