package events_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/events"
	"github.com/plinth-data/plinth/plinthtest"
)

// countedPublisher counts how often each event is handed to the bus:
// JetStream drops a repeat within its duplicate window, so the stream alone
// would not show a relay publishing an entry twice.
type countedPublisher struct {
	inner plinth.Publisher
	mu    sync.Mutex
	times map[string]int
	calls int
}

func (p *countedPublisher) Publish(ctx context.Context, entries []plinth.OutboxEntry) error {
	p.mu.Lock()
	p.calls++
	for _, e := range entries {
		p.times[e.EventID]++
	}
	p.mu.Unlock()
	return p.inner.Publish(ctx, entries)
}

// twice returns the events handed over more than once.
func (p *countedPublisher) twice() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for id, n := range p.times {
		if n > 1 {
			out = append(out, id)
		}
	}
	return out
}

// countedMarks counts MarkEventsSent calls and fails those listed (from 1),
// reading past a sequence as its store does (plinth.PendingAfterReader).
type countedMarks struct {
	eventStore
	fail  map[int64]bool
	calls atomic.Int64
}

func (s *countedMarks) PendingEventsAfter(ctx context.Context, after int64, limit int) ([]plinth.OutboxEntry, error) {
	return s.eventStore.(plinth.PendingAfterReader).PendingEventsAfter(ctx, after, limit)
}

func (s *countedMarks) MarkEventsSent(ctx context.Context, ids []string) error {
	if s.fail[s.calls.Add(1)] {
		return errors.New("store unavailable")
	}
	return s.eventStore.MarkEventsSent(ctx, ids)
}

// A relay marks what it published some passes later (events.markLater), in
// fewer transactions than it publishes, and reads past what it has not
// marked yet instead of publishing it again; a failed mark is made again
// before anything else. The counts catch a relay that marks after every
// publish, one that reads its unmarked entries again, and one that drops
// them when a mark fails.
func TestRelayMarksLaterWithoutPublishingTwice(t *testing.T) {
	for _, sc := range stores {
		t.Run(sc.name, func(t *testing.T) {
			ds := plinthtest.Domains(t)
			st := sc.open(t, ds)
			if _, ok := st.(plinth.PendingAfterReader); !ok {
				t.Fatalf("%T cannot read past a sequence", st)
			}
			b := newBus(t, ds)
			pub := &countedPublisher{inner: b.pub, times: map[string]int{}}
			marks := &countedMarks{eventStore: st, fail: map[int64]bool{2: true}}
			w := newWriter(st, plinthtest.Entity(t, ds, "residents"))
			r, _ := startRelay(t, marks, pub, events.RelayConfig{Holder: "only", Poll: 20 * time.Millisecond, Batch: 500, Logger: quiet})
			// A trickle of commits, each followed by Notify as serve does:
			// passes of a few entries each.
			for range 30 {
				writeLoad(t, w, 2, 5)
				r.Notify()
				time.Sleep(6 * time.Millisecond)
			}
			waitForCount(t, st, b.js, residentsStream, w.total(), 30*time.Second)
			w.checkExactlyOnce(t, b.js, residentsStream)
			if twice := pub.twice(); len(twice) > 0 {
				t.Fatalf("%d events handed to the bus twice, such as %q", len(twice), twice[0])
			}
			pub.mu.Lock()
			calls := pub.calls
			pub.mu.Unlock()
			if n := marks.calls.Load(); calls < 10 || n*2 > int64(calls) {
				t.Fatalf("%d publishes, %d marks: want at most one mark for two publishes", calls, n)
			}
		})
	}
}

// A relay that stops marks what it published before it gives up the lease,
// so the next one has nothing to look for in the stream.
func TestRelayMarksBeforeItStops(t *testing.T) {
	for _, sc := range stores {
		t.Run(sc.name, func(t *testing.T) {
			ctx := t.Context()
			ds := plinthtest.Domains(t)
			st := sc.open(t, ds)
			b := newBus(t, ds)
			w := newWriter(st, plinthtest.Entity(t, ds, "residents"))
			// A long poll: after publishing, the relay waits for it and
			// does not look at the outbox again before it stops.
			r, stop := startRelay(t, st, b.pub, events.RelayConfig{Holder: "only", Poll: time.Hour, Logger: quiet})
			writeLoad(t, w, 1, 3)
			r.Notify()
			plinthtest.Eventually(t, 10*time.Second, func() bool { return r.Status().Published == int64(w.total()) }, "the relay did not publish")
			stop()
			pending, err := st.PendingEvents(ctx, 10)
			if err != nil || len(pending) != 0 {
				t.Fatalf("after the relay stopped, %d entries pending (%v)", len(pending), err)
			}
			w.checkExactlyOnce(t, b.js, residentsStream)
		})
	}
}
