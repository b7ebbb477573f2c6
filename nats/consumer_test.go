package nats_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/plinth-data/plinth"
	plinthnats "github.com/plinth-data/plinth/nats"
	"github.com/plinth-data/plinth/plinthtest"
	"github.com/plinth-data/plinth/plinthtest/natstest"
)

// bus is an embedded NATS server with a publisher for the environment
// "development".
type bus struct {
	js  jetstream.JetStream
	pub *plinthnats.Publisher
}

func newBus(t testing.TB, ds []*plinth.Domain) *bus {
	t.Helper()
	_, nc := natstest.Embedded(t)
	pub, err := plinthnats.NewPublisher(context.Background(), nc, "development", ds)
	if err != nil {
		t.Fatal(err)
	}
	return &bus{js: pub.JetStream(), pub: pub}
}

// publishResidents publishes n resident events straight to the bus: a
// create of residents 1…n, and for each an update.
func publishResidents(t testing.TB, b *bus, e *plinth.Entity, n int) []plinth.OutboxEntry {
	t.Helper()
	var entries []plinth.OutboxEntry
	for i := 1; i <= n; i++ {
		rec := plinth.Record{Data: map[string]any{"mosaicId": int64(i), "firstName": "Ada", "lastName": "Lovelace"}, Version: 1}
		entry, _, _ := plinth.BuildEvent(e, plinth.EventCreated, nil, &rec, plinth.EventContext{})
		after := rec
		after.Data = map[string]any{"mosaicId": int64(i), "firstName": "Ada", "lastName": "King"}
		after.Version = 2
		upd, _, _ := plinth.BuildEvent(e, plinth.EventUpdated, &rec, &after, plinth.EventContext{})
		entries = append(entries, entry, upd)
	}
	if err := b.pub.Publish(context.Background(), entries); err != nil {
		t.Fatal(err)
	}
	return entries
}

