package sqlite_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/sqlite"
	"github.com/plinth-data/plinth/storetest"
)

// groupFixture is a store with a first short Write holding the writer
// (its fn waits for release) so that the Writes started next queue behind
// it, in a known order.
type groupFixture struct {
	t       *testing.T
	path    string
	s       *sqlite.Store
	people  *plinth.Entity
	commits interface{ Load() int64 }
	release chan struct{}
	wg      sync.WaitGroup
	queued  int
	first   chan error
}

func newGroupFixture(t *testing.T) *groupFixture {
	path := filepath.Join(t.TempDir(), "plinth.db")
	ds := storetest.Domains(t)
	f := &groupFixture{t: t, path: path, s: openAt(t, path), people: entity(t, ds, "people"),
		release: make(chan struct{}), first: make(chan error, 1)}
	prepare(t, f.s, ds)
	f.commits = sqlite.CountCommits(t, f.s)
	started := make(chan struct{})
	go func() {
		f.first <- f.s.Write(plinth.ShortWrite(context.Background()), func(tx plinth.Tx) error {
			if _, err := tx.Insert(context.Background(), f.people, f.doc("first")); err != nil {
				return err
			}
			close(started)
			<-f.release
			return nil
		})
	}()
	<-started
	return f
}

func (f *groupFixture) doc(name string) map[string]any {
	data, err := f.people.Validate(map[string]any{"firstName": name, "lastName": "Grouped"}, true)
	if err != nil {
		f.t.Fatal(err)
	}
	return data
}

// queue starts a Write (short or not) with fn and waits until it waits
// for its turn; its result arrives on the returned channel.
func (f *groupFixture) queue(ctx context.Context, short bool, fn func(plinth.Tx) error) <-chan error {
	f.t.Helper()
	if short {
		ctx = plinth.ShortWrite(ctx)
	}
	res := make(chan error, 1)
	go func() { res <- f.s.Write(ctx, fn) }()
	f.queued++
	deadline := time.Now().Add(10 * time.Second)
	for sqlite.Waiting(f.s) < f.queued {
		if time.Now().After(deadline) {
			f.t.Fatalf("%d Writes wait, want %d", sqlite.Waiting(f.s), f.queued)
		}
		time.Sleep(time.Millisecond)
	}
	return res
}

// insert queues a short Write inserting a person named name.
func (f *groupFixture) insert(name string) <-chan error {
	return f.queue(context.Background(), true, func(tx plinth.Tx) error {
		_, err := tx.Insert(context.Background(), f.people, f.doc(name))
		return err
	})
}

// names lists the people stored in the file at path, read by a store of
// its own.
func names(t *testing.T, path string, people *plinth.Entity) map[string]bool {
	t.Helper()
	s := openAt(t, path)
	got := map[string]bool{}
	for _, r := range list(t, s, people, "") {
		got[r.Data["firstName"].(string)] = true
	}
	return got
}

func wait(t *testing.T, res <-chan error) error {
	t.Helper()
	select {
	case err := <-res:
		return err
	case <-time.After(30 * time.Second):
		t.Fatal("a Write did not return")
		return nil
	}
}

func TestShortWritesShareOneCommit(t *testing.T) {
	f := newGroupFixture(t)
	var res []<-chan error
	for i := range 10 {
		res = append(res, f.insert(fmt.Sprint("n", i)))
	}
	close(f.release)
	if err := wait(t, f.first); err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if err := wait(t, r); err != nil {
			t.Fatal(err)
		}
	}
	if n := f.commits.Load(); n != 1 {
		t.Errorf("11 concurrent short writes made %d commits, want 1", n)
	}
	if got := names(t, f.path, f.people); len(got) != 11 {
		t.Errorf("stored %v, want 11 people", got)
	}
}

func TestFailingMemberLeavesTheOthersCommitted(t *testing.T) {
	f := newGroupFixture(t)
	a := f.insert("a")
	refused := errors.New("refused")
	bad := f.queue(context.Background(), true, func(tx plinth.Tx) error {
		if _, err := tx.Insert(context.Background(), f.people, f.doc("bad")); err != nil {
			return err
		}
		return refused
	})
	c := f.insert("c")
	close(f.release)
	if err := wait(t, bad); err != refused {
		t.Errorf("the failing write returned %v, want its own error unchanged", err)
	}
	for _, r := range []<-chan error{f.first, a, c} {
		if err := wait(t, r); err != nil {
			t.Fatal(err)
		}
	}
	got := names(t, f.path, f.people)
	if !got["first"] || !got["a"] || !got["c"] || got["bad"] || len(got) != 3 {
		t.Errorf("stored %v, want first, a and c (not bad)", got)
	}
}

