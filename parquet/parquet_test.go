package parquet_test

import (
	"bufio"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/parquet"
	"github.com/plinth-data/plinth/report"
	rt "github.com/plinth-data/plinth/report/reporttest"
)

// write encodes recs through the report encoder into a file.
func write(t *testing.T, e *plinth.Entity, recs []plinth.Record, watermark string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "export.parquet")
	file, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	bw := bufio.NewWriter(file)
	enc, err := report.NewEncoder(report.FormatParquet, bw, e, report.Options{})
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

// Parquet read back by DuckDB: the column types the mapping promises, every
// cell equal to the source record's (nested values the API's JSON text,
// byte for byte), the watermark and count in the footer, and row groups of
// at most DefaultRowGroupRows.
func TestReadBackDuckDB(t *testing.T) {
	re, rrecs := rt.Residents(t, 20_000)
	se, srecs := rt.Sample(t, 2_000)
	for _, c := range []struct {
		name string
		e    *plinth.Entity
		recs []plinth.Record
	}{{"residents", re, rrecs}, {"samples", se, srecs}} {
		t.Run(c.name, func(t *testing.T) {
			path := write(t, c.e, c.recs, "wm-"+c.name)
			src := "read_parquet(" + rt.SQLString(path) + ", hive_partitioning = false)"
			res := rt.DuckDB(t,
				"SELECT * FROM "+src,
				"SELECT decode(key), decode(value) FROM parquet_kv_metadata("+rt.SQLString(path)+") ORDER BY 1",
				"SELECT row_group_id, any_value(row_group_num_rows), any_value(compression) FROM parquet_metadata("+rt.SQLString(path)+") GROUP BY 1 ORDER BY 1",
				"SELECT name, type, logical_type, repetition_type FROM parquet_schema("+rt.SQLString(path)+")",
			)
			if want := rt.DuckDBTypes(c.e); !slices.Equal(res[0].Types, want) {
				t.Errorf("column types\n %v\nwant\n %v", res[0].Types, want)
			}
			rt.CompareTyped(t, c.e, c.recs, res[0], true)

			meta := map[string]string{}
			for _, r := range res[1].Rows {
				meta[r[0].(string)] = r[1].(string)
			}
			if meta[parquet.MetaWatermark] != "wm-"+c.name || meta[parquet.MetaCount] != strconv.Itoa(len(c.recs)) ||
				meta[parquet.MetaEntity] != c.e.Domain.Name+"/"+c.e.Plural {
				t.Errorf("footer metadata %v", meta)
			}

			total := 0
			for _, r := range res[2].Rows {
				n, _ := strconv.Atoi(r[1].(string))
				total += n
				if n > parquet.DefaultRowGroupRows {
					t.Errorf("row group %v has %d rows", r[0], n)
				}
				if r[2] != "ZSTD" {
					t.Errorf("row group %v compressed with %v", r[0], r[2])
				}
			}
			if want := (len(c.recs) + parquet.DefaultRowGroupRows - 1) / parquet.DefaultRowGroupRows; len(res[2].Rows) != want || total != len(c.recs) {
				t.Errorf("%d row groups of %d rows in all, want %d of %d", len(res[2].Rows), total, want, len(c.recs))
			}

			// Every column is OPTIONAL, with the logical types of the mapping.
			logical := map[string]string{}
			for _, r := range res[3].Rows[1:] { // [0] is the root
				if r[3] != "OPTIONAL" {
					t.Errorf("column %v is %v", r[0], r[3])
				}
				lt, _ := r[2].(string)
				logical[r[0].(string)] = lt
			}
			for _, f := range c.e.Fields {
				want := map[plinth.Type]string{
					plinth.TypeString: "StringType()", plinth.TypeUUID: "StringType()",
					plinth.TypeObject: "StringType()", plinth.TypeArray: "StringType()",
					plinth.TypeDate: "DateType()", plinth.TypeNumber: "", plinth.TypeBoolean: "",
					// INT(64, signed); DuckDB prints the bit width 64 as the byte "@".
					plinth.TypeInteger:  "IntType(bitWidth=@, isSigned=1)",
					plinth.TypeDateTime: "TimestampType(isAdjustedToUTC=1, unit=TimeUnit(MILLIS=<null>, MICROS=MicroSeconds(), NANOS=<null>))",
				}[f.Type]
				if logical[f.Name] != want {
					t.Errorf("column %s (%s) has logical type %q, want %q", f.Name, f.Type, logical[f.Name], want)
				}
			}
		})
	}
}

