// Package reporttest holds what the tests of package report and package
// parquet share: source records with awkward values, and independent
// readers of exports (DuckDB through its Node API, Python's csv module)
// with comparisons of what they read against the source records. Only
// tests import it.
package reporttest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/datasafety"
	"github.com/plinth-data/plinth/plinthtest"
	"github.com/plinth-data/plinth/spec"
)

// Root returns the repository root.
func Root(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("no caller")
	}
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// Residents returns the shipped residents entity and n records of it (n of
// at least 20), made by the dummy data generator and canonicalised by
// Validate, with keys 1…n, microsecond timestamps, and on the first
// records values that trip up encoders: quotes, commas, CR, LF and CRLF,
// non-ASCII text, U+2028, an empty string, a text that reads "NULL",
// empty and nested arrays, and nulls.
func Residents(t testing.TB, n int) (*plinth.Entity, []plinth.Record) {
	t.Helper()
	e := plinthtest.Entity(t, plinthtest.Domains(t), "residents")
	docs := datasafety.NewGenerator(11).Records(e, n)
	awkward := []map[string]any{
		{"firstName": `Anne "Nan"`, "lastName": "O'Brien, Jr.", "title": "Dr"},
		{"firstName": "Line\nbreak", "lastName": "Carriage\r\nreturn\rlone"},
		{"firstName": "Zoë", "lastName": "Łukasiewicz-Ñúñez 李小龍 🙂", "nationality": "Ελληνική"},
		{"firstName": "sep\u2028para\u2029", "lastName": "tab\there", "religion": "\\back\\slash"},
		{"firstName": "", "lastName": "NULL", "title": " lead, trail "},
		{"firstName": `""`, "lastName": `,`, "otherNames": []any{}},
		{"firstName": "nested", "lastName": "values", "otherNames": []any{
			map[string]any{"firstName": "Quote \"q\"", "lastName": "Comma, newline\n"},
			map[string]any{"firstName": "Only first"},
		}},
		{"firstName": "=SUM(A1)", "lastName": "+44 -1 @x"},
	}
	for i, a := range awkward {
		if i >= len(docs) {
			break
		}
		for k, v := range a {
			docs[i][k] = v
		}
	}
	// Nulls: the generator may fill every optional field; clear some.
	for i := range docs {
		if i%7 == 3 {
			for _, name := range []string{"title", "dateOfBirth", "restricted", "phoneNumbers", "addresses", "otherNames"} {
				delete(docs[i], name)
			}
		}
	}
	return e, records(t, e, docs, e.Key.Generated)
}

// sampleSpec has a field of every type.
const sampleSpec = `domain: samples
description: Every field type, for the report tests.
owner:
  serviceArea: Test
  productOwner: test@example.org
  cloudAccount: test
sourceSystem: Test
entities:
  - name: sample
    plural: samples
    description: One field of each type.
    key:
      name: id
      type: uuid
      generated: true
      pii: none
    fields:
      - name: label
        type: string
        maxLength: 200
        pii: none
      - name: count
        type: integer
        pii: none
      - name: amount
        type: number
        pii: none
      - name: active
        type: boolean
        pii: none
      - name: born
        type: date
        pii: none
      - name: seenAt
        type: datetime
        pii: none
      - name: ref
        type: uuid
        pii: none
      - name: kind
        type: string
        enum: [a, b, c]
        pii: none
      - name: meta
        type: object
        pii: none
        fields:
          - name: note
            type: string
          - name: score
            type: number
          - name: when
            type: datetime
      - name: tags
        type: array
        pii: none
        items:
          type: string
`

