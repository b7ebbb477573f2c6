package lake

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"
)

// ErrLeaseLost is returned by a lander that stopped because it no longer
// holds its stream's lease: it landed and acknowledged nothing after
// that, and what it held comes again to the lander that took over.
var ErrLeaseLost = errors.New("the lake lease of the stream was lost to another lander")

// ErrLeaseHeld is returned by Exclusive with NoWait when another holder
// has the lease.
var ErrLeaseHeld = errors.New("another lander is landing this stream")

// Lease lets one lander of a stream work at a time (package nats:
// KVLease, kept in a JetStream key-value bucket beside the stream).
type Lease interface {
	// Acquire makes holder the lease's holder for ttl, or renews its
	// lease; false while another holder's lease has not expired.
	Acquire(ctx context.Context, holder string, ttl time.Duration) (bool, error)
	// Release gives the lease up, so that a standby takes over at once.
	Release(ctx context.Context, holder string) error
}

// ExclusiveConfig tunes Exclusive. Holder is required.
type ExclusiveConfig struct {
	Holder string        // this process in the lease (lease.DefaultHolder)
	TTL    time.Duration // how long the lease lasts unrenewed; default 30s
	Logger *slog.Logger
	// MaxWait, when positive, is the longest Exclusive stands by: then it
	// returns ErrLeaseHeld. For batch jobs (Config.Drain): a little over
	// TTL lets the lease of a holder that died lapse, but does not wait
	// for a live one.
	MaxWait time.Duration
}

// Exclusive runs run once it holds the lease, standing by while another
// holder has it, and renews the lease every third of TTL while run runs.
// held, which run passes to the lander (Config.Held), is true only while
// the lease surely holds (until nine tenths of TTL after the last
// renewal); when it can no longer be renewed, run's context is cancelled.
// The lease is released as Exclusive returns. Open the source inside run:
// opening it resets the stream's consumer, which only the holder may do.
//
// (lease.Runner, which the outbox relay uses, runs work in short steps;
// a lander holds a buffer across steps and lands it on its own clock, so
// it holds the lease for the whole run instead.)
func Exclusive(ctx context.Context, l Lease, cfg ExclusiveConfig, run func(ctx context.Context, held func() bool) error) error {
	if cfg.TTL <= 0 {
		cfg.TTL = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	var until atomic.Int64 // unix nanoseconds up to which the lease surely holds
	acquire := func() (bool, error) {
		start := time.Now()
		ok, err := l.Acquire(ctx, cfg.Holder, cfg.TTL)
		if ok && err == nil {
			until.Store(start.Add(cfg.TTL * 9 / 10).UnixNano())
		}
		return ok, err
	}
	if err := standBy(ctx, acquire, cfg); err != nil {
		return err
	}
	defer func() {
		c, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := l.Release(c, cfg.Holder); err != nil {
			cfg.Logger.Warn("cannot release the lake lease; a standby takes over when it expires", "error", err)
		}
	}()
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		t := time.NewTicker(cfg.TTL / 3)
		defer t.Stop()
		for {
			select {
			case <-rctx.Done():
				return
			case <-t.C:
			}
			ok, err := acquire()
			if err != nil {
				cfg.Logger.Warn("cannot renew the lake lease", "error", err)
			}
			if !ok && (err == nil || time.Now().UnixNano() >= until.Load()) {
				until.Store(0)
				cfg.Logger.Warn("lost the lake lease; stopping without landing what is buffered")
				cancel()
				return
			}
		}
	}()
	held := func() bool { return time.Now().UnixNano() < until.Load() }
	err := run(rctx, held)
	if err == nil && ctx.Err() == nil && !held() {
		err = ErrLeaseLost
	}
	return err
}

// standBy returns once acquire succeeds, or with ctx's error.
func standBy(ctx context.Context, acquire func() (bool, error), cfg ExclusiveConfig) error {
	wait := min(max(cfg.TTL/5, 10*time.Millisecond), time.Second)
	start := time.Now()
	logged := false
	for {
		ok, err := acquire()
		switch {
		case ok && err == nil:
			if logged {
				cfg.Logger.Info("took over the lake lease: landing")
			}
			return nil
		case err != nil:
			cfg.Logger.Error("cannot acquire the lake lease; retrying", "error", err)
		case cfg.MaxWait > 0 && time.Since(start) >= cfg.MaxWait:
			return ErrLeaseHeld
		case !logged:
			cfg.Logger.Info("another lander holds the lake lease of the stream; standing by")
			logged = true
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("lake: waiting for the lease: %w", ctx.Err())
		case <-time.After(wait):
		}
	}
}
