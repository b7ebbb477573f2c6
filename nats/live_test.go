package nats_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/plinth-data/plinth/lake"
	plinthnats "github.com/plinth-data/plinth/nats"
	"github.com/plinth-data/plinth/plinthtest/natstest"
)

// TestLiveSourceHandsOverEveryEventOnce: the lake's source inside serve
// hands over a backlog from the stream, then what the publisher stores
// from memory, reads a gap (events another publisher stored) from the
// stream again, and a restart after Ack resumes right after the
// acknowledged event. Every event comes exactly once, in stream order,
// with the stored payload; and live events do not go through the consumer.
func TestLiveSourceHandsOverEveryEventOnce(t *testing.T) {
	ctx := t.Context()
	_, pub, ds := devPublisher(t)
	js := pub.JetStream()
	stream := plinthnats.StreamName("development", "residents")
	e := residents(t, ds)
	publish := func(first, n int) {
		t.Helper()
		entries := makeEntries(t, e, "development", first, n)
		for i := 0; i < n; i += 50 {
			if err := pub.Publish(ctx, entries[i:min(i+50, n)]); err != nil {
				t.Fatal(err)
			}
		}
	}
	publish(1, 300) // the backlog, before the source exists

	src, err := plinthnats.NewLiveSource(ctx, pub, stream, "lake")
	if err != nil {
		t.Fatal(err)
	}
	var got []lake.Message
	fetchInto := func(src *plinthnats.LiveSource, into *[]lake.Message, n int) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for len(*into) < n {
			if time.Now().After(deadline) {
				t.Fatalf("after 20 s %d of %d events came", len(*into), n)
			}
			msgs, err := src.Fetch(ctx, 16384, 100*time.Millisecond)
			if err != nil {
				t.Fatal(err)
			}
			*into = append(*into, msgs...)
		}
	}
	fetchUntil := func(src *plinthnats.LiveSource, n int) { t.Helper(); fetchInto(src, &got, n) }
	fetchUntil(src, 300)
	// Live: published while the lake keeps up.
	for i := range 10 {
		publish(301+50*i, 50)
		fetchUntil(src, 350+50*i)
	}
	if readers := catchUpReaders(t, js, stream); len(readers) > 0 {
		t.Errorf("live, the stream still has the readers %v: the live events were read back from the stream", readers)
	}
	// A gap: events stored by another publisher, then this one's again.
	for i := range 20 {
		if _, err := js.Publish(ctx, fmt.Sprintf("plinth.development.residents.resident.created.%d", 2000+i), []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
	}
	publish(801, 100)
	fetchUntil(src, 920)
	for i := range 3 { // live again
		publish(901+50*i, 50)
		fetchUntil(src, 970+50*i)
	}
	checkOnce(t, got, 1070)

	// Nothing acknowledged yet: a restart hands everything over again, as
	// reading (the backlog, the gap) never moves the durable consumer.
	src.Close()
	if src, err = plinthnats.NewLiveSource(ctx, pub, stream, "lake"); err != nil {
		t.Fatal(err)
	}
	var again []lake.Message
	fetchInto(src, &again, 1070)
	checkOnce(t, again, 1070)

	// Acknowledged, then a restart: it resumes after the acknowledged event.
	if err := src.Ack(ctx, got[len(got)-1].Seq); err != nil {
		t.Fatal(err)
	}
	src.Close()
	publish(1051, 30)
	src, err = plinthnats.NewLiveSource(ctx, pub, stream, "lake")
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	fetchUntil(src, 1100)
	publish(1081, 30)
	fetchUntil(src, 1130)
	checkOnce(t, got, 1130)
	stored := natstest.ReadStream(t, js, stream)
	for i, m := range got {
		if string(m.Data) != string(stored[i].Data()) || m.Subject != stored[i].Subject() {
			t.Fatalf("event %d: %s %.40s, the stream holds %s %.40s", m.Seq, m.Subject, m.Data, stored[i].Subject(), stored[i].Data())
		}
	}
}

// checkOnce fails unless msgs are the stream's events 1…n, each once.
func checkOnce(t *testing.T, msgs []lake.Message, n int) {
	t.Helper()
	if len(msgs) != n {
		t.Fatalf("%d events came, want %d", len(msgs), n)
	}
	for i, m := range msgs {
		if m.Seq != uint64(i+1) {
			t.Fatalf("event %d came as the %d-th", m.Seq, i+1)
		}
	}
}

// catchUpReaders lists the consumers of the stream other than the lake's
// durable one.
func catchUpReaders(t *testing.T, js jetstream.JetStream, stream string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for name := range s.ConsumerNames(ctx).Name() {
		if name != "lake" {
			names = append(names, name)
		}
	}
	return names
}
