package plinth

import (
	"bytes"
	"fmt"
	"strconv"
	"sync"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"
)

// JSONText is the API's JSON text of an object or array field: the bytes
// Entity.MarshalRecord writes for it. A store puts it in Record.Data in
// place of the decoded value when a scan asks for it (ScanQuery.NestedJSON),
// for consumers that only write nested values out again as JSON (the
// Reporting API), so that no record pays for decoding them into maps.
// Field.AppendJSON writes it as it is.
type JSONText []byte

// AppendStoredJSON appends to b the API's JSON of the value a store wrote
// for the field: exactly what f.AppendJSON(b, v) appends for v decoded by
// f.DecodeStored(raw) (members in spec order, absent ones null, members the
// spec no longer has left out, numbers written by the field's type), but
// read straight from raw without building the value. Where the stored
// value's shape is not the field's (an array where the spec now says
// object), that value goes the slow way, through DecodeStored, so the two
// never disagree. It fails where DecodeStored fails.
func (f *Field) AppendStoredJSON(b, raw []byte) ([]byte, error) {
	return f.appendStoredJSON(b, raw, false)
}

// appendStoredJSON is AppendStoredJSON; valid says raw is known to be
// valid JSON without duplicate member names (PostgreSQL's jsonb output),
// which spares the validating pass.
func (f *Field) appendStoredJSON(b, raw []byte, valid bool) (out []byte, err error) {
	// Validating first (a fast pass that builds nothing) lets the
	// transcoder below trust the syntax: it only follows the structure.
	if !valid && !jsontext.Value(raw).IsValid() {
		if _, err := f.DecodeStored(raw); err != nil {
			return b, err
		}
		return b, fmt.Errorf("field %q holds JSON that does not decode", f.Name)
	}
	var t storedJSON
	return t.append(b, f, raw)
}

// append transcodes raw, valid JSON, for the field f; t's scratch space
// is kept for the next value.
func (t *storedJSON) append(b []byte, f *Field, raw []byte) (out []byte, err error) {
	defer func() {
		// Text said to be valid that is not: the walker ran off its end.
		if p := recover(); p != nil {
			out, err = b, fmt.Errorf("field %q holds JSON that does not decode", f.Name)
		}
	}()
	t.src, t.i = raw, 0
	t.space()
	out, err = t.value(b, f)
	t.src = nil
	if err != nil {
		return b, fmt.Errorf("field %q holds JSON that does not decode: %w", f.Name, err)
	}
	return out, nil
}

// A StoredJSONWriter appends stored nested values as the API's JSON, as
// Field.AppendStoredJSON does, keeping its scratch space from value to
// value: for a store writing many records (a list page) straight to JSON.
// It is not safe for concurrent use.
type StoredJSONWriter struct{ t storedJSON }

// AppendJSONB appends the API's JSON of raw, the field's value as the
// store holds it, which must be valid JSON without duplicate member names
// (PostgreSQL's jsonb output): no validating pass is made. A null value
// is written as null.
func (w *StoredJSONWriter) AppendJSONB(b []byte, f *Field, raw []byte) ([]byte, error) {
	return w.t.append(b, f, raw)
}

// PutStoredJSON is AppendStoredJSON for a store's scan: it appends the
// text to text (the record's buffer; give nil for a new record) and puts
// it into data under the field's name as JSONText, or nothing when the
// value is null. Every JSONText of a record shares text's array, or an
// earlier one when text grew; both stay valid. valid says that raw is
// known to be valid JSON without duplicate member names, as PostgreSQL's
// jsonb output is, which spares a validating pass.
func (f *Field) PutStoredJSON(data map[string]any, text, raw []byte, valid bool) ([]byte, error) {
	text, v, err := f.StoredJSONText(text, raw, valid)
	if v != nil {
		data[f.Name] = v
	}
	return text, err
}

