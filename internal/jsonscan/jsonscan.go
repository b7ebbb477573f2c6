// Package jsonscan walks JSON that Plinth wrote itself (an event's
// envelope, a record as the API encodes it) without decoding it into Go
// values: the members of an object as raw bytes, strings unquoted only
// when they hold escapes. The data lake lands events through it, at a
// fraction of the cost of a decoder. Input it does not expect makes it
// report failure, and callers fall back to a real decoder.
package jsonscan

import (
	"bytes"

	"github.com/go-json-experiment/json/jsontext"
)

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func skipSpace(b []byte, i int) int {
	for i < len(b) && isSpace(b[i]) {
		i++
	}
	return i
}

// Members calls fn with the name (still quoted-free, escapes kept) and raw
// value of every member of the object raw, in order, until fn returns
// false. ok is false when raw is not an object it can walk.
func Members(raw []byte, fn func(name, value []byte) bool) (ok bool) {
	i := skipSpace(raw, 0)
	if i >= len(raw) || raw[i] != '{' {
		return false
	}
	i = skipSpace(raw, i+1)
	if i < len(raw) && raw[i] == '}' {
		return skipSpace(raw, i+1) == len(raw)
	}
	for i < len(raw) {
		if raw[i] != '"' {
			return false
		}
		end := SkipString(raw, i)
		if end < 0 {
			return false
		}
		name := raw[i+1 : end-1]
		i = skipSpace(raw, end)
		if i >= len(raw) || raw[i] != ':' {
			return false
		}
		i = skipSpace(raw, i+1)
		vend := SkipValue(raw, i)
		if vend < 0 {
			return false
		}
		if !fn(name, raw[i:vend]) {
			return true
		}
		i = skipSpace(raw, vend)
		if i >= len(raw) {
			return false
		}
		switch raw[i] {
		case ',':
			i = skipSpace(raw, i+1)
		case '}':
			return skipSpace(raw, i+1) == len(raw)
		default:
			return false
		}
	}
	return false
}

// SkipString returns the index after the string starting at b[i], or -1.
// It jumps from quote to quote (bytes.IndexByte), counting the
// backslashes before each.
func SkipString(b []byte, i int) int {
	j := i + 1
	for {
		k := bytes.IndexByte(b[j:], '"')
		if k < 0 {
			return -1
		}
		q := j + k
		n := 0
		for p := q - 1; p > i && b[p] == '\\'; p-- {
			n++
		}
		if n%2 == 0 {
			return q + 1
		}
		j = q + 1
	}
}

// SkipValue returns the index after the JSON value starting at b[i], or -1.
func SkipValue(b []byte, i int) int {
	if i >= len(b) {
		return -1
	}
	switch b[i] {
	case '"':
		return SkipString(b, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				end := SkipString(b, j)
				if end < 0 {
					return -1
				}
				j = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1
				}
			}
		}
		return -1
	}
	j := i
	for j < len(b) {
		if c := b[j]; c == ',' || c == '}' || c == ']' || isSpace(c) {
			break
		}
		j++
	}
	if j == i {
		return -1
	}
	return j
}

// IsNull reports whether a raw value is null.
func IsNull(v []byte) bool { return len(v) == 4 && string(v) == "null" }

// Text returns the text of a raw string value: the bytes between the
// quotes when there is no escape, else the unquoted text appended to
// scratch. ok is false when v is not a string.
func Text(v, scratch []byte) (text, newScratch []byte, ok bool) {
	if len(v) < 2 || v[0] != '"' || v[len(v)-1] != '"' {
		return nil, scratch, false
	}
	inner := v[1 : len(v)-1]
	if bytes.IndexByte(inner, '\\') < 0 {
		return inner, scratch, true
	}
	start := len(scratch)
	out, err := jsontext.AppendUnquote(scratch, v)
	if err != nil {
		return nil, scratch, false
	}
	return out[start:], out, true
}

// Object walks the members of the object that starts at raw[i] (after
// space), as Members does, but leaves each value to fn, so that a value
// walked by fn is not skipped over first: fn gets the member's name and
// the offset of its value in raw, and returns the offset just past the
// value (SkipValue(raw, at) when it does not read it), or -1 to fail.
// Object returns the offset just past the object's closing brace, or -1
// when raw holds no object there that it can walk. Text may follow.
func Object(raw []byte, i int, fn func(name []byte, at int) int) int {
	i = skipSpace(raw, i)
	if i >= len(raw) || raw[i] != '{' {
		return -1
	}
	i = skipSpace(raw, i+1)
	if i < len(raw) && raw[i] == '}' {
		return i + 1
	}
	for i < len(raw) {
		if raw[i] != '"' {
			return -1
		}
		end := SkipString(raw, i)
		if end < 0 {
			return -1
		}
		name := raw[i+1 : end-1]
		i = skipSpace(raw, end)
		if i >= len(raw) || raw[i] != ':' {
			return -1
		}
		i = skipSpace(raw, i+1)
		if i >= len(raw) {
			return -1
		}
		vend := fn(name, i)
		if vend <= i || vend > len(raw) {
			return -1
		}
		i = skipSpace(raw, vend)
		if i >= len(raw) {
			return -1
		}
		switch raw[i] {
		case ',':
			i = skipSpace(raw, i+1)
		case '}':
			return i + 1
		default:
			return -1
		}
	}
	return -1
}
