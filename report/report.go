// Package report turns the records of one entity into the files the
// Reporting API serves (GET /api/v1/reports/{plural}): CSV, NDJSON, a JSON
// array and Parquet. It chooses the format from a request (Negotiate) and
// streams records into it (NewEncoder), one record at a time, so memory does
// not grow with the number of records.
//
// The package has no outside dependencies. Parquet lives in package
// github.com/plinth-data/plinth/parquet (named after its dependency,
// parquet-go), which registers its encoder here when it is linked: a
// program that serves Parquet imports it, for instance
//
//	import _ "github.com/plinth-data/plinth/parquet"
//
// and NewEncoder(FormatParquet, …) fails with ErrNotLinked otherwise.
//
// # Columns
//
// Every format carries every field of the entity in spec order (the key
// first), then version, createdAt and updatedAt: the columns
// plinth.Entity.MarshalRecord writes for the API. Values are the API's:
// dates "2006-01-02", datetimes RFC 3339 in UTC, nested objects and arrays
// as the API's JSON.
//
// # How an export ends
//
// Encoder.End finishes a complete export. Where the format has room for it,
// the end carries the watermark (to pass as since= next time) and the
// number of records; the HTTP handler also sends both as trailers.
//
//	CSV      nothing in-band: RFC 4180 has no place for it. Trailers only.
//	NDJSON   a last line {"@plinth":{"watermark":"…","count":N}}; every
//	         record line is an object of the entity's columns, so a reader
//	         tells the end line by its only member "@plinth".
//	JSON     the closing "]" of the array; the array holds records only
//	         (the issue asks for a JSON array). Trailers only.
//	Parquet  the file footer, whose key-value metadata holds
//	         "plinth.watermark" and "plinth.count".
//
// An export that fails part-way must not look complete: the caller aborts
// the response without calling End. What the client then sees: CSV ends
// mid-file (possibly mid-row) without the count trailer; NDJSON has no
// "@plinth" line; JSON is not valid (no closing "]"); Parquet has no
// footer and no reader opens it.
//
// # Buffering
//
// The CSV, NDJSON and JSON encoders keep nothing between calls: each Write
// hands the record's bytes to w in one call, so callers wrap w in a
// bufio.Writer and flush it as they please. The Parquet encoder holds one
// row group (bounded in rows and bytes) before writing it out.
package report

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"

	"github.com/plinth-data/plinth"
)

// Format is a report format.
type Format string

const (
	FormatCSV     Format = "csv"
	FormatNDJSON  Format = "ndjson"
	FormatJSON    Format = "json"
	FormatParquet Format = "parquet"
)

// Formats lists every format, in the order Negotiate prefers them when a
// client accepts several equally.
var Formats = []Format{FormatCSV, FormatNDJSON, FormatJSON, FormatParquet}

// DefaultFormat is the format of a request that names none (no format=,
// no Accept, or only wildcards): CSV, which every reporting tool, Excel
// and a browser's download open.
const DefaultFormat = FormatCSV

// MediaType returns the Content-Type of the format.
func (f Format) MediaType() string {
	switch f {
	case FormatCSV:
		return "text/csv; charset=utf-8"
	case FormatNDJSON:
		return "application/x-ndjson"
	case FormatJSON:
		return "application/json"
	case FormatParquet:
		return "application/vnd.apache.parquet"
	}
	return ""
}

// Extension returns the file name extension of the format, without a dot.
func (f Format) Extension() string {
	if f.MediaType() == "" {
		return ""
	}
	return string(f)
}

// MediaTypes lists the media types of every format, for a 406 answer.
func MediaTypes() []string {
	out := make([]string, len(Formats))
	for i, f := range Formats {
		out[i] = f.MediaType()
	}
	return out
}

// mediaTypes are the media types (without parameters, lower case) that
// select each format: the one it is served as first, then aliases in use.
var mediaTypes = map[Format][]string{
	FormatCSV:     {"text/csv"},
	FormatNDJSON:  {"application/x-ndjson", "application/ndjson", "application/jsonl", "application/x-jsonlines"},
	FormatJSON:    {"application/json"},
	FormatParquet: {"application/vnd.apache.parquet", "application/x-parquet", "application/parquet"},
}

// ParseFormat reads a format= value: a format name (csv, ndjson, json,
// parquet) or one of its media types, in any case.
func ParseFormat(s string) (Format, bool) {
	s = strings.ToLower(strings.TrimSpace(s))
	if i := strings.IndexByte(s, ';'); i >= 0 {
		s = strings.TrimSpace(s[:i])
	}
	for _, f := range Formats {
		if s == string(f) {
			return f, true
		}
		for _, mt := range mediaTypes[f] {
			if s == mt {
				return f, true
			}
		}
	}
	return "", false
}