func TestPanicInsideWriteIsRepanickedAndRolledBack(t *testing.T) {
	f := newGroupFixture(t)
	a := f.insert("a")
	repanicked := make(chan any, 1)
	go func() {
		defer func() { repanicked <- recover() }()
		_ = f.s.Write(plinth.ShortWrite(context.Background()), func(tx plinth.Tx) error {
			if _, err := tx.Insert(context.Background(), f.people, f.doc("boom")); err != nil {
				return err
			}
			panic("boom")
		})
	}()
	f.queued++
	for sqlite.Waiting(f.s) < f.queued {
		time.Sleep(time.Millisecond)
	}
	c := f.insert("c")
	close(f.release)
	if p := <-repanicked; p != "boom" {
		t.Fatalf("Write's caller recovered %v, want the fn's panic", p)
	}
	for _, r := range []<-chan error{f.first, a, c} {
		if err := wait(t, r); err != nil {
			t.Fatal(err)
		}
	}
	got := names(t, f.path, f.people)
	if !got["first"] || !got["a"] || !got["c"] || got["boom"] || len(got) != 3 {
		t.Errorf("stored %v, want first, a and c (not boom)", got)
	}
}

func TestWaiterWhoseContextEndsGivesUp(t *testing.T) {
	f := newGroupFixture(t)
	a := f.insert("a")
	ctx, cancel := context.WithCancel(context.Background())
	ran := false
	gone := f.queue(ctx, true, func(tx plinth.Tx) error {
		ran = true
		_, err := tx.Insert(context.Background(), f.people, f.doc("gone"))
		return err
	})
	c := f.insert("c")
	cancel()
	if err := wait(t, gone); !errors.Is(err, context.Canceled) {
		t.Errorf("the cancelled waiter returned %v, want context.Canceled", err)
	}
	close(f.release)
	for _, r := range []<-chan error{f.first, a, c} {
		if err := wait(t, r); err != nil {
			t.Fatal(err)
		}
	}
	if ran {
		t.Error("the cancelled waiter's fn ran")
	}
	got := names(t, f.path, f.people)
	if !got["first"] || !got["a"] || !got["c"] || len(got) != 3 {
		t.Errorf("stored %v, want first, a and c", got)
	}
}

// A member's context ending after its fn ran does not interrupt the
// shared transaction (SQLite would roll all of it back).
func TestMemberContextEndingKeepsTheGroup(t *testing.T) {
	f := newGroupFixture(t)
	ctx, cancel := context.WithCancel(context.Background())
	b := f.queue(ctx, true, func(tx plinth.Tx) error {
		_, err := tx.Insert(ctx, f.people, f.doc("b"))
		cancel() // the client goes away while its write waits for the group
		return err
	})
	c := f.insert("c")
	close(f.release)
	for _, r := range []<-chan error{f.first, b, c} {
		if err := wait(t, r); err != nil {
			t.Fatal(err)
		}
	}
	got := names(t, f.path, f.people)
	if !got["first"] || !got["b"] || !got["c"] || len(got) != 3 {
		t.Errorf("stored %v, want first, b and c", got)
	}
}

// An unmarked Write runs alone, after the group before it committed: its
// fn may wait on anything without holding other writes' acknowledgements.
func TestUnmarkedWriteRunsAloneAfterTheGroup(t *testing.T) {
	f := newGroupFixture(t)
	a := f.insert("a")
	var sawA error
	alone := f.queue(context.Background(), false, func(tx plinth.Tx) error {
		// Through the store, not tx: only what is committed.
		_, sawA = f.s.Get(context.Background(), f.people, f.keyOf("a"))
		_, err := tx.Insert(context.Background(), f.people, f.doc("alone"))
		return err
	})
	c := f.insert("c")
	close(f.release)
	for _, r := range []<-chan error{f.first, a, alone, c} {
		if err := wait(t, r); err != nil {
			t.Fatal(err)
		}
	}
	if sawA != nil {
		t.Errorf("the unmarked write did not see the group before it committed: %v", sawA)
	}
	if n := f.commits.Load(); n != 3 {
		t.Errorf("%d commits, want 3 (first+a, alone, c)", n)
	}
}

