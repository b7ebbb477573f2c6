package lease

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeLease stands for a store's lease: one holder at a time until its
// lease expires.
type fakeLease struct {
	mu       sync.Mutex
	holder   string
	until    time.Time
	err      error // returned by acquire while set
	released []string
}

func (f *fakeLease) acquire(_ context.Context, holder string, ttl time.Duration) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return false, f.err
	}
	now := time.Now()
	if f.holder != "" && f.holder != holder && now.Before(f.until) {
		return false, nil
	}
	f.holder, f.until = holder, now.Add(ttl)
	return true, nil
}

func (f *fakeLease) release(_ context.Context, holder string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.released = append(f.released, holder)
	if f.holder == holder {
		f.until = time.Time{}
	}
	return nil
}

func (f *fakeLease) setErr(err error) {
	f.mu.Lock()
	f.err = err
	f.mu.Unlock()
}

func (f *fakeLease) heldBy(holder string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.holder == holder && time.Now().Before(f.until)
}

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

// start runs r until the test ends, which waits for Run to return; stopped
// is closed when it has, and then *runErr is what it returned.
func start(t *testing.T, r *Runner) (cancel func(), stopped <-chan struct{}, runErr *error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	runErr = new(error)
	go func() {
		*runErr = r.Run(ctx)
		close(done)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("Run did not return after its context was cancelled")
		}
	})
	return cancel, done, runErr
}

func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", within, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// counter is a step that records its calls and does nothing.
type counter struct{ calls atomic.Int64 }

func (c *counter) step(context.Context) (int, error) {
	c.calls.Add(1)
	return 0, nil
}

func TestTakesOverWhenLeaseLapses(t *testing.T) {
	fl := &fakeLease{}
	const ttl = 150 * time.Millisecond
	if ok, _ := fl.acquire(context.Background(), "other", ttl); !ok {
		t.Fatal("the other holder did not get the lease")
	}
	var lost atomic.Int64
	var steps counter
	r := New(Config{
		Holder: "me", TTL: ttl, Poll: 5 * time.Millisecond,
		Acquire: fl.acquire, Release: fl.release, Step: steps.step,
		Lost: func() { lost.Add(1) }, Logger: quiet(),
	})
	took := time.Now()
	start(t, r)

	// While the other holder's lease lasts, the runner stands by.
	time.Sleep(ttl / 2)
	if st := r.Status(); st.Active || st.Holder != "me" || steps.calls.Load() != 0 {
		t.Fatalf("works while another holder has the lease: %+v, %d steps", st, steps.calls.Load())
	}
	// Once it lapses, the runner takes over, promptly.
	eventually(t, 2*time.Second, "the runner takes over", func() bool { return r.Status().Active && steps.calls.Load() > 0 })
	if d := time.Since(took); d > ttl+r.standbyWait()+100*time.Millisecond {
		t.Errorf("took over %s after the lease was taken, TTL %s", d, ttl)
	}
	if !fl.heldBy("me") {
		t.Error("the runner is active without the lease")
	}
	// It keeps the lease by renewing it, well past one TTL.
	time.Sleep(2 * ttl)
	if !r.Status().Active || !fl.heldBy("me") {
		t.Error("the runner did not keep its lease")
	}
	if lost.Load() != 0 {
		t.Errorf("Lost called %d times while the lease was never lost", lost.Load())
	}

	// When another holder takes the lease (this one's having lapsed, say
	// in a stall), the runner notices at its next renewal and stands by.
	fl.mu.Lock()
	fl.holder, fl.until = "other", time.Now().Add(time.Hour)
	fl.mu.Unlock()
	eventually(t, 2*time.Second, "the runner stands by", func() bool { return !r.Status().Active })
	if lost.Load() != 1 {
		t.Errorf("Lost called %d times, want 1", lost.Load())
	}
	calls := steps.calls.Load()
	time.Sleep(ttl)
	if n := steps.calls.Load(); n != calls {
		t.Errorf("%d steps while standing by", n-calls)
	}
}

