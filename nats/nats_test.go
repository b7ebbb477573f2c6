package nats_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/domains"
	plinthnats "github.com/plinth-data/plinth/nats"
	"github.com/plinth-data/plinth/plinthtest/natstest"
	"github.com/plinth-data/plinth/spec"
)

// shipped returns the shipped domains.
func shipped(t testing.TB) []*plinth.Domain {
	t.Helper()
	ds, err := spec.LoadFS(domains.FS, ".")
	if err != nil {
		t.Fatal(err)
	}
	return ds
}

func residents(t testing.TB, ds []*plinth.Domain) *plinth.Entity {
	t.Helper()
	for _, d := range ds {
		for _, e := range d.Entities {
			if e.Plural == "residents" {
				return e
			}
		}
	}
	t.Fatal("no residents entity")
	return nil
}

// devPublisher starts an embedded NATS server and a publisher of the
// shipped domains' events in "development".
func devPublisher(t *testing.T) (*plinthnats.Embedded, *plinthnats.Publisher, []*plinth.Domain) {
	t.Helper()
	srv, nc := natstest.Embedded(t)
	ds := shipped(t)
	pub, err := plinthnats.NewPublisher(t.Context(), nc, "development", ds)
	if err != nil {
		t.Fatal(err)
	}
	return srv, pub, ds
}

// makeEntries builds n created events for people with keys from first on.
func makeEntries(t testing.TB, e *plinth.Entity, env string, first, n int) []plinth.OutboxEntry {
	t.Helper()
	out := make([]plinth.OutboxEntry, n)
	for i := range out {
		rec := plinth.Record{
			Data:      map[string]any{"mosaicId": int64(first + i), "firstName": "Ada", "lastName": fmt.Sprintf("Lovelace %d", first+i)},
			Version:   1,
			CreatedAt: plinth.Now(),
			UpdatedAt: plinth.Now(),
		}
		entry, _, ok := plinth.BuildEvent(e, plinth.EventCreated, nil, &rec, plinth.EventContext{Environment: env, CorrelationID: "c-1"})
		if !ok {
			t.Fatal("no event")
		}
		entry.Sequence = int64(first + i)
		out[i] = entry
	}
	return out
}

// streamEvents reads every message of a stream, in order.
func streamEvents(t testing.TB, js jetstream.JetStream, stream string) []jetstream.Msg {
	return natstest.ReadStream(t, js, stream)
}

func checkStream(t testing.TB, js jetstream.JetStream, stream string, want []plinth.OutboxEntry) {
	t.Helper()
	msgs := streamEvents(t, js, stream)
	if len(msgs) != len(want) {
		t.Fatalf("stream %s holds %d messages, want %d", stream, len(msgs), len(want))
	}
	for i, m := range msgs {
		if m.Headers().Get(jetstream.MsgIDHeader) != want[i].EventID {
			t.Fatalf("message %d: Nats-Msg-Id %q, want %q", i, m.Headers().Get(jetstream.MsgIDHeader), want[i].EventID)
		}
		if m.Subject() != want[i].Subject || string(m.Data()) != string(want[i].Payload) {
			t.Fatalf("message %d: %s %s, want %s %s", i, m.Subject(), m.Data(), want[i].Subject, want[i].Payload)
		}
	}
}

