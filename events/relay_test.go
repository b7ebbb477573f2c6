package events_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/events"
	plinthnats "github.com/plinth-data/plinth/nats"
	"github.com/plinth-data/plinth/plinthtest"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

var residentsStream = plinthnats.StreamName("development", "residents")

// writeLoad runs writers that create and update residents, with every
// fifth transaction rolled back after its event was appended.
func writeLoad(t testing.TB, w *writer, writers, perWriter int) {
	t.Helper()
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var ids []any
			for j := range perWriter {
				rollback := j%5 == 4
				if len(ids) < 3 || j%4 == 0 {
					id, err := w.create(ctx, map[string]any{"firstName": fmt.Sprintf("W%d", i), "lastName": fmt.Sprintf("R%d", j)}, rollback)
					if err != nil {
						errs <- err
						return
					}
					if id != nil {
						ids = append(ids, id)
					}
					continue
				}
				id := ids[j%len(ids)]
				if err := w.update(ctx, id, map[string]any{"lastName": fmt.Sprintf("U%d-%d", i, j)}, rollback); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func TestRelayPublishesEveryCommittedEventOnceInOrder(t *testing.T) {
	for _, sc := range stores {
		t.Run(sc.name, func(t *testing.T) {
			ds := plinthtest.Domains(t)
			st := sc.open(t, ds)
			b := newBus(t, ds)
			w := newWriter(st, plinthtest.Entity(t, ds, "residents"))
			r, _ := startRelay(t, st, b.pub, events.RelayConfig{Holder: "only", Poll: 20 * time.Millisecond, Batch: 37, Logger: quiet})

			writeLoad(t, w, 8, 40)
			waitForCount(t, st, b.js, residentsStream, w.total(), 30*time.Second)
			w.checkExactlyOnce(t, b.js, residentsStream)
			if pending, err := st.PendingEvents(context.Background(), 10); err != nil || len(pending) != 0 {
				t.Fatalf("pending after the relay caught up: %d, %v", len(pending), err)
			}
			if s := r.Status(); !s.Active || s.Published != int64(w.total()) || s.LastError != nil {
				t.Fatalf("status %+v, %d committed", s, w.total())
			}
		})
	}
}

// watchedPublisher records which relay publishes and whether two publish at
// once.
type watchedPublisher struct {
	inner    plinth.Publisher
	inflight *atomic.Int32
	overlap  *atomic.Bool
	calls    atomic.Int64
}

func (p *watchedPublisher) Publish(ctx context.Context, entries []plinth.OutboxEntry) error {
	if p.inflight.Add(1) > 1 {
		p.overlap.Store(true)
	}
	defer p.inflight.Add(-1)
	p.calls.Add(1)
	time.Sleep(2 * time.Millisecond) // widen the window for overlaps
	return p.inner.Publish(ctx, entries)
}

// killableStore fails every call once killed, as a relay whose process died
// would: it neither publishes nor renews nor releases its lease.
type killableStore struct {
	plinth.OutboxStore
	dead    atomic.Bool
	refused atomic.Int64 // times the lease was refused, another relay holding it
}

var errKilled = errors.New("killed")

func (s *killableStore) PendingEvents(ctx context.Context, limit int) ([]plinth.OutboxEntry, error) {
	if s.dead.Load() {
		return nil, errKilled
	}
	return s.OutboxStore.PendingEvents(ctx, limit)
}

// PendingEventsAfter lets the relay mark later, as over the store itself.
func (s *killableStore) PendingEventsAfter(ctx context.Context, after int64, limit int) ([]plinth.OutboxEntry, error) {
	if s.dead.Load() {
		return nil, errKilled
	}
	return s.OutboxStore.(plinth.PendingAfterReader).PendingEventsAfter(ctx, after, limit)
}

func (s *killableStore) MarkEventsSent(ctx context.Context, ids []string) error {
	if s.dead.Load() {
		return errKilled
	}
	return s.OutboxStore.MarkEventsSent(ctx, ids)
}

func (s *killableStore) AcquireRelayLease(ctx context.Context, holder string, ttl time.Duration) (bool, error) {
	if s.dead.Load() {
		return false, errKilled
	}
	ok, err := s.OutboxStore.AcquireRelayLease(ctx, holder, ttl)
	if !ok && err == nil {
		s.refused.Add(1)
	}
	return ok, err
}

func TestOneRelayPublishesAndAnotherTakesOver(t *testing.T) {
	for _, sc := range stores {
		t.Run(sc.name, func(t *testing.T) {
			const ttl = time.Second
			ds := plinthtest.Domains(t)
			st := sc.open(t, ds)
			b := newBus(t, ds)
			w := newWriter(st, plinthtest.Entity(t, ds, "residents"))
			var inflight atomic.Int32
			var overlap atomic.Bool
			type relay struct {
				name  string
				store *killableStore
				pub   *watchedPublisher
				r     *events.Relay
				stop  func()
			}
			start := func(name string) *relay {
				rl := &relay{name: name, store: &killableStore{OutboxStore: st}, pub: &watchedPublisher{inner: b.pub, inflight: &inflight, overlap: &overlap}}
				rl.r, rl.stop = startRelay(t, rl.store, rl.pub, events.RelayConfig{Holder: name, LeaseTTL: ttl, Poll: 10 * time.Millisecond, Logger: quiet})
				return rl
			}
			relays := []*relay{start("a"), start("b")}

			// A steady trickle of writes.
			ctx, stopWriting := context.WithCancel(context.Background())
			writing := make(chan error, 1)
			go func() {
				var err error
				for i := 0; ctx.Err() == nil && err == nil; i++ {
					_, err = w.create(context.Background(), map[string]any{"firstName": "T", "lastName": fmt.Sprint(i)}, false)
					time.Sleep(3 * time.Millisecond) // pacing: a trickle, not a flood
				}
				writing <- err
			}()

			active := func(rs []*relay) []*relay {
				var out []*relay
				for _, rl := range rs {
					if rl.r.Status().Active {
						out = append(out, rl)
					}
				}
				return out
			}
			// waitActive waits until one of rs is active, failing if
			// more than one ever is.
			waitActive := func(rs []*relay, within time.Duration) *relay {
				t.Helper()
				var one *relay
				plinthtest.Eventually(t, within, func() bool {
					a := active(rs)
					if len(a) > 1 {
						t.Fatalf("%d relays active at once", len(a))
					}
					if len(a) == 1 {
						one = a[0]
					}
					return one != nil
				}, "no relay became active")
				return one
			}
			// publishes waits until rl publishes something new.
			publishes := func(rl *relay, within time.Duration) {
				t.Helper()
				before := rl.pub.calls.Load()
				plinthtest.Eventually(t, within, func() bool { return rl.pub.calls.Load() > before },
					"relay %s did not publish", rl.name)
			}
			// refusedTwice waits until rl has asked for the lease twice more
			// and been refused: two chances it had to publish wrongly.
			refusedTwice := func(rl *relay) {
				t.Helper()
				before := rl.store.refused.Load()
				plinthtest.Eventually(t, 10*time.Second, func() bool { return rl.store.refused.Load() >= before+2 },
					"relay %s did not ask for the lease", rl.name)
			}

			first := waitActive(relays, 2*time.Second)
			publishes(first, 2*time.Second)
			for _, rl := range relays {
				if rl != first {
					refusedTwice(rl)
				}
			}
			for _, rl := range relays {
				if rl != first && rl.pub.calls.Load() != 0 {
					t.Fatalf("standby relay %s published while %s was active", rl.name, first.name)
				}
			}

			// The active relay dies: the standby takes over once its lease
			// has expired, within about the TTL.
			first.store.dead.Store(true)
			killedAt := time.Now()
			var standby *relay
			for _, rl := range relays {
				if rl != first {
					standby = rl
				}
			}
			publishes(standby, ttl+time.Second)
			took := time.Since(killedAt)
			t.Logf("%s took over %s after %s died (lease TTL %s)", standby.name, took.Round(time.Millisecond), first.name, ttl)
			if took > ttl+500*time.Millisecond {
				t.Fatalf("takeover took %s, lease TTL %s", took, ttl)
			}
			first.stop()

			// A third relay stands by; the active one stops cleanly and
			// hands over at once, without waiting for the lease to expire.
			third := start("c")
			refusedTwice(third)
			if third.pub.calls.Load() != 0 {
				t.Fatal("a new relay published while another held the lease")
			}
			stoppedAt := time.Now()
			standby.stop()
			publishes(third, ttl)
			handover := time.Since(stoppedAt)
			t.Logf("%s took over %s after %s stopped cleanly", third.name, handover.Round(time.Millisecond), standby.name)
			if handover > ttl/2 {
				t.Fatalf("clean handover took %s", handover)
			}

			stopWriting()
			if err := <-writing; err != nil {
				t.Fatal(err)
			}
			waitForCount(t, st, b.js, residentsStream, w.total(), 30*time.Second)
			w.checkExactlyOnce(t, b.js, residentsStream)
			if overlap.Load() {
				t.Fatal("two relays published at the same time")
			}
		})
	}
}

// flakyPublisher fails some batches: some before publishing anything, some
// after publishing a prefix (as a connection lost mid-batch does).
type flakyPublisher struct {
	inner plinth.Publisher
	calls atomic.Int64
	fails atomic.Int64
}

func (p *flakyPublisher) Publish(ctx context.Context, entries []plinth.OutboxEntry) error {
	n := p.calls.Add(1)
	switch {
	case n <= 3 || n%3 == 0:
		p.fails.Add(1)
		return errors.New("bus unavailable")
	case n%3 == 1 && len(entries) > 1:
		if err := p.inner.Publish(ctx, entries[:len(entries)/2]); err != nil {
			return err
		}
		p.fails.Add(1)
		return errors.New("connection lost mid-batch")
	}
	return p.inner.Publish(ctx, entries)
}

func TestRelayRetriesFailedPublishesWithoutLoss(t *testing.T) {
	for _, sc := range stores {
		t.Run(sc.name, func(t *testing.T) {
			ds := plinthtest.Domains(t)
			st := sc.open(t, ds)
			b := newBus(t, ds)
			w := newWriter(st, plinthtest.Entity(t, ds, "residents"))
			pub := &flakyPublisher{inner: b.pub}
			r, _ := startRelay(t, st, pub, events.RelayConfig{Holder: "flaky", Poll: 10 * time.Millisecond, Batch: 20, Logger: quiet})
			writeLoad(t, w, 4, 30)
			waitForCount(t, st, b.js, residentsStream, w.total(), 60*time.Second)
			w.checkExactlyOnce(t, b.js, residentsStream)
			if pub.fails.Load() < 5 {
				t.Fatalf("only %d publishes failed", pub.fails.Load())
			}
			if s := r.Status(); s.Published != int64(w.total()) {
				t.Fatalf("status %+v, %d committed", s, w.total())
			}
		})
	}
}

// Notify wakes the relay at once: with a long poll interval, an event is
// still published promptly after its commit.
func TestNotifyWakesTheRelay(t *testing.T) {
	ds := plinthtest.Domains(t)
	st := openSQLite(t, ds)
	b := newBus(t, ds)
	w := newWriter(st, plinthtest.Entity(t, ds, "residents"))
	reads := &countedReads{OutboxStore: st}
	r, _ := startRelay(t, reads, b.pub, events.RelayConfig{Holder: "n", Poll: time.Minute, Logger: quiet})
	// Once it has found the outbox empty, only Notify wakes it within the
	// bound below (it next looks by itself when it renews its lease,
	// seconds later).
	plinthtest.Eventually(t, 0, func() bool { return reads.n.Load() > 0 }, "the relay did not read the outbox")
	for i := range 5 {
		if _, err := w.create(context.Background(), map[string]any{"firstName": "N", "lastName": fmt.Sprint(i)}, false); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		r.Notify()
		waitForCount(t, st, b.js, residentsStream, i+1, 2*time.Second)
		if d := time.Since(start); d > 1500*time.Millisecond {
			t.Fatalf("event published %s after Notify", d)
		}
	}
}

// countedReads counts a relay's reads of the outbox.
type countedReads struct {
	plinth.OutboxStore
	n atomic.Int64
}

func (s *countedReads) PendingEvents(ctx context.Context, limit int) ([]plinth.OutboxEntry, error) {
	es, err := s.OutboxStore.PendingEvents(ctx, limit)
	s.n.Add(1)
	return es, err
}

// failingMarks fails the MarkEventsSent calls whose numbers (from 1) are
// listed, after a pause longer than the stream's duplicate window.
type failingMarks struct {
	plinth.OutboxStore
	fail  map[int64]bool
	pause time.Duration
	calls atomic.Int64
}

// PendingEventsAfter lets the relay mark later, as over the store itself.
func (s *failingMarks) PendingEventsAfter(ctx context.Context, after int64, limit int) ([]plinth.OutboxEntry, error) {
	return s.OutboxStore.(plinth.PendingAfterReader).PendingEventsAfter(ctx, after, limit)
}

func (s *failingMarks) MarkEventsSent(ctx context.Context, ids []string) error {
	if s.fail[s.calls.Add(1)] {
		time.Sleep(s.pause)
		return errors.New("store unavailable")
	}
	return s.OutboxStore.MarkEventsSent(ctx, ids)
}

// A relay that published entries and stopped before marking them (it
// crashed, or its mark failed) left them in the stream; the relay that
// goes on marks them sent instead of publishing them again, though the
// stream's duplicate window has passed and JetStream would store them
// twice.
func TestRelayMarksWhatTheStreamHolds(t *testing.T) {
	for _, sc := range stores {
		t.Run(sc.name, func(t *testing.T) {
			ctx := t.Context()
			ds := plinthtest.Domains(t)
			st := sc.open(t, ds)
			b := newBus(t, ds)
			const window = 200 * time.Millisecond
			if err := b.pub.EnsureStream(ctx, "residents"); err != nil {
				t.Fatal(err)
			}
			s, err := b.js.Stream(ctx, residentsStream)
			if err != nil {
				t.Fatal(err)
			}
			cfg := s.CachedInfo().Config
			cfg.Duplicates = window
			if _, err := b.js.UpdateStream(ctx, cfg); err != nil {
				t.Fatal(err)
			}
			w := newWriter(st, plinthtest.Entity(t, ds, "residents"))
			writeLoad(t, w, 2, 20)
			pending, err := st.PendingEvents(ctx, 1000)
			if err != nil || len(pending) < 20 {
				t.Fatalf("%d pending, %v", len(pending), err)
			}
			// The relay that crashed between publishing and marking.
			if err := b.pub.Publish(ctx, pending[:len(pending)/2]); err != nil {
				t.Fatal(err)
			}
			time.Sleep(2 * window)
			// The next one: its first mark (of what it finds) and its
			// third (after a batch it published) fail.
			marks := &failingMarks{OutboxStore: st, fail: map[int64]bool{1: true, 3: true}, pause: 2 * window}
			startRelay(t, marks, b.pub, events.RelayConfig{Holder: "next", Poll: 10 * time.Millisecond, Batch: 7, Logger: quiet})
			writeLoad(t, w, 2, 10)
			waitForCount(t, st, b.js, residentsStream, w.total(), 60*time.Second)
			w.checkExactlyOnce(t, b.js, residentsStream)
			if marks.calls.Load() < 4 {
				t.Fatalf("%d marks", marks.calls.Load())
			}
		})
	}
}
