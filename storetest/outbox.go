package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/plinthtest"
)

// RunOutbox runs the contract suite of plinth.OutboxStore. open must
// return a fresh, empty store, prepared with Domains(t), that also
// implements plinth.OutboxStore and whose Tx implements plinth.EventTx; and
// arrange for it to be closed when the test ends.
//
// What the suite holds a store to, beyond the OutboxStore documentation:
//
//   - Events appended in a Write whose fn fails never appear.
//   - Payloads come back byte for byte (any bytes, not only JSON).
//   - PendingEvents returns entries in increasing sequence order, at most
//     limit of them (plinth.DefaultLimit when limit <= 0), and never an
//     entry while a transaction that appended a lower-numbered one is
//     still open: neither when that transaction appended first, nor when
//     it started its work (and so, on PostgreSQL, got its transaction id)
//     after the transaction of the higher-numbered entry.
//   - A relay that repeatedly takes PendingEvents and marks them sent,
//     while writers commit and roll back concurrently, sees every
//     committed event exactly once, in increasing sequence order.
//   - A second AppendEvent with an event ID already in the outbox fails
//     with plinth.ErrConflict.
//   - MarkEventsSent ignores unknown and already-sent sequences.
//   - Of relays asking for the lease at once, exactly one gets it; the
//     holder renews it; another takes it over once it has expired.
//   - A store that is a plinth.PendingAfterReader returns only the
//     entries past the sequence it is given, and a read past unsent
//     entries does not hide them from PendingEvents.
func RunOutbox(t *testing.T, open func(t *testing.T) plinth.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s plinth.Store, o plinth.OutboxStore)
	}{
		{"RoundTripAndOrder", testOutboxRoundTrip},
		{"RolledBackEventsNeverAppear", testOutboxRollback},
		{"DuplicateEventID", testOutboxDuplicate},
		{"MarkSent", testOutboxMarkSent},
		{"PendingAfter", testOutboxPendingAfter},
		{"Lease", testOutboxLease},
		{"LowerSequenceStillOpen", testOutboxSequenceGap},
		{"EarlierTransactionLaterSequence", testOutboxEarlyTransaction},
		{"ConcurrentWritersAndRelay", testOutboxConcurrent},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t)
			o, ok := s.(plinth.OutboxStore)
			if !ok {
				t.Fatalf("%T does not implement plinth.OutboxStore", s)
			}
			tc.fn(t, s, o)
		})
	}
}

// outboxEntry returns a test entry.
func outboxEntry(id string) plinth.OutboxEntry {
	return plinth.OutboxEntry{
		Domain:  "store-test",
		Subject: "plinth.test.store-test.people.created",
		EventID: id,
		Payload: fmt.Appendf(nil, `{"id":%q,"eventType":"PersonCreatedEvent","state":{"name":"Zoë ☂"}}`, id),
	}
}

// appendEvent runs AppendEvent in the transaction.
func appendEvent(ctx context.Context, tx plinth.Tx, e plinth.OutboxEntry) error {
	etx, ok := tx.(plinth.EventTx)
	if !ok {
		return fmt.Errorf("the Tx %T does not implement plinth.EventTx", tx)
	}
	return etx.AppendEvent(ctx, e)
}

// appendEventAndSend appends e and then reads inside the transaction: a
// store may send an appended event to its database with the
// transaction's next statement (the postgres store does), and the tests of
// what others see while the transaction stays open need it sent.
func appendEventAndSend(ctx context.Context, tx plinth.Tx, e plinth.OutboxEntry, cats *plinth.Entity) error {
	if err := appendEvent(ctx, tx, e); err != nil {
		return err
	}
	if _, err := tx.Get(ctx, cats, "no-such-code"); err != nil && !errors.Is(err, plinth.ErrNotFound) {
		return err
	}
	return nil
}

