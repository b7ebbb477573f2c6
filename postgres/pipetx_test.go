package postgres

import (
	"context"
	"errors"
	"net"
	"strings"
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
// event and its audit record) sends BEGIN with the insert, and the event
// and the audit record with COMMIT, so it takes two round trips, not five;
// what was sent ahead commits with it, and the audit record's log id is
// known once the write returns.
func TestWriteRoundTrips(t *testing.T) {
	ds := loadDomains(t)
	e := entity(t, ds, "residents")
	s, writes := countingStore(t, ds)
	ctx := context.Background()
	create := func(i int, eventID string) (plinth.AuditRecord, error) {
		return createWithEventAndAudit(ctx, s, e, resident(t, e, i), eventID)
	}
	if _, err := create(1, "warm-up"); err != nil { // dials and prepares
		t.Fatal(err)
	}
	before := writes.Load()
	rec, err := create(2, "second")
	if err != nil {
		t.Fatal(err)
	}
	if n := writes.Load() - before; n != 2 {
		t.Errorf("a create with its event and audit record took %d round trips, want 2", n)
	}
	if n, err := s.Count(ctx, e); err != nil || n != 2 {
		t.Fatalf("Count = %d, %v; want 2", n, err)
	}
	es, err := s.PendingEvents(ctx, 10)
	if err != nil || len(es) != 2 || es[1].EventID != "second" {
		t.Fatalf("pending events %v, %v; want warm-up and second", es, err)
	}
	log, err := s.UnchainedAudit(ctx, 10)
	if err != nil || len(log) != 2 || log[1].LogID != rec.LogID || rec.LogID == "" || log[1].RecordIDs[0] != "second" {
		t.Fatalf("audit log %+v, %v; want its second record to be %+v", log, err, rec)
	}
	// An event sent ahead that fails (its ID is taken) fails the write,
	// which then leaves nothing behind.
	_, err = create(3, "second")
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

// TestAFailedAuditInsertAtCommitCommitsNothing: when the audit record sent
// with COMMIT cannot be inserted, COMMIT does not run: the write fails and
// leaves neither the record nor its event, and the connection, rolled
// back, serves the next write (the pool has one).
func TestAFailedAuditInsertAtCommitCommitsNothing(t *testing.T) {
	ds := loadDomains(t)
	e := entity(t, ds, "residents")
	s, _ := countingStore(t, ds)
	ctx := context.Background()
	if _, err := s.pool.Exec(ctx, `ALTER TABLE "plinth"."audit_log" ADD CONSTRAINT "no_boom" CHECK ("operation" <> 'boom')`); err != nil {
		t.Fatal(err)
	}
	var stored plinth.AuditRecord
	err := s.Write(ctx, func(tx plinth.Tx) error {
		if _, err := tx.Insert(ctx, e, resident(t, e, 1)); err != nil {
			return err
		}
		if err := tx.(plinth.EventTx).AppendEvent(ctx, plinth.OutboxEntry{Domain: "residents", Subject: "s", EventID: "boom", Payload: []byte(`{}`)}); err != nil {
			return err
		}
		return tx.(plinth.AuditAtCommitTx).AppendAuditAtCommit(ctx, plinth.AuditRecord{Operation: "boom", Decision: plinth.DecisionAllow}, &stored)
	})
	if err == nil || !strings.Contains(err.Error(), "no_boom") {
		t.Fatalf("a write whose audit record breaks a constraint: %v, want the violation", err)
	}
	if n, err := s.Count(ctx, e); err != nil || n != 0 {
		t.Fatalf("Count after the failed write = %d, %v; want 0", n, err)
	}
	if es, err := s.PendingEvents(ctx, 10); err != nil || len(es) != 0 {
		t.Fatalf("pending events after the failed write: %v, %v; want none", es, err)
	}
	if n, err := s.CountUnchainedAudit(ctx); err != nil || n != 0 {
		t.Fatalf("audit records after the failed write: %d, %v; want 0", n, err)
	}
	if stored.Stored() {
		t.Errorf("the failed audit record was reported stored: %+v", stored)
	}
	if _, err := createWithEventAndAudit(ctx, s, e, resident(t, e, 2), "after"); err != nil {
		t.Fatalf("the write after: %v", err)
	}
	if st := s.pool.Stat(); st.TotalConns() != 1 || st.NewConnsCount() != 1 {
		t.Errorf("%d connections, %d opened; want the one, kept", st.TotalConns(), st.NewConnsCount())
	}
}

// countingStore is a store whose pool has one connection, counting the
// writes it makes to the server: one per round trip for the small
// statements of a write transaction.
func countingStore(t *testing.T, ds []*plinth.Domain) (*Store, *atomic.Int64) {
	s, dbURL := openStore(t, ds)
	writes := new(atomic.Int64)
	cfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 1
	dialer := &net.Dialer{}
	cfg.ConnConfig.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dialer.DialContext(ctx, network, addr)
		return writeCountingConn{c, writes}, err
	}
	s.pool.Close()
	if s.pool, err = pgxpool.NewWithConfig(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	return s, writes
}

// createWithEventAndAudit writes what an API create writes through the
// Writer: the record, its event and its audit record (sent with the
// commit), in one transaction, and returns the audit record as stored.
func createWithEventAndAudit(ctx context.Context, s *Store, e *plinth.Entity, doc map[string]any, eventID string) (plinth.AuditRecord, error) {
	var stored plinth.AuditRecord
	err := s.Write(ctx, func(tx plinth.Tx) error {
		if _, err := tx.Insert(ctx, e, doc); err != nil {
			return err
		}
		if err := tx.(plinth.EventTx).AppendEvent(ctx, plinth.OutboxEntry{Domain: "residents", Subject: "s", EventID: eventID, Payload: []byte(`{"id":1}`)}); err != nil {
			return err
		}
		return tx.(plinth.AuditAtCommitTx).AppendAuditAtCommit(ctx, plinth.AuditRecord{Operation: "create", Decision: plinth.DecisionAllow, Status: 201, RecordIDs: []string{eventID}}, &stored)
	})
	return stored, err
}
