package events

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/plinth-data/plinth"
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
		host, _ := os.Hostname()
		if host == "" {
			host = "relay"
		}
		c.Holder = fmt.Sprintf("%s:%d", host, os.Getpid())
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
// sequence order and then marks them sent.
//
// Several relays may run against one store (one in every plinth serve, or
// standalone plinth relay processes): the store's lease lets one publish
// at a time, and when its holder dies the lease expires and another takes
// over, within about LeaseTTL.
//
// Delivery is at least once from the relay and exactly once into the
// stream: when a relay dies between publishing and marking, the next one
// publishes the same entries again, and JetStream drops them by their
// Nats-Msg-Id, which is the event ID. JetStream remembers message IDs for the
// stream's duplicate window, two minutes unless configured; package nats
// creates its streams with a ten-minute window, far longer than a lease
// takes to pass to another relay.
//
// The active relay renews its lease every third of LeaseTTL and stops
// publishing a batch (to retry it after renewing) when nine tenths of the
// lease have passed, so that it does not go on publishing after another
// relay may have taken over.
//
// A failed publish is retried, with back-off, from the first unmarked entry,
// so nothing is skipped and order is kept.
type Relay struct {
	store plinth.OutboxStore
	pub   plinth.Publisher
	cfg   RelayConfig
	log   *slog.Logger
	wake  chan struct{}

	mu        sync.Mutex
	active    bool
	published int64
	lastErr   error
}

// NewRelay returns a relay from store to pub. Call Run to start it.
func NewRelay(store plinth.OutboxStore, pub plinth.Publisher, cfg RelayConfig) *Relay {
	cfg = cfg.withDefaults()
	return &Relay{
		store: store,
		pub:   pub,
		cfg:   cfg,
		log:   cfg.Logger.With("component", "relay", "holder", cfg.Holder),
		wake:  make(chan struct{}, 1),
	}
}

// Notify wakes the relay to look for new entries now rather than at its
// next poll. The HTTP layer calls it after each commit that appended an
// event. It never blocks.
func (r *Relay) Notify() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// RelayStatus is a snapshot of a relay, for readiness checks and logs.
type RelayStatus struct {
	Holder    string // the relay's name in the lease
	Active    bool   // holds the lease and publishes
	Published int64  // entries published since Run started
	LastError error  // the last error, nil after a success
}

// Status returns what the relay is doing.
func (r *Relay) Status() RelayStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	return RelayStatus{Holder: r.cfg.Holder, Active: r.active, Published: r.published, LastError: r.lastErr}
}

func (r *Relay) setActive(active bool) {
	r.mu.Lock()
	changed := r.active != active
	r.active = active
	r.mu.Unlock()
	if changed && active {
		r.log.Info("relay is active: it holds the outbox lease")
	} else if changed {
		r.log.Warn("relay lost the outbox lease; standing by")
	}
}

func (r *Relay) setErr(err error) {
	r.mu.Lock()
	r.lastErr = err
	r.mu.Unlock()
}

