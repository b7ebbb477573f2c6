// Package parquet writes the records of an entity as Apache Parquet, with
// typed columns derived from the entity's spec. It is named after its
// outside dependency, github.com/parquet-go/parquet-go.
//
// The mapping from a spec to Parquet is one function, SchemaFor, with one
// row mapping, Mapping.AppendRow. The Reporting API's Parquet format uses
// them, and so must the data lake, unchanged, so that a report and a lake
// snapshot of the same entity have the same columns and types and a
// report can move to the lake as it is. Changing the mapping changes both.
//
// # The mapping
//
// One column per top-level field, in spec order (the key first), then
// version, createdAt and updatedAt. Every column is OPTIONAL (null when
// the record has no value), flat (no nested groups):
//
//	spec type        Parquet physical type   logical type
//	string           BYTE_ARRAY              STRING (UTF8)
//	uuid             BYTE_ARRAY              STRING, canonical lower-case text
//	integer          INT64                   INT(64, signed)
//	number           DOUBLE                  (none)
//	boolean          BOOLEAN                 (none)
//	date             INT32                   DATE (days since 1970-01-01)
//	datetime         INT64                   TIMESTAMP(MICROS, isAdjustedToUTC=true)
//	object, array    BYTE_ARRAY              STRING holding the API's JSON text
//	version          INT64                   INT(64, signed)
//	createdAt, updatedAt INT64               TIMESTAMP(MICROS, isAdjustedToUTC=true)
//
// uuid is text rather than Parquet's UUID logical type: DuckDB reads both,
// but Athena/Trino, Spark and Power BI read the 16-byte UUID type as
// binary or not at all, and the text is what the API and the CSV carry.
// Nested values are plain STRING rather than the JSON logical type for the
// same reason: every reader shows a STRING as text (DuckDB's json
// functions and Athena's json_extract take it as it is).
//
// Datetimes are held to the microsecond, as Plinth stores them (finer
// digits would be dropped).
//
// # Writing
//
// Writer streams records into row groups of at most RowGroupRows records
// or about RowGroupBytes of values, whichever comes first, and writes each
// full row group out, so memory is bounded by one row group whatever the
// number of records. Columns are compressed with zstd by default. Close
// writes the footer with key-value metadata: "plinth.entity" (domain and
// plural) and whatever the caller adds; the report encoder adds
// "plinth.watermark" and "plinth.count".
//
// Importing this package registers its encoder for report.FormatParquet.
package parquet

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"reflect"
	"strconv"
	"time"
	"unsafe"

	pq "github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress"
	"github.com/parquet-go/parquet-go/compress/zstd"
	"github.com/parquet-go/parquet-go/encoding"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/report"
)

// Metadata keys written to the footer.
const (
	MetaEntity    = "plinth.entity"
	MetaWatermark = "plinth.watermark"
	MetaCount     = "plinth.count"
)

// SchemaFor returns the Parquet schema of an entity (see the package
// documentation for the mapping). The schema is named after the entity.
func SchemaFor(e *plinth.Entity) *pq.Schema {
	fields := make([]pq.Field, 0, len(e.Fields)+3)
	for _, f := range e.Fields {
		fields = append(fields, &field{Node: pq.Optional(leafFor(f)), name: f.Name})
	}
	ts := pq.Timestamp(pq.Microsecond)
	fields = append(fields,
		&field{Node: pq.Optional(pq.Leaf(pq.Int64Type)), name: "version"},
		&field{Node: pq.Optional(ts), name: "createdAt"},
		&field{Node: pq.Optional(ts), name: "updatedAt"},
	)
	return pq.NewSchema(e.Name, &group{fields: fields})
}

// leafFor is the column type of a top-level field.
func leafFor(f *plinth.Field) pq.Node {
	switch f.Type {
	case plinth.TypeInteger:
		return pq.Leaf(pq.Int64Type)
	case plinth.TypeNumber:
		return pq.Leaf(pq.DoubleType)
	case plinth.TypeBoolean:
		return pq.Leaf(pq.BooleanType)
	case plinth.TypeDate:
		return pq.Date()
	case plinth.TypeDateTime:
		return pq.Timestamp(pq.Microsecond)
	case plinth.TypeString:
		if len(f.Enum) > 0 {
			// Few distinct values: a dictionary makes them small.
			return pq.Encoded(pq.String(), &pq.RLEDictionary)
		}
	}
	// string, uuid, and object and array as JSON text.
	return pq.String()
}

