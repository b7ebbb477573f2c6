package plinth

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
)

// Canonical values, as held in Record.Data and Condition.Value:
//
//	string, uuid (lower case), date ("2006-01-02")   string
//	datetime                                        string, RFC 3339 in UTC, to the microsecond
//	integer                                         int64
//	number                                          float64
//	boolean                                         bool
//	object                                          map[string]any
//	array                                           []any
//
// Nulls are never stored: an absent key means null.

// Validate checks a decoded JSON document (numbers as json.Number, int64 or
// float64) against the entity and returns its canonical data. It reports
// every problem at once. When create is true a generated key must be absent
// and a natural key present.
func (e *Entity) Validate(doc map[string]any, create bool) (map[string]any, error) {
	var errs []FieldError
	out := validateObject(e.Fields, doc, "", &errs, false)
	if len(errs) > 0 { // again, naming where each problem is
		errs = errs[:0]
		out = validateObject(e.Fields, doc, "", &errs, true)
	}
	key := e.KeyField()
	kv, hasKey := out[key.Name]
	if s, ok := kv.(string); ok && e.Key.Type == KeyText {
		if err := checkStringKey(s); err != nil {
			errs = append(errs, FieldError{Field: key.Name, Detail: err.Error()})
		}
	}
	switch {
	case create && e.Key.Generated && hasKey:
		errs = append(errs, FieldError{Field: key.Name, Detail: "is assigned by the server; leave it out"})
	case !e.Key.Generated && !hasKey && !slices.ContainsFunc(errs, func(fe FieldError) bool { return fe.Field == key.Name }):
		errs = append(errs, FieldError{Field: key.Name, Detail: "is required"})
	}
	if len(errs) > 0 {
		return nil, &ValidationError{Errors: errs}
	}
	return out, nil
}

// Canonical checks one value against a field and returns its canonical form.
func (f *Field) Canonical(v any) (any, error) {
	var errs []FieldError
	out := validateValue(f, v, f.Name, &errs, true)
	if len(errs) > 0 {
		return nil, &ValidationError{Errors: errs}
	}
	return out, nil
}

// validateObject and validateValue record problems under their path when
// paths is set; without, they only find whether there is any (the paths of
// nested values cost an allocation each, and most records are valid).
func validateObject(fields []*Field, doc map[string]any, prefix string, errs *[]FieldError, paths bool) map[string]any {
	out := make(map[string]any, len(fields))
	for name := range doc {
		if FieldByName(fields, name) == nil {
			unknownFields(fields, doc, prefix, errs)
			break
		}
	}
	for _, f := range fields {
		v, ok := doc[f.Name]
		path := f.Name
		if paths {
			path = prefix + f.Name
		}
		if !ok || v == nil {
			if f.Required {
				*errs = append(*errs, FieldError{Field: path, Detail: "is required"})
			}
			continue
		}
		if cv := validateValue(f, v, path, errs, paths); cv != nil {
			out[f.Name] = cv
		}
	}
	return out
}

// unknownFields records the document's names that are not fields, in order.
func unknownFields(fields []*Field, doc map[string]any, prefix string, errs *[]FieldError) {
	names := make([]string, 0, len(doc))
	for name := range doc {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		if FieldByName(fields, name) == nil {
			detail := "is not a field of this record"
			if prefix == "" && slices.Contains(SystemFields, name) {
				detail = "is set by the server; leave it out"
			}
			*errs = append(*errs, FieldError{Field: prefix + name, Detail: detail})
		}
	}
}

