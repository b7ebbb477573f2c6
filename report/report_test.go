package report_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/plinth-data/plinth"
	_ "github.com/plinth-data/plinth/parquet" // registers FormatParquet
	"github.com/plinth-data/plinth/report"
	rt "github.com/plinth-data/plinth/report/reporttest"
)

const readBackRecords = 20_000

func TestNegotiate(t *testing.T) {
	for _, c := range []struct {
		format, accept string
		want           report.Format
		ok             bool
	}{
		{"", "", report.FormatCSV, true},
		{"", "   ", report.FormatCSV, true},
		{"", "*/*", report.FormatCSV, true},
		{"", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", report.FormatCSV, true},
		{"", "text/csv", report.FormatCSV, true},
		{"", "text/csv; charset=utf-8", report.FormatCSV, true},
		{"", "application/x-ndjson", report.FormatNDJSON, true},
		{"", "application/ndjson", report.FormatNDJSON, true},
		{"", "application/json", report.FormatJSON, true},
		{"", "APPLICATION/JSON", report.FormatJSON, true},
		{"", "application/vnd.apache.parquet", report.FormatParquet, true},
		// q-values
		{"", "text/csv;q=0.5, application/json", report.FormatJSON, true},
		{"", "application/json;q=0.2, application/vnd.apache.parquet;q=0.9, text/csv;q=0.5", report.FormatParquet, true},
		{"", "application/json;q=0.5, */*;q=0.9", report.FormatCSV, true},
		{"", "*/*, text/csv;q=0", report.FormatNDJSON, true},
		{"", "text/csv;q=0", "", false},
		// equal q: the range listed first wins
		{"", "application/json, text/csv", report.FormatJSON, true},
		{"", "application/x-ndjson, application/json", report.FormatNDJSON, true},
		// wildcards of a type: the first format of Formats
		{"", "text/*", report.FormatCSV, true},
		{"", "application/*", report.FormatNDJSON, true},
		{"", "application/*, application/json;q=0", report.FormatNDJSON, true},
		// unacceptable or malformed
		{"", "text/html", "", false},
		{"", "image/png, text/plain;q=0.5", "", false},
		{"", "text/csv;q=abc", "", false},
		{"", "text/csv;q=2", "", false},
		{"", "garbage", "", false},
		{"", "*/csv", "", false},
		// format= wins over Accept, in any case, by name or media type
		{"json", "text/csv", report.FormatJSON, true},
		{"PARQUET", "", report.FormatParquet, true},
		{" ndjson ", "text/html", report.FormatNDJSON, true},
		{"text/csv", "application/json", report.FormatCSV, true},
		{"csv", "text/csv;q=0", report.FormatCSV, true},
		{"xml", "text/csv", "", false},
		{"xlsx", "", "", false},
	} {
		got, ok := report.Negotiate(c.format, c.accept)
		if got != c.want || ok != c.ok {
			t.Errorf("Negotiate(%q, %q) = %q, %v; want %q, %v", c.format, c.accept, got, ok, c.want, c.ok)
		}
	}
}

func TestFormats(t *testing.T) {
	want := map[report.Format][2]string{
		report.FormatCSV:     {"text/csv; charset=utf-8", "csv"},
		report.FormatNDJSON:  {"application/x-ndjson", "ndjson"},
		report.FormatJSON:    {"application/json", "json"},
		report.FormatParquet: {"application/vnd.apache.parquet", "parquet"},
	}
	if len(report.Formats) != len(want) {
		t.Fatalf("Formats = %v", report.Formats)
	}
	for _, f := range report.Formats {
		if got := [2]string{f.MediaType(), f.Extension()}; got != want[f] {
			t.Errorf("%s: %v, want %v", f, got, want[f])
		}
		// Each format's own media type negotiates to it.
		if g, ok := report.Negotiate("", f.MediaType()); !ok || g != f {
			t.Errorf("Negotiate(%q) = %q, %v", f.MediaType(), g, ok)
		}
	}
	if !slices.Equal(report.MediaTypes(), []string{"text/csv; charset=utf-8", "application/x-ndjson", "application/json", "application/vnd.apache.parquet"}) {
		t.Errorf("MediaTypes() = %v", report.MediaTypes())
	}
	if report.Format("xml").MediaType() != "" || report.Format("xml").Extension() != "" {
		t.Error("an unknown format has a media type")
	}
	e, _ := rt.Residents(t, 20)
	if _, err := report.NewEncoder("xml", io.Discard, e, report.Options{}); err == nil {
		t.Error("NewEncoder accepted an unknown format")
	}
}

// encode writes recs in format f to a file and returns its path.
func encode(t *testing.T, f report.Format, e *plinth.Entity, recs []plinth.Record, opts report.Options, watermark string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "export."+f.Extension())
	file, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	bw := bufio.NewWriter(file)
	enc, err := report.NewEncoder(f, bw, e, opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if err := enc.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := enc.End(watermark, int64(len(recs))); err != nil {
		t.Fatal(err)
	}
	if err := bw.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := file.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

type entityCase struct {
	name string
	e    *plinth.Entity
	recs []plinth.Record
}

func entities(t *testing.T) []entityCase {
	re, rrecs := rt.Residents(t, readBackRecords)
	se, srecs := rt.Sample(t, 2_000)
	return []entityCase{{"residents", re, rrecs}, {"samples", se, srecs}}
}

// CSV read back by Python's csv module: the header, then every cell is the
// text of the API's JSON member (strings unquoted, null empty).
func TestCSVReadBackPython(t *testing.T) {
	for _, c := range entities(t) {
		for _, withBOM := range []bool{false, true} {
			t.Run(c.name+"/bom="+strconv.FormatBool(withBOM), func(t *testing.T) {
				path := encode(t, report.FormatCSV, c.e, c.recs, report.Options{BOM: withBOM}, "wm")
				bom, rows := rt.PythonCSV(t, path)
				if bom != withBOM {
					t.Errorf("BOM %v, want %v", bom, withBOM)
				}
				if len(rows) != len(c.recs)+1 {
					t.Fatalf("read %d rows, want a header and %d records", len(rows), len(c.recs))
				}
				if !slices.Equal(rows[0], report.Columns(c.e)) {
					t.Fatalf("header %q, want %q", rows[0], report.Columns(c.e))
				}
				errs := 0
				for i, rec := range c.recs {
					api := rt.APIColumns(t, c.e, rec)
					row := rows[i+1]
					if len(row) != len(api) {
						t.Fatalf("row %d has %d cells, want %d", i, len(row), len(api))
					}
					for j, raw := range api {
						want, _ := rt.CSVText(t, raw)
						if row[j] != want && errs < 10 {
							errs++
							t.Errorf("row %d column %s: %q, want %q", i, rows[0][j], row[j], want)
						}
					}
				}
			})
		}
	}
}

// CSV read back by DuckDB, which tells null (an empty field) from an empty
// string (a quoted empty field).
func TestCSVReadBackDuckDB(t *testing.T) {
	for _, c := range entities(t) {
		for _, withBOM := range []bool{false, true} {
			t.Run(c.name+"/bom="+strconv.FormatBool(withBOM), func(t *testing.T) {
				path := encode(t, report.FormatCSV, c.e, c.recs, report.Options{BOM: withBOM}, "wm")
				res := rt.DuckDB(t, "SELECT * FROM read_csv("+rt.SQLString(path)+
					", header = true, all_varchar = true, hive_partitioning = false, allow_quoted_nulls = false,"+
					" delim = ',', quote = '\"', escape = '\"', auto_detect = false, columns = "+csvColumns(c.e)+")")[0]
				if !slices.Equal(res.Columns, report.Columns(c.e)) {
					t.Fatalf("columns %q, want %q", res.Columns, report.Columns(c.e))
				}
				if len(res.Rows) != len(c.recs) {
					t.Fatalf("read %d rows, want %d", len(res.Rows), len(c.recs))
				}
				errs := 0
				for i, rec := range c.recs {
					for j, raw := range rt.APIColumns(t, c.e, rec) {
						text, ok := rt.CSVText(t, raw)
						var want any
						if ok {
							want = text
						}
						if got := res.Rows[i][j]; got != want && errs < 10 {
							errs++
							t.Errorf("row %d column %s: %#v, want %#v", i, res.Columns[j], got, want)
						}
					}
				}
			})
		}
	}
}

func csvColumns(e *plinth.Entity) string {
	var parts []string
	for _, c := range report.Columns(e) {
		parts = append(parts, rt.SQLString(c)+": 'VARCHAR'")
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

func TestCSVBOM(t *testing.T) {
	e, recs := rt.Residents(t, 20)
	for _, withBOM := range []bool{false, true} {
		var b bytes.Buffer
		enc, err := report.NewEncoder(report.FormatCSV, &b, e, report.Options{BOM: withBOM})
		if err != nil {
			t.Fatal(err)
		}
		if err := enc.Write(recs[0]); err != nil {
			t.Fatal(err)
		}
		if err := enc.End("w", 1); err != nil {
			t.Fatal(err)
		}
		header := "mosaicId,title,"
		if withBOM {
			header = "\xEF\xBB\xBF" + header
		}
		if !strings.HasPrefix(b.String(), header) {
			t.Errorf("bom=%v: starts %q", withBOM, b.String()[:20])
		}
		if strings.Count(b.String(), "\xEF\xBB\xBF") != btoi(withBOM) {
			t.Errorf("bom=%v: %d BOMs", withBOM, strings.Count(b.String(), "\xEF\xBB\xBF"))
		}
		// Other formats ignore the option.
		var j bytes.Buffer
		enc, _ = report.NewEncoder(report.FormatNDJSON, &j, e, report.Options{BOM: withBOM})
		_ = enc.Write(recs[0])
		if bytes.HasPrefix(j.Bytes(), []byte("\xEF\xBB\xBF")) {
			t.Error("NDJSON starts with a BOM")
		}
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// NDJSON and JSON read back by DuckDB with the columns typed as the spec
// says, compared with the source records cell by cell.
func TestJSONReadBackDuckDB(t *testing.T) {
	for _, c := range entities(t) {
		t.Run(c.name+"/ndjson", func(t *testing.T) {
			path := encode(t, report.FormatNDJSON, c.e, c.recs, report.Options{}, "wm-ndjson-1")
			src := "read_json(" + rt.SQLString(path) + ", format = 'newline_delimited', columns = " +
				rt.JSONColumns(c.e, "@plinth", "STRUCT(watermark VARCHAR, count BIGINT)") + ")"
			res := rt.DuckDB(t,
				`SELECT `+rt.SelectList(c.e)+` FROM `+src+` WHERE "@plinth" IS NULL`,
				`SELECT "@plinth".watermark, "@plinth".count FROM `+src+` WHERE "@plinth" IS NOT NULL`,
			)
			rt.CompareTyped(t, c.e, c.recs, res[0], false)
			if len(res[1].Rows) != 1 || res[1].Rows[0][0] != "wm-ndjson-1" || res[1].Rows[0][1] != strconv.Itoa(len(c.recs)) {
				t.Errorf("end line read as %v", res[1].Rows)
			}
			// The end line is the last line, and every line is a record or it.
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
			if len(lines) != len(c.recs)+1 {
				t.Fatalf("%d lines, want %d", len(lines), len(c.recs)+1)
			}
			var end map[string]map[string]any
			if err := json.Unmarshal([]byte(lines[len(lines)-1]), &end); err != nil || len(end) != 1 ||
				end["@plinth"]["watermark"] != "wm-ndjson-1" || end["@plinth"]["count"] != float64(len(c.recs)) {
				t.Errorf("last line %s (%v)", lines[len(lines)-1], err)
			}
		})
		t.Run(c.name+"/json", func(t *testing.T) {
			path := encode(t, report.FormatJSON, c.e, c.recs, report.Options{}, "wm-json")
			res := rt.DuckDB(t, `SELECT `+rt.SelectList(c.e)+` FROM read_json(`+rt.SQLString(path)+
				`, format = 'array', columns = `+rt.JSONColumns(c.e)+`)`)
			rt.CompareTyped(t, c.e, c.recs, res[0], false)
			// And the whole file is one JSON array of the API's records.
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			var arr []json.RawMessage
			if err := json.Unmarshal(data, &arr); err != nil {
				t.Fatal(err)
			}
			if len(arr) != len(c.recs) {
				t.Fatalf("%d elements, want %d", len(arr), len(c.recs))
			}
		})
	}
}

// Every format's end, for an export of no records and of some.
func TestEnd(t *testing.T) {
	e, recs := rt.Residents(t, 20)
	for _, f := range report.Formats {
		for _, n := range []int{0, 3} {
			var b bytes.Buffer
			enc, err := report.NewEncoder(f, &b, e, report.Options{})
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range recs[10 : 10+n] { // plain values: no line breaks
				if err := enc.Write(r); err != nil {
					t.Fatal(err)
				}
			}
			before := b.Len()
			if err := enc.End("2026-11-30T10:15:00.123456Z/42", int64(n)); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			tail := b.String()[before:]
			switch f {
			case report.FormatCSV:
				if tail != "" {
					t.Errorf("CSV End wrote %q", tail)
				}
				if got := strings.Count(b.String(), "\r\n"); got != n+1 {
					t.Errorf("CSV of %d records has %d lines", n, got)
				}
			case report.FormatNDJSON:
				want := `{"@plinth":{"watermark":"2026-11-30T10:15:00.123456Z/42","count":` + strconv.Itoa(n) + "}}\n"
				if tail != want {
					t.Errorf("NDJSON End wrote %q, want %q", tail, want)
				}
			case report.FormatJSON:
				var arr []map[string]any
				if err := json.Unmarshal(b.Bytes(), &arr); err != nil || len(arr) != n {
					t.Errorf("JSON of %d records: %d elements, %v: %q", n, len(arr), err, b.String())
				}
			case report.FormatParquet:
				if !bytes.HasSuffix(b.Bytes(), []byte("PAR1")) || !bytes.HasPrefix(b.Bytes(), []byte("PAR1")) {
					t.Errorf("Parquet of %d records lacks its magic", n)
				}
			}
			if err := enc.End("w", int64(n)); err == nil {
				t.Errorf("%s: a second End succeeded", f)
			}
			if err := enc.Write(recs[0]); err == nil {
				t.Errorf("%s: Write after End succeeded", f)
			}
		}
	}
}

// A failing writer's error reaches the caller.
func TestWriteErrors(t *testing.T) {
	e, recs := rt.Residents(t, 20)
	boom := errors.New("boom")
	for _, f := range report.Formats {
		enc, err := report.NewEncoder(f, failWriter{boom}, e, report.Options{})
		if err != nil {
			if !errors.Is(err, boom) {
				t.Errorf("%s: %v", f, err)
			}
			continue
		}
		var werr error
		for _, r := range recs {
			if werr = enc.Write(r); werr != nil {
				break
			}
		}
		if werr == nil {
			werr = enc.End("w", int64(len(recs)))
		}
		if !errors.Is(werr, boom) {
			t.Errorf("%s: error %v, want boom", f, werr)
		}
	}
}

type failWriter struct{ err error }

func (w failWriter) Write([]byte) (int, error) { return 0, w.err }

// Encoding 100,000 records keeps the live heap flat: it is no bigger after
// 100,000 records than after 10,000.
func TestFlatMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	e, recs := rt.Residents(t, 5_000)
	base := rt.HeapAfterGC()
	for _, f := range report.Formats {
		t.Run(string(f), func(t *testing.T) {
			enc, err := report.NewEncoder(f, io.Discard, e, report.Options{})
			if err != nil {
				t.Fatal(err)
			}
			var at10k uint64
			for i := range 100_000 {
				if err := enc.Write(recs[i%len(recs)]); err != nil {
					t.Fatal(err)
				}
				switch i + 1 {
				case 15_000: // mid row group for Parquet
					at10k = rt.HeapAfterGC()
				case 95_000:
					at100k := rt.HeapAfterGC()
					growth := int64(at100k) - int64(at10k)
					t.Logf("%s: live heap of the encoder %.2f MiB after 15k records, %.2f MiB after 95k (%+d KiB)",
						f, float64(int64(at10k)-int64(base))/(1<<20), float64(int64(at100k)-int64(base))/(1<<20), growth>>10)
					if growth > 1<<20 {
						t.Errorf("%s: the live heap grew by %d KiB from 15k to 95k records", f, growth>>10)
					}
				}
			}
			if err := enc.End("w", 100_000); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func BenchmarkEncode(b *testing.B) {
	e, recs := rt.Residents(b, 10_000)
	// As a report's scan gives them: nested values as the API's JSON text.
	text := make([]plinth.Record, len(recs))
	for i, r := range recs {
		d := maps.Clone(r.Data)
		for _, f := range e.Fields {
			if v, ok := d[f.Name]; ok && f.IsNested() {
				d[f.Name] = plinth.JSONText(f.AppendJSON(nil, v))
			}
		}
		text[i] = plinth.Record{Data: d, Version: r.Version, CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt}
	}
	for _, f := range report.Formats {
		benchEncode(b, string(f), f, e, recs)
		benchEncode(b, string(f)+"/nested-text", f, e, text)
	}
}

func benchEncode(b *testing.B, name string, f report.Format, e *plinth.Entity, recs []plinth.Record) {
	{
		b.Run(name, func(b *testing.B) {
			cw := &countWriter{}
			enc, err := report.NewEncoder(f, cw, e, report.Options{})
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				if err := enc.Write(recs[i%len(recs)]); err != nil {
					b.Fatal(err)
				}
			}
			if err := enc.End("w", int64(b.N)); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			secs := b.Elapsed().Seconds()
			b.ReportMetric(float64(b.N)/secs, "records/s")
			b.ReportMetric(float64(cw.n)/secs/1e6, "MB/s")
			b.ReportMetric(float64(cw.n)/float64(b.N), "B/record")
		})
	}
}

type countWriter struct{ n int64 }

func (w *countWriter) Write(p []byte) (int, error) { w.n += int64(len(p)); return len(p), nil }