// Negotiate picks the format of a report request. An explicit format=
// value wins over Accept; an unknown one is not acceptable. Otherwise the
// Accept header decides (RFC 9110 §12.5.1): each format takes the q-value
// of the most specific media range that matches it (text/csv beats text/*
// beats */*; media type parameters other than q are ignored), q=0 rules a
// format out, the highest q wins, and ties go to the range listed first,
// then to the order of Formats. An absent or empty Accept means
// DefaultFormat. ok is false when nothing is acceptable: answer 406 and
// list MediaTypes.
func Negotiate(formatParam, accept string) (f Format, ok bool) {
	if strings.TrimSpace(formatParam) != "" {
		return ParseFormat(formatParam)
	}
	if strings.TrimSpace(accept) == "" {
		return DefaultFormat, true
	}
	ranges := parseAccept(accept)
	best, bestQ, bestPos := Format(""), 0.0, 0
	for _, f := range Formats {
		q, pos, spec := 0.0, 0, -1
		for i, r := range ranges {
			s := r.matches(f)
			if s > spec || s == spec && s >= 0 && r.q > q {
				q, pos, spec = r.q, i, s
			}
		}
		if spec < 0 || q <= 0 {
			continue
		}
		if q > bestQ || q == bestQ && pos < bestPos {
			best, bestQ, bestPos = f, q, pos
		}
	}
	return best, best != ""
}

type mediaRange struct {
	typ, sub string
	q        float64
}

// matches returns how specifically the range matches the format: 2 for
// its media type, 1 for type/*, 0 for */*, -1 for no match.
func (r mediaRange) matches(f Format) int {
	best := -1
	for _, mt := range mediaTypes[f] {
		typ, sub, _ := strings.Cut(mt, "/")
		switch {
		case r.typ == typ && r.sub == sub:
			return 2
		case r.typ == typ && r.sub == "*":
			best = max(best, 1)
		case r.typ == "*" && r.sub == "*":
			best = max(best, 0)
		}
	}
	return best
}

// parseAccept parses an Accept header, dropping malformed ranges.
func parseAccept(accept string) []mediaRange {
	var out []mediaRange
	for part := range strings.SplitSeq(accept, ",") {
		params := strings.Split(part, ";")
		typ, sub, ok := strings.Cut(strings.ToLower(strings.TrimSpace(params[0])), "/")
		typ, sub = strings.TrimSpace(typ), strings.TrimSpace(sub)
		if !ok || typ == "" || sub == "" || typ == "*" && sub != "*" {
			continue
		}
		r := mediaRange{typ: typ, sub: sub, q: 1}
		for _, p := range params[1:] {
			name, value, _ := strings.Cut(p, "=")
			if strings.EqualFold(strings.TrimSpace(name), "q") {
				q, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
				if err != nil || q < 0 || q > 1 {
					q = -1 // malformed: the range counts for nothing
				}
				r.q = q
			}
		}
		if r.q >= 0 {
			out = append(out, r)
		}
	}
	return out
}

// Options tune an encoder.
type Options struct {
	// BOM starts a CSV file with the UTF-8 byte order mark, which Excel
	// needs to read non-ASCII text as UTF-8. Other formats ignore it.
	BOM bool
}

// Encoder streams the records of one entity to a writer.
type Encoder interface {
	// Write encodes one record.
	Write(rec plinth.Record) error
	// End finishes a complete export of count records: it writes the
	// format's end and, where the format has room for them, the watermark
	// and count (see the package documentation). It does not close the
	// underlying writer. An export that fails is abandoned without End.
	End(watermark string, count int64) error
}

// NewEncoderFunc makes an encoder of one format.
type NewEncoderFunc func(w io.Writer, e *plinth.Entity, opts Options) (Encoder, error)

// ErrNotLinked is returned by NewEncoder for a format whose package the
// program does not link (Parquet without package parquet).
var ErrNotLinked = errors.New("report: the encoder of this format is not linked into the program")

var (
	registryMu sync.RWMutex
	registry   = map[Format]NewEncoderFunc{
		FormatCSV:    newCSV,
		FormatNDJSON: newNDJSON,
		FormatJSON:   newJSON,
	}
)

// Register installs the encoder of a format kept in another package
// (package parquet registers FormatParquet when it is linked).
func Register(f Format, fn NewEncoderFunc) {
	registryMu.Lock()
	defer registryMu.Unlock()
	registry[f] = fn
}

// NewEncoder returns an encoder that writes the records of e to w in the
// format f.
func NewEncoder(f Format, w io.Writer, e *plinth.Entity, opts Options) (Encoder, error) {
	if f.MediaType() == "" {
		return nil, fmt.Errorf("report: unknown format %q", f)
	}
	registryMu.RLock()
	fn := registry[f]
	registryMu.RUnlock()
	if fn == nil {
		return nil, fmt.Errorf("%w: %s (import github.com/plinth-data/plinth/parquet)", ErrNotLinked, f)
	}
	return fn(w, e, opts)
}

// Columns returns the column names of every format, in order: the
// entity's fields in spec order, then version, createdAt and updatedAt.
func Columns(e *plinth.Entity) []string {
	out := make([]string, 0, len(e.Fields)+len(plinth.SystemFields))
	for _, f := range e.Fields {
		out = append(out, f.Name)
	}
	return append(out, plinth.SystemFields...)
}

// errEnded is returned by Write or End after End.
var errEnded = errors.New("report: the export has ended")
