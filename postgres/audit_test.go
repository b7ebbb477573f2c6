package postgres

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/audit"
	"github.com/plinth-data/plinth/plinthtest"
	"github.com/plinth-data/plinth/plinthtest/pgtest"
	"github.com/plinth-data/plinth/storetest"
)

func TestPlanCreatesAuditAndOutboxTables(t *testing.T) {
	ctx := context.Background()
	s, _ := openStore(t, nil)
	p, err := s.Plan(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	out := p.String()
	for _, want := range []string{
		`CREATE TABLE IF NOT EXISTS "plinth"."audit"`,
		`"principal" jsonb NOT NULL`,
		`"record_ids" text[] NOT NULL`,
		`USING gin ("record_ids")`,
		`(("principal"->>'subject'), "sequence")`,
		`("domain", "time")`,
		`REVOKE UPDATE, DELETE`,
		`CREATE TABLE IF NOT EXISTS "plinth"."audit_head"`,
		`CREATE TABLE IF NOT EXISTS "plinth"."audit_log"`,
		`CREATE TABLE IF NOT EXISTS "plinth"."outbox"`,
		`"txid" xid8 NOT NULL DEFAULT pg_current_xact_id()`,
		`"payload" bytea NOT NULL`,
		`WHERE "sent_at" IS NULL`,
		`CREATE TABLE IF NOT EXISTS "plinth"."relay_lease"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the plan lacks %s:\n%s", want, out)
		}
	}
	if err := s.Prepare(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if p, err := s.Plan(ctx, nil); err != nil || !p.Empty() {
		t.Fatalf("plan after preparing: %v\n%s", err, p)
	}
}

// Writers append audit records without waiting for each other.
func TestAuditConcurrentWriters(t *testing.T) {
	storetest.RunAuditConcurrentWriters(t, func(t *testing.T) plinth.Store {
		s, _ := openStore(t, nil)
		if err := s.Prepare(context.Background(), storetest.Domains(t)); err != nil {
			t.Fatal(err)
		}
		return s
	})
}

// The head row, if lost and recreated by Prepare, continues the chain
// from the newest record.
func TestAuditHeadRecreatedFromTrail(t *testing.T) {
	ctx := context.Background()
	s, _ := openStore(t, nil)
	if err := s.Prepare(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AppendAudit(ctx, []plinth.AuditRecord{{Operation: "view"}, {Operation: "list"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := audit.ChainPending(ctx, s); err != nil {
		t.Fatal(err)
	}
	_, hash2, err := s.AuditHead(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.pool.Exec(ctx, `DELETE FROM plinth.audit_head`); err != nil {
		t.Fatal(err)
	}
	// Appending does not need the head; chaining does.
	if _, err = s.AppendAudit(ctx, []plinth.AuditRecord{{Operation: "view"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := audit.ChainPending(ctx, s); err == nil || !strings.Contains(err.Error(), "audit_head") {
		t.Errorf("chaining without a head: %v; want an error naming plinth.audit_head", err)
	}
	if _, err := s.pool.Exec(ctx, `DROP TABLE plinth.audit_head`); err != nil {
		t.Fatal(err)
	}
	if err := s.Prepare(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := audit.ChainPending(ctx, s); err != nil {
		t.Fatal(err)
	}
	var seq int64
	var prev string
	if err := s.pool.QueryRow(ctx, `SELECT sequence, prev_hash FROM plinth.audit ORDER BY sequence DESC LIMIT 1`).Scan(&seq, &prev); err != nil {
		t.Fatal(err)
	}
	if seq != 3 || prev != hash2 {
		t.Errorf("after recreating the head: sequence %d, prevHash %q; want 3, %q", seq, prev, hash2)
	}
}

// A deleted tail is not silently papered over: the next record keeps the
// head's numbering, so the verifier sees a gap.
func TestAuditDeletedTailLeavesGap(t *testing.T) {
	ctx := context.Background()
	s, _ := openStore(t, nil)
	if err := s.Prepare(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AppendAudit(ctx, make([]plinth.AuditRecord, 3)); err != nil {
		t.Fatal(err)
	}
	if _, err := audit.ChainPending(ctx, s); err != nil {
		t.Fatal(err)
	}
	if _, err := s.pool.Exec(ctx, `DELETE FROM plinth.audit WHERE sequence = 3`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AppendAudit(ctx, make([]plinth.AuditRecord, 1)); err != nil {
		t.Fatal(err)
	}
	if _, err := audit.ChainPending(ctx, s); err != nil {
		t.Fatal(err)
	}
	if seq, _, err := s.AuditHead(ctx); err != nil || seq != 4 {
		t.Errorf("sequence %d after deleting the tail, %v; want 4 (a visible gap)", seq, err)
	}
}

func TestAuditAndOutboxNotPrepared(t *testing.T) {
	ctx := context.Background()
	s, _ := openStore(t, nil)
	calls := map[string]func() error{
		"AppendAudit": func() error { _, err := s.AppendAudit(ctx, make([]plinth.AuditRecord, 1)); return err },
		"AuditRecords": func() error {
			_, _, err := s.AuditRecords(ctx, plinth.AuditQuery{})
			return err
		},
		"ScanAudit":     func() error { return s.ScanAudit(ctx, 0, func(plinth.AuditRecord) error { return nil }) },
		"PendingEvents": func() error { _, err := s.PendingEvents(ctx, 10); return err },
		"AcquireRelayLease": func() error {
			_, err := s.AcquireRelayLease(ctx, "r", time.Second)
			return err
		},
		"UnchainedAudit":      func() error { _, err := s.UnchainedAudit(ctx, 10); return err },
		"CountUnchainedAudit": func() error { _, err := s.CountUnchainedAudit(ctx); return err },
		"AuditHead":           func() error { _, _, err := s.AuditHead(ctx); return err },
		"AcquireChainLease": func() error {
			_, err := s.AcquireChainLease(ctx, "c", time.Second)
			return err
		},
	}
	for name, call := range calls {
		if err := call(); err == nil || !strings.Contains(err.Error(), "prepare the store") {
			t.Errorf("%s before Prepare: %v; want an error saying to prepare", name, err)
		}
	}
}

func TestAuditAndOutboxUnavailableDuringOutage(t *testing.T) {
	dbURL := pgtest.Database(t)
	u, _ := url.Parse(dbURL)
	p := newProxy(t, u.Host)
	u.Host = p.addr
	ctx := context.Background()
	s, err := Open(ctx, u.String())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Prepare(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AppendAudit(ctx, make([]plinth.AuditRecord, 1)); err != nil {
		t.Fatal(err)
	}
	p.stop()
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	calls := map[string]func() error{
		"AppendAudit": func() error { _, err := s.AppendAudit(cctx, make([]plinth.AuditRecord, 1)); return err },
		"AuditRecords": func() error {
			_, _, err := s.AuditRecords(cctx, plinth.AuditQuery{})
			return err
		},
		"ScanAudit":      func() error { return s.ScanAudit(cctx, 0, func(plinth.AuditRecord) error { return nil }) },
		"PendingEvents":  func() error { _, err := s.PendingEvents(cctx, 10); return err },
		"MarkEventsSent": func() error { return s.MarkEventsSent(cctx, []string{"e1"}) },
		"AcquireRelayLease": func() error {
			_, err := s.AcquireRelayLease(cctx, "r", time.Second)
			return err
		},
		"UnchainedAudit":      func() error { _, err := s.UnchainedAudit(cctx, 10); return err },
		"CountUnchainedAudit": func() error { _, err := s.CountUnchainedAudit(cctx); return err },
		"AuditHead":           func() error { _, _, err := s.AuditHead(cctx); return err },
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, plinth.ErrUnavailable) {
			t.Errorf("%s during outage: %v, want ErrUnavailable", name, err)
		}
	}
}

// The outbox's ordering does not depend on the isolation level writers and
// the relay run at.
func TestOutboxContractRepeatableRead(t *testing.T) {
	storetest.RunOutbox(t, func(t *testing.T) plinth.Store {
		dbURL := pgtest.Database(t)
		u, _ := url.Parse(dbURL)
		ctx := context.Background()
		admin, err := Open(ctx, dbURL)
		if err != nil {
			t.Fatal(err)
		}
		_, err = admin.pool.Exec(ctx, `ALTER DATABASE `+quote(strings.TrimPrefix(u.Path, "/"))+` SET default_transaction_isolation = 'repeatable read'`)
		admin.Close()
		if err != nil {
			t.Fatal(err)
		}
		s, err := Open(ctx, dbURL)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		var level string
		if err := s.pool.QueryRow(ctx, "SHOW transaction_isolation").Scan(&level); err != nil || level != "repeatable read" {
			t.Fatalf("isolation %q, %v", level, err)
		}
		if err := s.Prepare(ctx, storetest.Domains(t)); err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func TestPurgeSentEvents(t *testing.T) {
	ctx := context.Background()
	s, _ := openStore(t, nil)
	if err := s.Prepare(ctx, nil); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"e1", "e2", "e3"} {
		if err := s.Write(ctx, func(tx plinth.Tx) error {
			return tx.(plinth.EventTx).AppendEvent(ctx, plinth.OutboxEntry{EventID: id, Payload: []byte("{}")})
		}); err != nil {
			t.Fatal(err)
		}
	}
	es, err := s.PendingEvents(ctx, 10)
	if err != nil || len(es) != 3 {
		t.Fatalf("pending: %v, %v", es, err)
	}
	if err := s.MarkEventsSent(ctx, []string{es[0].EventID, es[1].EventID}); err != nil {
		t.Fatal(err)
	}
	if n, err := s.PurgeSentEvents(ctx, time.Hour); err != nil || n != 0 {
		t.Errorf("purge of events sent over an hour ago: %d, %v; want 0", n, err)
	}
	time.Sleep(10 * time.Millisecond) // not a wait: the clock moves past sent_at, so age 0 purges them
	if n, err := s.PurgeSentEvents(ctx, 0); err != nil || n != 2 {
		t.Errorf("purge of every sent event: %d, %v; want 2", n, err)
	}
	if es, err := s.PendingEvents(ctx, 10); err != nil || len(es) != 1 || es[0].EventID != "e3" {
		t.Errorf("pending after the purge: %v, %v", es, err)
	}
}

// appendOpen appends rec inside a transaction it leaves open, as a write
// transaction does (announce, then insert), and returns the transaction.
func appendOpen(t *testing.T, s *Store, rec plinth.AuditRecord) pgx.Tx {
	t.Helper()
	ctx := context.Background()
	x, err := s.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = x.Rollback(context.Background()) })
	args, err := auditArgs([]plinth.AuditRecord{unchained(rec)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := x.Exec(ctx, announceAudit, auditLockBase); err != nil {
		t.Fatal(err)
	}
	if _, err := x.Exec(ctx, insertAuditLogSQL, args...); err != nil {
		t.Fatal(err)
	}
	return x
}

func correlationIDs(recs []plinth.AuditRecord) []string {
	var ids []string
	for _, r := range recs {
		ids = append(ids, r.CorrelationID)
	}
	return ids
}

// UnchainedAudit reads from a floor it keeps, and the floor never passes
// a record that commits later with a lower log id: a transaction that
// appended early and commits late still has its record read, first.
func TestUnchainedAuditFloorSkipsNothing(t *testing.T) {
	ctx := context.Background()
	s, _ := openStore(t, nil)
	if err := s.Prepare(ctx, nil); err != nil {
		t.Fatal(err)
	}
	rec := func(id string) plinth.AuditRecord {
		return plinth.AuditRecord{CorrelationID: id, Operation: "view", Decision: plinth.DecisionAllow, Status: 200}
	}
	if _, err := s.AppendAudit(ctx, []plinth.AuditRecord{rec("a"), rec("b")}); err != nil {
		t.Fatal(err)
	}
	if n, err := audit.ChainPending(ctx, s); err != nil || n != 2 {
		t.Fatalf("chained %d, %v; want 2", n, err)
	}
	late := appendOpen(t, s, rec("late")) // a lower log id, committed last
	if _, err := s.AppendAudit(ctx, []plinth.AuditRecord{rec("c")}); err != nil {
		t.Fatal(err)
	}
	for range 2 { // the floor moves up to the open transaction's record, not past it
		got, err := s.UnchainedAudit(ctx, 10)
		if err != nil || len(got) != 0 {
			t.Fatalf("with the late record's transaction open: %v, %v; want none", correlationIDs(got), err)
		}
	}
	if err := late.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	got, err := s.UnchainedAudit(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	if ids := correlationIDs(got); !slices.Equal(ids, []string{"late", "c"}) {
		t.Fatalf("unchained after the commit: %v, want [late c]", ids)
	}
	if n, err := audit.ChainPending(ctx, s); err != nil || n != 2 {
		t.Fatalf("chained %d, %v; want 2", n, err)
	}
	if rep, err := audit.Verify(ctx, s, nil); err != nil || rep.Broken != nil || rep.Records != 4 {
		t.Fatalf("verify: %+v, %v", rep, err)
	}
}

// Reading the head forgets the floor, so a log row below it (a database
// restored under a running process) is read again.
func TestAuditHeadResetsUnchainedFloor(t *testing.T) {
	ctx := context.Background()
	s, _ := openStore(t, nil)
	if err := s.Prepare(ctx, nil); err != nil {
		t.Fatal(err)
	}
	r := plinth.AuditRecord{CorrelationID: "a", Operation: "view", Decision: plinth.DecisionAllow, Status: 200}
	stored, err := s.AppendAudit(ctx, []plinth.AuditRecord{r, r, r})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := audit.ChainPending(ctx, s); err != nil || n != 3 {
		t.Fatalf("chained %d, %v; want 3", n, err)
	}
	if got, err := s.UnchainedAudit(ctx, 10); err != nil || len(got) != 0 {
		t.Fatalf("unchained: %v, %v", got, err)
	}
	// A restored row, below the floor.
	if _, err := s.pool.Exec(ctx, `INSERT INTO "plinth"."audit_log" ("log_id", `+recordCols+`)
SELECT $1, now(), 'restored', '', '', '', 'view', '', '', NULL, '{}', 'allow', '', 200, '{}', 0, 0, '', ''`, stored[0].LogID); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.AuditHead(ctx); err != nil {
		t.Fatal(err)
	}
	got, err := s.UnchainedAudit(ctx, 10)
	if err != nil || len(got) != 1 || got[0].CorrelationID != "restored" {
		t.Fatalf("after reading the head: %v, %v; want the restored row", correlationIDs(got), err)
	}
}

// A chainer handed the records its process appended chains them from
// memory (storetest.RunChainerHoldsRecords).
func TestChainerChainsHeldRecords(t *testing.T) {
	storetest.RunChainerHoldsRecords(t, func(t *testing.T) plinth.Store {
		s, _ := openStore(t, storetest.Domains(t))
		return s
	})
}

// Two chainers handed the same records, the first stopping half-way: the
// second chains the rest, from memory or from the store, and the chain
// holds every record once, in log order.
func TestTwoChainersHoldingRecords(t *testing.T) {
	ctx := context.Background()
	s, _ := openStore(t, storetest.Domains(t))
	cfg := func(name string) audit.ChainerConfig {
		return audit.ChainerConfig{Holder: name, LeaseTTL: time.Second, Poll: 20 * time.Millisecond, Linger: time.Millisecond}
	}
	first, second := audit.NewChainer(s, cfg("first")), audit.NewChainer(s, cfg("second"))
	ctx1, stop1 := context.WithCancel(ctx)
	ctx2, stop2 := context.WithCancel(ctx)
	done1, done2 := make(chan struct{}), make(chan struct{})
	go func() { defer close(done1); _ = first.Run(ctx1) }()
	plinthtest.Eventually(t, 0, func() bool { return first.Status().Active }, "the first chainer is active")
	go func() { defer close(done2); _ = second.Run(ctx2) }()
	defer func() { stop1(); stop2(); <-done1; <-done2 }()
	a := audit.New(s, audit.Config{FailClosed: true, Chain: func(recs []plinth.AuditRecord) {
		first.Hold(recs)
		second.Hold(recs)
	}})
	defer a.Close()
	const n = 400
	var wg sync.WaitGroup
	for i := range n {
		if i == n/2 {
			stop1() // gives up the lease; the second takes over
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := storetest.OddAudits()[i%4]
			r.CorrelationID = fmt.Sprint(i)
			if _, err := a.Record(ctx, r); err != nil {
				t.Error(err)
			}
		}()
		if i%8 == 0 {
			wg.Wait()
		}
	}
	wg.Wait()
	plinthtest.Eventually(t, 0, func() bool {
		u, err := s.CountUnchainedAudit(ctx)
		return err == nil && u == 0
	}, "every record chained")
	rep, err := audit.Verify(ctx, s, nil)
	if err != nil || rep.Broken != nil || rep.Records != n {
		t.Fatalf("verify: %+v %v, %v", rep, rep.Broken, err)
	}
	// A batch shows in the store a moment before its chainer counts it.
	plinthtest.Eventually(t, 0, func() bool { return first.Status().Chained > 0 && second.Status().Chained > 0 },
		"chained by one chainer only; want both")
}
