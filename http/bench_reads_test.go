package http_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/plinth-data/plinth/domains"
	plinthhttp "github.com/plinth-data/plinth/http"
	"github.com/plinth-data/plinth/postgres"
	"github.com/plinth-data/plinth/spec"
)

// BenchmarkReadsInProcess serves the four reads of bench/run (view by id,
// first page, last_name contains, postcode) straight through the handler,
// without a network between client and server, from the PostgreSQL
// database PLINTH_BENCH_PG names (seeded with `plinth seed`; skipped
// when unset). It reports the process's CPU per request (cpu-µs/op),
// which, unlike ns/op, does not count the wait for PostgreSQL: the
// handler's own cost, the figure issue 16 asks to lower.
func BenchmarkReadsInProcess(b *testing.B) {
	url := os.Getenv("PLINTH_BENCH_PG")
	if url == "" {
		b.Skip("PLINTH_BENCH_PG is not set")
	}
	ctx := context.Background()
	ds, err := spec.LoadFS(domains.FS, ".")
	if err != nil {
		b.Fatal(err)
	}
	st, err := postgres.Open(ctx, url)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	if err := st.Prepare(ctx, ds); err != nil {
		b.Fatal(err)
	}
	srv := mustServer(b, plinthhttp.Config{Store: st, Domains: ds, Logger: discardLogger(), Unprotected: true, Environment: "development"})
	for _, c := range []struct {
		name string
		path func(*rand.Rand) string
	}{
		{"view", func(r *rand.Rand) string { return fmt.Sprintf("/api/v1/residents/%d", 1+r.IntN(200_000)) }},
		{"first-page", func(*rand.Rand) string { return "/api/v1/residents" }},
		{"contains", func(*rand.Rand) string { return "/api/v1/residents?last_name=son" }},
		{"postcode", func(*rand.Rand) string { return "/api/v1/residents?postcode=B13%207DB" }},
	} {
		b.Run(c.name, func(b *testing.B) {
			r := rand.New(rand.NewPCG(1, 2))
			b.ReportAllocs()
			cpu0 := processCPU()
			b.ResetTimer()
			for range b.N {
				req := httptest.NewRequest(http.MethodGet, c.path(r), nil)
				w := &discardWriter{h: http.Header{}}
				srv.ServeHTTP(w, req)
				if w.status != 0 && w.status != http.StatusOK {
					b.Fatalf("status %d", w.status)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64((processCPU()-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
		})
	}
}

// discardWriter is a ResponseWriter that keeps nothing but the status.
type discardWriter struct {
	h      http.Header
	status int
	n      int
}

func (w *discardWriter) Header() http.Header { return w.h }
func (w *discardWriter) WriteHeader(s int) {
	if w.status == 0 {
		w.status = s
	}
}
func (w *discardWriter) Write(p []byte) (int, error) { w.n += len(p); return len(p), nil }

// processCPU is the user and system time the process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
