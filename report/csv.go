package report

import (
	"bytes"
	"io"
	"strconv"
	"time"

	"github.com/plinth-data/plinth"
)

// bom is the UTF-8 byte order mark.
const bom = "\uFEFF"

// csvEncoder writes RFC 4180 CSV: a header row of the column names, then
// one row per record, fields separated by commas and rows ended by CRLF.
// A field is quoted when it holds a comma, a double quote, CR or LF (quotes
// doubled inside), and written byte for byte otherwise: line breaks inside
// a value are kept as they are. Null is an empty field; an empty string is
// a quoted empty field (""), which readers that tell them apart (DuckDB,
// pandas with keep_default_na=False) read as an empty string. Nested
// objects and arrays are the API's JSON text; datetimes RFC 3339 in UTC;
// dates 2006-01-02; booleans true/false.
//
// Values are not altered to defuse spreadsheet formulas (a text starting
// with =, +, - or @): the export is the data, exactly.
type csvEncoder struct {
	w     io.Writer
	e     *plinth.Entity
	row   []byte
	cell  []byte
	ended bool
}

func newCSV(w io.Writer, e *plinth.Entity, opts Options) (Encoder, error) {
	c := &csvEncoder{w: w, e: e}
	if opts.BOM {
		c.row = append(c.row, bom...)
	}
	for i, name := range Columns(e) {
		if i > 0 {
			c.row = append(c.row, ',')
		}
		c.row = appendCSVField(c.row, []byte(name), true)
	}
	c.row = append(c.row, '\r', '\n')
	if _, err := w.Write(c.row); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *csvEncoder) Write(rec plinth.Record) error {
	if c.ended {
		return errEnded
	}
	b := c.row[:0]
	for i, f := range c.e.Fields {
		if i > 0 {
			b = append(b, ',')
		}
		v := rec.Value(i, f)
		if f.IsNested() {
			if j := c.nestedText(f, v); j != nil {
				b = appendCSVField(b, j, false)
			}
			continue
		}
		var ok bool
		c.cell, ok = appendScalar(c.cell[:0], v)
		if ok {
			b = appendCSVField(b, c.cell, true)
		}
	}
	b = append(b, ',')
	b = strconv.AppendInt(b, rec.Version, 10)
	b = append(b, ',')
	b = rec.CreatedAt.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, ',')
	b = rec.UpdatedAt.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, '\r', '\n')
	c.row = b
	_, err := c.w.Write(b)
	return err
}

// nestedText returns the API's JSON text of a nested value (as it is when
// the scan gave it as text), nil for null. The bytes are valid until the
// next call.
func (c *csvEncoder) nestedText(f *plinth.Field, v any) []byte {
	switch v := v.(type) {
	case nil:
		return nil
	case plinth.JSONText:
		return v
	}
	c.cell = f.AppendJSON(c.cell[:0], v)
	if string(c.cell) == "null" {
		return nil
	}
	return c.cell
}

// End writes nothing: CSV has no place for the watermark and count, which
// travel as HTTP trailers.
func (c *csvEncoder) End(watermark string, count int64) error {
	if c.ended {
		return errEnded
	}
	c.ended = true
	return nil
}

// quoted marks the bytes that make a CSV field need quotes.
var quoted = [256]bool{',': true, '"': true, '\n': true, '\r': true}

// needsQuotes reports whether a field holds a byte that must be quoted (a
// table lookup per byte: cheaper than bytes.IndexAny on short fields).
func needsQuotes(field []byte) bool {
	for _, c := range field {
		if quoted[c] {
			return true
		}
	}
	return false
}

// appendCSVField appends one field, quoted if it must be. An empty text
// is written as "" when quoteEmpty is set, so that it is not read as null.
func appendCSVField(b, field []byte, quoteEmpty bool) []byte {
	if len(field) == 0 {
		if quoteEmpty {
			return append(b, '"', '"')
		}
		return b
	}
	if !needsQuotes(field) {
		return append(b, field...)
	}
	b = append(b, '"')
	for {
		i := bytes.IndexByte(field, '"')
		if i < 0 {
			break
		}
		b = append(b, field[:i+1]...) // through the quote, which is doubled
		b = append(b, '"')
		field = field[i+1:]
	}
	b = append(b, field...)
	return append(b, '"')
}