// Mapping turns records of one entity into rows of SchemaFor(e).
type Mapping struct {
	e      *plinth.Entity
	schema *pq.Schema
	nested *report.NestedJSON
	json   *jsonColumns // made when a record first comes as JSON
}

// NewMapping returns the row mapping of an entity.
func NewMapping(e *plinth.Entity) *Mapping {
	return &Mapping{e: e, schema: SchemaFor(e), nested: report.NewNestedJSON(e)}
}

// Schema returns SchemaFor the mapping's entity.
func (m *Mapping) Schema() *pq.Schema { return m.schema }

// AppendRow appends the row of rec to row[:0] and returns it. Byte array
// values of the row point into rec and into m, so the row is valid until
// the next call; a parquet-go writer copies what it is given.
func (m *Mapping) AppendRow(row pq.Row, rec plinth.Record) (pq.Row, error) {
	return m.appendColumns(row[:0], rec, 0)
}

// appendColumns appends the record's values to row as columns base,
// base+1 …: an event row puts them after its envelope columns.
func (m *Mapping) appendColumns(row pq.Row, rec plinth.Record, base int) (pq.Row, error) {
	if m.nested != nil {
		if err := m.nested.Load(rec); err != nil {
			return nil, err
		}
	}
	for i, f := range m.e.Fields {
		v, err := m.value(f, rec.Value(i, f))
		if err != nil {
			return nil, fmt.Errorf("parquet: %s: %w", f.Name, err)
		}
		row = append(row, level(v, base+i))
	}
	n := base + len(m.e.Fields)
	row = append(row,
		pq.Int64Value(rec.Version).Level(0, 1, n),
		timestamp(rec.CreatedAt, n+1),
		timestamp(rec.UpdatedAt, n+2),
	)
	return row, nil
}

func timestamp(t time.Time, col int) pq.Value {
	if t.IsZero() {
		return pq.NullValue().Level(0, 0, col)
	}
	return pq.Int64Value(t.UnixMicro()).Level(0, 1, col)
}

// level places a value in its column: definition level 1 when present, 0
// for null.
func level(v pq.Value, col int) pq.Value {
	if v.IsNull() {
		return v.Level(0, 0, col)
	}
	return v.Level(0, 1, col)
}

func (m *Mapping) value(f *plinth.Field, v any) (pq.Value, error) {
	if v == nil {
		return pq.NullValue(), nil
	}
	switch f.Type {
	case plinth.TypeObject, plinth.TypeArray:
		j := m.nested.Value(f.Name)
		if j == nil {
			return pq.NullValue(), nil
		}
		return pq.ByteArrayValue(j), nil
	case plinth.TypeInteger:
		switch n := v.(type) {
		case int64:
			return pq.Int64Value(n), nil
		case int:
			return pq.Int64Value(int64(n)), nil
		case json.Number:
			i, err := strconv.ParseInt(string(n), 10, 64)
			if err != nil {
				return pq.Value{}, err
			}
			return pq.Int64Value(i), nil
		case float64:
			if n == math.Trunc(n) && math.Abs(n) < 1<<53 {
				return pq.Int64Value(int64(n)), nil
			}
		}
	case plinth.TypeNumber:
		switch n := v.(type) {
		case float64:
			if math.IsNaN(n) || math.IsInf(n, 0) {
				return pq.NullValue(), nil // as the API writes it: null
			}
			return pq.DoubleValue(n), nil
		case int64:
			return pq.DoubleValue(float64(n)), nil
		case int:
			return pq.DoubleValue(float64(n)), nil
		case json.Number:
			x, err := strconv.ParseFloat(string(n), 64)
			if err != nil {
				return pq.Value{}, err
			}
			return pq.DoubleValue(x), nil
		}
	case plinth.TypeBoolean:
		if b, ok := v.(bool); ok {
			return pq.BooleanValue(b), nil
		}
	case plinth.TypeDate:
		if s, ok := v.(string); ok {
			d, err := time.Parse(time.DateOnly, s)
			if err != nil {
				return pq.Value{}, err
			}
			return pq.Int32Value(int32(d.Unix() / 86400)), nil
		}
	case plinth.TypeDateTime:
		if s, ok := v.(string); ok {
			t, err := time.Parse(time.RFC3339Nano, s)
			if err != nil {
				return pq.Value{}, err
			}
			return pq.Int64Value(t.UnixMicro()), nil
		}
	default: // string, uuid
		if s, ok := v.(string); ok {
			// The writer copies the bytes; the string itself is not changed.
			return pq.ByteArrayValue(unsafe.Slice(unsafe.StringData(s), len(s))), nil
		}
	}
	return pq.Value{}, fmt.Errorf("a %s field holds a %T", f.Type, v)
}

