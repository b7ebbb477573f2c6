package nats_test

import (
	"slices"
	"testing"

	"github.com/plinth-data/plinth"
)

func eventIDs(entries []plinth.OutboxEntry) []string {
	out := make([]string, len(entries))
	for i, e := range entries {
		out[i] = e.EventID
	}
	slices.Sort(out)
	return out
}

// Published finds the pending entries a relay published without marking
// them, at the tail of the stream, and nothing else.
func TestPublishedFindsTheUnmarkedTail(t *testing.T) {
	ctx := t.Context()
	_, pub, ds := devPublisher(t)
	entries := makeEntries(t, residents(t, ds), "development", 1, 200)
	check := func(pending []plinth.OutboxEntry, want []plinth.OutboxEntry) {
		t.Helper()
		got, err := pub.Published(ctx, pending)
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(got)
		if w := eventIDs(want); !slices.Equal(got, w) {
			t.Fatalf("found %d published (%v), want %d (%v)", len(got), got, len(w), w)
		}
	}
	check(entries[:10], nil) // no stream yet
	// Thirty published and marked, then ten published by a relay that
	// stopped before marking them.
	if err := pub.Publish(ctx, entries[:40]); err != nil {
		t.Fatal(err)
	}
	check(entries[30:90], entries[30:40])
	check(entries[35:90], entries[35:40])
	check(entries[40:90], nil)
	// Pending entries met again within 64 messages that are not pending
	// are found; further back, the search has stopped.
	check(entries[:5], entries[:5])
	if err := pub.Publish(ctx, entries[40:140]); err != nil {
		t.Fatal(err)
	}
	check(entries[:5], nil)
	check(entries[130:200], entries[130:140])
}
