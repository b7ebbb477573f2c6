package postgres

import (
	"context"
	"fmt"
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
