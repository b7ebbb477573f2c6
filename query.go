package plinth

import (
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// List limits.
const (
	DefaultLimit = 20
	MaxLimit     = 100
)

// Op is a comparison in a Condition.
type Op string

const (
	OpEqual    Op = "eq"
	OpPrefix   Op = "prefix"   // Value is folded text
	OpContains Op = "contains" // Value is folded text
	OpGTE      Op = "gte"
	OpLTE      Op = "lte"
)

// Condition is one parsed filter of a list query.
type Condition struct {
	Filter *Filter
	Op     Op
	// Value is canonical for the filtered field (see Field.Canonical), and
	// folded (see Fold) for OpPrefix and OpContains.
	Value any
}

// Query is a parsed list request. Records come in ascending key order.
type Query struct {
	Conditions []Condition
	Limit      int
	After      any // key of the last record of the previous page; nil for the first
	// NestedJSON asks for object and array fields as JSONText, as
	// ScanQuery.NestedJSON does: for callers that only write the records
	// out as the API's JSON (the list route). A store may ignore it.
	NestedJSON bool
	// RecordJSON asks for each record as the API's JSON in Record.JSON,
	// its key in Record.Key: for callers that only write the records out
	// (the list route). A store may ignore it; MarshalRecord writes either
	// form the same, and KeyOf reads the key of either.
	RecordJSON bool
}

// Page is one page of a list.
type Page struct {
	Records []Record
	More    bool // more records follow the last one
	// Buffer, when set, holds the records' JSON (Query.RecordJSON): a store
	// takes it from PageBuffer, and Release hands it back.
	Buffer *[]byte
}

// pageBuffers keep the buffers of pages' JSON from one list request to the
// next: a first page of 20 residents is about 17 KB of JSON, and making
// (and growing) that buffer afresh for every page was two fifths of what
// serve allocated per list request (BENCHMARKS.md, "2026-12-01, eighth
// session").
var pageBuffers = sync.Pool{New: func() any { return new([]byte) }}

// maxPooledBuffer is the largest buffer pageBuffers keeps: an unusually
// large page's is left to the collector.
const maxPooledBuffer = 1 << 20

// PageBuffer returns an empty buffer for the records' JSON of a page,
// often with the room an earlier page needed; the store sets it as the
// page's Buffer once it holds the JSON (growing it as append does).
func PageBuffer() *[]byte {
	b := pageBuffers.Get().(*[]byte)
	*b = (*b)[:0]
	return b
}

// Release hands the page's Buffer back for a later page. Call it once no
// record's JSON is used any more (the answer is written); a page that is
// never released is simply left to the collector.
func (p *Page) Release() {
	ReleasePageBuffer(p.Buffer)
	p.Buffer = nil
}

// ReleasePageBuffer hands back a buffer PageBuffer gave (nil: nothing),
// once nothing uses its bytes. The list route writes its answers into
// these buffers too.
func ReleasePageBuffer(b *[]byte) {
	if b != nil && cap(*b) <= maxPooledBuffer {
		pageBuffers.Put(b)
	}
}

// ParseQuery turns list query parameters into a Query. Unknown parameters,
// bad values, a bad limit or a bad cursor are reported by name.
func (e *Entity) ParseQuery(values url.Values) (Query, error) {
	q := Query{Limit: DefaultLimit}
	var errs []FieldError
	bad := func(param, format string, args ...any) {
		errs = append(errs, FieldError{Parameter: param, Detail: fmt.Sprintf(format, args...)})
	}
	names := make([]string, 0, len(values))
	for name := range values {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		vals := values[name]
		if len(vals) != 1 {
			bad(name, "must be given once")
			continue
		}
		raw := vals[0]
		switch name {
		case "limit":
			n, err := strconv.Atoi(raw)
			if err != nil || n < 1 || n > MaxLimit {
				bad(name, "must be an integer from 1 to %d", MaxLimit)
				continue
			}
			q.Limit = n
			continue
		case "cursor":
			continue // decoded below, once the filters are known
		}
		f, op := e.filterForParam(name)
		if f == nil {
			bad(name, "unknown query parameter; this list accepts %s", strings.Join(e.listParams(), ", "))
			continue
		}
		if raw == "" {
			bad(name, "must not be empty")
			continue
		}
		c := Condition{Filter: f, Op: op}
		switch op {
		case OpPrefix, OpContains:
			c.Value = Fold(raw)
		default:
			v, err := f.Field.parseParam(raw)
			if err != nil {
				bad(name, "%s", err)
				continue
			}
			c.Value = v
		}
		q.Conditions = append(q.Conditions, c)
	}
	if raw, ok := values["cursor"]; ok && len(raw) == 1 {
		after, err := e.decodeCursor(raw[0], q.Conditions)
		if err != nil {
			bad("cursor", "%s", err)
		}
		q.After = after
	}
	if len(errs) > 0 {
		return Query{}, &ValidationError{Errors: errs}
	}
	return q, nil
}

// filterForParam finds the filter a query parameter belongs to, with the
// comparison it asks for.
func (e *Entity) filterForParam(name string) (*Filter, Op) {
	if f := e.Filter(name); f != nil {
		switch f.Match {
		case MatchPrefix:
			return f, OpPrefix
		case MatchContains:
			return f, OpContains
		default:
			return f, OpEqual
		}
	}
	for _, suffix := range []struct {
		s  string
		op Op
	}{{"_from", OpGTE}, {"_to", OpLTE}} {
		if base, ok := strings.CutSuffix(name, suffix.s); ok {
			if f := e.Filter(base); f != nil && f.Match == MatchRange {
				return f, suffix.op
			}
		}
	}
	return nil, ""
}

// ListParams returns every query parameter the entity's list accepts.
func (e *Entity) listParams() []string {
	var ps []string
	for _, f := range e.Filters {
		ps = append(ps, f.Param)
		if f.Match == MatchRange {
			ps = append(ps, f.Param+"_from", f.Param+"_to")
		}
	}
	return append(ps, "limit", "cursor")
}

// filterDigest is a short digest of the conditions, stored in cursors.
func filterDigest(conds []Condition) string {
	parts := make([]string, len(conds))
	for i, c := range conds {
		parts[i] = fmt.Sprintf("%s|%s|%v", c.Filter.Param, c.Op, c.Value)
	}
	return CursorScope(parts...)
}

// Cursor returns the opaque cursor for the page after the record with key
// after, under the same conditions.
func (e *Entity) Cursor(after any, q Query) string {
	return EncodeCursor(KeyString(after), filterDigest(q.Conditions))
}

func (e *Entity) decodeCursor(s string, conds []Condition) (any, error) {
	after, err := DecodeCursor(s, filterDigest(conds))
	if err != nil {
		return nil, err
	}
	key, err := e.ParseKey(after)
	if err != nil {
		return nil, ErrBadCursor
	}
	return key, nil
}
