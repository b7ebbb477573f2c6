package postgres

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/plinth-data/plinth"
)

// appendEventOpen appends an event in a transaction left open: its number
// is drawn now, its row commits when the caller says.
func appendEventOpen(t *testing.T, s *Store, id string) pgx.Tx {
	t.Helper()
	ctx := context.Background()
	x, err := s.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = x.Rollback(context.Background()) })
	if _, err := x.Exec(ctx, announceSQL, outboxLockBase); err != nil {
		t.Fatal(err)
	}
	if _, err := x.Exec(ctx, insertEventSQL, "d", "s", id, []byte("{}"), ""); err != nil {
		t.Fatal(err)
	}
	return x
}

func appendEvents(t *testing.T, s *Store, ids ...string) {
	t.Helper()
	err := s.Write(context.Background(), func(tx plinth.Tx) error {
		for _, id := range ids {
			if err := tx.(plinth.EventTx).AppendEvent(context.Background(), plinth.OutboxEntry{Domain: "d", Subject: "s", EventID: id, Payload: []byte("{}")}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func pendingIDs(t *testing.T, s *Store) []string {
	t.Helper()
	es, err := s.PendingEvents(context.Background(), 10)
	if err != nil {
		t.Fatal(err)
	}
	ids := []string{}
	for _, e := range es {
		ids = append(ids, e.EventID)
	}
	return ids
}

// PendingEvents reads from a floor, and the floor never passes an event a
// running transaction may still commit: the late event, numbered before
// one already committed, is read once it commits.
func TestPendingEventsFloorSkipsNothing(t *testing.T) {
	ctx := context.Background()
	s, _ := openStore(t, nil)
	if err := s.Prepare(ctx, nil); err != nil {
		t.Fatal(err)
	}
	appendEvents(t, s, "a", "b")
	for range 2 { // not yet marked sent (a relay that failed to publish): read again
		if ids := pendingIDs(t, s); !slices.Equal(ids, []string{"a", "b"}) {
			t.Fatalf("pending: %v, want [a b]", ids)
		}
	}
	if err := s.MarkEventsSent(ctx, []string{"a", "b"}); err != nil {
		t.Fatal(err)
	}
	late := appendEventOpen(t, s, "late") // a lower number, committed last
	appendEvents(t, s, "c")
	for range 2 { // the floor moves up to the open transaction's event, not past it
		if ids := pendingIDs(t, s); len(ids) != 0 {
			t.Fatalf("with the late event's transaction open: %v, want none", ids)
		}
	}
	if s.outboxFloor.Load() == 0 {
		t.Error("the floor did not move past the sent events")
	}
	if err := late.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if ids := pendingIDs(t, s); !slices.Equal(ids, []string{"late", "c"}) {
		t.Fatalf("pending after the commit: %v, want [late c]", ids)
	}
}

// The floor is forgotten after outboxFloorLife, so an unsent row put back
// below it (a database restored under a running process) is read again.
func TestPendingEventsFloorIsForgotten(t *testing.T) {
	ctx := context.Background()
	s, _ := openStore(t, nil)
	if err := s.Prepare(ctx, nil); err != nil {
		t.Fatal(err)
	}
	appendEvents(t, s, "a", "b", "c")
	if err := s.MarkEventsSent(ctx, []string{"a", "b", "c"}); err != nil {
		t.Fatal(err)
	}
	if ids := pendingIDs(t, s); len(ids) != 0 {
		t.Fatalf("pending: %v", ids)
	}
	if _, err := s.pool.Exec(ctx, `UPDATE "plinth"."outbox" SET "sent_at" = NULL WHERE "event_id" = 'a'`); err != nil {
		t.Fatal(err)
	}
	if ids := pendingIDs(t, s); len(ids) != 0 {
		t.Fatalf("the row below the floor was read before the floor was forgotten: %v", ids)
	}
	s.outboxFloorSince.Store(time.Now().Add(-outboxFloorLife - time.Second).UnixNano())
	if ids := pendingIDs(t, s); !slices.Equal(ids, []string{"a"}) {
		t.Fatalf("pending once the floor was forgotten: %v, want [a]", ids)
	}
}