// validateValue returns the canonical value, or nil after recording an error.
func validateValue(f *Field, v any, path string, errs *[]FieldError, paths bool) any {
	bad := func(format string, args ...any) any {
		*errs = append(*errs, FieldError{Field: path, Detail: fmt.Sprintf(format, args...)})
		return nil
	}
	switch f.Type {
	case TypeString, TypeDate, TypeDateTime, TypeUUID:
		s, ok := v.(string)
		if !ok {
			if f.Format == FormatUPRN {
				if n, ok := toInt(v); ok && n >= 0 {
					return checkString(f, strconv.FormatInt(n, 10), bad)
				}
			}
			return bad("must be a %s", typeNoun(f.Type))
		}
		return checkString(f, s, bad)
	case TypeInteger:
		n, ok := toInt(v)
		if !ok {
			return bad("must be an integer")
		}
		if f.Format == FormatUPRN && (n < 0 || n > 999999999999) {
			return bad("must be a UPRN of 1 to 12 digits")
		}
		if msg := checkRange(f, float64(n)); msg != "" {
			return bad("%s", msg)
		}
		return n
	case TypeNumber:
		x, ok := toFloat(v)
		if !ok {
			return bad("must be a number")
		}
		if msg := checkRange(f, x); msg != "" {
			return bad("%s", msg)
		}
		return x
	case TypeBoolean:
		b, ok := v.(bool)
		if !ok {
			return bad("must be true or false")
		}
		return b
	case TypeObject:
		m, ok := v.(map[string]any)
		if !ok {
			return bad("must be an object")
		}
		prefix := ""
		if paths {
			prefix = path + "."
		}
		return validateObject(f.Fields, m, prefix, errs, paths)
	case TypeArray:
		items, ok := v.([]any)
		if !ok {
			return bad("must be an array")
		}
		out := make([]any, 0, len(items))
		for i, item := range items {
			itemPath := path
			if paths {
				itemPath = fmt.Sprintf("%s[%d]", path, i)
			}
			if item == nil {
				*errs = append(*errs, FieldError{Field: itemPath, Detail: "must not be null"})
				continue
			}
			if cv := validateValue(f.Items, item, itemPath, errs, paths); cv != nil {
				out = append(out, cv)
			}
		}
		return out
	}
	return bad("has unknown type %q", f.Type)
}

func checkString(f *Field, s string, bad func(string, ...any) any) any {
	switch f.Type {
	case TypeDate:
		if _, err := time.Parse(time.DateOnly, s); err != nil {
			return bad("must be a date such as 1990-04-23")
		}
		return s
	case TypeDateTime:
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return bad("must be a date and time in RFC 3339 format such as 2024-05-01T09:30:00Z")
		}
		// Microseconds are the finest precision every engine holds.
		return FormatTime(t.Truncate(time.Microsecond))
	case TypeUUID:
		u, err := uuid.Parse(s)
		if err != nil || len(s) != 36 {
			return bad("must be a UUID such as 3f2b8c1e-7d4a-4f0e-9b1a-2c6d8e0f1a2b")
		}
		return u.String()
	}
	if !utf8.ValidString(s) {
		return bad("must be valid UTF-8 text")
	}
	if strings.ContainsRune(s, 0) {
		// PostgreSQL cannot store U+0000; refuse it everywhere alike.
		return bad("must not contain the NUL character (U+0000)")
	}
	if f.Format != "" {
		c, err := checkFormat(f.Format, s)
		if err != nil {
			return bad("%s", err)
		}
		s = c
	}
	if f.MaxLength != nil && utf8.RuneCountInString(s) > *f.MaxLength {
		return bad("must be at most %d characters long", *f.MaxLength)
	}
	if len(f.Enum) > 0 && !slices.Contains(f.Enum, s) {
		return bad("must be one of %s", strings.Join(f.Enum, ", "))
	}
	if f.Pattern != nil && !f.Pattern.MatchString(s) {
		return bad("must match the pattern %s", f.Pattern)
	}
	return s
}

func checkRange(f *Field, x float64) string {
	if f.Min != nil && x < *f.Min {
		return fmt.Sprintf("must be at least %s", strconv.FormatFloat(*f.Min, 'f', -1, 64))
	}
	if f.Max != nil && x > *f.Max {
		return fmt.Sprintf("must be at most %s", strconv.FormatFloat(*f.Max, 'f', -1, 64))
	}
	return ""
}

