package events

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/lease"
)

// RelayConfig tunes a Relay. Zero values take the defaults.
type RelayConfig struct {
	// Holder names this relay in the store's lease; default hostname:pid.
	// Every relay against one store must have its own name.
	Holder string
	// LeaseTTL is how long the lease lasts without renewal; default 10s.
	// When the active relay dies, a standby takes over within about this
	// time.
	LeaseTTL time.Duration
	// Poll is how often the active relay looks for new entries when nobody
	// calls Notify; default 100ms.
	Poll time.Duration
	// Batch is the most entries published at a time; default 500.
	Batch int
	// Linger is the least time between two looks at the outbox when
	// Notify wakes the relay; default 5ms, negative for none. Under a
	// stream of commits it gathers them into fewer, larger batches (fewer
	// queries on the store) at the cost of that much latency.
	Linger time.Duration
	// Retention is how long published entries stay in the outbox before
	// the active relay deletes them, when the store can (sqlite and
	// postgres can: PurgeSentEvents); default 7 days, negative keeps them.
	// They allow a stream to be rebuilt from the outbox.
	Retention time.Duration
	// Logger receives errors and lease changes; default slog.Default().
	Logger *slog.Logger
}

// purger is implemented by stores that can delete published entries.
type purger interface {
	PurgeSentEvents(ctx context.Context, olderThan time.Duration) (int64, error)
}

// purgeEvery is how often the active relay purges published entries.
const purgeEvery = time.Hour