// Options tune a Writer. Zero values take the defaults.
type Options struct {
	// RowGroupRows caps the records of a row group (default 10,000).
	RowGroupRows int
	// RowGroupBytes caps the size of the values a row group holds before
	// encoding (default 16 MiB).
	RowGroupBytes int
	// Compression is the codec of every column (default zstd).
	Compression compress.Codec
	// Metadata is written to the footer, beside "plinth.entity".
	Metadata map[string]string
}

// FastZstd is zstd at its fastest level: files a little larger than the
// default level's, written in about half the time. The lake lands events
// with it (compaction rewrites them at the default level). Its encoders
// are kept across collections and use a window of 512 KiB (zstd.go).
var FastZstd compress.Codec = newKeptZstd(zstd.SpeedFastest)

// Snappy is the snappy codec, for readers that lack zstd: files about a
// quarter larger than FastZstd's, for little CPU saved in the lake's
// landing (BENCHMARKS.md, "Data lake").
var Snappy compress.Codec = &pq.Snappy

// Codec returns the codec a setting names: "zstd" (FastZstd) or "snappy".
func Codec(name string) (compress.Codec, error) {
	switch name {
	case "", "zstd":
		return FastZstd, nil
	case "snappy":
		return Snappy, nil
	}
	return nil, fmt.Errorf("parquet: unknown compression %q: zstd or snappy", name)
}

// Defaults of Options.
const (
	DefaultRowGroupRows  = 10_000
	DefaultRowGroupBytes = 16 << 20
)

// Writer streams the records of one entity into a Parquet file.
type Writer struct {
	m        *Mapping
	w        *pq.Writer
	rows     []pq.Row
	maxRows  int
	maxBytes int
	nRows    int // in the current row group
	nBytes   int // of values in the current row group
	count    int64
	closed   bool
}

// NewWriter returns a Writer of the records of e to w.
func NewWriter(w io.Writer, e *plinth.Entity, opts Options) (*Writer, error) {
	m := NewMapping(e)
	return newWriter(w, e, m, m.schema, opts)
}

// newWriter returns a Writer of rows of schema; m maps records when the
// rows are records.
func newWriter(w io.Writer, e *plinth.Entity, m *Mapping, schema *pq.Schema, opts Options, more ...pq.WriterOption) (*Writer, error) {
	codec := opts.Compression
	if codec == nil {
		codec = &pq.Zstd
	}
	entity := e.Plural
	if e.Domain != nil {
		entity = e.Domain.Name + "/" + e.Plural
	}
	options := []pq.WriterOption{
		schema,
		pq.Compression(codec),
		pq.CreatedBy("plinth", "", ""),
		pq.KeyValueMetadata(MetaEntity, entity),
	}
	for k, v := range opts.Metadata {
		options = append(options, pq.KeyValueMetadata(k, v))
	}
	options = append(options, more...)
	config, err := pq.NewWriterConfig(options...)
	if err != nil {
		return nil, fmt.Errorf("parquet: %w", err)
	}
	pw := &Writer{
		m:        m,
		w:        pq.NewWriter(w, config),
		rows:     make([]pq.Row, 1),
		maxRows:  opts.RowGroupRows,
		maxBytes: opts.RowGroupBytes,
	}
	if pw.maxRows <= 0 {
		pw.maxRows = DefaultRowGroupRows
	}
	if pw.maxBytes <= 0 {
		pw.maxBytes = DefaultRowGroupBytes
	}
	return pw, nil
}