// keyOf finds the key of the person named name, through the store.
func (f *groupFixture) keyOf(name string) any {
	for _, r := range list(f.t, f.s, f.people, "") {
		if r.Data["firstName"] == name {
			return f.people.KeyOf(r)
		}
	}
	return "no-such-person"
}

// A short Write returns only once its group committed, and then its
// record is in the database files: a copy of them taken at that moment (as
// a crash would leave them) holds it.
func TestShortWriteReturnsWhenItsGroupCommitted(t *testing.T) {
	f := newGroupFixture(t)
	a := f.insert("a")
	holding, hold := make(chan struct{}), make(chan struct{})
	b := f.queue(context.Background(), true, func(tx plinth.Tx) error {
		close(holding)
		<-hold // b is in a's group, which stays open meanwhile
		_, err := tx.Insert(context.Background(), f.people, f.doc("b"))
		return err
	})
	close(f.release)
	<-holding
	select {
	case err := <-a:
		t.Errorf("a returned (%v) before its group committed", err)
		close(hold)
	case <-time.After(100 * time.Millisecond):
		close(hold)
		if err := wait(t, a); err != nil {
			t.Fatal(err)
		}
	}
	copyDir := t.TempDir()
	for _, suffix := range []string{"", "-wal"} {
		copyFile(t, f.path+suffix, filepath.Join(copyDir, "plinth.db"+suffix))
	}
	got := names(t, filepath.Join(copyDir, "plinth.db"), f.people)
	if !got["first"] || !got["a"] || !got["b"] {
		t.Errorf("the files hold %v when a returned, want first, a and b", got)
	}
	if err := wait(t, b); err != nil {
		t.Fatal(err)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// hold starts a short Write that holds the writer until the returned
// release is called, and waits until it does; the Writes started next
// queue behind it.
func hold(t *testing.T, s *sqlite.Store, fn func(plinth.Tx) error) (release func() error) {
	t.Helper()
	started, released, res := make(chan struct{}), make(chan struct{}), make(chan error, 1)
	go func() {
		res <- s.Write(plinth.ShortWrite(context.Background()), func(tx plinth.Tx) error {
			err := fn(tx)
			close(started)
			<-released
			return err
		})
	}()
	<-started
	return func() error { close(released); return wait(t, res) }
}

// waitQueued waits until n Writes wait for the writer's turn.
func waitQueued(t *testing.T, s *sqlite.Store, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for sqlite.Waiting(s) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d Writes wait, want %d: the store's own write did not join the group", sqlite.Waiting(s), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// The store's own short writes (an audit batch, chaining, marking events
// sent) join the group commit of the writes around them.
func TestStoreWritesJoinTheGroup(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "plinth.db")
	ds := storetest.Domains(t)
	s, people := openAt(t, path), entity(t, ds, "people")
	prepare(t, s, ds)
	commits := sqlite.CountCommits(t, s)
	rec := plinth.AuditRecord{CorrelationID: "c1", Domain: "people", Entity: "people", Operation: "view",
		Method: "GET", Route: "/people/{id}", Decision: plinth.DecisionAllow, Status: 200, RecordIDs: []string{"1"}}

	release := hold(t, s, func(tx plinth.Tx) error {
		return tx.(plinth.EventTx).AppendEvent(ctx, plinth.OutboxEntry{Domain: "store-test",
			Subject: "plinth.test.store-test.people.created", EventID: "e1", Payload: []byte("{}")})
	})
	appended := make(chan []plinth.AuditRecord, 1)
	go func() {
		out, err := s.AppendAudit(ctx, []plinth.AuditRecord{rec, rec})
		if err != nil {
			t.Error(err)
		}
		appended <- out
	}()
	waitQueued(t, s, 1)
	marked := make(chan error, 1)
	go func() { marked <- s.MarkEventsSent(ctx, []string{"e1"}) }()
	waitQueued(t, s, 2)
	if err := release(); err != nil {
		t.Fatal(err)
	}
	recs := <-appended
	if err := wait(t, marked); err != nil {
		t.Fatal(err)
	}
	if n := commits.Load(); n != 1 {
		t.Errorf("a write, an audit batch and marking events sent made %d commits, want 1", n)
	}
	if pending, err := s.PendingEvents(ctx, 10); err != nil || len(pending) != 0 {
		t.Errorf("pending events %v (%v), want none: e1 was marked sent", pending, err)
	}

	// Chain the two records alongside an insert.
	head, hash, err := s.AuditHead(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := range recs {
		head++
		recs[i].Sequence, recs[i].PrevHash = head, hash
		recs[i].Hash = recs[i].ComputeHash()
		hash = recs[i].Hash
	}
	release = hold(t, s, func(tx plinth.Tx) error {
		_, err := tx.Insert(ctx, people, map[string]any{"firstName": "Ada", "lastName": "Grouped"})
		return err
	})
	chained := make(chan error, 1)
	go func() { chained <- s.ChainAudit(ctx, recs) }()
	waitQueued(t, s, 1)
	if err := release(); err != nil {
		t.Fatal(err)
	}
	if err := wait(t, chained); err != nil {
		t.Fatal(err)
	}
	if n := commits.Load(); n != 2 {
		t.Errorf("%d commits after chaining alongside a write, want 2", n)
	}
	if seq, h, err := s.AuditHead(ctx); err != nil || seq != head || h != hash {
		t.Errorf("head %d %q (%v), want %d %q", seq, h, err, head, hash)
	}
}

// changeNumbers reads the change counter and the change numbers of the
// people rows, by name, straight from the file.
func changeNumbers(t *testing.T, path string) (counter int64, rows map[string]int64) {
	t.Helper()
	db, err := sql.Open("sqlite", path+"?_pragma=query_only(1)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.QueryRow(`SELECT "seq" FROM "plinth_changes"`).Scan(&counter); err != nil {
		t.Fatal(err)
	}
	rs, err := db.Query(`SELECT "first_name", "_change_seq" FROM "store_test__people"`)
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	rows = map[string]int64{}
	for rs.Next() {
		var name string
		var seq int64
		if err := rs.Scan(&name, &seq); err != nil {
			t.Fatal(err)
		}
		rows[name] = seq
	}
	return counter, rows
}

// Writes that commit together share a change number; one that drew it and
// failed leaves no number behind that the counter does not hold (an
// extract from the counter's watermark would send its rows again).
func TestGroupSharesAChangeNumberAfterAFailedMember(t *testing.T) {
	f := newGroupFixture(t)
	close(f.release)
	if err := wait(t, f.first); err != nil {
		t.Fatal(err)
	}
	// A group whose first write draws no change number.
	release := hold(t, f.s, func(tx plinth.Tx) error {
		_, err := tx.(plinth.AuditTx).AppendAudit(context.Background(), plinth.AuditRecord{CorrelationID: "c",
			Operation: "create", Method: "POST", Route: "/people", Decision: plinth.DecisionAllow, Status: 201})
		return err
	})
	f.queued = 0
	refused := errors.New("refused")
	bad := f.queue(context.Background(), true, func(tx plinth.Tx) error {
		if _, err := tx.Insert(context.Background(), f.people, f.doc("bad")); err != nil {
			return err
		}
		return refused
	})
	b, c := f.insert("b"), f.insert("c")
	if err := release(); err != nil {
		t.Fatal(err)
	}
	if err := wait(t, bad); err != refused {
		t.Fatalf("the failing write returned %v", err)
	}
	for _, r := range []<-chan error{b, c} {
		if err := wait(t, r); err != nil {
			t.Fatal(err)
		}
	}
	counter, rows := changeNumbers(t, f.path)
	if _, ok := rows["bad"]; ok || len(rows) != 3 {
		t.Fatalf("rows %v, want first, b and c", rows)
	}
	if rows["b"] != rows["c"] || rows["b"] <= rows["first"] {
		t.Errorf("change numbers %v: want b and c to share one after first's", rows)
	}
	if rows["c"] > counter {
		t.Errorf("c carries change number %d, but the counter is %d", rows["c"], counter)
	}
}
