package lake_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/lake"
	"github.com/plinth-data/plinth/plinthtest"
	rt "github.com/plinth-data/plinth/report/reporttest"
	"github.com/plinth-data/plinth/sqlite"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// failingDeletes fails every Delete after the first n.
type failingDeletes struct {
	lake.Target
	n atomic.Int64
}

func (f *failingDeletes) Delete(ctx context.Context, key string) error {
	if f.n.Add(-1) < 0 {
		return errors.New("network gone")
	}
	return f.Target.Delete(ctx, key)
}

func countParts(t *testing.T, target lake.Target, prefix string) int {
	t.Helper()
	objs, err := target.List(context.Background(), prefix)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, o := range objs {
		if strings.HasSuffix(o.Key, ".parquet") {
			n++
		}
	}
	return n
}

// Compaction merges the files of closed partitions only, keeps the
// multiset of rows, and finishes after a crash between writing the
// merged file and removing the old ones.
func TestCompact(t *testing.T) { eachTarget(t, testCompact) }

func testCompact(t *testing.T, target lake.Target, local func() string) {
	e, recs := rt.Sample(t, 150)
	b := newBus(t, e.Domain)
	b.publish(t, e, recs, time.Date(2026, 3, 1, 23, 59, 0, 0, time.UTC)) // 60 events on the 1st, the rest on the 2nd
	land(t, b, e.Domain, target, lake.Config{FlushEvents: 10, FlushInterval: 300 * time.Millisecond})
	all := "SELECT * EXCLUDE (import_year, import_month, import_day, import_date), import_date FROM %s ORDER BY sequence"
	before := lakeEvents(t, local(), e, all)
	day1 := lake.EntityPrefix(e) + "events/" + lake.PartitionPath(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC))
	day2 := lake.EntityPrefix(e) + "events/" + lake.PartitionPath(time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC))
	files2 := countParts(t, target, day2)
	if countParts(t, target, day1) < 6 || files2 < 6 {
		t.Fatalf("expected many small files, got %d and %d", countParts(t, target, day1), files2)
	}

	// The 2nd is the open partition. The first attempt dies after
	// writing the merged file and removing two of the old ones.
	ctx := context.Background()
	open := time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)
	broken := &failingDeletes{Target: target}
	broken.n.Store(2)
	if _, err := lake.Compact(ctx, broken, e.Domain.Name+"/", lake.CompactOptions{Before: open}); err == nil {
		t.Fatal("the broken compaction did not fail")
	}
	st, err := lake.Compact(ctx, target, e.Domain.Name+"/", lake.CompactOptions{Before: open})
	if err != nil {
		t.Fatal(err)
	}
	if st.Recovered == 0 {
		t.Fatalf("the interrupted compaction was not finished: %+v", st)
	}
	if n := countParts(t, target, day1); n != 1 {
		t.Fatalf("the closed partition has %d files after compaction", n)
	}
	if n := countParts(t, target, day2); n != files2 {
		t.Fatalf("the open partition changed: %d files, had %d", n, files2)
	}
	after := lakeEvents(t, local(), e, all)
	if !reflect.DeepEqual(before.Rows, after.Rows) || !reflect.DeepEqual(before.Columns, after.Columns) {
		t.Fatalf("compaction changed the rows: %d before, %d after", len(before.Rows), len(after.Rows))
	}
	// Every event delivered again (the durable consumer is gone) is
	// found in the compacted files: nothing lands twice.
	if err := b.js.DeleteConsumer(ctx, b.stream, "lake"); err != nil {
		t.Fatal(err)
	}
	if st := land(t, b, e.Domain, target, lake.Config{FlushEvents: 1000, FlushInterval: 300 * time.Millisecond}); st.Landed != 0 || st.Duplicates != int64(len(before.Rows)) {
		t.Fatalf("landing everything again after compaction: %+v", st)
	}
}

// Erase removes every row of one record, from events and snapshots alike,
// and leaves the others.
func TestErase(t *testing.T) { eachTarget(t, testErase) }

func testErase(t *testing.T, target lake.Target, local func() string) {
	e, recs := rt.Sample(t, 40)
	b := newBus(t, e.Domain)
	ids := b.publish(t, e, recs, time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	land(t, b, e.Domain, target, lake.Config{FlushEvents: 7, FlushInterval: 300 * time.Millisecond})
	victim := e.KeyOf(recs[0]).(string) // created and deleted (and perhaps updated)
	count := func(where string) int {
		return len(lakeEvents(t, local(), e, "SELECT id FROM %s WHERE "+where).Rows)
	}
	mine := count("entityId = " + rt.SQLString(victim))
	if mine < 2 {
		t.Fatalf("the record has %d events, want at least 2", mine)
	}
	ctx := context.Background()
	st, err := lake.Erase(ctx, target, e, victim)
	if err != nil || st.Rows != int64(mine) {
		t.Fatalf("erase: %+v %v", st, err)
	}
	if n := count("entityId = " + rt.SQLString(victim)); n != 0 {
		t.Fatalf("%d events of the erased record are left", n)
	}
	if n := count("true"); n != len(ids)-mine {
		t.Fatalf("%d events left, want %d", n, len(ids)-mine)
	}
	if st, err := lake.Erase(ctx, target, e, victim); err != nil || st.Rows != 0 || st.FilesRewritten != 0 {
		t.Fatalf("second erase: %+v %v", st, err)
	}
}

// The Athena and Trino definitions, which cannot run here, match reviewed
// golden files (go test ./lake -run DDL -update rewrites them).
func TestDDLGolden(t *testing.T) {
	ds := plinthtest.Domains(t)
	for _, format := range []string{lake.FormatAthena, lake.FormatTrino} {
		got, err := lake.DDL(ds, format, "s3://council-lake/raw/", []string{"residents"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join("testdata", "ddl."+format+".sql")
		if *update {
			if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if got != string(want) {
			t.Errorf("%s DDL differs from %s (review, then -update)", format, path)
		}
	}
	if _, err := lake.DDL(ds, "hive", "s3://x", nil, nil); err == nil || !strings.Contains(err.Error(), "athena, trino or duckdb") {
		t.Fatalf("unknown format: %v", err)
	}
}

// A snapshot holds every record of one store scan, with its manifest;
// a second one the same day replaces the first.
func TestSnapshot(t *testing.T) { eachTarget(t, testSnapshot) }

func testSnapshot(t *testing.T, target lake.Target, local func() string) {
	ctx := context.Background()
	e, recs := rt.Sample(t, 120)
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Prepare(ctx, []*plinth.Domain{e.Domain}); err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if err := st.Write(ctx, func(tx plinth.Tx) error { _, err := tx.Insert(ctx, e, r.Data); return err }); err != nil {
			t.Fatal(err)
		}
	}
	day := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	for range 2 {
		m, err := lake.Snapshot(ctx, st, e, target, day, lake.SnapshotOptions{FileRecords: 50})
		if err != nil || m.Records != int64(len(recs)) || len(m.Files) != 3 || m.Watermark == "" {
			t.Fatalf("snapshot: %+v %v", m, err)
		}
	}
	glob := filepath.Join(local(), lake.SnapshotPartition(lake.EntityPrefix(e), day), "*.parquet")
	res := rt.DuckDB(t, "SELECT count(*), count(DISTINCT id) FROM read_parquet("+rt.SQLString(glob)+")")
	if fmt.Sprint(res[0].Rows[0]) != fmt.Sprintf("[%d %d]", len(recs), len(recs)) {
		t.Fatalf("the snapshot partition holds %v rows (distinct ids), want %d", res[0].Rows, len(recs))
	}
}
