package sqlite

import (
	"context"
	"sync/atomic"
	"testing"

	"modernc.org/sqlite"
)

// CountCommits counts the transactions SQLite commits on s's writer
// connection from now on (SQLite's own commit hook, so it sees every
// COMMIT however the store issued it).
func CountCommits(t testing.TB, s *Store) *atomic.Int64 {
	t.Helper()
	n := new(atomic.Int64)
	c, err := s.write.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	err = c.Raw(func(dc any) error {
		dc.(sqlite.HookRegisterer).RegisterCommitHook(func() int32 { n.Add(1); return 0 })
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// Waiting is how many Writes wait for the writer's turn.
func Waiting(s *Store) int {
	s.turns.mu.Lock()
	defer s.turns.mu.Unlock()
	return len(s.turns.queue)
}

// OutboxFloor is the sequence PendingEvents reads from.
func OutboxFloor(s *Store) int64 { return s.outboxFloor.Load() }