// A row group is written out when it holds RowGroupBytes of values, even
// before RowGroupRows records.
func TestRowGroupBytes(t *testing.T) {
	e, recs := rt.Residents(t, 3_000)
	path := filepath.Join(t.TempDir(), "small-groups.parquet")
	file, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w, err := parquet.NewWriter(file, e, parquet.Options{RowGroupBytes: 256 << 10})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if err := w.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	file.Close()
	res := rt.DuckDB(t,
		"SELECT count(*) FROM parquet_metadata("+rt.SQLString(path)+") GROUP BY row_group_id",
		"SELECT count(*) FROM read_parquet("+rt.SQLString(path)+")")
	if len(res[0].Rows) < 3 {
		t.Errorf("%d row groups for 3,000 residents at 256 KiB a group", len(res[0].Rows))
	}
	if res[1].Rows[0][0] != "3000" {
		t.Errorf("read %v rows", res[1].Rows[0][0])
	}
}

func TestSchemaFor(t *testing.T) {
	e, _ := rt.Sample(t, 10)
	s := parquet.SchemaFor(e)
	var names []string
	for _, f := range s.Fields() {
		names = append(names, f.Name())
	}
	if !slices.Equal(names, report.Columns(e)) {
		t.Errorf("schema columns %v, want the report's %v", names, report.Columns(e))
	}
	if s.Name() != e.Name {
		t.Errorf("schema name %q", s.Name())
	}
	t.Log(s)
}

// The live heap stays flat however many records go through: one row group
// at a time.
func TestFlatMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	e, recs := rt.Residents(t, 5_000)
	base := rt.HeapAfterGC()
	w, err := parquet.NewWriter(io.Discard, e, parquet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var at15k uint64
	for i := range 205_000 {
		if err := w.Write(recs[i%len(recs)]); err != nil {
			t.Fatal(err)
		}
		switch i + 1 {
		case 15_000:
			at15k = rt.HeapAfterGC()
		case 205_000:
			at := rt.HeapAfterGC()
			growth := int64(at) - int64(at15k)
			t.Logf("live heap of the writer %.1f MiB after 15k records, %.1f MiB after 205k (%+d KiB)",
				float64(at15k-base)/(1<<20), float64(at-base)/(1<<20), growth>>10)
			// The footer's row group metadata grows with the row groups
			// (a few KiB each); the data does not stay. Holding the rows
			// would grow it by tens of MiB; 4 MiB leaves room for the
			// garbage collector's noise on a loaded machine.
			if growth > 4<<20 {
				t.Errorf("the live heap grew by %d KiB from 15k to 205k records", growth>>10)
			}
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

func BenchmarkWriter(b *testing.B) {
	e, recs := rt.Residents(b, 10_000)
	cw := &countWriter{}
	w, err := parquet.NewWriter(cw, e, parquet.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if err := w.Write(recs[i%len(recs)]); err != nil {
			b.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	secs := b.Elapsed().Seconds()
	b.ReportMetric(float64(b.N)/secs, "records/s")
	b.ReportMetric(float64(cw.n)/secs/1e6, "MB/s")
	b.ReportMetric(float64(cw.n)/float64(b.N), "B/record")
}

type countWriter struct{ n int64 }

func (w *countWriter) Write(p []byte) (int, error) { w.n += int64(len(p)); return len(p), nil }
