package lake_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/plinth-data/plinth/lake"
	plinthnats "github.com/plinth-data/plinth/nats"
	"github.com/plinth-data/plinth/plinthtest"
	"github.com/plinth-data/plinth/plinthtest/natstest"
	rt "github.com/plinth-data/plinth/report/reporttest"
)

// Two landers on one stream: one lands while the other stands by; when
// the active one stops, the standby takes over; the lake holds every
// event exactly once.
func TestOneLanderPerStream(t *testing.T) {
	e, recs := rt.Sample(t, 40)
	b := newBus(t, e.Domain)
	ids := b.publish(t, e, recs[:20], time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC))
	root := t.TempDir()
	var active, most atomic.Int32
	var holder atomic.Value // the name of the lander that ran last
	ackFloor := func() uint64 {
		c, err := b.js.Consumer(context.Background(), b.stream, "lake")
		if err != nil {
			return 0
		}
		info, err := c.Info(context.Background())
		if err != nil {
			return 0
		}
		return info.AckFloor.Stream
	}
	start := func(name string) (stop func(), done <-chan error) {
		ctx, cancel := context.WithCancel(context.Background())
		ch := make(chan error, 1)
		go func() {
			lease, err := plinthnats.NewKVLease(ctx, b.js, plinthnats.LakeLeaseName(b.stream, "lake"))
			if err != nil {
				ch <- err
				return
			}
			ch <- lake.Exclusive(ctx, lease, lake.ExclusiveConfig{Holder: name, TTL: time.Second, Logger: slog.New(slog.DiscardHandler)},
				func(ctx context.Context, held func() bool) error {
					holder.Store(name)
					n := active.Add(1)
					defer active.Add(-1)
					for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
					}
					src, err := plinthnats.NewBatchSource(ctx, b.js, b.stream, "lake", time.Minute)
					if err != nil {
						return err
					}
					return lake.NewLander(e.Domain, lake.Dir(root), lake.Config{FlushInterval: 100 * time.Millisecond,
						Held: held, Logger: slog.New(slog.DiscardHandler)}).Run(ctx, src)
				})
		}()
		return cancel, ch
	}
	stops, dones := map[string]func(){}, map[string]<-chan error{}
	for _, name := range []string{"a", "b"} {
		stops[name], dones[name] = start(name)
		defer stops[name]()
	}
	last := uint64(natstest.StreamCount(t, b.js, b.stream))
	plinthtest.Eventually(t, 30*time.Second, func() bool { return ackFloor() >= last }, "the first events were not landed")
	if active.Load() != 1 {
		t.Fatalf("%d landers active, want 1", active.Load())
	}
	// Stop the active one; the other takes over.
	first := holder.Load().(string)
	other := map[string]string{"a": "b", "b": "a"}[first]
	stops[first]()
	select {
	case err := <-dones[first]:
		if err != nil && !errors.Is(err, context.Canceled) {
			t.Fatalf("lander %s: %v", first, err)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("lander %s did not stop", first)
	}
	ids = append(ids, b.publish(t, e, recs[20:], time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC))...)
	last = uint64(natstest.StreamCount(t, b.js, b.stream))
	plinthtest.Eventually(t, 30*time.Second, func() bool { return ackFloor() >= last }, "the standby did not take over")
	if got := holder.Load().(string); got != other {
		t.Fatalf("lander %s landed after %s stopped, want %s", got, first, other)
	}
	stops[other]()
	if err := <-dones[other]; err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("lander %s: %v", other, err)
	}
	if most.Load() != 1 {
		t.Fatalf("up to %d landers were active at once, want 1", most.Load())
	}
	res := lakeEvents(t, root, e, "SELECT count(*), count(DISTINCT id) FROM %s")
	if fmt.Sprint(res.Rows[0]) != fmt.Sprintf("[%d %d]", len(ids), len(ids)) {
		t.Fatalf("the lake holds %v events (distinct), want %d once each", res.Rows[0], len(ids))
	}
}

// A lander that no longer holds its lease lands and acknowledges nothing.
func TestLanderWithoutLeaseLandsNothing(t *testing.T) {
	e, recs := rt.Sample(t, 10)
	b := newBus(t, e.Domain)
	b.publish(t, e, recs, time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	src, err := plinthnats.NewBatchSource(ctx, b.js, b.stream, "lake", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	root := lake.Dir(t.TempDir())
	l := lake.NewLander(e.Domain, root, lake.Config{Drain: true, Held: func() bool { return false }, Logger: slog.New(slog.DiscardHandler)})
	if err := l.Run(ctx, src); !errors.Is(err, lake.ErrLeaseLost) {
		t.Fatalf("run without the lease: %v, want ErrLeaseLost", err)
	}
	if objs, err := root.List(ctx, ""); err != nil || len(objs) != 0 || l.Stats().Files != 0 {
		t.Fatalf("landed without the lease: %v %v", objs, err)
	}
}

// A batch job (MaxWait) does not wait long for a lander that holds the
// lease.
func TestExclusiveMaxWait(t *testing.T) {
	e, _ := rt.Sample(t, 1)
	b := newBus(t, e.Domain)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	lease, err := plinthnats.NewKVLease(ctx, b.js, plinthnats.LakeLeaseName(b.stream, "lake"))
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := lease.Acquire(ctx, "other", time.Minute); !ok || err != nil {
		t.Fatalf("acquire: %v %v", ok, err)
	}
	ran := false
	err = lake.Exclusive(ctx, lease, lake.ExclusiveConfig{Holder: "batch", TTL: time.Second, MaxWait: 200 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)},
		func(context.Context, func() bool) error { ran = true; return nil })
	if !errors.Is(err, lake.ErrLeaseHeld) || ran {
		t.Fatalf("MaxWait with the lease held elsewhere: ran %v, %v", ran, err)
	}
	if err := lease.Release(ctx, "other"); err != nil {
		t.Fatal(err)
	}
	err = lake.Exclusive(ctx, lease, lake.ExclusiveConfig{Holder: "batch", TTL: time.Second, MaxWait: 200 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)},
		func(context.Context, func() bool) error { ran = true; return nil })
	if err != nil || !ran {
		t.Fatalf("MaxWait after release: ran %v, %v", ran, err)
	}
}
