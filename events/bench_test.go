package events_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/events"
	"github.com/plinth-data/plinth/plinthtest"
	"github.com/plinth-data/plinth/plinthtest/pgtest"
	"github.com/plinth-data/plinth/postgres"
)

// BenchmarkWriteToEvent measures the whole path of a change event on
// PostgreSQL with the embedded NATS server: a writer commits a resident and
// its outbox entry and calls Relay.Notify (as the HTTP layer does); the
// relay publishes it; a JetStream consumer receives it. It reports the
// latency from commit to receipt (p50, p99, in ms) and events/s from the
// first write to the last receipt, with 1 and 16 writers. Run with a fixed
// count, such as -benchtime=20000x.
func BenchmarkWriteToEvent(b *testing.B) {
	for _, writers := range []int{1, 16} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			benchWriteToEvent(b, writers)
		})
	}
}

func benchWriteToEvent(b *testing.B, writers int) {
	ctx := context.Background()
	ds := plinthtest.Domains(b)
	url := pgtest.Database(b)
	sep := "?"
	if strings.Contains(url, "?") {
		sep = "&"
	}
	st, err := postgres.Open(ctx, url+sep+"sslmode=disable&pool_max_conns="+fmt.Sprint(writers+4))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	if err := st.Prepare(ctx, ds); err != nil {
		b.Fatal(err)
	}
	bs := newBus(b, ds)
	e := plinthtest.Entity(b, ds, "residents")
	relay, _ := startRelay(b, st, bs.pub, events.RelayConfig{Holder: "bench", Logger: quiet})

	n := b.N
	committed := make([]time.Time, 0, n)
	commitAt := sync.Map{}   // event ID → time.Time
	receivedAt := sync.Map{} // event ID → time.Time
	var got atomic.Int64
	all := make(chan struct{})

	cons, err := bs.js.OrderedConsumer(ctx, residentsStream, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverNewPolicy})
	if err != nil {
		b.Fatal(err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		receivedAt.Store(m.Headers().Get(jetstream.MsgIDHeader), time.Now())
		if got.Add(1) == int64(n) {
			close(all)
		}
	}, jetstream.PullMaxMessages(2000))
	if err != nil {
		b.Fatal(err)
	}
	defer cc.Stop()

	data, err := e.Validate(map[string]any{"firstName": "Bench", "lastName": "Mark", "gender": "F", "dateOfBirth": "1990-04-23"}, true)
	if err != nil {
		b.Fatal(err)
	}
	c := plinth.EventContext{Environment: "development", SourceSystem: "plinth residents API", CorrelationID: "bench",
		Principal: plinth.Principal{Subject: "bench", Name: "Bench", Email: "bench@example.gov.uk"}}
	var next atomic.Int64
	var mu sync.Mutex
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(n) {
				var id string
				err := st.Write(ctx, func(tx plinth.Tx) error {
					rec, err := tx.Insert(ctx, e, data)
					if err != nil {
						return err
					}
					entry, _, _ := plinth.BuildEvent(e, plinth.EventCreated, nil, &rec, c)
					id = entry.EventID
					return tx.(plinth.EventTx).AppendEvent(ctx, entry)
				})
				if err != nil {
					errs <- err
					return
				}
				now := time.Now()
				commitAt.Store(id, now)
				relay.Notify()
				mu.Lock()
				committed = append(committed, now)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	select {
	case <-all:
	case <-time.After(2 * time.Minute):
		b.Fatalf("received %d of %d events", got.Load(), n)
	}
	elapsed := time.Since(start)
	b.StopTimer()

	lat := make([]time.Duration, 0, n)
	commitAt.Range(func(id, at any) bool {
		if r, ok := receivedAt.Load(id); ok {
			lat = append(lat, max(r.(time.Time).Sub(at.(time.Time)), 0))
		}
		return true
	})
	if len(lat) != n {
		b.Fatalf("%d of %d events received", len(lat), n)
	}
	slices.Sort(lat)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	b.ReportMetric(ms(lat[len(lat)/2]), "p50-ms")
	b.ReportMetric(ms(lat[min(len(lat)-1, len(lat)*99/100)]), "p99-ms")
	b.ReportMetric(ms(lat[len(lat)-1]), "max-ms")
	b.ReportMetric(float64(n)/elapsed.Seconds(), "events/s")
	b.ReportMetric(float64(len(committed))/committed[len(committed)-1].Sub(start).Seconds(), "writes/s")
}

// BenchmarkRelayDrain measures the relay alone on PostgreSQL with the
// embedded NATS server: b.N events wait in the outbox (written before the
// timer starts); the relay publishes them and a JetStream consumer receives
// them. It reports events/s, the relay's capacity apart from the write path.
func BenchmarkRelayDrain(b *testing.B) {
	ctx := context.Background()
	ds := plinthtest.Domains(b)
	url := pgtest.Database(b)
	st, err := postgres.Open(ctx, url+"?sslmode=disable&pool_max_conns=20")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	if err := st.Prepare(ctx, ds); err != nil {
		b.Fatal(err)
	}
	bs := newBus(b, ds)
	e := plinthtest.Entity(b, ds, "residents")
	data, err := e.Validate(map[string]any{"firstName": "Bench", "lastName": "Mark", "gender": "F", "dateOfBirth": "1990-04-23"}, true)
	if err != nil {
		b.Fatal(err)
	}
	n := b.N
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(n) {
				err := st.Write(ctx, func(tx plinth.Tx) error {
					rec, err := tx.Insert(ctx, e, data)
					if err != nil {
						return err
					}
					entry, _, _ := plinth.BuildEvent(e, plinth.EventCreated, nil, &rec, plinth.EventContext{})
					return tx.(plinth.EventTx).AppendEvent(ctx, entry)
				})
				if err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()

	var got atomic.Int64
	all := make(chan struct{})
	cons, err := bs.js.OrderedConsumer(ctx, residentsStream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		b.Fatal(err)
	}
	cc, err := cons.Consume(func(jetstream.Msg) {
		if got.Add(1) == int64(n) {
			close(all)
		}
	}, jetstream.PullMaxMessages(2000))
	if err != nil {
		b.Fatal(err)
	}
	defer cc.Stop()

	b.ResetTimer()
	start := time.Now()
	startRelay(b, st, bs.pub, events.RelayConfig{Holder: "drain", Logger: quiet})
	select {
	case <-all:
	case <-time.After(5 * time.Minute):
		b.Fatalf("received %d of %d events", got.Load(), n)
	}
	b.StopTimer()
	b.ReportMetric(float64(n)/time.Since(start).Seconds(), "events/s")
}
