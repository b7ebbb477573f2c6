package events_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/events"
	plinthnats "github.com/plinth-data/plinth/nats"
	"github.com/plinth-data/plinth/plinthtest"
	"github.com/plinth-data/plinth/plinthtest/natstest"
	"github.com/plinth-data/plinth/plinthtest/pgtest"
	"github.com/plinth-data/plinth/postgres"
	"github.com/plinth-data/plinth/sqlite"
)

// eventStore is a store with an outbox.
type eventStore interface {
	plinth.Store
	plinth.OutboxStore
}

type storeCase struct {
	name string
	open func(t testing.TB, ds []*plinth.Domain) eventStore
}

var stores = []storeCase{
	{"SQLite", openSQLite},
	{"PostgreSQL", openPostgres},
}

func openSQLite(t testing.TB, ds []*plinth.Domain) eventStore {
	t.Helper()
	s, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "plinth.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.Prepare(t.Context(), ds); err != nil {
		t.Fatal(err)
	}
	return s
}

func openPostgres(t testing.TB, ds []*plinth.Domain) eventStore {
	t.Helper()
	url := pgtest.Database(t)
	s, err := postgres.Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.Prepare(context.Background(), ds); err != nil {
		t.Fatal(err)
	}
	return s
}

// bus is an embedded NATS server with a publisher for the environment
// "development".
type bus struct {
	srv *plinthnats.Embedded
	nc  *natsgo.Conn
	pub *plinthnats.Publisher
	js  jetstream.JetStream
}

func newBus(t testing.TB, ds []*plinth.Domain) *bus {
	t.Helper()
	srv, nc := natstest.Embedded(t)
	pub, err := plinthnats.NewPublisher(context.Background(), nc, "development", ds)
	if err != nil {
		t.Fatal(err)
	}
	return &bus{srv: srv, nc: nc, pub: pub, js: pub.JetStream()}
}

var errRollback = errors.New("rolled back on purpose")

// writer writes records with their events, as the HTTP layer does, and
// remembers which events committed.
type writer struct {
	st eventStore
	e  *plinth.Entity

	mu         sync.Mutex
	committed  map[string][]string // entity ID → event IDs in version order
	rolledBack map[string]bool
	count      int
}

func newWriter(st eventStore, e *plinth.Entity) *writer {
	return &writer{st: st, e: e, committed: map[string][]string{}, rolledBack: map[string]bool{}}
}

func (w *writer) context() plinth.EventContext {
	return plinth.EventContext{
		Environment:   "development",
		SourceSystem:  "plinth residents API",
		CorrelationID: "test",
		Principal:     plinth.Principal{Subject: "tester", Name: "Test Writer", Email: "tester@example.gov.uk"},
	}
}

func (w *writer) record(id string, entry plinth.OutboxEntry, err error) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case errors.Is(err, errRollback):
		w.rolledBack[entry.EventID] = true
		return nil
	case err != nil:
		return err
	}
	w.committed[id] = append(w.committed[id], entry.EventID)
	w.count++
	return nil
}

// create inserts a resident; rollback makes the transaction fail after the
// event was appended.
func (w *writer) create(ctx context.Context, doc map[string]any, rollback bool) (any, error) {
	data, err := w.e.Validate(doc, true)
	if err != nil {
		return nil, err
	}
	var (
		rec   plinth.Record
		entry plinth.OutboxEntry
	)
	err = w.st.Write(ctx, func(tx plinth.Tx) error {
		var err error
		if rec, err = tx.Insert(ctx, w.e, data); err != nil {
			return err
		}
		entry, _, _ = plinth.BuildEvent(w.e, plinth.EventCreated, nil, &rec, w.context())
		if err := tx.(plinth.EventTx).AppendEvent(ctx, entry); err != nil {
			return err
		}
		if rollback {
			return errRollback
		}
		return nil
	})
	if err := w.record(plinth.KeyString(w.e.KeyOf(rec)), entry, err); err != nil {
		return nil, err
	}
	if rollback {
		return nil, nil
	}
	return w.e.KeyOf(rec), nil
}