func typeNoun(t Type) string {
	switch t {
	case TypeDate:
		return "date string such as 1990-04-23"
	case TypeDateTime:
		return "date-time string such as 2024-05-01T09:30:00Z"
	case TypeUUID:
		return "UUID string"
	}
	return "string"
}

func toInt(v any) (int64, bool) {
	switch n := v.(type) {
	case json.Number:
		i, err := strconv.ParseInt(string(n), 10, 64)
		return i, err == nil
	case int64:
		return n, true
	case int:
		return int64(n), true
	case float64:
		if n == math.Trunc(n) && math.Abs(n) < 1<<53 {
			return int64(n), true
		}
	}
	return 0, false
}

func toFloat(v any) (float64, bool) {
	switch n := v.(type) {
	case json.Number:
		x, err := strconv.ParseFloat(string(n), 64)
		return x, err == nil && !math.IsInf(x, 0)
	case float64:
		return n, true
	case int64:
		return float64(n), true
	case int:
		return float64(n), true
	}
	return 0, false
}

// FormatTime formats a time the way Plinth writes every datetime: RFC 3339
// in UTC.
func FormatTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// parseParam parses a query parameter value for a filtered field.
func (f *Field) parseParam(raw string) (any, error) {
	var v any = raw
	switch f.Type {
	case TypeInteger:
		n, err := strconv.ParseInt(raw, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("must be an integer")
		}
		v = n
	case TypeNumber:
		x, err := strconv.ParseFloat(raw, 64)
		if err != nil {
			return nil, fmt.Errorf("must be a number")
		}
		v = x
	case TypeBoolean:
		b, err := strconv.ParseBool(raw)
		if err != nil {
			return nil, fmt.Errorf("must be true or false")
		}
		v = b
	}
	// Filters compare with values as they are stored, so the same rules
	// apply, except length and enum limits, which only guard writes.
	probe := *f
	probe.MaxLength, probe.Enum, probe.Pattern, probe.Min, probe.Max = nil, nil, nil, nil, nil
	out, err := probe.Canonical(v)
	if err != nil {
		return nil, fmt.Errorf("%s", err.(*ValidationError).Errors[0].Detail)
	}
	return out, nil
}

// ParseKey parses a key as it appears in a URL or cursor.
func (e *Entity) ParseKey(s string) (any, error) {
	switch e.Key.Type {
	case KeyInteger:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("must be an integer")
		}
		return n, nil
	case KeyUUID:
		u, err := uuid.Parse(s)
		if err != nil || len(s) != 36 {
			return nil, fmt.Errorf("must be a UUID")
		}
		return u.String(), nil
	}
	if err := checkStringKey(s); err != nil {
		return nil, err
	}
	return s, nil
}

// checkStringKey is the one rule for string keys, applied where a key comes
// in (a body, a path, a cursor) so that every stored key can be reached by
// its URL on every store: not empty, not a dot segment, no control
// characters.
func checkStringKey(s string) error {
	switch {
	case s == "":
		return fmt.Errorf("must not be empty")
	case s == "." || s == "..":
		return fmt.Errorf("must not be %q, which URLs cannot carry as a path segment", s)
	case strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return fmt.Errorf("must not contain control characters")
	}
	return nil
}

// KeyString formats a key for a URL or cursor.
func KeyString(key any) string {
	switch k := key.(type) {
	case int64:
		return strconv.FormatInt(k, 10)
	case string:
		return k
	}
	return fmt.Sprint(key)
}

// KeyOf returns the key of a record, in any form (Record.Values,
// Record.Key).
func (e *Entity) KeyOf(r Record) any {
	if r.Key != nil {
		return r.Key
	}
	if r.Values != nil {
		for i, f := range e.Fields {
			if f.Name == e.Key.Name {
				return r.Values[i]
			}
		}
	}
	return r.Data[e.Key.Name]
}

