package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/plinthtest/pgtest"
)

// BenchmarkEventVisible measures how long a committed write takes to
// reach a subscriber as a change event: plinth serve on PostgreSQL (a new
// database) with its embedded NATS reachable on a port, BENCH_EVENT_WRITERS
// (default 16) clients creating b.N residents through the API between them,
// and a NATS subscriber on the domain's subjects. A write counts as
// committed when its 201 response arrives (serve answers after the
// commit); its event is matched by the correlation ID the write sent.
// Reported: writes/s (b.N over the time the writers took), events/s (b.N
// over the time from the first write to the last event), and the p50, p99
// and largest time from response to event, in ms (0 when the event came
// first). bench/events runs it and writes BENCHMARKS.md, "Event latency".
func BenchmarkEventVisible(b *testing.B) {
	writers := 16
	if s := os.Getenv("BENCH_EVENT_WRITERS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			b.Fatalf("BENCH_EVENT_WRITERS=%q: want a positive number", s)
		}
		writers = n
	}
	db := pgtest.Database(b)
	addr := freePort(b)
	srv := startServe(b, b.TempDir(), "--store", db, "--demo-data=false", "--nats-listen", addr)
	defer srv.stop(b)
	nc, err := nats.Connect("nats://" + addr)
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()

	run := strconv.FormatInt(time.Now().UnixNano(), 36)
	committed := make([]time.Time, b.N) // by write number
	arrived := make([]time.Time, b.N)
	var got atomic.Int64
	sub, err := nc.Subscribe(plinth.DomainSubjects("development", "residents"), func(m *nats.Msg) {
		now := time.Now()
		var ev struct {
			CorrelationID string `json:"correlationId"`
		}
		if json.Unmarshal(m.Data, &ev) != nil {
			return
		}
		var i int
		if _, err := fmt.Sscanf(ev.CorrelationID, "ev-"+run+"-%d", &i); err != nil || i < 0 || i >= b.N {
			return
		}
		arrived[i] = now // one subscriber goroutine: no lock needed
		got.Add(1)
	})
	if err != nil {
		b.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := nc.Flush(); err != nil {
		b.Fatal(err)
	}

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: writers}}
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	b.ResetTimer()
	start := time.Now()
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= b.N {
					return
				}
				t, err := postResident(client, srv, fmt.Sprintf("ev-%s-%d", run, i), i)
				if err != nil {
					errs <- err
					return
				}
				committed[i] = t
			}
		}()
	}
	wg.Wait()
	written := time.Since(start)
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for got.Load() < int64(b.N) {
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d events reached the subscriber within a minute of the last write", got.Load(), b.N)
		}
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	if err := nc.Flush(); err != nil { // the callback's writes are seen after this
		b.Fatal(err)
	}
	lat := make([]float64, b.N)
	var last time.Time
	for i := range b.N {
		lat[i] = max(0, arrived[i].Sub(committed[i]).Seconds()*1000)
		if arrived[i].After(last) {
			last = arrived[i]
		}
	}
	slices.Sort(lat)
	pct := func(p int) float64 { return lat[min(b.N-1, (b.N*p+99)/100-1)] }
	b.ReportMetric(float64(b.N)/written.Seconds(), "writes/s")
	b.ReportMetric(float64(b.N)/last.Sub(start).Seconds(), "events/s")
	b.ReportMetric(pct(50), "p50-ms")
	b.ReportMetric(pct(99), "p99-ms")
	b.ReportMetric(lat[b.N-1], "max-ms")
	b.ReportMetric(0, "ns/op")
}

// postResident creates a resident through the API and returns when
// its 201 response came.
func postResident(client *http.Client, srv *server, correlationID string, i int) (time.Time, error) {
	body, _ := json.Marshal(map[string]any{"firstName": fmt.Sprintf("Ada%d", i), "lastName": "Lovelace",
		"dateOfBirth": "1815-12-10", "emailAddress": fmt.Sprintf("ada%d@example.org", i)})
	req, _ := http.NewRequest("POST", srv.base+"/api/v1/residents", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+srv.token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("x-correlation-id", correlationID)
	res, err := client.Do(req)
	if err != nil {
		return time.Time{}, err
	}
	now := time.Now()
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusCreated {
		return time.Time{}, fmt.Errorf("create: %d %s", res.StatusCode, buf.String())
	}
	return now, nil
}
