package postgres

import (
	"bytes"
	"os"
	"strconv"
	"strings"
	"syscall"

	"context"
	"fmt"
	"github.com/jackc/pgx/v5"
	"log/slog"
	"runtime"
	"testing"
	"time"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/audit"
)

// benchAuditRecord is a typical audit record of a view.
func benchAuditRecord(i int) plinth.AuditRecord {
	return plinth.AuditRecord{
		Time:          time.Now(),
		CorrelationID: fmt.Sprintf("bench-%d", i),
		Environment:   plinth.EnvProduction,
		Domain:        "residents",
		Entity:        "residents",
		Operation:     "view",
		Method:        "GET",
		Route:         "/api/v1/residents/{id}",
		Principal:     plinth.Principal{Subject: "u-123", Email: "ana@example.org", Groups: []string{"housing-officers"}},
		Decision:      plinth.DecisionAllow,
		Status:        200,
		RecordIDs:     []string{fmt.Sprint(100000 + i)},
		Count:         1,
		DurationMs:    1.234,
		ClientAddress: "203.0.113.7",
		UserAgent:     "Mozilla/5.0",
	}
}

func benchAuditStore(b *testing.B) *Store {
	s, _ := openStore(b, nil)
	if err := s.Prepare(context.Background(), nil); err != nil {
		b.Fatal(err)
	}
	return s
}

// BenchmarkAppendAudit measures AppendAudit throughput: one record per
// call, and batches of 32 (what group commit makes of concurrent
// requests); serially and from 16 goroutines.
func BenchmarkAppendAudit(b *testing.B) {
	for _, size := range []int{1, 32} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			s := benchAuditStore(b)
			ctx := context.Background()
			recs := make([]plinth.AuditRecord, size)
			for i := range recs {
				recs[i] = benchAuditRecord(i)
			}
			b.ReportAllocs()
			start := time.Now()
			n := 0
			for b.Loop() {
				if _, err := s.AppendAudit(ctx, recs); err != nil {
					b.Fatal(err)
				}
				n += size
			}
			b.ReportMetric(float64(n)/time.Since(start).Seconds(), "records/s")
		})
		b.Run(fmt.Sprintf("batch=%d/parallel=16", size), func(b *testing.B) {
			s := benchAuditStore(b)
			ctx := context.Background()
			recs := make([]plinth.AuditRecord, size)
			for i := range recs {
				recs[i] = benchAuditRecord(i)
			}
			b.SetParallelism(max(1, 16/runtime.GOMAXPROCS(0))) // about 16 goroutines
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := s.AppendAudit(ctx, recs); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N*size)/time.Since(start).Seconds(), "records/s")
		})
	}
}

// BenchmarkTxAppendAudit measures write transactions that carry one audit
// record (and nothing else), serially and from 16 goroutines.
func BenchmarkTxAppendAudit(b *testing.B) {
	write := func(ctx context.Context, s *Store, rec plinth.AuditRecord) error {
		return s.Write(ctx, func(tx plinth.Tx) error {
			_, err := tx.(plinth.AuditTx).AppendAudit(ctx, rec)
			return err
		})
	}
	b.Run("serial", func(b *testing.B) {
		s := benchAuditStore(b)
		ctx := context.Background()
		rec := benchAuditRecord(0)
		start := time.Now()
		n := 0
		for b.Loop() {
			if err := write(ctx, s, rec); err != nil {
				b.Fatal(err)
			}
			n++
		}
		b.ReportMetric(float64(n)/time.Since(start).Seconds(), "records/s")
	})
	b.Run("parallel=16", func(b *testing.B) {
		s := benchAuditStore(b)
		ctx := context.Background()
		rec := benchAuditRecord(0)
		b.SetParallelism(max(1, 16/runtime.GOMAXPROCS(0)))
		start := time.Now()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := write(ctx, s, rec); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "records/s")
	}) // With the chainer running, as in plinth serve: the writes' records
	// are also chained while they are written.
	b.Run("parallel=16/chainer", func(b *testing.B) {
		s := benchAuditStore(b)
		ctx := context.Background()
		rec := benchAuditRecord(0)
		c := audit.NewChainer(s, audit.ChainerConfig{Logger: slog.New(slog.DiscardHandler)})
		cctx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { c.Run(cctx); close(done) }()
		b.SetParallelism(max(1, 16/runtime.GOMAXPROCS(0)))
		start := time.Now()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := write(ctx, s, rec); err != nil {
					b.Error(err)
					return
				}
				c.Notify()
			}
		})
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "records/s")
		// How long the chainer takes to catch up once writing stops. A
		// measurement, not a wait: plinthtest.Eventually's back-off (up to
		// 50 ms) would blur the metric, so this polls every 2 ms.
		caughtUp := time.Now()
		for {
			n, err := s.CountUnchainedAudit(ctx)
			if err != nil {
				b.Fatal(err)
			}
			if n == 0 {
				break
			}
			time.Sleep(2 * time.Millisecond)
		}
		b.ReportMetric(float64(time.Since(caughtUp).Milliseconds()), "catchup-ms")
		stop()
		<-done
	})
}