func TestBacksOffOnErrors(t *testing.T) {
	fl := &fakeLease{}
	boom := errors.New("boom")
	var mu sync.Mutex
	var at []time.Time
	var failing atomic.Bool
	failing.Store(true)
	r := New(Config{
		Holder: "me", TTL: time.Minute, Poll: time.Hour,
		Acquire: fl.acquire, Release: fl.release, Logger: quiet(),
		Step: func(context.Context) (int, error) {
			mu.Lock()
			at = append(at, time.Now())
			mu.Unlock()
			if failing.Load() {
				return 0, boom
			}
			return 1, nil
		},
		Batch: 10,
	})
	start(t, r)
	eventually(t, 3*time.Second, "four failed steps", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(at) >= 4
	})
	if st := r.Status(); !errors.Is(st.LastError, boom) || !st.Active {
		t.Errorf("status after failures: %+v", st)
	}
	mu.Lock()
	for i, want := range []time.Duration{50, 100, 200} {
		if d := at[i+1].Sub(at[i]); d < want*time.Millisecond {
			t.Errorf("retry %d after %s, want at least %dms", i+1, d, want)
		}
	}
	mu.Unlock()

	// A step that succeeds clears the error.
	failing.Store(false)
	eventually(t, 3*time.Second, "a step succeeds", func() bool { st := r.Status(); return st.LastError == nil && st.Done == 1 })
}

func TestBacksOffWhenAcquireFails(t *testing.T) {
	fl := &fakeLease{}
	boom := errors.New("store down")
	fl.setErr(boom)
	var steps counter
	r := New(Config{Holder: "me", TTL: time.Minute, Poll: time.Hour, Acquire: fl.acquire, Step: steps.step, Logger: quiet()})
	start(t, r)
	eventually(t, time.Second, "the error in Status", func() bool { return errors.Is(r.Status().LastError, boom) })
	time.Sleep(100 * time.Millisecond)
	if st := r.Status(); st.Active || steps.calls.Load() != 0 {
		t.Errorf("works without the lease: %+v", st)
	}
	fl.setErr(nil)
	eventually(t, 2*time.Second, "the runner is active", func() bool { return r.Status().Active && steps.calls.Load() == 1 })
	if r.Status().LastError != nil {
		t.Errorf("error kept after a step succeeded: %v", r.Status().LastError)
	}
}

func TestAgainRetriesAtOnce(t *testing.T) {
	fl := &fakeLease{}
	conflict := errors.New("conflict")
	var calls atomic.Int64
	r := New(Config{
		Holder: "me", TTL: time.Minute, Poll: time.Hour,
		Acquire: fl.acquire, Logger: quiet(),
		Step: func(context.Context) (int, error) {
			if calls.Add(1) <= 3 {
				return 0, conflict
			}
			return 0, nil
		},
		Again: func(err error) bool { return errors.Is(err, conflict) },
	})
	began := time.Now()
	start(t, r)
	eventually(t, time.Second, "four steps", func() bool { return calls.Load() == 4 })
	if d := time.Since(began); d > 150*time.Millisecond { // backing off: 350ms
		t.Errorf("steps after Again took %s: backed off", d)
	}
	if r.Status().LastError != nil {
		t.Errorf("an error Again handled is in Status: %v", r.Status().LastError)
	}
}

func TestNotifyWakes(t *testing.T) {
	fl := &fakeLease{}
	var steps counter
	r := New(Config{Holder: "me", TTL: time.Minute, Poll: time.Hour, Acquire: fl.acquire, Step: steps.step, Logger: quiet()})
	start(t, r)
	eventually(t, time.Second, "the first step", func() bool { return steps.calls.Load() == 1 })
	time.Sleep(20 * time.Millisecond)
	if n := steps.calls.Load(); n != 1 {
		t.Fatalf("%d steps without work or Notify, want 1 before the poll", n)
	}
	for i := 2; i <= 4; i++ {
		r.Notify()
		eventually(t, time.Second, "a step after Notify", func() bool { return steps.calls.Load() == int64(i) })
	}
}