// Run relays until ctx is cancelled, then returns nil. Errors of the store
// or the bus are logged and retried with back-off; Run does not give up.
func (r *Relay) Run(ctx context.Context) error {
	const (
		minBackoff = 50 * time.Millisecond
		maxBackoff = 5 * time.Second
	)
	backoff := minBackoff
	// renewEvery is how often the lease is renewed while active: well
	// inside the TTL, so that a slow store or bus does not let it lapse.
	renewEvery := r.cfg.LeaseTTL / 3
	var leaseAt time.Time // when the lease was last acquired or renewed
	var purgedAt time.Time
	defer func() {
		r.mu.Lock()
		wasActive := r.active
		r.active = false
		r.mu.Unlock()
		if wasActive {
			r.release()
		}
	}()

	for ctx.Err() == nil {
		if leaseAt.IsZero() || time.Since(leaseAt) >= renewEvery {
			start := time.Now()
			ok, err := r.store.AcquireRelayLease(ctx, r.cfg.Holder, r.cfg.LeaseTTL)
			switch {
			case ctx.Err() != nil:
				return nil
			case err != nil:
				r.setErr(err)
				r.log.Error("cannot acquire the outbox lease; retrying", "error", err, "retryIn", backoff)
				leaseAt = time.Time{}
				r.setActive(false)
				sleep(ctx, backoff)
				backoff = min(backoff*2, maxBackoff)
				continue
			case !ok:
				// Another relay is active. Check again often enough to
				// take over soon after its lease runs out.
				leaseAt = time.Time{}
				r.setActive(false)
				sleep(ctx, r.standbyWait())
				continue
			}
			leaseAt = start
			r.setActive(true)
		}

		// Stop publishing before the lease may have run out: past that,
		// another relay may be publishing too.
		bctx, cancel := context.WithDeadline(ctx, leaseAt.Add(r.cfg.LeaseTTL*9/10))
		lookedAt := time.Now()
		n, err := r.relayOnce(bctx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			r.setErr(err)
			r.log.Error("relaying events failed; retrying", "error", err, "retryIn", backoff)
			sleep(ctx, backoff)
			backoff = min(backoff*2, maxBackoff)
			continue
		}
		backoff = minBackoff
		r.setErr(nil)
		if r.cfg.Retention > 0 && time.Since(purgedAt) >= purgeEvery {
			purgedAt = time.Now()
			r.purge(ctx)
		}
		if n == r.cfg.Batch {
			continue // more may be waiting
		}
		r.waitForWork(ctx, lookedAt, min(r.cfg.Poll, max(renewEvery-time.Since(leaseAt), 0)))
	}
	return nil
}

// release gives up the lease as the relay stops, so that a standby takes
// over at once rather than when the lease expires: it renews the lease for
// a moment only.
func (r *Relay) release() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := r.store.AcquireRelayLease(ctx, r.cfg.Holder, time.Millisecond); err != nil {
		r.log.Warn("cannot release the outbox lease; another relay takes over when it expires", "error", err)
	}
}

func (r *Relay) purge(ctx context.Context) {
	p, ok := r.store.(purger)
	if !ok {
		return
	}
	n, err := p.PurgeSentEvents(ctx, r.cfg.Retention)
	if err != nil {
		r.log.Warn("cannot purge published events from the outbox", "error", err)
		return
	}
	if n > 0 {
		r.log.Info("purged published events from the outbox", "count", n, "olderThan", r.cfg.Retention)
	}
}

// standbyWait is how long a standby relay waits between attempts on the
// lease: a fraction of the TTL, so that it takes over promptly.
func (r *Relay) standbyWait() time.Duration {
	return min(max(r.cfg.LeaseTTL/5, 10*time.Millisecond), time.Second)
}

// relayOnce publishes one batch of pending entries and marks them sent.
func (r *Relay) relayOnce(ctx context.Context) (int, error) {
	entries, err := r.store.PendingEvents(ctx, r.cfg.Batch)
	if err != nil {
		return 0, fmt.Errorf("reading the outbox: %w", err)
	}
	if len(entries) == 0 {
		return 0, nil
	}
	if err := r.pub.Publish(ctx, entries); err != nil {
		return 0, fmt.Errorf("publishing %d event(s) from sequence %d: %w", len(entries), entries[0].Sequence, err)
	}
	ids := make([]string, len(entries))
	for i, e := range entries {
		ids[i] = e.EventID
	}
	if err := r.store.MarkEventsSent(ctx, ids); err != nil {
		// They are published; publishing them again is harmless.
		return 0, fmt.Errorf("marking %d published event(s) sent: %w", len(entries), err)
	}
	r.mu.Lock()
	r.published += int64(len(entries))
	r.mu.Unlock()
	return len(entries), nil
}

// waitForWork waits up to d for Notify, and after a Notify until Linger
// has passed since the last look at the outbox.
func (r *Relay) waitForWork(ctx context.Context, lookedAt time.Time, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return
	case <-t.C:
		return
	case <-r.wake:
	}
	if wait := r.cfg.Linger - time.Since(lookedAt); wait > 0 {
		sleep(ctx, wait)
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
