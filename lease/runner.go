// Package lease runs background work that one process at a time does while
// several stand by: the outbox relay (package events), the audit chainer
// (package audit). The store keeps a lease; the Runner holds it, renews it,
// does the work in steps while it holds it, stands by while another holder
// does, takes over when that holder's lease lapses and gives the lease up
// when it stops.
//
// The package knows nothing of what the work is or where the lease is kept:
// its user gives it functions that acquire and release the lease and that do
// one step of the work.
package lease

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// Back-off after errors: it starts at minBackoff, doubles with each error
// in a row up to maxBackoff and starts again after a step succeeds.
const (
	minBackoff = 50 * time.Millisecond
	maxBackoff = 5 * time.Second
)

// releaseTimeout bounds how long Run waits to give up the lease as it stops.
const releaseTimeout = 2 * time.Second

// Config configures a Runner. Acquire and Step are required; zero values of
// the others take the defaults.
type Config struct {
	// Holder names this runner in the lease; default DefaultHolder(Name).
	// Every runner of one lease must have its own name.
	Holder string
	// TTL is how long the lease lasts without renewal; default 10s. The
	// runner renews it every third of TTL while it holds it; when it dies,
	// a standby takes over within about TTL.
	TTL time.Duration
	// Poll is how long the active runner waits after a step that found
	// no more to do, unless Notify wakes it sooner; default 100ms.
	Poll time.Duration

	// Acquire makes holder the lease's holder for ttl, or renews its
	// lease; false while another holder's lease has not expired.
	Acquire func(ctx context.Context, holder string, ttl time.Duration) (bool, error)
	// Release gives the lease up as Run returns, so that a standby takes
	// over at once rather than when the lease expires. It is called with a
	// context of its own (Run's is done by then) and only when the runner
	// was active. Nil leaves the lease to expire.
	Release func(ctx context.Context, holder string) error
	// Step does one batch of the work and returns how much it did. Its
	// context ends before the lease may lapse (at nine tenths of TTL after
	// the last renewal), so that it does not go on working after another
	// holder may have taken over. Step is called only from Run's goroutine.
	Step func(ctx context.Context) (done int, err error)
	// Batch is the most a step does: a step that did Batch may have left
	// more, and the runner calls Step again at once; after a smaller step
	// it waits for Notify or Poll. Zero: again at once after any step that
	// did something.
	Batch int
	// Linger is the least time between the starts of two steps when Notify
	// wakes the runner; zero or negative for none. Under a stream of
	// Notify calls it gathers the work into fewer, larger steps at the
	// cost of that much latency.
	Linger time.Duration
	// LingerNow, when set, is asked for the linger before each wait
	// instead of Linger: for work whose best linger changes with the load.
	LingerNow func() time.Duration

	// Again, when set, is asked about each error of Step (but not when
	// Run's context is done): true means the step has dealt with it and
	// is to run again at once, without back-off, leaving Status's
	// LastError as it was. Again logs what it wants logged.
	Again func(err error) bool
	// Lost, when set, is called from Run's goroutine when the runner stops
	// being active without stopping (another holder has the lease, or it
	// cannot be renewed): for state that is only good while the lease is
	// held.
	Lost func()
	// Periodic, when set, is called from Run's goroutine with Run's
	// context after a step succeeds, at most once every Period (default
	// one hour): the first time after the first step that succeeds.
	Periodic func(ctx context.Context)
	Period   time.Duration

	// Logger receives lease changes and errors, as they are: the runner adds
	// no attributes. Default slog.Default().
	Logger *slog.Logger
	// Name is the runner's name in log lines, such as "relay"; default
	// "lease runner".
	Name string
	// Lease is the lease's name in log lines, such as "outbox lease";
	// default "lease".
	Lease string
	// Work names what a step does in log lines, such as "relaying events";
	// default "the work of <Name>".
	Work string
}

// DefaultHolder returns hostname:pid, a holder name no other process on
// the network has, with fallback standing for the host name when it cannot
// be read.
func DefaultHolder(fallback string) string {
	host, _ := os.Hostname()
	if host == "" {
		host = fallback
	}
	return fmt.Sprintf("%s:%d", host, os.Getpid())
}