func TestEmbeddedRoundTrip(t *testing.T) {
	ctx := t.Context()
	_, nc := natstest.Embedded(t)
	ds := shipped(t)
	pub, err := plinthnats.NewPublisher(ctx, nc, "development", ds)
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.Check(ctx); err != nil {
		t.Fatal(err)
	}
	stream := plinthnats.StreamName("development", "residents")
	if stream != "PLINTH_DEVELOPMENT_RESIDENTS" || plinthnats.StreamName("production", "benefit-claims") != "PLINTH_PRODUCTION_BENEFIT_CLAIMS" {
		t.Fatalf("stream name %s", stream)
	}
	s, err := pub.JetStream().Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	if cfg.Duplicates != plinthnats.DuplicateWindow || cfg.Storage != jetstream.FileStorage || !slices.Equal(cfg.Subjects, []string{"plinth.development.residents.>"}) {
		t.Fatalf("stream config: duplicates %s, storage %s, subjects %v", cfg.Duplicates, cfg.Storage, cfg.Subjects)
	}

	e := residents(t, ds)
	entries := makeEntries(t, e, "development", 1, 1200)
	for i := 0; i < len(entries); i += 500 {
		if err := pub.Publish(ctx, entries[i:min(i+500, len(entries))]); err != nil {
			t.Fatal(err)
		}
	}
	checkStream(t, pub.JetStream(), stream, entries)
	ev, err := plinth.DecodeEvent(streamEvents(t, pub.JetStream(), stream)[0].Data())
	if err != nil || ev.EventType != "ResidentCreatedEvent" || ev.EntityID != "1" {
		t.Fatalf("decoded %+v, %v", ev, err)
	}
}

func TestDuplicatesAreDropped(t *testing.T) {
	ctx := t.Context()
	srv, nc := natstest.Embedded(t)
	ds := shipped(t)
	pub, err := plinthnats.NewPublisher(ctx, nc, "development", ds)
	if err != nil {
		t.Fatal(err)
	}
	entries := makeEntries(t, residents(t, ds), "development", 1, 50)
	if err := pub.Publish(ctx, entries[:30]); err != nil {
		t.Fatal(err)
	}
	// A relay that crashed before marking publishes the batch again, with
	// more behind it.
	if err := pub.Publish(ctx, entries); err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(ctx, entries[10:20]); err != nil {
		t.Fatal(err)
	}
	stream := plinthnats.StreamName("development", "residents")
	checkStream(t, pub.JetStream(), stream, entries)

	// The duplicate window survives a restart of the server.
	dir := srv.StoreDir()
	nc.Close()
	srv.Shutdown()
	srv2, err := plinthnats.StartEmbedded(plinthnats.EmbeddedConfig{Dir: strings.TrimSuffix(dir, "/nats")})
	if err != nil {
		t.Fatal(err)
	}
	defer srv2.Shutdown()
	nc2, err := srv2.Conn()
	if err != nil {
		t.Fatal(err)
	}
	defer nc2.Close()
	pub2, err := plinthnats.NewPublisher(ctx, nc2, "development", ds)
	if err != nil {
		t.Fatal(err)
	}
	more := makeEntries(t, residents(t, ds), "development", 51, 5)
	if err := pub2.Publish(ctx, append(slices.Clone(entries[40:]), more...)); err != nil {
		t.Fatal(err)
	}
	checkStream(t, pub2.JetStream(), stream, append(slices.Clone(entries), more...))
}

// A message that fails in the middle of a pipelined batch must not let the
// ones behind it into the stream, or a retry would store them out of order.
func TestFailedBatchKeepsOrder(t *testing.T) {
	ctx := t.Context()
	_, nc := natstest.Embedded(t)
	ds := shipped(t)
	js, _ := jetstream.New(nc)
	stream := plinthnats.StreamName("development", "residents")
	// An operator's stream with a message size limit: the publisher keeps
	// its settings.
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: stream, Subjects: []string{"plinth.development.residents.>"}, Storage: jetstream.FileStorage, MaxMsgSize: 2000,
	}); err != nil {
		t.Fatal(err)
	}
	pub, err := plinthnats.NewPublisher(ctx, nc, "development", ds)
	if err != nil {
		t.Fatal(err)
	}
	e := residents(t, ds)
	entries := makeEntries(t, e, "development", 1, 20)
	big := plinth.Record{Data: map[string]any{"mosaicId": int64(100), "firstName": strings.Repeat("x", 3000), "lastName": "Record"}, Version: 1}
	bigEntry, _, _ := plinth.BuildEvent(e, plinth.EventCreated, nil, &big, plinth.EventContext{Environment: "development"})
	batch := slices.Concat(entries[:5], []plinth.OutboxEntry{bigEntry}, entries[5:])
	if err := pub.Publish(ctx, batch); err == nil {
		t.Fatal("a message over the stream's limit was accepted")
	}
	checkStream(t, pub.JetStream(), stream, entries[:5])

	// The operator raises the limit; the relay publishes the batch again.
	s, _ := js.Stream(ctx, stream)
	cfg := s.CachedInfo().Config
	cfg.MaxMsgSize = 1 << 20
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(ctx, batch); err != nil {
		t.Fatal(err)
	}
	checkStream(t, pub.JetStream(), stream, batch)
	// And pipelining resumes.
	more := makeEntries(t, e, "development", 200, 10)
	if err := pub.Publish(ctx, more); err != nil {
		t.Fatal(err)
	}
	checkStream(t, pub.JetStream(), stream, slices.Concat(batch, more))
}