// StoredJSONText is PutStoredJSON for a record in field order
// (Record.Values): it returns the value, nil when it is null.
func (f *Field) StoredJSONText(text, raw []byte, valid bool) ([]byte, JSONText, error) {
	if text == nil {
		text = make([]byte, 0, 2*len(raw)+64)
	}
	start := len(text)
	text, err := f.appendStoredJSON(text, raw, valid)
	if err != nil {
		return text, nil, err
	}
	if v := text[start:]; string(v) != "null" {
		return text, JSONText(v[:len(v):len(v)]), nil
	}
	return text, nil, nil
}

// storedJSON walks one valid JSON text.
type storedJSON struct {
	src     []byte
	i       int
	scratch []byte // an unquoted string
	tmp     []byte // an object's members, while object puts them in order
}

func (t *storedJSON) space() {
	for t.i < len(t.src) {
		switch t.src[t.i] {
		case ' ', '\t', '\n', '\r':
			t.i++
		default:
			return
		}
	}
}

// value transcodes the value at t.i and moves past it.
func (t *storedJSON) value(b []byte, f *Field) ([]byte, error) {
	start := t.i
	switch c := t.src[start]; {
	case c == 'n':
		t.i += len("null")
		return append(b, "null"...), nil
	case c == 't' || c == 'f':
		t.skip()
		return append(b, t.src[start:t.i]...), nil
	case c == '"':
		return t.str(b)
	case c == '{' && f.Type == TypeObject:
		return t.object(b, f)
	case c == '[' && f.Type == TypeArray:
		return t.array(b, f)
	case c == '{' || c == '[':
		// Not the field's shape: decode it as DecodeStored does.
		t.skip()
		v, err := f.DecodeStored(t.src[start:t.i])
		if err != nil {
			return b, err
		}
		return appendValue(b, f, v), nil
	}
	t.skip()
	return appendStoredNumber(b, f, t.src[start:t.i])
}

// appendStoredNumber writes a number as DecodeStored then AppendJSON do:
// an integer field's integers as integers, everything else as float64.
func appendStoredNumber(b []byte, f *Field, num []byte) ([]byte, error) {
	if f.Type == TypeInteger {
		if n, err := strconv.ParseInt(string(num), 10, 64); err == nil {
			return strconv.AppendInt(b, n, 10), nil
		}
	}
	x, err := strconv.ParseFloat(string(num), 64)
	if err != nil {
		return b, err
	}
	return appendFloat(b, x), nil
}

// str transcodes a string: as it is when the API would write the same
// bytes (no escapes, and nothing appendString escapes), else unquoted and
// written again.
func (t *storedJSON) str(b []byte) ([]byte, error) {
	start := t.i
	escaped, high := false, false
	for t.i++; ; t.i++ {
		c := t.src[t.i]
		if c == '"' {
			break
		}
		if c == '\\' {
			escaped = true
			t.i++
		} else if c >= 0x80 {
			high = true
		}
	}
	t.i++
	s := t.src[start:t.i]
	if !escaped && (!high || plainUTF8(s)) {
		return append(b, s...), nil
	}
	var err error
	t.scratch, err = jsontext.AppendUnquote(t.scratch[:0], s)
	if err != nil {
		return b, err
	}
	return appendString(b, string(t.scratch)), nil
}

// plainUTF8 reports whether appendString writes the unescaped text s as
// it is: valid UTF-8 without U+2028 or U+2029.
func plainUTF8(s []byte) bool {
	return utf8.Valid(s) && !bytes.Contains(s, []byte("\u2028")) && !bytes.Contains(s, []byte("\u2029"))
}

