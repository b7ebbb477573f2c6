package lake_test

import (
	"context"
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/lake"
	plinthnats "github.com/plinth-data/plinth/nats"
	"github.com/plinth-data/plinth/parquet"
	"github.com/plinth-data/plinth/plinthtest/natstest"
	rt "github.com/plinth-data/plinth/report/reporttest"
)

// BenchmarkLandBacklog lands a full stream backlog of resident events
// (BENCH_LAKE_EVENTS, default 100,000: creates of dummy residents) into a
// lake folder, from a durable consumer, with the default flush size.
// Reports events/s, the process's CPU time per event (a loaded machine
// slows the first, hardly the second) and the bytes of Parquet per event.
// BENCH_LAKE_COMPRESSION is zstd (default) or snappy. BENCH_LAKE_PROFILE names a file for a CPU profile of the landing alone.
func BenchmarkLandBacklog(b *testing.B) {
	n := 100_000
	if s := os.Getenv("BENCH_LAKE_EVENTS"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	codec, err := parquet.Codec(os.Getenv("BENCH_LAKE_COMPRESSION"))
	if err != nil {
		b.Fatal(err)
	}
	e, recs := rt.Residents(b, min(n, 20_000))
	_, nc := natstest.Embedded(b)
	pub, err := plinthnats.NewPublisher(context.Background(), nc, "bench", []*plinth.Domain{e.Domain})
	if err != nil {
		b.Fatal(err)
	}
	var entries []plinth.OutboxEntry
	start := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	for i := range n {
		rec := recs[i%len(recs)]
		rec.Data = plinth.MergePatch(rec.Data, map[string]any{e.Key.Name: int64(i + 1)})
		entry, _, _ := plinth.BuildEvent(e, plinth.EventCreated, nil, &rec, plinth.EventContext{Environment: "bench",
			CorrelationID: "bench-" + strconv.Itoa(i), Now: start.Add(time.Duration(i) * time.Millisecond),
			Principal: plinth.Principal{Subject: "loader", Email: "loader@example.org"}})
		entries = append(entries, entry)
		if len(entries) == 1000 || i == n-1 {
			if err := pub.Publish(context.Background(), entries); err != nil {
				b.Fatal(err)
			}
			entries = entries[:0]
		}
	}
	stream := plinthnats.StreamName("bench", e.Domain.Name)
	// The source records are not the lander's: out of the heap the
	// collector scans while it runs.
	recs, entries = nil, nil
	if os.Getenv("GOGC") == "" {
		// As plinth lake runs (bulkGC in cmd/plinth): the collector's
		// target at 400 %, a soft memory limit of 1 GiB.
		defer debug.SetGCPercent(debug.SetGCPercent(400))
		defer debug.SetMemoryLimit(debug.SetMemoryLimit(1 << 30))
	}
	runtime.GC()
	if path := os.Getenv("BENCH_LAKE_PROFILE"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			b.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			b.Fatal(err)
		}
		defer pprof.StopCPUProfile()
	}
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	b.ResetTimer()
	cpu0 := cpuTime()
	var bytes int64
	for i := 0; i < b.N; i++ {
		root := b.TempDir()
		ctx := context.Background()
		src, err := plinthnats.NewBatchSource(ctx, pub.JetStream(), stream, "bench-"+strconv.Itoa(i), 5*time.Minute)
		if err != nil {
			b.Fatal(err)
		}
		l := lake.NewLander(e.Domain, lake.Dir(root), lake.Config{Drain: true, Logger: slog.New(slog.DiscardHandler),
			Parquet: parquet.Options{Compression: codec}})
		if err := l.Run(ctx, src); err != nil {
			b.Fatal(err)
		}
		if st := l.Stats(); st.Landed != int64(n) {
			b.Fatalf("landed %d of %d", st.Landed, n)
		}
		bytes += l.Stats().Bytes
	}
	b.StopTimer()
	cpu := cpuTime() - cpu0
	runtime.ReadMemStats(&ms1)
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
	// CPU time of the process (lander and the embedded NATS server) per
	// event: what the rate would be per core on an idle machine.
	b.ReportMetric(float64(cpu.Microseconds())/float64(n*b.N), "cpu-µs/event")
	b.ReportMetric(float64(bytes)/float64(n*b.N), "bytes/event")
	// What drives the collector's share: bytes allocated per event (lander
	// and NATS) and the number of collections.
	b.ReportMetric(float64(ms1.TotalAlloc-ms0.TotalAlloc)/float64(n*b.N), "alloc-B/event")
	b.ReportMetric(float64(ms1.NumGC-ms0.NumGC)/float64(b.N), "GCs/op")
}

// cpuTime is the user and system CPU time of the process so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
