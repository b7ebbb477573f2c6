package lake

import (
	"bytes"
	"encoding/json"

	"github.com/plinth-data/plinth"
)

// Special-category members can sit deep inside a field: a member of an
// object field, or of the objects of an array field. The lake's main
// datasets leave them out as they leave out top-level special fields; a
// special-category dataset holds the whole top-level field that contains
// them.

// holdsSpecial reports whether a member nested in f (at any depth) is of
// the special category.
func holdsSpecial(f *plinth.Field) bool {
	for _, m := range f.Fields {
		if m.PII == plinth.PIISpecial || holdsSpecial(m) {
			return true
		}
	}
	return f.Items != nil && (f.Items.PII == plinth.PIISpecial || holdsSpecial(f.Items))
}

// withoutSpecial returns f without its nested special-category members
// (f itself when it has none).
func withoutSpecial(f *plinth.Field) *plinth.Field {
	if !holdsSpecial(f) {
		return f
	}
	c := *f
	c.Fields = nil
	for _, m := range f.Fields {
		if m.PII != plinth.PIISpecial {
			c.Fields = append(c.Fields, withoutSpecial(m))
		}
	}
	if f.Items != nil {
		c.Items = withoutSpecial(f.Items)
	}
	return &c
}

// pruneValue returns a copy of v, a value of f as a record holds it (maps
// and slices), without f's nested special-category members.
func pruneValue(f *plinth.Field, v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, val := range x {
			m := plinth.FieldByName(f.Fields, k)
			switch {
			case m == nil:
				out[k] = val
			case m.PII != plinth.PIISpecial:
				out[k] = pruneValue(m, val)
			}
		}
		return out
	case []any:
		if f.Items == nil {
			return x
		}
		out := make([]any, len(x))
		for i, val := range x {
			out[i] = pruneValue(f.Items, val)
		}
		return out
	}
	return v
}

// pruneJSON returns raw, the JSON of a value of f, without f's nested
// special-category members. Numbers and strings keep their text; the
// members of an object may come in another order.
func pruneJSON(f *plinth.Field, raw []byte) []byte {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return []byte("null") // not JSON: nothing of it may leak
	}
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(pruneValue(f, v)); err != nil {
		return []byte("null")
	}
	return bytes.TrimRight(out.Bytes(), "\n")
}

// pruneRecord returns rec with the values of the fields in pruned copied
// without their special-category members.
func pruneRecord(rec plinth.Record, pruned map[string]*plinth.Field) plinth.Record {
	if len(pruned) == 0 {
		return rec
	}
	data := make(map[string]any, len(rec.Data))
	for k, v := range rec.Data {
		if f := pruned[k]; f != nil && v != nil {
			v = pruneValue(f, v)
		}
		data[k] = v
	}
	rec.Data = data
	return rec
}