// Sample returns an entity with a field of every type and n records of it
// (n of at least 10), extremes on the first ones.
func Sample(t testing.TB, n int) (*plinth.Entity, []plinth.Record) {
	t.Helper()
	ds, err := spec.LoadFS(fstest.MapFS{"samples.yaml": {Data: []byte(sampleSpec)}}, ".")
	if err != nil {
		t.Fatal(err)
	}
	e := plinthtest.Entity(t, ds, "samples")
	docs := datasafety.NewGenerator(7).Records(e, n)
	extremes := []map[string]any{
		{"count": int64(math.MaxInt64), "amount": 1e-7, "born": "0001-01-01", "seenAt": "1970-01-01T00:00:00Z"},
		{"count": int64(math.MinInt64), "amount": -1e21, "born": "9999-12-31", "seenAt": "9999-12-31T23:59:59.999999Z"},
		{"count": int64(0), "amount": 0.1, "born": "1969-12-31", "seenAt": "1969-12-31T23:59:59.000001Z", "active": false},
		{"count": int64(-1), "amount": 123456789.125, "seenAt": "2024-02-29T12:00:00.5+01:00", "label": ""},
		{"amount": float64(1 << 53), "meta": map[string]any{"note": "a \"b\"\n", "score": 2.5, "when": "2020-01-01T00:00:00Z"}},
		{"tags": []any{}, "meta": map[string]any{}, "label": "x,y\r\nz"},
		{"tags": []any{"é", "\u2028", ""}, "amount": 5e-324},
		{"amount": math.MaxFloat64, "count": int64(1) << 53},
	}
	for i, x := range extremes {
		if i >= len(docs) {
			break
		}
		for k, v := range x {
			docs[i][k] = v
		}
	}
	for i := range docs {
		if i%5 == 4 {
			for _, f := range e.Fields[1:] {
				delete(docs[i], f.Name)
			}
		}
	}
	return e, records(t, e, docs, true)
}

// records canonicalises documents into records, with microsecond
// timestamps. Integer keys are numbered from 1; uuid keys are made.
func records(t testing.TB, e *plinth.Entity, docs []map[string]any, create bool) []plinth.Record {
	t.Helper()
	base := time.Date(2025, 3, 1, 8, 0, 0, 0, time.UTC)
	out := make([]plinth.Record, len(docs))
	for i, doc := range docs {
		data, err := e.Validate(doc, create)
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		switch e.Key.Type {
		case plinth.KeyInteger:
			data[e.Key.Name] = int64(i + 1)
		case plinth.KeyUUID:
			data[e.Key.Name] = fmt.Sprintf("%08x-0000-4000-8000-%012x", i, i*7919)
		}
		created := base.Add(time.Duration(i)*time.Second + time.Duration(i%1000)*time.Microsecond)
		out[i] = plinth.Record{Data: data, Version: int64(i%4 + 1), CreatedAt: created, UpdatedAt: created.Add(time.Duration(i%3) * time.Hour)}
	}
	return out
}

// need skips the test when an outside tool the read-back tests need is
// missing, or fails it when CI=true (as spec's OpenAPI lint does).
func need(t testing.TB, what, hint string, ok bool) {
	t.Helper()
	if ok {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is missing; %s", what, hint)
	}
	t.Skipf("%s is missing, so the read-back test is skipped; %s", what, hint)
}

// Result is what DuckDB returns for one statement.
type Result struct {
	Columns []string `json:"columns"`
	Types   []string `json:"types"`
	Rows    [][]any  `json:"rows"`
}