// consume runs Consume until the test ends or stop is called.
func consume(t testing.TB, b *bus, cfg plinthnats.ConsumerConfig) (stop func()) {
	t.Helper()
	if cfg.Stream == "" {
		cfg.Stream = plinthnats.StreamName("development", "residents")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- plinthnats.Consume(ctx, b.js, cfg) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Consume: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Error("Consume did not return after its context was cancelled")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// handled collects what handlers saw.
type handled struct {
	mu    sync.Mutex
	ids   []string
	tries map[string]int
}

func (h *handled) add(id string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.tries == nil {
		h.tries = map[string]int{}
	}
	h.tries[id]++
	return h.tries[id]
}

func (h *handled) done(id string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ids = append(h.ids, id)
}

func (h *handled) snapshot() ([]string, map[string]int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	tries := map[string]int{}
	for k, v := range h.tries {
		tries[k] = v
	}
	return append([]string(nil), h.ids...), tries
}

// waitFor waits until handlers have finished n events and returns them.
func (h *handled) waitFor(t testing.TB, n int, within time.Duration) []string {
	t.Helper()
	var ids []string
	var got int
	plinthtest.Eventually(t, within, func() bool {
		ids, _ = h.snapshot()
		got = len(ids)
		return got >= n
	}, "handled %d of %d events", plinthtest.Last(&got), n)
	return ids
}

// settled waits until the durable has no pending or unacknowledged
// messages.
func settled(t testing.TB, b *bus, durable string) {
	t.Helper()
	var pending uint64
	var unacked int
	plinthtest.Eventually(t, 10*time.Second, func() bool {
		c, err := b.js.Consumer(context.Background(), plinthnats.StreamName("development", "residents"), durable)
		if err != nil {
			t.Fatal(err)
		}
		info, err := c.Info(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		pending, unacked = info.NumPending, info.NumAckPending
		return pending == 0 && unacked == 0
	}, "consumer %s: %d pending, %d unacknowledged", durable, plinthtest.Last(&pending), plinthtest.Last(&unacked))
}

func TestConsumeHandlesEveryEventInOrder(t *testing.T) {
	ds := plinthtest.Domains(t)
	b := newBus(t, ds)
	entries := publishResidents(t, b, plinthtest.Entity(t, ds, "residents"), 50)
	var h handled
	var types sync.Map
	consume(t, b, plinthnats.ConsumerConfig{
		Durable: "in-order",
		Handler: func(_ context.Context, ev plinth.Event) error {
			h.add(ev.ID)
			h.done(ev.ID)
			types.Store(ev.EventType, true)
			return nil
		},
	})
	ids := h.waitFor(t, len(entries), 10*time.Second)
	for i, e := range entries {
		if ids[i] != e.EventID {
			t.Fatalf("event %d: handled %s, want %s", i, ids[i], e.EventID)
		}
	}
	settled(t, b, "in-order")
	if _, ok := types.Load("ResidentUpdatedEvent"); !ok {
		t.Fatal("no update events")
	}
}

func TestConsumeRetriesThenSucceeds(t *testing.T) {
	ds := plinthtest.Domains(t)
	b := newBus(t, ds)
	entries := publishResidents(t, b, plinthtest.Entity(t, ds, "residents"), 5)
	flaky := entries[3].EventID
	var h handled
	consume(t, b, plinthnats.ConsumerConfig{
		Durable:    "retry",
		MaxDeliver: 5,
		Backoff:    []time.Duration{20 * time.Millisecond, 40 * time.Millisecond},
		Handler: func(_ context.Context, ev plinth.Event) error {
			if n := h.add(ev.ID); ev.ID == flaky && n < 3 {
				return fmt.Errorf("attempt %d fails", n)
			}
			h.done(ev.ID)
			return nil
		},
	})
	h.waitFor(t, len(entries), 10*time.Second)
	settled(t, b, "retry")
	ids, tries := h.snapshot()
	if tries[flaky] != 3 || len(ids) != len(entries) {
		t.Fatalf("flaky event tried %d times; %d handled", tries[flaky], len(ids))
	}
	for _, e := range entries {
		if e.EventID != flaky && tries[e.EventID] != 1 {
			t.Fatalf("event %s tried %d times", e.EventID, tries[e.EventID])
		}
	}
}

func TestConsumeDeadLettersAfterMaxDeliver(t *testing.T) {
	ds := plinthtest.Domains(t)
	b := newBus(t, ds)
	ctx := context.Background()
	if _, err := b.js.CreateStream(ctx, jetstream.StreamConfig{Name: "DEAD_LETTERS", Subjects: []string{"dead.>"}}); err != nil {
		t.Fatal(err)
	}
	entries := publishResidents(t, b, plinthtest.Entity(t, ds, "residents"), 4)
	poison := entries[2].EventID
	var h handled
	consume(t, b, plinthnats.ConsumerConfig{
		Durable:           "dlq",
		MaxDeliver:        3,
		Backoff:           []time.Duration{10 * time.Millisecond},
		DeadLetterSubject: "dead.residents-listener",
		Handler: func(_ context.Context, ev plinth.Event) error {
			h.add(ev.ID)
			if ev.ID == poison {
				return errors.New("cannot handle\nthis one")
			}
			h.done(ev.ID)
			return nil
		},
	})
	h.waitFor(t, len(entries)-1, 10*time.Second)
	settled(t, b, "dlq")
	_, tries := h.snapshot()
	if tries[poison] != 3 {
		t.Fatalf("poison event tried %d times, want 3", tries[poison])
	}
	msgs := natstest.ReadStream(t, b.js, "DEAD_LETTERS")
	if len(msgs) != 1 {
		t.Fatalf("%d dead letters", len(msgs))
	}
	m := msgs[0]
	hd := m.Headers()
	if m.Subject() != "dead.residents-listener" || string(m.Data()) != string(entries[2].Payload) ||
		hd.Get(plinthnats.HeaderDeadLetterReason) != "cannot handle this one" || hd.Get(plinthnats.HeaderDeadLetterDeliveries) != "3" ||
		hd.Get(plinthnats.HeaderDeadLetterStream) != plinthnats.StreamName("development", "residents") || hd.Get(plinthnats.HeaderDeadLetterSequence) != "3" ||
		hd.Get(plinthnats.HeaderDeadLetterConsumer) != "dlq" || hd.Get(plinthnats.HeaderEventID) != poison ||
		hd.Get(plinthnats.HeaderDeadLetterSubject) != entries[2].Subject {
		t.Fatalf("dead letter %s %v", m.Subject(), hd)
	}

	// Without a stream for the dead-letter subject, Consume refuses to
	// start rather than lose dead letters.
	err := plinthnats.Consume(ctx, b.js, plinthnats.ConsumerConfig{
		Stream: plinthnats.StreamName("development", "residents"), Durable: "nowhere", DeadLetterSubject: "nobody.keeps.this",
		Handler: func(context.Context, plinth.Event) error { return nil },
	})
	if err == nil || !strings.Contains(err.Error(), "nobody.keeps.this") {
		t.Fatalf("Consume with an unkept dead-letter subject: %v", err)
	}
}

func TestConsumeSkipsUnknownEventTypes(t *testing.T) {
	ds := plinthtest.Domains(t)
	b := newBus(t, ds)
	entries := publishResidents(t, b, plinthtest.Entity(t, ds, "residents"), 10)
	var h handled
	consume(t, b, plinthnats.ConsumerConfig{
		Durable: "created-only",
		Handlers: map[string]plinthnats.HandlerFunc{
			"ResidentCreatedEvent": func(_ context.Context, ev plinth.Event) error {
				h.add(ev.ID)
				h.done(ev.ID)
				return nil
			},
		},
	})
	h.waitFor(t, len(entries)/2, 10*time.Second)
	settled(t, b, "created-only")
	ids, _ := h.snapshot()
	if len(ids) != len(entries)/2 {
		t.Fatalf("handled %d events, want the %d creates", len(ids), len(entries)/2)
	}
	for i, id := range ids {
		if id != entries[2*i].EventID {
			t.Fatalf("handled %s, want the create %s", id, entries[2*i].EventID)
		}
	}
}

func TestConsumeHandlesADuplicateOnce(t *testing.T) {
	ds := plinthtest.Domains(t)
	b := newBus(t, ds)
	entries := publishResidents(t, b, plinthtest.Entity(t, ds, "residents"), 3)
	// The same event again, past JetStream's dedupe (another message ID,
	// as after the duplicate window): the listener's idempotency catches
	// it.
	if _, err := b.js.Publish(context.Background(), entries[1].Subject, entries[1].Payload, jetstream.WithMsgID("again")); err != nil {
		t.Fatal(err)
	}
	var h handled
	consume(t, b, plinthnats.ConsumerConfig{
		Durable: "dupes",
		Handler: func(_ context.Context, ev plinth.Event) error {
			h.add(ev.ID)
			h.done(ev.ID)
			return nil
		},
	})
	h.waitFor(t, len(entries), 10*time.Second)
	settled(t, b, "dupes")
	ids, tries := h.snapshot()
	if len(ids) != len(entries) || tries[entries[1].EventID] != 1 {
		t.Fatalf("handled %v", tries)
	}
}

// A listener that restarts carries on where its durable stopped.
func TestConsumeResumesAfterRestart(t *testing.T) {
	ds := plinthtest.Domains(t)
	b := newBus(t, ds)
	e := plinthtest.Entity(t, ds, "residents")
	first := publishResidents(t, b, e, 5)
	var h handled
	handler := func(_ context.Context, ev plinth.Event) error {
		h.add(ev.ID)
		h.done(ev.ID)
		return nil
	}
	stop := consume(t, b, plinthnats.ConsumerConfig{Durable: "resume", Handler: handler})
	h.waitFor(t, len(first), 10*time.Second)
	settled(t, b, "resume")
	stop()
	var more []plinth.OutboxEntry
	for i := 6; i <= 8; i++ {
		rec := plinth.Record{Data: map[string]any{"mosaicId": int64(i), "firstName": "B", "lastName": "C"}, Version: 1}
		entry, _, _ := plinth.BuildEvent(e, plinth.EventCreated, nil, &rec, plinth.EventContext{})
		more = append(more, entry)
	}
	if err := b.pub.Publish(context.Background(), more); err != nil {
		t.Fatal(err)
	}
	consume(t, b, plinthnats.ConsumerConfig{Durable: "resume", Handler: handler})
	ids := h.waitFor(t, len(first)+len(more), 10*time.Second)
	settled(t, b, "resume")
	_, tries := h.snapshot()
	for id, n := range tries {
		if n != 1 {
			t.Fatalf("event %s handled %d times", id, n)
		}
	}
	if ids[len(ids)-1] != more[len(more)-1].EventID {
		t.Fatalf("last handled %s", ids[len(ids)-1])
	}
}

func TestMemorySeenIsBounded(t *testing.T) {
	ctx := t.Context()
	m := plinthnats.NewMemorySeen(3)
	for _, id := range []string{"a", "b", "c", "a", "d"} {
		if err := m.Mark(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	for id, want := range map[string]bool{"a": false, "b": true, "c": true, "d": true, "e": false} {
		if got, _ := m.Seen(ctx, id); got != want {
			t.Errorf("Seen(%s) = %v, want %v", id, got, want)
		}
	}
}
