package nats

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// TestBatchSourcePullsFollowTheBacklog: a backlog is read in pulls that
// grow to the limit, and pulls that find little shrink again, so that a
// lander keeping up with live traffic does not make a pull buffer of the
// full limit each time (a channel of that many messages).
func TestBatchSourcePullsFollowTheBacklog(t *testing.T) {
	ctx := t.Context()
	js := embeddedStream(t, "PULLS", "pulls.>")
	const backlog, limit = 40_000, 16_384
	for i := range backlog {
		if _, err := js.PublishAsync(fmt.Sprintf("pulls.%d", i%7), []byte("{}")); err != nil {
			t.Fatal(err)
		}
	}
	<-js.PublishAsyncComplete()
	if st, err := js.Stream(ctx, "PULLS"); err != nil || st.CachedInfo().State.Msgs != backlog {
		t.Fatalf("the stream holds %v messages (%v), want %d", st.CachedInfo().State.Msgs, err, backlog)
	}
	src, err := NewBatchSource(ctx, js, "PULLS", "lake", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	var sizes []int
	got := 0
	for got < backlog {
		msgs, err := src.Fetch(ctx, limit, 50*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		if len(msgs) == 0 {
			t.Fatalf("after %d of %d messages a fetch found none (pulls %v)", got, backlog, sizes)
		}
		got += len(msgs)
		sizes = append(sizes, len(msgs))
	}
	if len(sizes) > 7 || !slices.Contains(sizes, limit) {
		t.Errorf("a backlog of %d came in pulls of %v; want them to grow to %d within a few pulls", backlog, sizes, limit)
	}
	if got != backlog {
		t.Errorf("read %d messages, want %d", got, backlog)
	}
	// Live traffic: a few messages at a time. The pull size falls back.
	for range 8 {
		js.Publish(ctx, "pulls.live", []byte("{}"))
		if _, err := src.Fetch(ctx, limit, 50*time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	if src.pull > 4*minPull {
		t.Errorf("after pulls finding one message each, the next pull asks for %d", src.pull)
	}
}

// TestBatchSourceGathersLiveTraffic: after a pull that found few
// messages, Fetch lets the next ones gather before it pulls, so messages
// that trickle in come in a few pulls rather than one pull each.
func TestBatchSourceGathersLiveTraffic(t *testing.T) {
	ctx := t.Context()
	js := embeddedStream(t, "TRICKLE", "trickle.>")
	src, err := NewBatchSource(ctx, js, "TRICKLE", "lake", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "trickle.first", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	if msgs, err := src.Fetch(ctx, 1000, 2*time.Second); err != nil || len(msgs) != 1 {
		t.Fatalf("the first fetch: %d messages, %v", len(msgs), err)
	}
	const trickle = 10 // one every 5 ms: 50 ms in all, against a gather of 250 ms
	go func() {
		for i := range trickle {
			js.Publish(ctx, fmt.Sprintf("trickle.%d", i), []byte("{}"))
			time.Sleep(5 * time.Millisecond)
		}
	}()
	var sizes []int
	for got := 0; got < trickle; {
		msgs, err := src.Fetch(ctx, 1000, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if len(msgs) == 0 {
			t.Fatalf("a fetch found none after %d of %d (fetches %v)", got, trickle, sizes)
		}
		got += len(msgs)
		sizes = append(sizes, len(msgs))
	}
	if len(sizes) > 3 {
		t.Errorf("%d messages trickling in over 50 ms came in fetches of %v; want them gathered into a few", trickle, sizes)
	}
}

// embeddedStream starts an embedded server for the test and makes a
// stream on it.
func embeddedStream(t *testing.T, name, subject string) jetstream.JetStream {
	t.Helper()
	srv, err := StartEmbedded(EmbeddedConfig{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	nc, err := srv.Conn()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	if _, err := js.CreateStream(t.Context(), jetstream.StreamConfig{Name: name, Subjects: []string{subject}}); err != nil {
		t.Fatal(err)
	}
	return js
}
