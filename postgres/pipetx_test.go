package postgres

import (
	"context"
	"errors"
	"net"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/plinth-data/plinth"
)

// writeCountingConn counts the writes a connection makes: one per round
// trip for the small statements of a write transaction.
type writeCountingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c writeCountingConn) Write(p []byte) (int, error) {
	c.n.Add(1)
	return c.Conn.Write(p)
}

// TestWriteRoundTrips: a write like the API's create (the record, its
// event and its audit record) sends BEGIN with the insert and the event
// with the audit record, so it takes three round trips, not five; and
// what was sent ahead still commits with it.
func TestWriteRoundTrips(t *testing.T) {
	ds := loadDomains(t)
	e := entity(t, ds, "residents")
	s, dbURL := openStore(t, ds)
	ctx := context.Background()
	var writes atomic.Int64
	cfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 1
	dialer := &net.Dialer{}
	cfg.ConnConfig.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dialer.DialContext(ctx, network, addr)
		return writeCountingConn{c, &writes}, err
	}
	s.pool.Close()
	if s.pool, err = pgxpool.NewWithConfig(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	create := func(i int, eventID string) error {
		return createWithEventAndAudit(ctx, s, e, resident(t, e, i), eventID)
	}
	if err := create(1, "warm-up"); err != nil { // dials and prepares
		t.Fatal(err)
	}
	before := writes.Load()
	if err := create(2, "second"); err != nil {
		t.Fatal(err)
	}
	if n := writes.Load() - before; n != 3 {
		t.Errorf("a create with its event and audit record took %d round trips, want 3", n)
	}
	if n, err := s.Count(ctx, e); err != nil || n != 2 {
		t.Fatalf("Count = %d, %v; want 2", n, err)
	}
	es, err := s.PendingEvents(ctx, 10)
	if err != nil || len(es) != 2 || es[1].EventID != "second" {
		t.Fatalf("pending events %v, %v; want warm-up and second", es, err)
	}
	// An event sent ahead that fails (its ID is taken) fails the write,
	// which then leaves nothing behind.
	err = create(3, "second")
	if !errors.Is(err, plinth.ErrConflict) {
		t.Fatalf("a create whose event ID is taken: %v, want ErrConflict", err)
	}
	if n, err := s.Count(ctx, e); err != nil || n != 2 {
		t.Fatalf("Count after the failed create = %d, %v; want 2", n, err)
	}
	if n, err := s.CountUnchainedAudit(ctx); err != nil || n != 2 {
		t.Fatalf("audit records after the failed create: %d, %v; want 2", n, err)
	}
}

// createWithEventAndAudit writes what an API create writes: the record,
// its event and its audit record, in one transaction.
func createWithEventAndAudit(ctx context.Context, s *Store, e *plinth.Entity, doc map[string]any, eventID string) error {
	return s.Write(ctx, func(tx plinth.Tx) error {
		if _, err := tx.Insert(ctx, e, doc); err != nil {
			return err
		}
		if err := tx.(plinth.EventTx).AppendEvent(ctx, plinth.OutboxEntry{Domain: "residents", Subject: "s", EventID: eventID, Payload: []byte(`{"id":1}`)}); err != nil {
			return err
		}
		_, err := tx.(plinth.AuditTx).AppendAudit(ctx, plinth.AuditRecord{Operation: "create", Decision: plinth.DecisionAllow, Status: 201, RecordIDs: []string{eventID}})
		return err
	})
}