func (c Config) withDefaults() Config {
	if c.Name == "" {
		c.Name = "lease runner"
	}
	if c.Lease == "" {
		c.Lease = "lease"
	}
	if c.Work == "" {
		c.Work = "the work of " + c.Name
	}
	if c.Holder == "" {
		c.Holder = DefaultHolder(c.Name)
	}
	if c.TTL <= 0 {
		c.TTL = 10 * time.Second
	}
	if c.Poll <= 0 {
		c.Poll = 100 * time.Millisecond
	}
	if c.Period <= 0 {
		c.Period = time.Hour
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Runner holds a lease and does work in steps while it holds it. Make one
// with New and start it with Run.
type Runner struct {
	cfg  Config
	wake chan struct{}

	mu      sync.Mutex
	active  bool
	done    int64
	lastErr error
}

// New returns a runner configured by cfg. It panics when cfg.Acquire or
// cfg.Step is nil.
func New(cfg Config) *Runner {
	if cfg.Acquire == nil || cfg.Step == nil {
		panic("lease: Config.Acquire and Config.Step are required")
	}
	return &Runner{cfg: cfg.withDefaults(), wake: make(chan struct{}, 1)}
}

// Notify wakes the runner to take a step now rather than at its next poll.
// Calls before that step are one. It never blocks.
func (r *Runner) Notify() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Status is a snapshot of a runner, for readiness checks and logs.
type Status struct {
	Holder    string // the runner's name in the lease
	Active    bool   // holds the lease and works
	Done      int64  // the sum of what its steps did
	LastError error  // the last error, nil after a step succeeds
}

// Status returns what the runner is doing.
func (r *Runner) Status() Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	return Status{Holder: r.cfg.Holder, Active: r.active, Done: r.done, LastError: r.lastErr}
}

func (r *Runner) setActive(active bool) {
	r.mu.Lock()
	changed := r.active != active
	r.active = active
	r.mu.Unlock()
	if changed && active {
		r.cfg.Logger.Info(fmt.Sprintf("%s is active: it holds the %s", r.cfg.Name, r.cfg.Lease))
	} else if changed {
		if r.cfg.Lost != nil {
			r.cfg.Lost()
		}
		r.cfg.Logger.Warn(fmt.Sprintf("%s lost the %s; standing by", r.cfg.Name, r.cfg.Lease))
	}
}

func (r *Runner) setErr(err error) {
	r.mu.Lock()
	r.lastErr = err
	r.mu.Unlock()
}

// Run works until ctx is cancelled, then gives up the lease and returns
// nil. Errors are logged and retried with back-off; Run does not give up.
func (r *Runner) Run(ctx context.Context) error {
	backoff := minBackoff
	// renewEvery is how often the lease is renewed while active: well
	// inside the TTL, so that a slow store does not let it lapse.
	renewEvery := r.cfg.TTL / 3
	var leaseAt time.Time // when the lease was last acquired or renewed
	var periodicAt time.Time
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
			ok, err := r.cfg.Acquire(ctx, r.cfg.Holder, r.cfg.TTL)
			switch {
			case ctx.Err() != nil:
				return nil
			case err != nil:
				r.setErr(err)
				r.cfg.Logger.Error(fmt.Sprintf("cannot acquire the %s; retrying", r.cfg.Lease), "error", err, "retryIn", backoff)
				leaseAt = time.Time{}
				r.setActive(false)
				sleep(ctx, backoff)
				backoff = min(backoff*2, maxBackoff)
				continue
			case !ok:
				// Another holder is active. Check again often enough to
				// take over soon after its lease runs out.
				leaseAt = time.Time{}
				r.setActive(false)
				sleep(ctx, r.standbyWait())
				continue
			}
			leaseAt = start
			r.setActive(true)
		}

		// Stop the step before the lease may have run out: past that,
		// another holder may be working too.
		sctx, cancel := context.WithDeadline(ctx, leaseAt.Add(r.cfg.TTL*9/10))
		stepAt := time.Now()
		n, err := r.cfg.Step(sctx)
		cancel()
		if n > 0 {
			r.mu.Lock()
			r.done += int64(n)
			r.mu.Unlock()
		}
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil && r.cfg.Again != nil && r.cfg.Again(err):
			continue
		case err != nil:
			r.setErr(err)
			r.cfg.Logger.Error(fmt.Sprintf("%s failed; retrying", r.cfg.Work), "error", err, "retryIn", backoff)
			sleep(ctx, backoff)
			backoff = min(backoff*2, maxBackoff)
			continue
		}
		backoff = minBackoff
		r.setErr(nil)
		if r.cfg.Periodic != nil && time.Since(periodicAt) >= r.cfg.Period {
			periodicAt = time.Now()
			r.cfg.Periodic(ctx)
		}
		if r.cfg.Batch > 0 && n >= r.cfg.Batch || r.cfg.Batch <= 0 && n > 0 {
			continue // more may be waiting
		}
		r.waitForWork(ctx, stepAt, min(r.cfg.Poll, max(renewEvery-time.Since(leaseAt), 0)))
	}
	return nil
}

// release gives up the lease as the runner stops.
func (r *Runner) release() {
	if r.cfg.Release == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), releaseTimeout)
	defer cancel()
	if err := r.cfg.Release(ctx, r.cfg.Holder); err != nil {
		r.cfg.Logger.Warn(fmt.Sprintf("cannot release the %s; another %s takes over when it expires", r.cfg.Lease, r.cfg.Name), "error", err)
	}
}

// standbyWait is how long a standby waits between attempts on the lease:
// a fraction of the TTL, so that it takes over promptly.
func (r *Runner) standbyWait() time.Duration {
	return min(max(r.cfg.TTL/5, 10*time.Millisecond), time.Second)
}

// waitForWork waits up to d for Notify, and after a Notify until Linger
// has passed since the last step started (stepAt).
func (r *Runner) waitForWork(ctx context.Context, stepAt time.Time, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return
	case <-t.C:
		return
	case <-r.wake:
	}
	linger := r.cfg.Linger
	if r.cfg.LingerNow != nil {
		linger = r.cfg.LingerNow()
	}
	if wait := linger - time.Since(stepAt); wait > 0 {
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