func (c RelayConfig) withDefaults() RelayConfig {
	if c.Holder == "" {
		c.Holder = lease.DefaultHolder("relay")
	}
	if c.LeaseTTL <= 0 {
		c.LeaseTTL = 10 * time.Second
	}
	if c.Poll <= 0 {
		c.Poll = 100 * time.Millisecond
	}
	if c.Batch <= 0 {
		c.Batch = 500
	}
	if c.Linger == 0 {
		c.Linger = 5 * time.Millisecond
	}
	if c.Retention == 0 {
		c.Retention = 7 * 24 * time.Hour
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Relay moves events from a store's outbox to the bus: the second half of
// the transactional outbox. Writes append their events to the outbox in the
// same transaction as the change; the relay publishes committed entries in
// sequence order and then marks them sent: with a store that can read past
// a sequence (plinth.PendingAfterReader: sqlite and postgres), up to
// markLater after publishing them, several batches in one mark.
//
// Several relays may run against one store (one in every plinth serve, or
// standalone plinth relay processes): the store's lease lets one publish
// at a time, and when its holder dies the lease expires and another takes
// over, within about LeaseTTL.
//
// Delivery is exactly once into the stream. When a relay dies between
// publishing and marking (or loses its lease, or fails to mark), what it
// published is at the tail of the streams; the relay that goes on asks
// the publisher for it first (plinth.PublishedFinder, which package nats
// implements) and marks it sent instead of publishing it again, however
// long after the first publish that is. A publish retried after its
// acknowledgement went missing is dropped by JetStream by its
// Nats-Msg-Id, the event ID, within the stream's duplicate window (two
// minutes, nats.DuplicateWindow).
//
// The active relay renews its lease every third of LeaseTTL and stops
// publishing a batch (to retry it after renewing) when nine tenths of the
// lease have passed, so that it does not go on publishing after another
// relay may have taken over.
//
// A failed publish is retried, with back-off, from the first unmarked entry,
// so nothing is skipped and order is kept.
type Relay struct {
	store  plinth.OutboxStore
	pub    plinth.Publisher
	cfg    RelayConfig
	log    *slog.Logger
	runner *lease.Runner
	// unsure: a relay may have published pending entries without marking
	// them (before this one started or took the lease, or this one's last
	// publish or mark failed), so the bus is asked before publishing.
	unsure bool
	// unmarked holds the IDs of the entries this relay published and has
	// not marked sent yet, published through sequence through, the first
	// of them at since (markLater).
	unmarked []string
	through  int64
	since    time.Time
	// after is the store when it can read past a sequence, and so lets
	// the relay mark later; nil otherwise.
	after plinth.PendingAfterReader
}

// markLater is how long a relay may leave the entries it published
// unmarked, with a store that can read past them (plinth.
// PendingAfterReader): it marks them sent together, when this much time
// has passed since it published the first of them, when they fill a
// batch, when the outbox has nothing more, and before it gives up the
// lease. A pass that published and then marked, under a steady trickle of
// writes, cost a write transaction (with its commit's sync) for a handful
// of events: at 2 connections on PostgreSQL the relay took about 30 % of the
// CPU a create cost serve and PostgreSQL (BENCHMARKS.md, "2026-12-02,
// thirteenth session"). Events reach the bus as soon as before; what
// waits is the mark. A relay that dies meanwhile leaves them unmarked,
// as one that dies between publishing and marking always could: the
// relay that goes on finds them in the stream and does not publish them
// again.
const markLater = 100 * time.Millisecond

// NewRelay returns a relay from store to pub. Call Run to start it.
func NewRelay(store plinth.OutboxStore, pub plinth.Publisher, cfg RelayConfig) *Relay {
	cfg = cfg.withDefaults()
	r := &Relay{
		store:  store,
		pub:    pub,
		cfg:    cfg,
		log:    cfg.Logger.With("component", "relay", "holder", cfg.Holder),
		unsure: true,
	}
	r.after, _ = store.(plinth.PendingAfterReader)
	lc := lease.Config{
		Holder:  cfg.Holder,
		TTL:     cfg.LeaseTTL,
		Poll:    cfg.Poll,
		Acquire: store.AcquireRelayLease,
		Release: func(ctx context.Context, holder string) error {
			if err := r.markUnmarked(ctx); err != nil {
				r.log.Warn("cannot mark published events sent; the next relay finds them in the stream", "error", err)
			}
			// Renewing the lease for a moment only gives it up.
			_, err := store.AcquireRelayLease(ctx, holder, time.Millisecond)
			return err
		},
		Step:   r.relayOnce,
		Lost:   func() { r.unsure = true },
		Batch:  cfg.Batch,
		Linger: cfg.Linger,
		Logger: r.log,
		Name:   "relay",
		Lease:  "outbox lease",
		Work:   "relaying events",
	}
	if _, ok := store.(purger); ok && cfg.Retention > 0 {
		lc.Periodic, lc.Period = r.purge, purgeEvery
	}
	r.runner = lease.New(lc)
	return r
}

// Notify wakes the relay to look for new entries now rather than at its
// next poll. The HTTP layer calls it after each commit that appended an
// event. It never blocks.
func (r *Relay) Notify() { r.runner.Notify() }

// RelayStatus is a snapshot of a relay, for readiness checks and logs.
type RelayStatus struct {
	Holder    string // the relay's name in the lease
	Active    bool   // holds the lease and publishes
	Published int64  // entries published since Run started
	LastError error  // the last error, nil after a success
}

// Status returns what the relay is doing.
func (r *Relay) Status() RelayStatus {
	st := r.runner.Status()
	return RelayStatus{Holder: st.Holder, Active: st.Active, Published: st.Done, LastError: st.LastError}
}

// Run relays until ctx is cancelled, then gives up the lease and returns
// nil. Errors of the store or the bus are logged and retried with back-off;
// Run does not give up.
func (r *Relay) Run(ctx context.Context) error { return r.runner.Run(ctx) }

// purge deletes entries published longer ago than Retention. The runner
// calls it at most once every purgeEvery, after a batch relayed.
func (r *Relay) purge(ctx context.Context) {
	n, err := r.store.(purger).PurgeSentEvents(ctx, r.cfg.Retention)
	if err != nil {
		r.log.Warn("cannot purge published events from the outbox", "error", err)
		return
	}
	if n > 0 {
		r.log.Info("purged published events from the outbox", "count", n, "olderThan", r.cfg.Retention)
	}
}

// relayOnce publishes one batch of pending entries and marks them sent,
// now or with the next batches (markLater).
func (r *Relay) relayOnce(ctx context.Context) (int, error) {
	if r.unsure && len(r.unmarked) > 0 {
		// Mark what this relay knows it published before asking the bus
		// about the rest, which reads the outbox from its start.
		if err := r.markUnmarked(ctx); err != nil {
			return 0, err
		}
	}
	entries, err := r.pending(ctx)
	if err != nil {
		return 0, fmt.Errorf("reading the outbox: %w", err)
	}
	if r.unsure && len(entries) > 0 {
		if entries, err = r.markPublished(ctx, entries); err != nil {
			return 0, err
		}
	}
	if len(entries) == 0 {
		if err := r.markUnmarked(ctx); err != nil {
			return 0, err
		}
		r.unsure = false
		return 0, nil
	}
	r.unsure = true // until the batch is marked or known published
	if err := r.pub.Publish(ctx, entries); err != nil {
		return 0, fmt.Errorf("publishing %d event(s) from sequence %d: %w", len(entries), entries[0].Sequence, err)
	}
	if len(r.unmarked) == 0 {
		r.since = time.Now()
	}
	for _, e := range entries {
		r.unmarked = append(r.unmarked, e.EventID)
	}
	r.through = entries[len(entries)-1].Sequence
	r.unsure = false
	if r.after == nil || len(r.unmarked) >= r.cfg.Batch || time.Since(r.since) >= markLater {
		if err := r.markUnmarked(ctx); err != nil {
			return 0, err
		}
	}
	return len(entries), nil
}

// pending reads the entries to publish next: past those published and not
// yet marked, when the store can.
func (r *Relay) pending(ctx context.Context) ([]plinth.OutboxEntry, error) {
	if r.after != nil && len(r.unmarked) > 0 {
		return r.after.PendingEventsAfter(ctx, r.through, r.cfg.Batch)
	}
	return r.store.PendingEvents(ctx, r.cfg.Batch)
}

// markUnmarked marks sent the entries this relay published and has not
// marked yet. When that fails, the relay is unsure again: they stay
// pending, and its next pass marks them again before anything else.
func (r *Relay) markUnmarked(ctx context.Context) error {
	if len(r.unmarked) == 0 {
		return nil
	}
	if err := r.store.MarkEventsSent(ctx, r.unmarked); err != nil {
		// They are published; publishing them again is harmless.
		r.unsure = true
		return fmt.Errorf("marking %d published event(s) sent: %w", len(r.unmarked), err)
	}
	r.unmarked = nil
	return nil
}

// widerCheck is how many batches of pending entries markPublished looks
// for in the bus: more than one, in case the relay that published them
// took larger batches.
const widerCheck = 10

// markPublished marks sent the pending entries the bus holds already (a
// relay published them and stopped before marking them) and returns the
// batch to publish without them. With a bus that cannot tell, it returns
// the batch: the bus then drops what it has within its duplicate window.
func (r *Relay) markPublished(ctx context.Context, entries []plinth.OutboxEntry) ([]plinth.OutboxEntry, error) {
	finder, ok := r.pub.(plinth.PublishedFinder)
	if !ok {
		return entries, nil
	}
	wide := entries
	if len(entries) == r.cfg.Batch {
		var err error
		if wide, err = r.store.PendingEvents(ctx, r.cfg.Batch*widerCheck); err != nil {
			return nil, fmt.Errorf("reading the outbox: %w", err)
		}
	}
	ids, err := finder.Published(ctx, wide)
	if err != nil {
		return nil, fmt.Errorf("looking for pending events in the stream: %w", err)
	}
	if len(ids) == 0 {
		return entries, nil
	}
	if err := r.store.MarkEventsSent(ctx, ids); err != nil {
		return nil, fmt.Errorf("marking %d event(s) found in the stream sent: %w", len(ids), err)
	}
	r.log.Info("events published before without being marked sent are in the stream; marked them sent, not publishing them again", "count", len(ids))
	if entries, err = r.store.PendingEvents(ctx, r.cfg.Batch); err != nil {
		return nil, fmt.Errorf("reading the outbox: %w", err)
	}
	return entries, nil
}