// MergePatch applies a JSON Merge Patch (RFC 7396) to a copy of doc.
func MergePatch(doc map[string]any, patch map[string]any) map[string]any {
	out := make(map[string]any, len(doc))
	for k, v := range doc {
		out[k] = v
	}
	for k, pv := range patch {
		if pv == nil {
			delete(out, k)
			continue
		}
		if pm, ok := pv.(map[string]any); ok {
			cur, _ := out[k].(map[string]any)
			out[k] = MergePatch(cur, pm)
			continue
		}
		out[k] = pv
	}
	return out
}

// MarshalRecord encodes a record as the API returns it: every field in spec
// order (null when absent), then version, createdAt and updatedAt. It is on
// the path of every read, so it appends bytes directly rather than going
// through encoding/json. A record a store wrote as JSON (Record.JSON) is
// returned as it is.
func (e *Entity) MarshalRecord(r Record) []byte {
	if r.JSON != nil {
		return r.JSON
	}
	return e.AppendRecord(make([]byte, 0, 1024), r)
}

// AppendRecord appends what MarshalRecord returns to b, for callers that
// reuse a buffer from record to record.
func (e *Entity) AppendRecord(b []byte, r Record) []byte {
	if r.JSON != nil {
		return append(b, r.JSON...)
	}
	b = append(b, '{')
	for i, f := range e.Fields {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, f.Name)
		b = append(b, ':')
		b = appendValue(b, f, r.Value(i, f))
	}
	b = append(b, `,"version":`...)
	b = strconv.AppendInt(b, r.Version, 10)
	b = append(b, `,"createdAt":"`...)
	b = r.CreatedAt.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","updatedAt":"`...)
	b = r.UpdatedAt.UTC().AppendFormat(b, time.RFC3339Nano)
	return append(b, '"', '}')
}

// AppendJSON appends the JSON of v, a canonical value of the field f, byte
// for byte as MarshalRecord writes it for f (null for nil).
func (f *Field) AppendJSON(b []byte, v any) []byte {
	return appendValue(b, f, v)
}

func appendObjectFields(b []byte, fields []*Field, data map[string]any) []byte {
	for i, f := range fields {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, f.Name)
		b = append(b, ':')
		b = appendValue(b, f, data[f.Name])
	}
	return b
}

func appendValue(b []byte, f *Field, v any) []byte {
	switch v := v.(type) {
	case nil:
		return append(b, "null"...)
	case JSONText:
		return append(b, v...)
	case string:
		return appendString(b, v)
	case int64:
		return strconv.AppendInt(b, v, 10)
	case float64:
		return appendFloat(b, v)
	case bool:
		return strconv.AppendBool(b, v)
	case map[string]any:
		if f.Type != TypeObject {
			break
		}
		b = append(b, '{')
		b = appendObjectFields(b, f.Fields, v)
		return append(b, '}')
	case []any:
		if f.Type != TypeArray {
			break
		}
		b = append(b, '[')
		for i, item := range v {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendValue(b, f.Items, item)
		}
		return append(b, ']')
	}
	// Anything else (json.Number from a store, say) goes the slow way.
	enc, err := json.Marshal(v)
	if err != nil {
		return append(b, "null"...)
	}
	return append(b, enc...)
}

// AppendJSONString appends s as a JSON string, as MarshalRecord writes a
// string value (for stores that write records as the API's JSON).
func AppendJSONString(b []byte, s string) []byte { return appendString(b, s) }

// AppendJSONNumber appends x as MarshalRecord writes a number.
func AppendJSONNumber(b []byte, x float64) []byte { return appendFloat(b, x) }

// appendFloat formats a number as encoding/json does.
func appendFloat(b []byte, x float64) []byte {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return append(b, "null"...)
	}
	format := byte('f')
	if abs := math.Abs(x); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	return strconv.AppendFloat(b, x, format, -1, 64)
}

// appendString appends s as a JSON string. Stored text is valid UTF-8 (it
// was validated on the way in); quotes, backslashes, control characters and
// the JavaScript line separators are escaped.
func appendString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < 0x80 {
			i++
			continue
		}
		if c < 0x80 {
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == '\u2028' || r == '\u2029' || r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			if r == utf8.RuneError {
				b = append(b, `\ufffd`...)
			} else {
				b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
			}
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