func TestLingerGathersNotifies(t *testing.T) {
	fl := &fakeLease{}
	var steps counter
	const linger = 100 * time.Millisecond
	r := New(Config{Holder: "me", TTL: time.Minute, Poll: time.Hour, Linger: linger, Acquire: fl.acquire, Step: steps.step, Logger: quiet()})
	start(t, r)
	eventually(t, time.Second, "the first step", func() bool { return steps.calls.Load() == 1 })
	first := time.Now()
	r.Notify()
	eventually(t, time.Second, "a step after Notify", func() bool { return steps.calls.Load() == 2 })
	if d := time.Since(first); d < linger-10*time.Millisecond {
		t.Errorf("the step after Notify came %s after the one before, want Linger %s", d, linger)
	}
}

// LingerNow, asked before each wait, replaces Linger.
func TestLingerNowReplacesLinger(t *testing.T) {
	fl := &fakeLease{}
	var steps counter
	var linger atomic.Int64
	linger.Store(int64(150 * time.Millisecond))
	r := New(Config{Holder: "me", TTL: time.Minute, Poll: time.Hour, Linger: time.Hour, Acquire: fl.acquire, Step: steps.step,
		LingerNow: func() time.Duration { return time.Duration(linger.Load()) }, Logger: quiet()})
	start(t, r)
	eventually(t, time.Second, "the first step", func() bool { return steps.calls.Load() == 1 })
	first := time.Now()
	r.Notify()
	eventually(t, time.Second, "a step after Notify", func() bool { return steps.calls.Load() == 2 })
	if d := time.Since(first); d < 140*time.Millisecond {
		t.Errorf("the step after Notify came %s after the one before, want LingerNow's 150ms", d)
	}
	linger.Store(0)
	second := time.Now()
	r.Notify()
	eventually(t, time.Second, "a step after Notify", func() bool { return steps.calls.Load() == 3 })
	if d := time.Since(second); d > 100*time.Millisecond {
		t.Errorf("with LingerNow 0 the step after Notify came %s later", d)
	}
}

func TestFullBatchRunsAgainAtOnce(t *testing.T) {
	fl := &fakeLease{}
	var calls atomic.Int64
	r := New(Config{
		Holder: "me", TTL: time.Minute, Poll: time.Hour, Acquire: fl.acquire, Logger: quiet(), Batch: 10,
		Step: func(context.Context) (int, error) {
			switch calls.Add(1) {
			case 1, 2:
				return 10, nil // full: more may wait
			case 3:
				return 4, nil
			}
			return 0, nil
		},
	})
	start(t, r)
	eventually(t, time.Second, "three steps", func() bool { return calls.Load() == 3 })
	time.Sleep(30 * time.Millisecond)
	if n := calls.Load(); n != 3 {
		t.Errorf("%d steps, want 3: the third was not full", n)
	}
	if st := r.Status(); st.Done != 24 {
		t.Errorf("Done = %d, want 24", st.Done)
	}
}

func TestPeriodic(t *testing.T) {
	fl := &fakeLease{}
	var periodic atomic.Int64
	var steps counter
	r := New(Config{
		Holder: "me", TTL: time.Minute, Poll: 5 * time.Millisecond, Acquire: fl.acquire, Step: steps.step, Logger: quiet(),
		Periodic: func(ctx context.Context) { periodic.Add(1) }, Period: 80 * time.Millisecond,
	})
	start(t, r)
	eventually(t, time.Second, "the first Periodic", func() bool { return periodic.Load() == 1 })
	time.Sleep(200 * time.Millisecond)
	if n, s := periodic.Load(), steps.calls.Load(); n < 2 || n > 4 || s < 5 {
		t.Errorf("%d periodic calls over %d steps in about 200ms, Period 80ms", n, s)
	}
}

func TestStopsAndReleases(t *testing.T) {
	fl := &fakeLease{}
	var steps counter
	r := New(Config{Holder: "me", TTL: time.Minute, Poll: time.Hour, Acquire: fl.acquire, Release: fl.release, Step: steps.step, Logger: quiet()})
	cancel, stopped, runErr := start(t, r)
	eventually(t, time.Second, "active", func() bool { return r.Status().Active })
	cancel()
	select {
	case <-stopped:
		if *runErr != nil {
			t.Errorf("Run = %v, want nil", *runErr)
		}
	case <-time.After(time.Second):
		t.Fatal("Run did not return after its context was cancelled")
	}
	if r.Status().Active {
		t.Error("active after Run returned")
	}
	fl.mu.Lock()
	released := fl.released
	fl.mu.Unlock()
	if len(released) != 1 || released[0] != "me" {
		t.Errorf("released %v, want [me]", released)
	}
	// A standby takes over at once rather than when the minute is up.
	if ok, _ := fl.acquire(context.Background(), "other", time.Minute); !ok {
		t.Error("the lease was not released")
	}
}

