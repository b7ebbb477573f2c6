package http_test

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/plinth-data/plinth/datasafety"
)

// benchResidents is the size of the benchmark fixture.
const benchResidents = 100_000

var (
	benchOnce sync.Once
	benchAPI  *api
	benchDir  string
)

// fixture serves 100k dummy residents from SQLite, built once per process.
func fixture(b *testing.B) *api {
	benchOnce.Do(func() {
		dir, err := os.MkdirTemp("", "plinth-bench-")
		if err != nil {
			b.Fatal(err)
		}
		benchDir = dir
		a := newAPI(&onceTB{TB: b, dir: dir}, nil)
		e := a.entity("residents")
		g := datasafety.NewGenerator(42)
		for done := 0; done < benchResidents; done += 1000 {
			if err := a.store.BulkInsert(context.Background(), e, g.Records(e, 1000)); err != nil {
				b.Fatal(err)
			}
		}
		benchAPI = a
	})
	if benchAPI == nil {
		b.Fatal("fixture failed")
	}
	return benchAPI
}

// onceTB keeps the fixture alive after the benchmark that built it ends:
// cleanups are dropped (the OS reclaims the temp dir's process) and the
// temp dir is fixed.
type onceTB struct {
	testing.TB
	dir string
}

func (o *onceTB) Cleanup(func())  {}
func (o *onceTB) TempDir() string { return o.dir }

func benchGet(b *testing.B, a *api, path func(r *rand.Rand) string) {
	benchGetAuth(b, a, "", path)
}

// benchGetAuth sends GETs from parallel goroutines, with an Authorization
// header when authorization is not empty.
func benchGetAuth(b *testing.B, a *api, authorization string, path func(r *rand.Rand) string) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	b.ReportAllocs()
	var mu sync.Mutex
	var took []time.Duration
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		r := rand.New(rand.NewPCG(rand.Uint64(), 1))
		var mine []time.Duration
		defer func() {
			mu.Lock()
			took = append(took, mine...)
			mu.Unlock()
		}()
		for pb.Next() {
			start := time.Now()
			req, _ := http.NewRequest("GET", a.url+path(r), nil)
			if authorization != "" {
				req.Header.Set("Authorization", authorization)
			}
			res, err := client.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode != 200 {
				b.Fatalf("status %d", res.StatusCode)
			}
			mine = append(mine, time.Since(start))
		}
	})
	b.StopTimer()
	slices.Sort(took)
	if n := len(took); n > 0 {
		b.ReportMetric(float64(took[n/2].Microseconds()), "p50-µs")
		b.ReportMetric(float64(took[n*99/100].Microseconds()), "p99-µs")
	}
}

func BenchmarkView(b *testing.B) {
	a := fixture(b)
	benchGet(b, a, func(r *rand.Rand) string {
		return fmt.Sprintf("/api/v1/residents/%d", 1+r.IntN(benchResidents))
	})
}

func BenchmarkListFirstPage(b *testing.B) {
	a := fixture(b)
	benchGet(b, a, func(*rand.Rand) string { return "/api/v1/residents" })
}

func BenchmarkListLastNameContains(b *testing.B) {
	a := fixture(b)
	parts := []string{"son", "man", "ell", "ber", "ski"}
	benchGet(b, a, func(r *rand.Rand) string { return "/api/v1/residents?last_name=" + parts[r.IntN(len(parts))] })
}

func BenchmarkListPostcode(b *testing.B) {
	a := fixture(b)
	res, err := http.Get(a.url + "/api/v1/residents/1")
	if err != nil {
		b.Fatal(err)
	}
	body := response{status: res.StatusCode}
	body.body, _ = io.ReadAll(res.Body)
	res.Body.Close()
	addrs, _ := body.json(b)["addresses"].([]any)
	if len(addrs) == 0 {
		b.Skip("resident 1 has no address")
	}
	pc := addrs[0].(map[string]any)["postCode"].(string)
	benchGet(b, a, func(*rand.Rand) string { return "/api/v1/residents?postcode=" + url.QueryEscape(pc) })
}

// TestMain removes the benchmark fixture, which outlives single benchmarks.
func TestMain(m *testing.M) {
	code := m.Run()
	if benchAPI != nil {
		benchAPI.store.Close()
	}
	if benchDir != "" {
		os.RemoveAll(benchDir)
	}
	os.Exit(code)
}
