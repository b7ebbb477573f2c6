package legacy

import (
	"crypto/sha256"
	"encoding/json"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
)

// Hash is a record's content hash, for comparing source and target.
type Hash [sha256.Size]byte

// HashData hashes canonical record data: the bytes encoding/json makes of
// it (keys in order), with empty collections and nulls counted as absent.
// It writes those bytes itself, without copying the data to prune it or
// reflecting over it: every record is hashed on both sides of a
// validation, so this is much of its cost. Values of other types than the
// ones records hold are left to encoding/json, so the bytes are the same.
func HashData(data map[string]any) Hash {
	h := hashers.Get().(*hasher)
	defer hashers.Put(h)
	h.buf, h.failed = h.buf[:0], false
	if empty(data) {
		h.buf = append(h.buf, "null"...)
	} else {
		h.object(data)
	}
	if h.failed { // as json.Marshal, which fails for the whole record
		return sha256.Sum256(nil)
	}
	return sha256.Sum256(h.buf)
}

type hasher struct {
	buf    []byte
	fields [][]field // sort scratch, one per nesting depth
	depth  int
	failed bool
}

var hashers = sync.Pool{New: func() any { return &hasher{buf: make([]byte, 0, 1024)} }}

// empty reports whether pruning removes v: nil, an empty list, or an
// object whose values are all empty.
func empty(v any) bool {
	switch x := v.(type) {
	case nil:
		return true
	case []any:
		return len(x) == 0
	case map[string]any:
		for _, val := range x {
			if !empty(val) {
				return false
			}
		}
		return true
	}
	return false
}

type field struct {
	name  string
	value any
}

func (h *hasher) object(m map[string]any) {
	if h.depth == len(h.fields) {
		h.fields = append(h.fields, nil)
	}
	fields := h.fields[h.depth][:0]
	for k, v := range m {
		if !empty(v) {
			fields = append(fields, field{k, v})
		}
	}
	slices.SortFunc(fields, func(a, b field) int { return strings.Compare(a.name, b.name) })
	h.depth++
	h.buf = append(h.buf, '{')
	for i, f := range fields {
		if i > 0 {
			h.buf = append(h.buf, ',')
		}
		h.string(f.name)
		h.buf = append(h.buf, ':')
		h.value(f.value)
	}
	h.buf = append(h.buf, '}')
	h.depth--
	clear(fields) // drop the references to the values
	h.fields[h.depth] = fields[:0]
}

// value writes a value already known not to be pruned away at its place
// (a list element may still be an empty object: it becomes null).
func (h *hasher) value(v any) {
	switch x := v.(type) {
	case nil:
		h.buf = append(h.buf, "null"...)
	case string:
		h.string(x)
	case bool:
		h.buf = strconv.AppendBool(h.buf, x)
	case int64:
		h.buf = strconv.AppendInt(h.buf, x, 10)
	case int:
		h.buf = strconv.AppendInt(h.buf, int64(x), 10)
	case float64:
		h.float(x)
	case map[string]any:
		if empty(x) {
			h.buf = append(h.buf, "null"...)
		} else {
			h.object(x)
		}
	case []any:
		if len(x) == 0 {
			h.buf = append(h.buf, "null"...)
			return
		}
		h.buf = append(h.buf, '[')
		for i, item := range x {
			if i > 0 {
				h.buf = append(h.buf, ',')
			}
			h.value(item)
		}
		h.buf = append(h.buf, ']')
	default:
		h.marshal(v)
	}
}

// string writes s as encoding/json does; text that needs escaping (rare
// in records) is left to it.
func (h *hasher) string(s string) {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= utf8.RuneSelf || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			h.marshal(s)
			return
		}
	}
	h.buf = append(h.buf, '"')
	h.buf = append(h.buf, s...)
	h.buf = append(h.buf, '"')
}

// float writes f as encoding/json writes a float64.
func (h *hasher) float(f float64) {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		h.failed = true
		return
	}
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b := strconv.AppendFloat(h.buf, f, format, -1, 64)
	if format == 'e' { // e-09 → e-9
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	h.buf = b
}

func (h *hasher) marshal(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		h.failed = true
		return
	}
	h.buf = append(h.buf, b...)
}
