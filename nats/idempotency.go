package nats

import (
	"context"
	"sync"
)

// Idempotency remembers which events a listener has handled, by event ID.
// Consume asks Seen before calling a handler and calls Mark after the
// handler succeeded.
//
// NewMemorySeen keeps the most recent IDs in memory, which catches the
// duplicates that matter in practice (a redelivery after a lost
// acknowledgement comes seconds later) but forgets on restart. Durable
// implementations are the listener's choice: the strongest keeps the IDs
// in the listener's own database and marks them in the same transaction as
// the handler's changes, so a crash can never leave one without the other.
type Idempotency interface {
	Seen(ctx context.Context, id string) (bool, error)
	Mark(ctx context.Context, id string) error
}

// MemorySeen is an in-memory Idempotency that remembers the last n IDs
// marked. It is safe for concurrent use.
type MemorySeen struct {
	mu   sync.Mutex
	ids  map[string]struct{}
	ring []string
	next int
}

// NewMemorySeen returns a MemorySeen remembering up to n IDs (at least 1).
func NewMemorySeen(n int) *MemorySeen {
	n = max(n, 1)
	return &MemorySeen{ids: make(map[string]struct{}, n), ring: make([]string, n)}
}

// Seen reports whether id is among the remembered IDs.
func (m *MemorySeen) Seen(_ context.Context, id string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.ids[id]
	return ok, nil
}

// Mark remembers id, forgetting the oldest ID when full.
func (m *MemorySeen) Mark(_ context.Context, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.ids[id]; ok {
		return nil
	}
	if old := m.ring[m.next]; old != "" {
		delete(m.ids, old)
	}
	m.ring[m.next] = id
	m.ids[id] = struct{}{}
	m.next = (m.next + 1) % len(m.ring)
	return nil
}
