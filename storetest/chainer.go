package storetest

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/audit"
	"github.com/plinth-data/plinth/plinthtest"
)

// heldCounter counts the chainer's reads of whole records, and those that
// found some.
type heldCounter struct {
	plinth.AuditStore
	ids   idLister
	reads atomic.Int64
	full  atomic.Int64
}

// idLister is a store that lists the audit log's ids alone (the chainer's
// unchainedIDLister).
type idLister interface {
	UnchainedAuditIDs(ctx context.Context, limit int) ([]string, error)
}

func (h *heldCounter) UnchainedAudit(ctx context.Context, limit int) ([]plinth.AuditRecord, error) {
	recs, err := h.AuditStore.UnchainedAudit(ctx, limit)
	h.reads.Add(1)
	if len(recs) > 0 {
		h.full.Add(1)
	}
	return recs, err
}

func (h *heldCounter) UnchainedAuditIDs(ctx context.Context, limit int) ([]string, error) {
	return h.ids.UnchainedAuditIDs(ctx, limit)
}

// RunChainerHoldsRecords checks a store that lists the audit log's ids
// alone (UnchainedAuditIDs): a chainer handed the records its process
// appended chains them from memory, reading only their log ids, and the
// chain verifies; records it was not handed (another process's) it reads
// from the store. Stores without UnchainedAuditIDs skip it.
func RunChainerHoldsRecords(t *testing.T, open func(t *testing.T) plinth.Store) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := open(t)
	ids, ok := s.(idLister)
	if !ok {
		t.Skipf("%T cannot list the audit log's ids alone", s)
	}
	st := &heldCounter{AuditStore: s.(plinth.AuditStore), ids: ids}
	c := audit.NewChainer(st, audit.ChainerConfig{Poll: time.Hour, Linger: time.Millisecond})
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(ctx) }()
	defer func() { cancel(); <-done }()
	// A step that runs between an append's commit and its Hold reads the
	// record from the store, as it should. So the test lets each step end
	// before it appends again: the first (of an empty log), then the one
	// each append wakes (Poll is an hour: nothing else wakes the chainer).
	plinthtest.Eventually(t, 0, func() bool { return c.Status().Active && st.reads.Load() > 0 }, "the chainer read the empty log")
	a := audit.New(st, audit.Config{FailClosed: true, Chain: c.Hold})
	defer a.Close()
	want := 0
	chained := func() {
		t.Helper()
		plinthtest.Eventually(t, 0, func() bool { return c.Status().Chained == int64(want) }, "%d records chained", want)
	}
	for _, r := range OddAudits() {
		if _, err := a.Record(ctx, r); err != nil {
			t.Fatal(err)
		}
		want++
		chained()
		var got plinth.AuditRecord
		err := s.Write(ctx, func(x plinth.Tx) (err error) {
			got, err = x.(plinth.AuditTx).AppendAudit(ctx, r)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		a.Committed(got)
		want++
		chained()
	}
	if n := st.full.Load(); n != 0 {
		t.Errorf("the chainer read whole records %d times; want only log ids", n)
	}
	// Another process's record: read from the store.
	if _, err := st.AppendAudit(ctx, OddAudits()[:1]); err != nil {
		t.Fatal(err)
	}
	c.Notify()
	want++
	chained()
	if n := st.full.Load(); n == 0 {
		t.Errorf("a record the chainer was not handed was not read from the store")
	}
	if rep, err := audit.Verify(ctx, st, nil); err != nil || rep.Broken != nil || rep.Records != int64(want) {
		t.Fatalf("verify: %+v %v, %v", rep, rep.Broken, err)
	}
}