// appendEvents appends entries in one Write.
func appendEvents(t testing.TB, s plinth.Store, es ...plinth.OutboxEntry) {
	t.Helper()
	err := s.Write(context.Background(), func(tx plinth.Tx) error {
		for _, e := range es {
			if err := appendEvent(context.Background(), tx, e); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Write with AppendEvent: %v", err)
	}
}

func pending(t testing.TB, o plinth.OutboxStore, limit int) []plinth.OutboxEntry {
	t.Helper()
	es, err := o.PendingEvents(context.Background(), limit)
	if err != nil {
		t.Fatalf("PendingEvents: %v", err)
	}
	for i := 1; i < len(es); i++ {
		if es[i].Sequence <= es[i-1].Sequence {
			t.Fatalf("PendingEvents out of order: sequence %d after %d", es[i].Sequence, es[i-1].Sequence)
		}
	}
	return es
}

// waitPending polls PendingEvents (a store may hold entries back while
// other transactions on the server run) until it returns want event IDs,
// in that order.
func waitPending(t testing.TB, o plinth.OutboxStore, want ...string) []plinth.OutboxEntry {
	t.Helper()
	var es []plinth.OutboxEntry
	var got []string
	plinthtest.Eventually(t, 30*time.Second, func() bool {
		es = pending(t, o, 100)
		got = eventIDs(es)
		return slices.Equal(got, want)
	}, "PendingEvents returns %q; want %q", plinthtest.Last(&got), want)
	return es
}

func eventIDs(es []plinth.OutboxEntry) []string {
	ids := []string{}
	for _, e := range es {
		ids = append(ids, e.EventID)
	}
	return ids
}

func sameEntry(t testing.TB, got, want plinth.OutboxEntry) {
	t.Helper()
	if got.Domain != want.Domain || got.Subject != want.Subject || got.EventID != want.EventID || !bytes.Equal(got.Payload, want.Payload) ||
		got.Trace != want.Trace {
		t.Errorf("entry %d:\n got %q %q %q %q trace %q\nwant %q %q %q %q trace %q", got.Sequence, got.Domain, got.Subject, got.EventID, got.Payload,
			got.Trace, want.Domain, want.Subject, want.EventID, want.Payload, want.Trace)
	}
}

func testOutboxRoundTrip(t *testing.T, s plinth.Store, o plinth.OutboxStore) {
	if es := pending(t, o, 10); len(es) != 0 {
		t.Fatalf("a fresh store has %d pending events", len(es))
	}
	odd := outboxEntry("binary")
	odd.Payload = []byte{0, 1, 2, 0xff, 0xfe, '\n', '{', 0}
	empty := outboxEntry("empty")
	empty.Payload = []byte{}
	traced := outboxEntry("e1") // the traceparent of the request comes back
	traced.Trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	var want []plinth.OutboxEntry
	want = append(want, outboxEntry("e0"), traced, odd)
	appendEvents(t, s, want...)
	want = append(want, empty)
	appendEvents(t, s, empty)
	for i := range 25 {
		e := outboxEntry(fmt.Sprintf("n%02d", i))
		e.Domain = []string{"residents", "contacts"}[i%2]
		want = append(want, e)
		appendEvents(t, s, e)
	}
	ids := eventIDs(want)
	all := waitPending(t, o, ids...)
	for i := range all {
		sameEntry(t, all[i], want[i])
	}
	if es := pending(t, o, 0); !slices.Equal(eventIDs(es), ids[:plinth.DefaultLimit]) {
		t.Errorf("PendingEvents(0): %q; want the first %d", eventIDs(es), plinth.DefaultLimit)
	}
	if es := pending(t, o, 7); !slices.Equal(eventIDs(es), ids[:7]) {
		t.Errorf("PendingEvents(7): %q", eventIDs(es))
	}
}

func testOutboxRollback(t *testing.T, s plinth.Store, o plinth.OutboxStore) {
	boom := errors.New("boom")
	cats := categoriesEntity(t)
	err := s.Write(t.Context(), func(tx plinth.Tx) error {
		if _, err := tx.Insert(t.Context(), cats, validate(t, cats, map[string]any{"code": "c1", "title": "One"}, true)); err != nil {
			return err
		}
		if err := appendEvent(t.Context(), tx, outboxEntry("rolled-back")); err != nil {
			return err
		}
		return boom
	})
	if err != boom {
		t.Fatalf("Write returned %v, want fn's error", err)
	}
	appendEvents(t, s, outboxEntry("kept"))
	waitPending(t, o, "kept")
	// The rolled-back event ID is free again.
	appendEvents(t, s, outboxEntry("rolled-back"))
	waitPending(t, o, "kept", "rolled-back")
}

func testOutboxDuplicate(t *testing.T, s plinth.Store, o plinth.OutboxStore) {
	appendEvents(t, s, outboxEntry("dup"))
	err := s.Write(t.Context(), func(tx plinth.Tx) error {
		return appendEvent(t.Context(), tx, outboxEntry("dup"))
	})
	if !errors.Is(err, plinth.ErrConflict) {
		t.Errorf("appending an event ID twice: %v, want ErrConflict", err)
	}
	waitPending(t, o, "dup")
}

func testOutboxMarkSent(t *testing.T, s plinth.Store, o plinth.OutboxStore) {
	for i := range 5 {
		appendEvents(t, s, outboxEntry(fmt.Sprint("m", i)))
	}
	es := waitPending(t, o, "m0", "m1", "m2", "m3", "m4")
	ctx := t.Context()
	if err := o.MarkEventsSent(ctx, []string{es[0].EventID, es[2].EventID}); err != nil {
		t.Fatal(err)
	}
	waitPending(t, o, "m1", "m3", "m4")
	if err := o.MarkEventsSent(ctx, []string{es[0].EventID, "no-such-event"}); err != nil {
		t.Errorf("marking a sent and an unknown event: %v", err)
	}
	if err := o.MarkEventsSent(ctx, nil); err != nil {
		t.Errorf("marking nothing: %v", err)
	}
	waitPending(t, o, "m1", "m3", "m4")
	if err := o.MarkEventsSent(ctx, []string{es[1].EventID, es[3].EventID, es[4].EventID}); err != nil {
		t.Fatal(err)
	}
	waitPending(t, o)
	appendEvents(t, s, outboxEntry("m5"))
	got := waitPending(t, o, "m5")
	if got[0].Sequence <= es[4].Sequence {
		t.Errorf("a later event has sequence %d, not above %d", got[0].Sequence, es[4].Sequence)
	}
}

func testOutboxPendingAfter(t *testing.T, s plinth.Store, o plinth.OutboxStore) {
	after, ok := o.(plinth.PendingAfterReader)
	if !ok {
		t.Skipf("%T cannot read past a sequence", o)
	}
	for i := range 5 {
		appendEvents(t, s, outboxEntry(fmt.Sprint("a", i)))
	}
	es := waitPending(t, o, "a0", "a1", "a2", "a3", "a4")
	ctx := t.Context()
	// As a relay that published a0-a2 and has not marked them.
	got, err := after.PendingEventsAfter(ctx, es[2].Sequence, 10)
	if err != nil {
		t.Fatal(err)
	}
	if ids := eventIDs(got); fmt.Sprint(ids) != "[a3 a4]" {
		t.Fatalf("PendingEventsAfter(a2's sequence): %q, want a3 and a4", ids)
	}
	if got, err = after.PendingEventsAfter(ctx, es[2].Sequence, 1); err != nil || fmt.Sprint(eventIDs(got)) != "[a3]" {
		t.Fatalf("PendingEventsAfter(a2's sequence, limit 1): %q, %v", eventIDs(got), err)
	}
	if got, err = after.PendingEventsAfter(ctx, es[4].Sequence, 10); err != nil || len(got) != 0 {
		t.Fatalf("PendingEventsAfter(the last sequence): %q, %v", eventIDs(got), err)
	}
	// What was read past is still pending, to PendingEvents and from 0.
	pendingAll := func() {
		t.Helper()
		if ids := eventIDs(pending(t, o, 10)); fmt.Sprint(ids) != "[a0 a1 a2 a3 a4]" {
			t.Fatalf("PendingEvents after reads past a2: %q, want all five", ids)
		}
		if got, err := after.PendingEventsAfter(ctx, 0, 10); err != nil || len(got) != 5 {
			t.Fatalf("PendingEventsAfter(0): %q, %v", eventIDs(got), err)
		}
	}
	pendingAll()
	if err := o.MarkEventsSent(ctx, []string{es[3].EventID, es[4].EventID}); err != nil {
		t.Fatal(err)
	}
	if got, err = after.PendingEventsAfter(ctx, es[2].Sequence, 10); err != nil || len(got) != 0 {
		t.Fatalf("PendingEventsAfter(a2's sequence) once a3 and a4 are sent: %q, %v", eventIDs(got), err)
	}
	waitPending(t, o, "a0", "a1", "a2")
}

func testOutboxLease(t *testing.T, s plinth.Store, o plinth.OutboxStore) {
	ctx := t.Context()
	// Of relays starting at once, exactly one gets the lease.
	var wins atomic.Int32
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ok, err := o.AcquireRelayLease(ctx, fmt.Sprint("relay-", i), time.Minute)
			if err != nil {
				errs <- err
			}
			if ok {
				wins.Add(1)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := wins.Load(); n != 1 {
		t.Fatalf("%d of 8 relays starting at once got the lease; want 1", n)
	}
	holder := ""
	for i := range 8 {
		if ok, _ := o.AcquireRelayLease(ctx, fmt.Sprint("relay-", i), time.Minute); ok {
			holder = fmt.Sprint("relay-", i)
		}
	}
	if holder == "" {
		t.Fatal("the holder cannot renew its lease")
	}
	acquire := func(who string, ttl time.Duration, want bool) {
		t.Helper()
		ok, err := o.AcquireRelayLease(ctx, who, ttl)
		if err != nil {
			t.Fatal(err)
		}
		if ok != want {
			t.Fatalf("AcquireRelayLease(%s, %s) = %v, want %v", who, ttl, ok, want)
		}
	}
	// Renewing with a short lease; another relay takes over once it has
	// expired, and the first is then refused.
	acquire(holder, 500*time.Millisecond, true)
	acquire("relay-other", time.Minute, false)
	// Not a wait for a condition: the 500 ms lease has to run out, and the
	// test is that it then passes to the first relay that asks.
	time.Sleep(700 * time.Millisecond)
	acquire("relay-other", time.Minute, true)
	acquire(holder, time.Minute, false)
	acquire("relay-other", time.Minute, true)
}

// testOutboxSequenceGap: transaction A appends (the lower sequence), makes
// sure the append was sent, and stays open; B appends (a higher sequence) and commits. B's entry must not
// be returned while A is open. (A store with a single writer makes B wait
// for A instead, which the test allows.)
func testOutboxSequenceGap(t *testing.T, s plinth.Store, o plinth.OutboxStore) {
	ctx := t.Context()
	aAppended, release := make(chan struct{}), make(chan struct{})
	aDone, bDone := make(chan error, 1), make(chan error, 1)
	go func() {
		aDone <- s.Write(ctx, func(tx plinth.Tx) error {
			if err := appendEventAndSend(ctx, tx, outboxEntry("a"), categoriesEntity(t)); err != nil {
				return err
			}
			close(aAppended)
			<-release
			return nil
		})
	}()
	select {
	case <-aAppended:
	case err := <-aDone:
		t.Fatalf("write A: %v", err)
	}
	go func() {
		bDone <- s.Write(ctx, func(tx plinth.Tx) error { return appendEvent(ctx, tx, outboxEntry("b")) })
	}()
	bCommitted := false
	select {
	case err := <-bDone:
		if err != nil {
			close(release)
			t.Fatalf("write B: %v", err)
		}
		bCommitted = true
	case <-time.After(time.Second):
		// A single-writer store makes B wait for A.
	}
	// Not a wait: PendingEvents is sampled a few times while A is open, and
	// none of the samples may hold an entry past A's.
	var seen [][]plinth.OutboxEntry
	for range 5 {
		seen = append(seen, pending(t, o, 100))
		time.Sleep(20 * time.Millisecond)
	}
	close(release)
	if err := <-aDone; err != nil {
		t.Fatalf("write A: %v", err)
	}
	if !bCommitted {
		if err := <-bDone; err != nil {
			t.Fatalf("write B: %v", err)
		}
	}
	all := waitPending(t, o, "a", "b")
	for _, es := range seen {
		for _, e := range es {
			if e.Sequence >= all[0].Sequence {
				t.Errorf("while A (sequence %d) was open, PendingEvents returned %q (sequence %d)", all[0].Sequence, e.EventID, e.Sequence)
			}
		}
	}
	t.Logf("B committed while A was open: %v", bCommitted)
}

// testOutboxEarlyTransaction: C starts work first (on PostgreSQL it gets
// the lower transaction id), then A appends (the lower sequence) and stays
// open, then C appends (the higher sequence) and commits. C's entry must
// not be returned while A is open, although C's transaction began first:
// ordering by transaction id alone would let it through.
func testOutboxEarlyTransaction(t *testing.T, s plinth.Store, o plinth.OutboxStore) {
	ctx := t.Context()
	cats := categoriesEntity(t)
	cStarted, aAppended, release := make(chan struct{}), make(chan struct{}), make(chan struct{})
	aDone, cDone := make(chan error, 1), make(chan error, 1)
	go func() {
		cDone <- s.Write(ctx, func(tx plinth.Tx) error {
			if _, err := tx.Insert(ctx, cats, validate(t, cats, map[string]any{"code": "c", "title": "C"}, true)); err != nil {
				return err
			}
			close(cStarted)
			select {
			case <-aAppended:
			case <-time.After(time.Second): // a single-writer store makes A wait for C
			}
			return appendEvent(ctx, tx, outboxEntry("c"))
		})
	}()
	select {
	case <-cStarted:
	case err := <-cDone:
		t.Fatalf("write C: %v", err)
	}
	go func() {
		aDone <- s.Write(ctx, func(tx plinth.Tx) error {
			if _, err := tx.Insert(ctx, cats, validate(t, cats, map[string]any{"code": "a", "title": "A"}, true)); err != nil {
				return err
			}
			if err := appendEventAndSend(ctx, tx, outboxEntry("a"), cats); err != nil {
				return err
			}
			close(aAppended)
			<-release
			return nil
		})
	}()
	if err := <-cDone; err != nil {
		close(release)
		t.Fatalf("write C: %v", err)
	}
	select {
	case <-aAppended:
	case err := <-aDone:
		t.Fatalf("write A: %v", err)
	case <-time.After(30 * time.Second):
		close(release)
		t.Fatal("write A does not get to append")
	}
	// Not a wait: PendingEvents is sampled a few times while A is open, and
	// none of the samples may hold an entry past A's.
	var seen [][]plinth.OutboxEntry
	for range 5 {
		seen = append(seen, pending(t, o, 100))
		time.Sleep(20 * time.Millisecond)
	}
	close(release)
	if err := <-aDone; err != nil {
		t.Fatalf("write A: %v", err)
	}
	var all []plinth.OutboxEntry
	var ids []string
	plinthtest.Eventually(t, 30*time.Second, func() bool {
		all = pending(t, o, 100)
		ids = eventIDs(all)
		return len(all) >= 2
	}, "after both committed, PendingEvents returns %q", plinthtest.Last(&ids))
	if len(all) != 2 {
		t.Fatalf("after both committed, PendingEvents returns %q", eventIDs(all))
	}
	var seqA int64
	for _, e := range all {
		if e.EventID == "a" {
			seqA = e.Sequence
		}
	}
	for _, es := range seen {
		for _, e := range es {
			if e.Sequence >= seqA {
				t.Errorf("while A (sequence %d) was open, PendingEvents returned %q (sequence %d)", seqA, e.EventID, e.Sequence)
			}
		}
	}
}

// testOutboxConcurrent: 8 writers each append 200 events in transactions
// of their own (some first change a record, some roll back) while a relay
// takes pending events and marks them sent.
func testOutboxConcurrent(t *testing.T, s plinth.Store, o plinth.OutboxStore) {
	const writers, perWriter = 8, 200
	ctx := t.Context()
	cats := categoriesEntity(t)
	rollback := errors.New("roll back")
	var (
		committed sync.Map // event ID → true
		nCommit   atomic.Int64
		wg        sync.WaitGroup
		done      = make(chan struct{})
	)
	errs := make(chan error, writers+1)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWriter {
				id := fmt.Sprintf("w%d-%d", w, i)
				err := s.Write(ctx, func(tx plinth.Tx) error {
					if i%3 == 0 {
						data, err := cats.Validate(map[string]any{"code": id, "title": id}, true)
						if err != nil {
							return err
						}
						if _, err := tx.Insert(ctx, cats, data); err != nil {
							return err
						}
					}
					if err := appendEvent(ctx, tx, outboxEntry(id)); err != nil {
						return err
					}
					if i%5 == 1 { // stay open a while after drawing the number
						time.Sleep(time.Duration(1+w%3) * time.Millisecond)
					}
					if i%10 == 7 {
						return rollback
					}
					return nil
				})
				switch {
				case err == nil:
					committed.Store(id, true)
					nCommit.Add(1)
				case errors.Is(err, rollback):
				default:
					errs <- fmt.Errorf("writer %d, event %d: %w", w, i, err)
					return
				}
			}
		}()
	}
	go func() { wg.Wait(); close(done) }()

	received := map[string]int64{}
	var last int64
	polls := 0
	deadline := time.Now().Add(2 * time.Minute)
	writing := true
	for {
		if writing {
			select {
			case <-done:
				writing = false
			default:
			}
		}
		es, err := o.PendingEvents(ctx, 50)
		if err != nil {
			t.Fatalf("PendingEvents: %v", err)
		}
		polls++
		ids := make([]string, 0, len(es))
		for _, e := range es {
			if e.Sequence <= last {
				t.Fatalf("the relay got sequence %d (%s) after %d: out of order", e.Sequence, e.EventID, last)
			}
			last = e.Sequence
			if prev, dup := received[e.EventID]; dup {
				t.Fatalf("event %s returned twice (sequences %d and %d)", e.EventID, prev, e.Sequence)
			}
			received[e.EventID] = e.Sequence
			want := outboxEntry(e.EventID)
			sameEntry(t, e, want)
			ids = append(ids, e.EventID)
		}
		if err := o.MarkEventsSent(ctx, ids); err != nil {
			t.Fatalf("MarkEventsSent: %v", err)
		}
		if !writing && int64(len(received)) >= nCommit.Load() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the relay received %d events of %d committed", len(received), nCommit.Load())
		}
		// The loop is the relay under test, not a wait: it looks again at
		// once while there is work, and a millisecond later when there was
		// none (plinthtest.Eventually's back-off would starve it).
		if len(es) == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for id := range received {
		if _, ok := committed.Load(id); !ok {
			t.Errorf("the relay got %s, which was rolled back", id)
		}
	}
	if int64(len(received)) != nCommit.Load() {
		t.Errorf("the relay got %d events, %d were committed", len(received), nCommit.Load())
	}
	if es := pending(t, o, 10); len(es) != 0 {
		t.Errorf("%d events left pending after the relay caught up", len(es))
	}
	t.Logf("%d events committed (of %d), relayed in order in %d polls", nCommit.Load(), writers*perWriter, polls)
}