// DuckDB runs SQL statements in DuckDB (tools/duckdb-query.mjs) and
// returns their results. Numbers come back as json.Number.
func DuckDB(t testing.TB, stmts ...string) []Result {
	t.Helper()
	root := Root(t)
	_, err := exec.LookPath("node")
	need(t, "node", "install Node.js, then run scripts/tools", err == nil)
	_, err = os.Stat(filepath.Join(root, "tools", "node_modules", "@duckdb", "node-api", "package.json"))
	need(t, "tools/node_modules/@duckdb/node-api", "run scripts/tools (npm ci --prefix tools)", err == nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", filepath.Join(root, "tools", "duckdb-query.mjs"))
	cmd.Args = append(cmd.Args, stmts...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("duckdb: %v\n%s", err, stderr.String())
	}
	dec := json.NewDecoder(&stdout)
	dec.UseNumber()
	var out []Result
	for range stmts {
		var r Result
		if err := dec.Decode(&r); err != nil {
			t.Fatalf("duckdb output: %v\n%s", err, stderr.String())
		}
		out = append(out, r)
	}
	return out
}

// SQLString quotes a string for SQL.
func SQLString(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// readCSV is the Python reader: it prints whether the file starts with a
// BOM and its rows, as JSON.
const readCSV = `
import csv, io, json, sys
data = open(sys.argv[1], 'rb').read()
bom = data.startswith(b'\xef\xbb\xbf')
text = data.decode('utf-8-sig' if bom else 'utf-8')
rows = list(csv.reader(io.StringIO(text, newline=''), strict=True))
json.dump({'bom': bom, 'rows': rows}, sys.stdout)
`

// PythonCSV reads a CSV file with Python's csv module.
func PythonCSV(t testing.TB, path string) (bom bool, rows [][]string) {
	t.Helper()
	py, err := exec.LookPath("python3")
	need(t, "python3", "install Python 3", err == nil)
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(py, "-c", readCSV, path)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("python csv: %v\n%s", err, stderr.String())
	}
	var out struct {
		BOM  bool       `json:"bom"`
		Rows [][]string `json:"rows"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		t.Fatal(err)
	}
	return out.BOM, out.Rows
}

// APIColumns returns the members of the API's JSON of a record (decoded by
// encoding/json, not by Plinth), in column order.
func APIColumns(t testing.TB, e *plinth.Entity, rec plinth.Record) []json.RawMessage {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(e.MarshalRecord(rec), &m); err != nil {
		t.Fatal(err)
	}
	names := append(fieldNames(e), plinth.SystemFields...)
	out := make([]json.RawMessage, len(names))
	for i, n := range names {
		raw, ok := m[n]
		if !ok {
			t.Fatalf("the API's JSON has no %s", n)
		}
		out[i] = raw
	}
	return out
}

func fieldNames(e *plinth.Entity) []string {
	var out []string
	for _, f := range e.Fields {
		out = append(out, f.Name)
	}
	return out
}

// CSVText returns the text a CSV cell must hold for a member of the API's
// JSON: strings unquoted, everything else as the JSON text; ok is false
// for null.
func CSVText(t testing.TB, raw json.RawMessage) (text string, ok bool) {
	t.Helper()
	if string(raw) == "null" {
		return "", false
	}
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			t.Fatal(err)
		}
		return s, true
	}
	return string(raw), true
}

// CompareTyped compares rows read by DuckDB with the source records, cell
// by cell, by the column type DuckDB gives: BIGINT, DOUBLE, BOOLEAN,
// VARCHAR, DATE and TIMESTAMP WITH TIME ZONE; nested values (VARCHAR or
// JSON text) are compared as JSON values, absent members and nulls alike.
// exactNested also requires their text to be the API's, byte for byte.
func CompareTyped(t testing.TB, e *plinth.Entity, recs []plinth.Record, res Result, exactNested bool) {
	t.Helper()
	cols := append(fieldNames(e), plinth.SystemFields...)
	if !reflect.DeepEqual(res.Columns, cols) {
		t.Fatalf("columns %v, want %v", res.Columns, cols)
	}
	if len(res.Rows) != len(recs) {
		t.Fatalf("read %d rows, want %d", len(res.Rows), len(recs))
	}
	errs := 0
	for i, rec := range recs {
		api := APIColumns(t, e, rec)
		for j, got := range res.Rows[i] {
			var f *plinth.Field
			var want any
			if j < len(e.Fields) {
				f = e.Fields[j]
				want = rec.Data[f.Name]
			} else {
				switch cols[j] {
				case "version":
					want = rec.Version
				case "createdAt":
					want = plinth.FormatTime(rec.CreatedAt)
				case "updatedAt":
					want = plinth.FormatTime(rec.UpdatedAt)
				}
			}
			if msg := compareCell(res.Types[j], f, want, got, api[j], exactNested); msg != "" {
				errs++
				if errs <= 10 {
					t.Errorf("row %d (key %v) column %s (%s): %s", i, e.KeyOf(rec), cols[j], res.Types[j], msg)
				}
			}
		}
	}
	if errs > 10 {
		t.Errorf("… %d differences in all", errs)
	}
}

func compareCell(typ string, f *plinth.Field, want, got any, api json.RawMessage, exactNested bool) string {
	if f != nil && (f.Type == plinth.TypeNumber) {
		if x, ok := want.(float64); ok && (math.IsNaN(x) || math.IsInf(x, 0)) {
			want = nil
		}
	}
	if want == nil || got == nil {
		if want == nil && got == nil {
			return ""
		}
		return fmt.Sprintf("got %#v, want %#v", got, want)
	}
	if f != nil && (f.Type == plinth.TypeObject || f.Type == plinth.TypeArray) {
		s, ok := got.(string)
		if !ok {
			return fmt.Sprintf("nested value read as %T, want JSON text", got)
		}
		if exactNested && s != string(api) {
			return fmt.Sprintf("JSON text %s, want the API's %s", s, api)
		}
		if !reflect.DeepEqual(normalJSON([]byte(s)), normalJSON(api)) {
			return fmt.Sprintf("JSON %s, want %s", s, api)
		}
		return ""
	}
	switch typ {
	case "BIGINT":
		s, _ := got.(string)
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n != want.(int64) {
			return fmt.Sprintf("got %#v, want %d", got, want)
		}
	case "DOUBLE":
		num, _ := got.(json.Number)
		x, err := strconv.ParseFloat(string(num), 64)
		if err != nil || x != want.(float64) {
			return fmt.Sprintf("got %#v, want %v", got, want)
		}
	case "BOOLEAN":
		if got != want {
			return fmt.Sprintf("got %#v, want %v", got, want)
		}
	case "DATE", "VARCHAR":
		if got != want {
			return fmt.Sprintf("got %q, want %q", got, want)
		}
	case "TIMESTAMP WITH TIME ZONE":
		s, _ := got.(string)
		g, err := time.Parse("2006-01-02 15:04:05.999999-07", s)
		w, werr := time.Parse(time.RFC3339Nano, want.(string))
		if err != nil || werr != nil || !g.Equal(w) {
			return fmt.Sprintf("got %q, want %q (%v %v)", s, want, err, werr)
		}
	default:
		return fmt.Sprintf("unexpected column type %s", typ)
	}
	return ""
}

// normalJSON decodes JSON with numbers as json.Number and drops null
// members of objects.
func normalJSON(b []byte) any {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return fmt.Sprintf("invalid JSON %q: %v", b, err)
	}
	return dropNulls(v)
}

func dropNulls(v any) any {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if x == nil {
				delete(v, k)
			} else {
				v[k] = dropNulls(x)
			}
		}
	case []any:
		for i := range v {
			v[i] = dropNulls(v[i])
		}
	}
	return v
}

// HeapAfterGC returns the live heap after a full collection.
func HeapAfterGC() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// DuckDBType is the DuckDB type a column of the field reads as: the type
// the Parquet mapping gives it, and the type to read JSON exports with.
// Nested values are JSON text.
func DuckDBType(f *plinth.Field) string {
	switch f.Type {
	case plinth.TypeInteger:
		return "BIGINT"
	case plinth.TypeNumber:
		return "DOUBLE"
	case plinth.TypeBoolean:
		return "BOOLEAN"
	case plinth.TypeDate:
		return "DATE"
	case plinth.TypeDateTime:
		return "TIMESTAMP WITH TIME ZONE"
	}
	return "VARCHAR"
}

// DuckDBTypes returns the DuckDB types of every column.
func DuckDBTypes(e *plinth.Entity) []string {
	var out []string
	for _, f := range e.Fields {
		out = append(out, DuckDBType(f))
	}
	return append(out, "BIGINT", "TIMESTAMP WITH TIME ZONE", "TIMESTAMP WITH TIME ZONE")
}

// JSONColumns returns the columns= argument of DuckDB's read_json for the
// entity's records, with extra columns appended ("name": "TYPE" pairs).
// Nested values are read as JSON.
func JSONColumns(e *plinth.Entity, extra ...string) string {
	var parts []string
	types := DuckDBTypes(e)
	for i, name := range append(fieldNames(e), plinth.SystemFields...) {
		typ := types[i]
		if i < len(e.Fields) && (e.Fields[i].Type == plinth.TypeObject || e.Fields[i].Type == plinth.TypeArray) {
			typ = "JSON"
		}
		parts = append(parts, SQLString(name)+": "+SQLString(typ))
	}
	for i := 0; i+1 < len(extra); i += 2 {
		parts = append(parts, SQLString(extra[i])+": "+SQLString(extra[i+1]))
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

// SelectList quotes the column names of the entity for a SELECT.
func SelectList(e *plinth.Entity) string {
	var parts []string
	for _, name := range append(fieldNames(e), plinth.SystemFields...) {
		parts = append(parts, `"`+name+`"`)
	}
	return strings.Join(parts, ", ")
}
