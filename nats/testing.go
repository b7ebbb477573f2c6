package nats

import (
	"os"
	"testing"

	natsgo "github.com/nats-io/nats.go"
)

// TestURLEnv names the environment variable that points tests at an
// external NATS server with JetStream.
const TestURLEnv = "PLINTH_TEST_NATS"

// DefaultTestURL is the server tests use when TestURLEnv is not set.
const DefaultTestURL = "nats://127.0.0.1:4222"

// TestEmbedded starts an embedded server in a temporary directory for one
// test and returns it with a connection; both end with the test.
func TestEmbedded(t testing.TB) (*Embedded, *natsgo.Conn) {
	t.Helper()
	srv, err := StartEmbedded(EmbeddedConfig{Dir: t.TempDir()})
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

// TestExternal connects to the external test server (TestURLEnv, else
// DefaultTestURL). When it cannot be reached the test is skipped, or fails
// when the environment variable CI is "true". Tests must use names of their
// own (an environment such as "test<random>") and delete their streams.
func TestExternal(t testing.TB) *natsgo.Conn {
	t.Helper()
	u := os.Getenv(TestURLEnv)
	if u == "" {
		u = DefaultTestURL
	}
	nc, err := Connect(u)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%v (set %s to a NATS server with JetStream)", err, TestURLEnv)
		}
		t.Skipf("%v (set %s to a NATS server with JetStream)", err, TestURLEnv)
	}
	t.Cleanup(nc.Close)
	return nc
}
