package sqlite_test

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/sqlite"
)

// An outbox an older Plinth marked (sent_at in the events' rows) and marks
// made since (plinth_outbox_sent) count alike: neither kind of sent event
// is pending, both are purged, the unsent ones stay, in order, whichever
// of them are marked.
func TestOutboxMarkedBeforeAndSince(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "plinth.db")
	s := openAt(t, path)
	prepare(t, s, nil)
	for i := 1; i <= 6; i++ {
		if err := s.Write(ctx, func(tx plinth.Tx) error {
			return tx.(plinth.EventTx).AppendEvent(ctx, plinth.OutboxEntry{EventID: fmt.Sprintf("e%d", i), Payload: []byte("{}")})
		}); err != nil {
			t.Fatal(err)
		}
	}
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	_, err = db.Exec(`UPDATE "plinth_outbox" SET "sent_at" = '2020-01-01T00:00:00.000000Z' WHERE "event_id" IN ('e1', 'e3')`)
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	pending := func(want string) {
		t.Helper()
		es, err := s.PendingEvents(ctx, 10)
		if err != nil {
			t.Fatal(err)
		}
		got := ""
		for _, e := range es {
			got += e.EventID + " "
		}
		if got != want {
			t.Fatalf("pending: %q, want %q", got, want)
		}
	}
	pending("e2 e4 e5 e6 ")
	if err := s.MarkEventsSent(ctx, []string{"e5", "e1", "nope"}); err != nil {
		t.Fatal(err)
	}
	pending("e2 e4 e6 ")
	if err := s.MarkEventsSent(ctx, []string{"e2", "e5"}); err != nil {
		t.Fatal(err)
	}
	pending("e4 e6 ")
	if n, err := s.PurgeSentEvents(ctx, time.Hour); err != nil || n != 2 {
		t.Fatalf("purge of events sent over an hour ago: %d, %v; want the two marked in 2020", n, err)
	}
	time.Sleep(10 * time.Millisecond) // the clock moves past the marks, so age 0 purges them
	if n, err := s.PurgeSentEvents(ctx, 0); err != nil || n != 2 {
		t.Fatalf("purge of every sent event: %d, %v; want e2 and e5", n, err)
	}
	pending("e4 e6 ")
	if err := s.MarkEventsSent(ctx, []string{"e6"}); err != nil {
		t.Fatal(err)
	}
	pending("e4 ")
}

// A process started on an outbox whose events were all sent moves its
// floor past them at its first poll, instead of walking them at every
// poll while nothing new is written; an event written after is still
// found, and so is one written between two polls. Only a poll after one
// that found nothing reads the newest row (one query fewer under load).
func TestOutboxFloorAfterRestart(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "plinth.db")
	s := openAt(t, path)
	prepare(t, s, nil)
	appendEvent := func(s *sqlite.Store, id string) {
		t.Helper()
		if err := s.Write(ctx, func(tx plinth.Tx) error {
			return tx.(plinth.EventTx).AppendEvent(ctx, plinth.OutboxEntry{EventID: id, Payload: []byte("{}")})
		}); err != nil {
			t.Fatal(err)
		}
	}
	sendAll := func(s *sqlite.Store, want string) {
		t.Helper()
		es, err := s.PendingEvents(ctx, 100)
		if err != nil {
			t.Fatal(err)
		}
		got, ids := "", []string{}
		for _, e := range es {
			got += e.EventID + " "
			ids = append(ids, e.EventID)
		}
		if got != want {
			t.Fatalf("pending: %q, want %q", got, want)
		}
		if err := s.MarkEventsSent(ctx, ids); err != nil {
			t.Fatal(err)
		}
	}
	want := ""
	for i := 1; i <= 20; i++ {
		appendEvent(s, fmt.Sprintf("e%d", i))
		want += fmt.Sprintf("e%d ", i)
	}
	sendAll(s, want)
	s.Close()

	s = openAt(t, path)
	if f := sqlite.OutboxFloor(s); f != 0 {
		t.Fatalf("a new process starts with floor %d", f)
	}
	sendAll(s, "")
	if f := sqlite.OutboxFloor(s); f != 21 {
		t.Fatalf("after a poll that found nothing the floor is %d, want 21: past the 20 sent events", f)
	}
	sendAll(s, "")
	appendEvent(s, "late")
	sendAll(s, "late ")
	appendEvent(s, "later")
	appendEvent(s, "latest")
	sendAll(s, "later latest ")
	// The poll after one that found events does not look for the newest
	// row; the one after that does.
	sendAll(s, "")
	sendAll(s, "")
	if f := sqlite.OutboxFloor(s); f != 24 {
		t.Fatalf("floor %d, want 24", f)
	}
}
