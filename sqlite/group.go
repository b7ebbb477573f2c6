package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"sync"

	"github.com/plinth-data/plinth"
)

// Group commit. SQLite has one writer, and a commit waits for the disk
// (synchronous=FULL: the WAL is synced at every commit). So short Writes
// (marked with plinth.ShortWrite: the Writer's creates, updates, deletes
// and batches) that arrive while one runs share its transaction: each runs
// its fn inside a savepoint of the open group (a failing fn is rolled back
// to its savepoint and leaves the others alone), and the last Write of a
// burst commits the group for all of them — one sync for up to maxGroup
// writes. A Write returns only after the group holding it committed, so
// nothing is acknowledged before it is durable; a lone Write commits at
// once.
//
// Only short Writes join a group, and the turn passes with the group open
// only to a short Write: a member waits for the commit, so every fn that
// runs while it waits must end by itself. An unmarked Write's fn may wait
// on something outside (an outbox test holding its transaction open, a
// bulk load, a loader waiting for the call before it), so it runs alone in
// its own transaction, after the open group committed.

// maxGroup bounds how many writes share one commit, and so how long the
// first of them waits.
const maxGroup = 64

// group is the write transaction that concurrent Writes share.
type group struct {
	tx    *sql.Tx
	stmts map[string]*sql.Stmt // statements bound to tx, shared by its writes
	// seq is the change number of the writes in it (changes.go), once one
	// drew it: they commit together, so they share it. It is taken over
	// from a write only once its savepoint is released.
	seq  int64
	size int           // writes whose changes it holds
	done chan struct{} // closed once committed or rolled back
	err  error         // why it did not commit
}

// turns hands the writer's turn from one Write to the next, in arrival
// order; a Write waiting for its turn can give up (its context ended).
type turns struct {
	mu    sync.Mutex
	busy  bool     // a Write has the turn
	queue []waiter // Writes waiting, in arrival order
}

// waiter is a Write waiting for its turn.
type waiter struct {
	turn  chan struct{} // closed when the turn is its
	short bool          // it may join the open group
}

// takeTurn waits for the turn. When ctx ends first it returns ctx's error; if
// the turn was handed over meanwhile it is passed on, since the Write that
// handed it may be waiting for someone to commit its group.
func (s *Store) takeTurn(ctx context.Context, short bool) error {
	t := &s.turns
	t.mu.Lock()
	if !t.busy {
		t.busy = true
		t.mu.Unlock()
		return nil
	}
	mine := make(chan struct{})
	t.queue = append(t.queue, waiter{turn: mine, short: short})
	t.mu.Unlock()
	select {
	case <-mine:
		return nil
	case <-ctx.Done():
	}
	t.mu.Lock()
	for i, w := range t.queue {
		if w.turn == mine {
			t.queue = append(t.queue[:i], t.queue[i+1:]...)
			t.mu.Unlock()
			return fail("begin transaction", ctx.Err())
		}
	}
	t.mu.Unlock()
	if g := s.open; g != nil {
		s.endTurn(g, false)
	} else {
		s.passTurn()
	}
	return fail("begin transaction", ctx.Err())
}

// passTurn gives the turn to the next waiting Write, if any.
func (s *Store) passTurn() {
	t := &s.turns
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.queue) == 0 {
		t.busy = false
		return
	}
	next := t.queue[0]
	t.queue = t.queue[1:]
	close(next.turn)
}

// Write runs fn in one write transaction (shared with concurrent short
// Writes when ctx is marked plinth.ShortWrite, see above). Writes are
// serialised: fn must not call Write again (it would wait for itself).
// Reads through the Store (not the Tx) inside fn do not see fn's
// uncommitted changes.
func (s *Store) Write(ctx context.Context, fn func(plinth.Tx) error) error {
	if !plinth.IsShortWrite(ctx) {
		return s.writeAlone(ctx, fn)
	}
	if err := s.takeTurn(ctx, true); err != nil {
		return err
	}
	g, err := s.openGroup(ctx)
	if err != nil {
		s.passTurn()
		return err
	}
	defer func() {
		if p := recover(); p != nil {
			s.undo(g)
			s.endTurn(g, false)
			panic(p)
		}
	}()
	if fnErr := s.runInSavepoint(ctx, g, fn); fnErr != nil {
		s.endTurn(g, false)
		return fnErr // unchanged, so callers can compare it
	}
	g.size++
	return s.endTurn(g, true)
}

// grouped runs fn as a short Write: the store's own writes that end by
// themselves (an audit batch, a chaining batch, marking events sent) share
// the next group commit with the API's writes instead of syncing on their
// own, and return once it committed. fn gets ctx without its cancellation,
// as a Write's Tx would use it (uninterrupted), once ctx is checked.
func (s *Store) grouped(ctx context.Context, fn func(context.Context, *tx) error) error {
	return s.Write(plinth.ShortWrite(ctx), func(t plinth.Tx) error {
		live, err := live(ctx)
		if err != nil {
			return err
		}
		return fn(live, t.(uninterrupted).x)
	})
}