func TestEmbeddedDirectoryIsExclusive(t *testing.T) {
	dir := t.TempDir()
	srv, err := plinthnats.StartEmbedded(plinthnats.EmbeddedConfig{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	_, err = plinthnats.StartEmbedded(plinthnats.EmbeddedConfig{Dir: dir})
	if err == nil || !strings.Contains(err.Error(), "--nats-url") {
		t.Fatalf("second server on one directory: %v", err)
	}
	if srv.ClientURL() != "" {
		t.Fatalf("the embedded server listens on %s without being asked", srv.ClientURL())
	}
	srv.Shutdown()
	srv.Shutdown() // twice is fine
	srv, err = plinthnats.StartEmbedded(plinthnats.EmbeddedConfig{Dir: dir, Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatalf("restart after shutdown: %v", err)
	}
	defer srv.Shutdown()
	if !strings.HasPrefix(srv.ClientURL(), "nats://127.0.0.1:") {
		t.Fatalf("client URL %q", srv.ClientURL())
	}
	nc, err := plinthnats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	nc.Close()
}

func TestConnectErrorNamesTheURL(t *testing.T) {
	_, err := plinthnats.Connect("nats://user:secret@127.0.0.1:1")
	if err == nil || !strings.Contains(err.Error(), "127.0.0.1:1") || strings.Contains(err.Error(), "secret") {
		t.Fatalf("error %v", err)
	}
}

func TestExternalServer(t *testing.T) {
	nc := natstest.External(t)
	ctx := t.Context()
	var b [4]byte
	_, _ = rand.Read(b[:])
	env := "test" + hex.EncodeToString(b[:])
	ds := shipped(t)
	js, _ := jetstream.New(nc)
	stream := plinthnats.StreamName(env, "residents")
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := js.DeleteStream(ctx, stream); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			t.Errorf("deleting stream %s: %v", stream, err)
		}
	})
	pub, err := plinthnats.NewPublisher(ctx, nc, env, ds)
	if err != nil {
		t.Fatal(err)
	}
	entries := makeEntries(t, residents(t, ds), env, 1, 300)
	if err := pub.Publish(ctx, entries[:200]); err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(ctx, entries[100:]); err != nil {
		t.Fatal(err)
	}
	checkStream(t, pub.JetStream(), stream, entries)

	// A listener on the external server.
	got := make(chan plinth.Event, 300)
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- plinthnats.Consume(cctx, js, plinthnats.ConsumerConfig{
			Stream: stream, Durable: "external-test",
			Subjects: []string{"plinth." + env + ".residents.residents.created"},
			Handler: func(_ context.Context, ev plinth.Event) error {
				got <- ev
				return nil
			},
		})
	}()
	for i := range entries {
		select {
		case ev := <-got:
			if ev.ID != entries[i].EventID {
				t.Fatalf("event %d: %s, want %s", i, ev.ID, entries[i].EventID)
			}
		case err := <-done:
			t.Fatalf("consumer stopped: %v", err)
		case <-time.After(10 * time.Second):
			t.Fatalf("received %d of %d events", i, len(entries))
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

var _ plinth.Publisher = (*plinthnats.Publisher)(nil)
