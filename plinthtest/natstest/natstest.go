// Package natstest connects Plinth's tests to NATS JetStream: an embedded
// server per test, or the external test server. Only tests import it.
package natstest

import (
	"context"
	"os"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	plinthnats "github.com/plinth-data/plinth/nats"
)

// URLEnv names the environment variable that points tests at an
// external NATS server with JetStream.
const URLEnv = "PLINTH_TEST_NATS"

// DefaultURL is the server tests use when URLEnv is not set.
const DefaultURL = "nats://127.0.0.1:4222"

// Embedded starts an embedded server in a temporary directory for one
// test and returns it with a connection; both end with the test.
func Embedded(t testing.TB) (*plinthnats.Embedded, *natsgo.Conn) {
	t.Helper()
	return EmbeddedIn(t, t.TempDir())
}

// EmbeddedIn starts an embedded NATS server with JetStream in Plinth's
// data directory dir (its files in dir/nats, as serve keeps them), for the
// rest of the test, and connects to it.
func EmbeddedIn(t testing.TB, dir string) (*plinthnats.Embedded, *natsgo.Conn) {
	t.Helper()
	srv, err := plinthnats.StartEmbedded(plinthnats.EmbeddedConfig{Dir: dir})
	if err != nil {
		t.Fatalf("starting embedded NATS: %v", err)
	}
	t.Cleanup(srv.Shutdown)
	nc, err := srv.Conn()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return srv, nc
}

func External(t testing.TB) *natsgo.Conn {
	t.Helper()
	u := os.Getenv(URLEnv)
	if u == "" {
		u = DefaultURL
	}
	nc, err := plinthnats.Connect(u)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%v (set %s to a NATS server with JetStream)", err, URLEnv)
		}
		t.Skipf("%v (set %s to a NATS server with JetStream)", err, URLEnv)
	}
	t.Cleanup(nc.Close)
	return nc
}

// ReadStream returns every message of a stream, in order.
func ReadStream(t testing.TB, js jetstream.JetStream, stream string) []jetstream.Msg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n := StreamCount(t, js, stream)
	if n == 0 {
		return nil
	}
	cons, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var out []jetstream.Msg
	for len(out) < n {
		batch, err := cons.Fetch(min(n-len(out), 1000), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		got := 0
		for m := range batch.Messages() {
			out = append(out, m)
			got++
		}
		if got == 0 {
			t.Fatalf("read %d of %d messages of %s: %v", len(out), n, stream, batch.Error())
		}
	}
	return out
}

// StreamCount returns how many messages a stream holds.
func StreamCount(t testing.TB, js jetstream.JetStream, stream string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return int(info.State.Msgs)
}
