package nats_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	plinthnats "github.com/plinth-data/plinth/nats"
	"github.com/plinth-data/plinth/plinthtest/natstest"
)

func streamConfig(t *testing.T, js jetstream.JetStream, name string) jetstream.StreamConfig {
	t.Helper()
	s, err := js.Stream(t.Context(), name)
	if err != nil {
		t.Fatal(err)
	}
	return s.CachedInfo().Config
}

// testRetention checks that new streams get the retention, that an
// existing unlimited stream is updated to it on the next start, and that
// JetStream then really drops what is over the size cap.
func testRetention(t *testing.T, nc *natsgo.Conn, env string) {
	ctx := t.Context()
	ds := shipped(t)
	js, _ := jetstream.New(nc)
	stream := plinthnats.StreamName(env, "residents")
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for _, d := range ds {
			if err := js.DeleteStream(ctx, plinthnats.StreamName(env, d.Name)); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
				t.Errorf("deleting stream: %v", err)
			}
		}
	})
	// The default: seven days and 1 GiB.
	if _, err := plinthnats.NewPublisher(ctx, nc, env, ds); err != nil {
		t.Fatal(err)
	}
	cfg := streamConfig(t, js, stream)
	if cfg.MaxAge != 7*24*time.Hour || cfg.MaxBytes != 1<<30 || cfg.Discard != jetstream.DiscardOld {
		t.Fatalf("default retention: max age %s, max bytes %d, discard %s", cfg.MaxAge, cfg.MaxBytes, cfg.Discard)
	}

	// An operator removed the limits (as streams made before retention
	// had none); the next start applies the configured retention.
	cfg.MaxAge, cfg.MaxBytes = 0, -1
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	small := plinthnats.Retention{MaxAge: time.Minute, MaxBytes: 64 << 10}
	pub, err := plinthnats.NewPublisher(ctx, nc, env, ds, plinthnats.WithRetention(small))
	if err != nil {
		t.Fatal(err)
	}
	cfg = streamConfig(t, js, stream)
	if cfg.MaxAge != time.Minute || cfg.MaxBytes != 64<<10 || cfg.Duplicates != time.Minute {
		t.Fatalf("updated retention: max age %s, max bytes %d, duplicates %s", cfg.MaxAge, cfg.MaxBytes, cfg.Duplicates)
	}
	// Far more than 64 KiB of events: the stream keeps the newest, within the cap.
	entries := makeEntries(t, residents(t, ds), env, 1, 600)
	if err := pub.Publish(ctx, entries); err != nil {
		t.Fatal(err)
	}
	s, _ := js.Stream(ctx, stream)
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Bytes > 64<<10 || info.State.Msgs == 0 || info.State.Msgs >= 600 || info.State.LastSeq != 600 {
		t.Fatalf("stream state after 600 events with a 64 KiB cap: %d bytes, %d messages, last %d", info.State.Bytes, info.State.Msgs, info.State.LastSeq)
	}
	last, err := s.GetLastMsgForSubject(ctx, ">")
	if err != nil || last.Header.Get(jetstream.MsgIDHeader) != entries[599].EventID {
		t.Fatalf("newest message: %v", err)
	}

	// Zero means no limit.
	if _, err := plinthnats.NewPublisher(ctx, nc, env, ds, plinthnats.WithRetention(plinthnats.Retention{})); err != nil {
		t.Fatal(err)
	}
	if cfg = streamConfig(t, js, stream); cfg.MaxAge != 0 || cfg.MaxBytes != -1 || cfg.Duplicates != plinthnats.DuplicateWindow {
		t.Fatalf("no limits: max age %s, max bytes %d, duplicates %s", cfg.MaxAge, cfg.MaxBytes, cfg.Duplicates)
	}
	// A duplicate window that is set is applied as it is, down as well as
	// up; without one, an existing longer window is kept.
	window := func(r plinthnats.Retention, want time.Duration) {
		t.Helper()
		if _, err := plinthnats.NewPublisher(ctx, nc, env, ds, plinthnats.WithRetention(r)); err != nil {
			t.Fatal(err)
		}
		if got := streamConfig(t, js, stream).Duplicates; got != want {
			t.Fatalf("retention %+v: duplicate window %s, want %s", r, got, want)
		}
	}
	window(plinthnats.Retention{Duplicates: 30 * time.Second}, 30*time.Second)
	window(plinthnats.Retention{}, plinthnats.DuplicateWindow)
	cfg = streamConfig(t, js, stream)
	cfg.Duplicates = 10 * time.Minute
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	window(plinthnats.Retention{}, 10*time.Minute)
	window(plinthnats.Retention{Duplicates: 30 * time.Second}, 30*time.Second)
	window(plinthnats.Retention{MaxAge: 10 * time.Second, Duplicates: 30 * time.Second}, 10*time.Second)
	_, err = plinthnats.NewPublisher(ctx, nc, env, ds, plinthnats.WithRetention(plinthnats.Retention{MaxAge: -time.Hour}))
	if err == nil || !strings.Contains(err.Error(), "negative") {
		t.Fatalf("negative retention: %v", err)
	}
}

func TestRetentionEmbedded(t *testing.T) {
	_, nc := natstest.Embedded(t)
	testRetention(t, nc, "development")
}

func TestRetentionExternal(t *testing.T) {
	nc := natstest.External(t)
	var b [4]byte
	_, _ = rand.Read(b[:])
	testRetention(t, nc, "test"+hex.EncodeToString(b[:]))
}