// backendCPU returns the CPU time so far of the server processes serving
// the store's database (not the WAL writer, checkpointer or autovacuum),
// read from /proc: the benchmark must run on the database's host.
func backendCPU(b *testing.B, s *Store) time.Duration {
	rows, err := s.pool.Query(context.Background(),
		`SELECT pid FROM pg_stat_activity WHERE datname = current_database()`)
	if err != nil {
		b.Fatal(err)
	}
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		b.Fatal(err)
	}
	var ticks int64
	for _, pid := range pids {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue // another host, or the process ended
		}
		f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+2:]))
		u, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		ticks += u + st
	}
	return time.Duration(ticks) * 10 * time.Millisecond // USER_HZ is 100 on Linux
}

// selfCPU is this process's CPU time so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkChainerRead measures the chainer's read of 1,000 unchained
// records: whole records (UnchainedAudit), or their log ids only
// (UnchainedAuditIDs, when the chainer holds the records its process
// appended); and, with 100,000 records chained since the last VACUUM,
// the read from the start of the log against the read from the floor.
// It reports Go and server CPU µs per record read.
func BenchmarkChainerRead(b *testing.B) {
	ctx := context.Background()
	s := benchAuditStore(b)
	if _, err := s.pool.Exec(ctx, `ALTER TABLE "plinth"."audit_log" SET (autovacuum_enabled = false)`); err != nil {
		b.Fatal(err)
	}
	recs := make([]plinth.AuditRecord, 1000)
	for i := range recs {
		recs[i] = benchAuditRecord(i)
	}
	fill := func(n int) {
		for range n / len(recs) {
			if _, err := s.AppendAudit(ctx, recs); err != nil {
				b.Fatal(err)
			}
		}
	}
	measure := func(b *testing.B, read func() (int, error)) {
		go0, pg0 := selfCPU(), backendCPU(b, s)
		n := 0
		for b.Loop() {
			got, err := read()
			if err != nil || got == 0 {
				b.Fatal(got, err)
			}
			n += got
		}
		b.ReportMetric(float64((selfCPU()-go0).Microseconds())/float64(n), "go-µs/record")
		b.ReportMetric(float64((backendCPU(b, s)-pg0).Microseconds())/float64(n), "pg-µs/record")
	}
	fill(1000)
	b.Run("records", func(b *testing.B) {
		measure(b, func() (int, error) { r, err := s.UnchainedAudit(ctx, 1000); return len(r), err })
	})
	b.Run("ids", func(b *testing.B) {
		measure(b, func() (int, error) { r, err := s.UnchainedAuditIDs(ctx, 1000); return len(r), err })
	})
	// 100,000 records chained, their dead index entries left, and 50 to chain.
	fill(100000)
	if n, err := audit.ChainPending(ctx, s); err != nil || n != 101000 {
		b.Fatal(n, err)
	}
	for range 50 {
		if _, err := s.AppendAudit(ctx, recs[:1]); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("after-100k-chained/from-start", func(b *testing.B) {
		measure(b, func() (int, error) {
			s.auditFloor.Store(0)
			r, err := s.UnchainedAudit(ctx, 1000)
			return len(r), err
		})
	})
	b.Run("after-100k-chained/from-floor", func(b *testing.B) {
		measure(b, func() (int, error) { r, err := s.UnchainedAudit(ctx, 1000); return len(r), err })
	})
}