// Write adds a record, and writes the row group out when it is full.
func (w *Writer) Write(rec plinth.Record) error {
	if w.closed {
		return fmt.Errorf("parquet: write after close")
	}
	row, err := w.m.AppendRow(w.rows[0], rec)
	if err != nil {
		return err
	}
	return w.writeRow(row)
}

// writeRow writes one row, and the row group out when it is full.
func (w *Writer) writeRow(row pq.Row) error {
	w.rows[0] = row
	return w.writeRows(w.rows[:1])
}

// writeRows writes rows, and the row group out when it is full (a batch
// of rows may pass the limits by less than its size).
func (w *Writer) writeRows(rows []pq.Row) error {
	if _, err := w.w.WriteRows(rows); err != nil {
		return fmt.Errorf("parquet: %w", err)
	}
	for _, row := range rows {
		for _, v := range row {
			w.nBytes += 8
			if v.Kind() == pq.ByteArray {
				w.nBytes += len(v.ByteArray())
			}
		}
	}
	w.count += int64(len(rows))
	w.nRows += len(rows)
	if w.nRows >= w.maxRows || w.nBytes >= w.maxBytes {
		w.nRows, w.nBytes = 0, 0
		if err := w.w.Flush(); err != nil {
			return fmt.Errorf("parquet: %w", err)
		}
	}
	return nil
}

// Count returns the number of records written.
func (w *Writer) Count() int64 { return w.count }

// SetMetadata sets a key-value pair of the footer.
func (w *Writer) SetMetadata(key, value string) { w.w.SetKeyValueMetadata(key, value) }

// Close writes the last row group and the footer. It does not close the
// underlying writer.
func (w *Writer) Close() error {
	if w.closed {
		return fmt.Errorf("parquet: already closed")
	}
	w.closed = true
	if err := w.w.Close(); err != nil {
		return fmt.Errorf("parquet: %w", err)
	}
	return nil
}

// encoder is the report.Encoder of FormatParquet.
type encoder struct{ w *Writer }

func init() {
	report.Register(report.FormatParquet, func(w io.Writer, e *plinth.Entity, _ report.Options) (report.Encoder, error) {
		pw, err := NewWriter(w, e, Options{})
		if err != nil {
			return nil, err
		}
		return encoder{pw}, nil
	})
}

func (e encoder) Write(rec plinth.Record) error { return e.w.Write(rec) }

// End writes the footer with "plinth.watermark" and "plinth.count".
func (e encoder) End(watermark string, count int64) error {
	e.w.SetMetadata(MetaWatermark, watermark)
	e.w.SetMetadata(MetaCount, strconv.FormatInt(count, 10))
	return e.w.Close()
}

// group is a Parquet group whose fields keep the order given (pq.Group
// sorts them by name; a report's columns are in spec order).
type group struct{ fields []pq.Field }

func (g *group) ID() int { return 0 }
func (g *group) String() string {
	var b bytes.Buffer
	_ = pq.PrintSchema(&b, "", g)
	return b.String()
}
func (g *group) Type() pq.Type               { return pq.Group{}.Type() }
func (g *group) Optional() bool              { return false }
func (g *group) Repeated() bool              { return false }
func (g *group) Required() bool              { return true }
func (g *group) Leaf() bool                  { return false }
func (g *group) Fields() []pq.Field          { return g.fields }
func (g *group) Encoding() encoding.Encoding { return nil }
func (g *group) Compression() compress.Codec { return nil }
func (g *group) GoType() reflect.Type        { return goType(g.fields) }

// goType is a struct type with one field per column, for parquet-go's
// reflection paths (this package writes rows and does not use them).
func goType(fields []pq.Field) reflect.Type {
	sf := make([]reflect.StructField, len(fields))
	for i, f := range fields {
		sf[i] = reflect.StructField{
			Name: "F" + strconv.Itoa(i),
			Type: f.GoType(),
			Tag:  reflect.StructTag(`parquet:` + strconv.Quote(f.Name())),
		}
	}
	return reflect.StructOf(sf)
}

// field names a node in a group.
type field struct {
	pq.Node
	name string
}

func (f *field) Name() string { return f.name }

func (f *field) Value(base reflect.Value) reflect.Value {
	switch base.Kind() {
	case reflect.Map:
		return base.MapIndex(reflect.ValueOf(f.name))
	case reflect.Struct:
		return base.FieldByName(f.name)
	}
	return reflect.Value{}
}