func TestStandbyStopsWithoutReleasing(t *testing.T) {
	fl := &fakeLease{}
	fl.acquire(context.Background(), "other", time.Hour)
	var steps counter
	r := New(Config{Holder: "me", TTL: time.Minute, Acquire: fl.acquire, Release: fl.release, Step: steps.step, Logger: quiet()})
	cancel, stopped, _ := start(t, r)
	time.Sleep(30 * time.Millisecond)
	cancel()
	<-stopped
	fl.mu.Lock()
	released := fl.released
	fl.mu.Unlock()
	if len(released) != 0 || !fl.heldBy("other") {
		t.Errorf("a standby released the lease: %v", released)
	}
}

func TestStepCutOffBeforeLeaseLapses(t *testing.T) {
	fl := &fakeLease{}
	const ttl = 300 * time.Millisecond
	var acquiredAt atomic.Int64
	type cut struct {
		deadline, ended time.Time
		err             error
	}
	cuts := make(chan cut, 100)
	r := New(Config{
		Holder: "me", TTL: ttl, Poll: time.Hour, Logger: quiet(),
		Acquire: func(ctx context.Context, holder string, ttl time.Duration) (bool, error) {
			at := time.Now()
			ok, err := fl.acquire(ctx, holder, ttl)
			if ok {
				acquiredAt.Store(at.UnixNano())
			}
			return ok, err
		},
		Release: fl.release,
		// A step that would run for ever: only its context stops it.
		Step: func(ctx context.Context) (int, error) {
			d, _ := ctx.Deadline()
			<-ctx.Done()
			cuts <- cut{deadline: d, ended: time.Now(), err: ctx.Err()}
			return 0, ctx.Err()
		},
	})
	start(t, r)
	var c cut
	select {
	case c = <-cuts:
	case <-time.After(2 * time.Second):
		t.Fatal("the step was not cut off")
	}
	leaseEnd := time.Unix(0, acquiredAt.Load()).Add(ttl)
	if !errors.Is(c.err, context.DeadlineExceeded) {
		t.Errorf("the step's context ended with %v", c.err)
	}
	if !c.deadline.Before(leaseEnd) || !c.ended.Before(leaseEnd) {
		t.Errorf("step deadline %s, ended %s, lease until %s: not before the lease lapses",
			c.deadline.Format(time.StampMicro), c.ended.Format(time.StampMicro), leaseEnd.Format(time.StampMicro))
	}
	if want := leaseEnd.Add(-ttl / 10); c.deadline.Sub(want).Abs() > 20*time.Millisecond {
		t.Errorf("step deadline %s, want nine tenths of the TTL after the lease was taken (%s)",
			c.deadline.Format(time.StampMicro), want.Format(time.StampMicro))
	}
	// The cut-off step is an error, retried after renewing the lease.
	eventually(t, time.Second, "the error in Status", func() bool { return errors.Is(r.Status().LastError, context.DeadlineExceeded) })
	select {
	case <-cuts:
	case <-time.After(2 * time.Second):
		t.Fatal("the step was not tried again")
	}
	if !fl.heldBy("me") {
		t.Error("the lease was not renewed")
	}
}

func TestNewNeedsAcquireAndStep(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("New without Step did not panic")
		}
	}()
	New(Config{Acquire: (&fakeLease{}).acquire})
}

func TestDefaults(t *testing.T) {
	var steps counter
	r := New(Config{Acquire: (&fakeLease{}).acquire, Step: steps.step, Name: "sweeper"})
	if r.cfg.Holder == "" || r.cfg.TTL != 10*time.Second || r.cfg.Poll != 100*time.Millisecond || r.cfg.Lease != "lease" {
		t.Errorf("defaults: %+v", r.cfg)
	}
	if got := r.Status().Holder; got != r.cfg.Holder {
		t.Errorf("Status().Holder = %q before Run, want %q", got, r.cfg.Holder)
	}
}