// object transcodes an object of an object field: its spec's members in
// spec order, each the last non-null value given for it, null when absent.
// It walks the input once: each member's value is transcoded where it
// stands, after b's end, and the results are then put in spec order
// (through t.tmp, which nested objects have finished with by then).
func (t *storedJSON) object(b []byte, f *Field) ([]byte, error) {
	var small [16][2]int
	spans := small[:0]
	if len(f.Fields) > len(small) {
		spans = make([][2]int, 0, len(f.Fields))
	}
	spans = spans[:len(f.Fields)]
	mark := len(b)
	t.i++ // {
	for {
		t.space()
		if t.src[t.i] == '}' {
			t.i++
			break
		}
		if t.src[t.i] == ',' {
			t.i++
			t.space()
		}
		sub, err := t.memberName(f)
		if err != nil {
			return b, err
		}
		t.space()
		t.i++ // :
		t.space()
		if sub < 0 || t.src[t.i] == 'n' {
			t.skip()
			continue
		}
		start := len(b)
		if b, err = t.value(b, f.Fields[sub]); err != nil {
			return b, err
		}
		spans[sub] = [2]int{start - mark, len(b) - mark}
	}
	t.tmp = append(t.tmp[:0], b[mark:]...)
	b = b[:mark]
	for j, key := range memberKeys(f) {
		b = append(b, key...)
		if sp := spans[j]; sp[1] > sp[0] {
			b = append(b, t.tmp[sp[0]:sp[1]]...)
		} else {
			b = append(b, "null"...)
		}
	}
	return append(b, '}'), nil
}

// keysByField caches memberKeys: *Field → [][]byte.
var keysByField sync.Map

// memberKeys returns what goes before each member's value in the API's
// JSON of an object of f: `{"first":`, then `,"second":` and so on.
func memberKeys(f *Field) [][]byte {
	if k, ok := keysByField.Load(f); ok {
		return k.([][]byte)
	}
	keys := make([][]byte, len(f.Fields))
	for j, sf := range f.Fields {
		sep := byte(',')
		if j == 0 {
			sep = '{'
		}
		keys[j] = append(appendString([]byte{sep}, sf.Name), ':')
	}
	keysByField.Store(f, keys)
	return keys
}

// memberName reads a member name and returns the index of the field of f
// it names, -1 if none.
func (t *storedJSON) memberName(f *Field) (int, error) {
	start := t.i
	escaped := t.skipString()
	name := t.src[start+1 : t.i-1]
	if escaped {
		var err error
		if t.scratch, err = jsontext.AppendUnquote(t.scratch[:0], t.src[start:t.i]); err != nil {
			return -1, err
		}
		name = t.scratch
	}
	return fieldIndex(f.Fields, name), nil
}

// array transcodes an array of an array field, leaving out null items as
// DecodeStored does.
func (t *storedJSON) array(b []byte, f *Field) ([]byte, error) {
	item := f.Items
	if item == nil {
		item = &Field{}
	}
	b = append(b, '[')
	first := true
	t.i++ // [
	for {
		t.space()
		switch t.src[t.i] {
		case ']':
			t.i++
			return append(b, ']'), nil
		case ',':
			t.i++
			t.space()
		}
		if t.src[t.i] == 'n' {
			t.i += len("null")
			continue
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		var err error
		if b, err = t.value(b, item); err != nil {
			return b, err
		}
	}
}

// fieldIndex returns the index of the field named name, -1 if none.
func fieldIndex(fields []*Field, name []byte) int {
	for j, f := range fields {
		if f.Name == string(name) {
			return j
		}
	}
	return -1
}

// skip moves past the value at t.i, which is valid JSON.
func (t *storedJSON) skip() {
	switch t.src[t.i] {
	case '"':
		t.skipString()
		return
	case '{', '[':
		depth := 0
		for {
			switch t.src[t.i] {
			case '"':
				t.skipString()
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					t.i++
					return
				}
			}
			t.i++
		}
	}
	// A number or a literal: up to the next delimiter.
	for t.i < len(t.src) {
		switch t.src[t.i] {
		case ',', '}', ']', ' ', '\t', '\n', '\r':
			return
		}
		t.i++
	}
}

// skipString moves past the string at t.i and reports whether it holds an
// escape.
func (t *storedJSON) skipString() (escaped bool) {
	t.i++ // opening quote
	for {
		switch t.src[t.i] {
		case '"':
			t.i++
			return escaped
		case '\\':
			escaped = true
			t.i += 2
			continue
		}
		t.i++
	}
}
