package postgres

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/plinthtest/pgtest"
	"github.com/plinth-data/plinth/report"
	"github.com/plinth-data/plinth/storetest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if fixture.drop != nil {
		fixture.drop()
	}
	os.Exit(code)
}

// benchResidents is the size of the benchmark data set.
const benchResidents = 100_000

// fixture is the benchmark data set, loaded once per test binary.
var fixture struct {
	once  sync.Once
	store *Store
	e     *plinth.Entity
	drop  func()
	err   error
	load  time.Duration
}

func benchStore(b *testing.B) (*Store, *plinth.Entity) {
	b.Helper()
	fixture.once.Do(func() {
		ctx := context.Background()
		dbURL, drop, err := pgtest.CreateDatabase(ctx)
		if err != nil {
			fixture.err = err
			return
		}
		fixture.drop = drop
		ds := loadDomains(b)
		fixture.e = entity(b, ds, "residents")
		fixture.store, fixture.err = Open(ctx, dbURL)
		if fixture.err != nil {
			return
		}
		if fixture.err = fixture.store.Prepare(ctx, ds); fixture.err != nil {
			return
		}
		docs := make([]map[string]any, benchResidents)
		for i := range docs {
			docs[i] = resident(b, fixture.e, i)
		}
		start := time.Now()
		fixture.err = fixture.store.BulkInsert(ctx, fixture.e, docs)
		fixture.load = time.Since(start)
		if fixture.err == nil {
			_, fixture.err = fixture.store.pool.Exec(ctx, "VACUUM ANALYZE")
		}
		b.Logf("loaded %d residents with BulkInsert in %s: %.0f residents/s", benchResidents, fixture.load.Round(time.Millisecond),
			benchResidents/fixture.load.Seconds())
	})
	if fixture.err != nil {
		if os.Getenv("CI") == "true" {
			b.Fatal(fixture.err)
		}
		b.Skip(fixture.err)
	}
	return fixture.store, fixture.e
}

// BenchmarkGet: one record by key, decoded (as writes read) and with its
// nested fields as JSON text written out as the API's JSON (as the view
// route reads, plinth.WithNestedJSON).
func BenchmarkGet(b *testing.B) {
	s, e := benchStore(b)
	for _, nested := range []bool{false, true} {
		b.Run(fmt.Sprintf("nested=%t", nested), func(b *testing.B) {
			ctx := context.Background()
			if nested {
				ctx = plinth.WithNestedJSON(ctx)
			}
			r := rand.New(rand.NewPCG(1, 2))
			b.ReportAllocs()
			for b.Loop() {
				id := int64(1 + r.IntN(benchResidents))
				rec, err := s.Get(ctx, e, id)
				if err != nil {
					b.Fatal(err)
				}
				if nested {
					_ = e.MarshalRecord(rec)
				}
			}
		})
	}
}

// BenchmarkList: pages as the API serves them, each record written out
// as the API's JSON.
func BenchmarkList(b *testing.B) {
	s, e := benchStore(b)
	ctx := context.Background()
	for _, tc := range []struct{ name, query string }{
		{"page", ""},
		{"page-after", "after"},
		{"first_name-prefix", "first_name=gra"},
		{"last_name-contains", "last_name=wals"},
		{"postcode-exact", "postcode=E7+6DY"},
		{"date_of_birth-range", "date_of_birth_from=1950-01-01&date_of_birth_to=1950-12-31"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			r := rand.New(rand.NewPCG(3, 4))
			query := tc.query
			if query == "after" {
				query = ""
			}
			q, err := e.ParseQuery(mustQuery(query))
			if err != nil {
				b.Fatal(err)
			}
			q.NestedJSON = true // as the list route asks
			b.ReportAllocs()
			var buf []byte
			for b.Loop() {
				if tc.query == "after" {
					q.After = int64(r.IntN(benchResidents))
				}
				page, err := s.List(ctx, e, q)
				if err != nil {
					b.Fatal(err)
				}
				if len(page.Records) == 0 {
					b.Fatalf("%s: no records", tc.query)
				}
				for _, r := range page.Records {
					buf = e.AppendRecord(buf[:0], r)
				}
			}
		})
	}
}

// BenchmarkBulkInsert measures BulkInsert throughput, in batches of 10,000
// residents, into a table of its own.
func BenchmarkBulkInsert(b *testing.B) {
	const batch = 10_000
	ds := loadDomains(b)
	e := entity(b, ds, "residents")
	s, _ := openStore(b, ds)
	docs := make([]map[string]any, batch)
	for i := range docs {
		docs[i] = resident(b, e, i)
	}
	ctx := context.Background()
	b.ResetTimer()
	start := time.Now()
	n := 0
	for b.Loop() {
		if err := s.BulkInsert(ctx, e, docs); err != nil {
			b.Fatal(err)
		}
		n += batch
	}
	b.ReportMetric(float64(n)/time.Since(start).Seconds(), "residents/s")
}

// BenchmarkScanReport: every resident through Scan and the CSV report
// encoder, as the Reporting API exports them (less HTTP), with the
// process's CPU time per record beside the wall time (on a busy machine
// the steadier figure).
func BenchmarkScanReport(b *testing.B) {
	s, e := benchStore(b)
	storetest.BenchScanReport(b, s, e, report.FormatCSV)
}

// BenchmarkCreateWrite is the store's part of an API create: one write
// transaction with the record, its event and its audit record; one writer
// (each waits for the round trips) and 16.
func BenchmarkCreateWrite(b *testing.B) {
	ds := loadDomains(b)
	e := entity(b, ds, "residents")
	s, _ := openStore(b, ds)
	ctx := context.Background()
	var n atomic.Int64
	create := func() error {
		i := int(n.Add(1))
		_, err := createWithEventAndAudit(ctx, s, e, resident(b, e, i), fmt.Sprintf("bench-%d-%d", time.Now().UnixNano(), i))
		return err
	}
	b.Run("writers=1", func(b *testing.B) {
		for b.Loop() {
			if err := create(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("writers=16", func(b *testing.B) {
		b.SetParallelism(max(1, 16/runtime.GOMAXPROCS(0)))
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := create(); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}