// writeAlone runs fn in a transaction of its own, with the plain Tx (its
// statements are interrupted when ctx ends: that rolls back only fn's own
// work).
func (s *Store) writeAlone(ctx context.Context, fn func(plinth.Tx) error) error {
	if err := s.takeTurn(ctx, false); err != nil {
		return err
	}
	defer s.passTurn()
	if g := s.open; g != nil { // not expected: the turn passes with a group open only to short Writes
		s.closeGroup(g)
	}
	x, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer func() {
		if p := recover(); p != nil {
			_ = x.tx.Rollback()
			panic(p)
		}
	}()
	if err := fn(x); err != nil {
		_ = x.tx.Rollback()
		return err // unchanged, so callers can compare it
	}
	if err := x.tx.Commit(); err != nil {
		return fail("commit", err)
	}
	return nil
}

// openGroup returns the open group, beginning one when there is none. Only
// the Write holding the turn calls it. The transaction outlives the Write that began it, so
// it is not bound to that Write's context.
func (s *Store) openGroup(ctx context.Context) (*group, error) {
	if s.open != nil {
		return s.open, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	x, err := s.begin(context.WithoutCancel(ctx))
	if err != nil {
		return nil, err
	}
	s.open = &group{tx: x.tx, stmts: x.stmts, done: make(chan struct{})}
	return s.open, nil
}

// runInSavepoint runs fn between SAVEPOINT and RELEASE, rolling back to the
// savepoint when fn fails. If the savepoint cannot be rolled back (SQLite
// rolled the whole transaction back, after an I/O error say), the group
// fails for every write in it.
func (s *Store) runInSavepoint(ctx context.Context, g *group, fn func(plinth.Tx) error) error {
	bg := context.WithoutCancel(ctx)
	if err := s.groupExec(bg, g, "SAVEPOINT plinth_write"); err != nil {
		s.failGroup(g, err)
		return fail("begin a write", err)
	}
	x := &tx{s: s, tx: g.tx, stmts: g.stmts, seq: g.seq}
	if err := fn(uninterrupted{x}); err != nil {
		s.undo(g)
		return err
	}
	if err := s.groupExec(bg, g, "RELEASE plinth_write"); err != nil {
		s.failGroup(g, err)
		return fail("end a write", err)
	}
	g.seq = x.seq
	return nil
}

// groupExec runs a savepoint statement on the group's transaction as a
// prepared statement (tx.stmt), rather than parsing it at every write.
func (s *Store) groupExec(ctx context.Context, g *group, query string) error {
	st, err := (&tx{s: s, tx: g.tx, stmts: g.stmts}).stmt(ctx, query)
	if err != nil {
		return err
	}
	_, err = st.ExecContext(ctx)
	return err
}

// undo rolls the open group back to the running write's savepoint.
func (s *Store) undo(g *group) {
	if g.err != nil {
		return
	}
	bg := context.Background()
	if err := s.groupExec(bg, g, "ROLLBACK TO plinth_write"); err != nil {
		s.failGroup(g, err)
		return
	}
	if err := s.groupExec(bg, g, "RELEASE plinth_write"); err != nil {
		s.failGroup(g, err)
	}
}

// failGroup rolls the whole group back: the writes already in it learn it
// when they wake.
func (s *Store) failGroup(g *group, cause error) {
	if g.err != nil {
		return
	}
	_ = g.tx.Rollback()
	g.err = fail("commit", fmt.Errorf("the transaction this write shared with %d others was rolled back: %w", g.size, cause))
}

// endTurn ends a Write's turn. While a short Write waits next and the
// group has room, it hands it the turn with the group still open and, if
// this write is in it, waits for the commit; otherwise it commits (or,
// with no write in it, rolls back) the group itself.
func (s *Store) endTurn(g *group, member bool) error {
	t := &s.turns
	t.mu.Lock()
	if g.err == nil && len(t.queue) > 0 && t.queue[0].short && g.size < maxGroup {
		next := t.queue[0]
		t.queue = t.queue[1:]
		close(next.turn)
		t.mu.Unlock()
		if !member {
			return nil
		}
		<-g.done
		return g.err
	}
	t.mu.Unlock()
	s.closeGroup(g)
	s.passTurn()
	if !member {
		return nil
	}
	return g.err
}

// closeGroup commits the group (or, with no write in it, rolls it back)
// and wakes its members. Only the Write holding the turn calls it.
func (s *Store) closeGroup(g *group) {
	s.open = nil
	switch {
	case g.err != nil:
	case g.size == 0:
		_ = g.tx.Rollback()
	default:
		if err := g.tx.Commit(); err != nil {
			g.err = fail("commit", err)
		}
	}
	close(g.done)
}
