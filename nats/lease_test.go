package nats_test

import (
	"context"
	"testing"
	"time"

	plinthnats "github.com/plinth-data/plinth/nats"
	"github.com/plinth-data/plinth/plinthtest/natstest"

	"github.com/nats-io/nats.go/jetstream"
)

// Of two holders one gets the lease; the other gets it once it is
// released, or once it has stood unrenewed for its TTL.
func TestKVLease(t *testing.T) {
	_, nc := natstest.Embedded(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	a, err := plinthnats.NewKVLease(ctx, js, "test_lease")
	if err != nil {
		t.Fatal(err)
	}
	b, err := plinthnats.NewKVLease(ctx, js, "test_lease")
	if err != nil {
		t.Fatal(err)
	}
	ttl := 300 * time.Millisecond
	acquire := func(l *plinthnats.KVLease, holder string) bool {
		ok, err := l.Acquire(ctx, holder, ttl)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if !acquire(a, "a") || acquire(b, "b") || !acquire(a, "a") {
		t.Fatal("a should hold the lease and renew it; b should not get it")
	}
	if err := a.Release(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if !acquire(b, "b") || acquire(a, "a") {
		t.Fatal("b should get the lease a released")
	}
	// b stops renewing: a gets it once it has stood for the TTL.
	deadline := time.Now().Add(5 * time.Second)
	for !acquire(a, "a") {
		if time.Now().After(deadline) {
			t.Fatal("a never took over the expired lease")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if n, err := plinthnats.LastSequence(ctx, js, "NO_SUCH_STREAM"); err != nil || n != 0 {
		t.Fatalf("the position of a stream never created: %d %v", n, err)
	}
}