// update applies a merge patch to a resident.
func (w *writer) update(ctx context.Context, id any, patch map[string]any, rollback bool) error {
	var entry plinth.OutboxEntry
	changed := false
	err := w.st.Write(ctx, func(tx plinth.Tx) error {
		cur, err := tx.Get(ctx, w.e, id)
		if err != nil {
			return err
		}
		data, err := w.e.Validate(plinth.MergePatch(cur.Data, patch), false)
		if err != nil {
			return err
		}
		rec, err := tx.Update(ctx, w.e, id, cur.Version, data)
		if err != nil {
			return err
		}
		entry, _, changed = plinth.BuildEvent(w.e, plinth.EventUpdated, &cur, &rec, w.context())
		if !changed {
			return nil
		}
		if err := tx.(plinth.EventTx).AppendEvent(ctx, entry); err != nil {
			return err
		}
		if rollback {
			return errRollback
		}
		return nil
	})
	if err == nil && !changed {
		return nil
	}
	return w.record(plinth.KeyString(id), entry, err)
}

func (w *writer) total() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.count
}

// waitForCount waits until the stream holds n messages and the outbox has
// nothing left to publish (every publish has been acknowledged, so none is
// still on its way), then checks that no extra message has arrived.
func waitForCount(t testing.TB, st plinth.OutboxStore, js jetstream.JetStream, stream string, n int, timeout time.Duration) {
	t.Helper()
	var got int
	plinthtest.Eventually(t, timeout, func() bool {
		got = natstest.StreamCount(t, js, stream)
		if got > n {
			t.Fatalf("stream %s holds %d messages, more than the %d committed", stream, got, n)
		}
		return got == n
	}, "stream %s holds %d of %d messages", stream, plinthtest.Last(&got), n)
	drained(t, st, timeout)
	if got := natstest.StreamCount(t, js, stream); got != n {
		t.Fatalf("stream %s holds %d messages, want %d", stream, got, n)
	}
}

// drained waits until the outbox holds no pending entry.
func drained(t testing.TB, st plinth.OutboxStore, timeout time.Duration) {
	t.Helper()
	plinthtest.Eventually(t, timeout, func() bool {
		pending, err := st.PendingEvents(context.Background(), 1)
		if err != nil {
			t.Fatal(err)
		}
		return len(pending) == 0
	}, "the outbox did not drain")
}

// checkExactlyOnce checks that the stream holds every committed event once,
// each entity's in version order, and no rolled-back one.
func (w *writer) checkExactlyOnce(t testing.TB, js jetstream.JetStream, stream string) {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	msgs := natstest.ReadStream(t, js, stream)
	if len(msgs) != w.count {
		t.Fatalf("stream holds %d events, %d committed", len(msgs), w.count)
	}
	seen := map[string]bool{}
	perEntity := map[string][]string{}
	lastVersion := map[string]int64{}
	for _, m := range msgs {
		ev, err := plinth.DecodeEvent(m.Data())
		if err != nil {
			t.Fatal(err)
		}
		if m.Headers().Get(jetstream.MsgIDHeader) != ev.ID {
			t.Fatalf("Nats-Msg-Id %q for event %s", m.Headers().Get(jetstream.MsgIDHeader), ev.ID)
		}
		if seen[ev.ID] {
			t.Fatalf("event %s is in the stream twice", ev.ID)
		}
		seen[ev.ID] = true
		if w.rolledBack[ev.ID] {
			t.Fatalf("event %s of a rolled-back transaction was published", ev.ID)
		}
		if ev.EntityVersion <= lastVersion[ev.EntityID] {
			t.Fatalf("entity %s: version %d after version %d", ev.EntityID, ev.EntityVersion, lastVersion[ev.EntityID])
		}
		lastVersion[ev.EntityID] = ev.EntityVersion
		perEntity[ev.EntityID] = append(perEntity[ev.EntityID], ev.ID)
	}
	ids := make([]string, 0, len(w.committed))
	for id := range w.committed {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		if fmt.Sprint(perEntity[id]) != fmt.Sprint(w.committed[id]) {
			t.Fatalf("entity %s: stream has events %v, committed %v", id, perEntity[id], w.committed[id])
		}
	}
}

// startRelay runs a relay until the test ends or stop is called.
func startRelay(t testing.TB, st plinth.OutboxStore, pub plinth.Publisher, cfg events.RelayConfig) (r *events.Relay, stop func()) {
	t.Helper()
	r = events.NewRelay(st, pub, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("relay %s: %v", cfg.Holder, err)
			}
		})
	}
	t.Cleanup(stop)
	return r, stop
}
