package audit

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/plinthtest"
)

// unchained returns how many records wait in st's audit log.
// allChained waits until no record is left unchained.
func allChained(t testing.TB, st plinth.AuditStore, within time.Duration) {
	t.Helper()
	var n int64
	var err error
	plinthtest.Eventually(t, within, func() bool {
		n, err = st.CountUnchainedAudit(context.Background())
		return err == nil && n == 0
	}, "%d records unchained, %v", plinthtest.Last(&n), plinthtest.Last(&err))
}

// A running chainer, woken by the Auditor, chains records promptly.
func TestChainerChainsPromptly(t *testing.T) {
	st, _ := openStore(t)
	c := NewChainer(st, ChainerConfig{Holder: "a", Poll: time.Second, Logger: slog.New(slog.DiscardHandler)})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	a := New(st, Config{Environment: plinth.EnvProduction, FailClosed: true, Appended: c.Notify})
	defer a.Close()

	plinthtest.Eventually(t, 0, func() bool { return c.Status().Active }, "the chainer is not active")
	var worst time.Duration
	for i := range 20 {
		start := time.Now()
		if _, err := a.Record(context.Background(), sample(i)); err != nil {
			t.Fatal(err)
		}
		// Poll is a second: only Notify makes this quick.
		allChained(t, st, 900*time.Millisecond)
		worst = max(worst, time.Since(start))
	}
	t.Logf("slowest record to be chained: %v", worst)
	rep := verify(t, st)
	if rep.Broken != nil || rep.Records != 20 || rep.Unchained != 0 {
		t.Fatalf("verify: %+v", rep)
	}
	// The store shows a batch chained once it commits, a moment before the
	// chainer counts it.
	plinthtest.Eventually(t, 0, func() bool { return c.Status().Chained == 20 }, "the chainer did not count 20 records chained")
	if st := c.Status(); st.LastError != nil {
		t.Errorf("status %+v", st)
	}
}

// Two chainers against one store, one of them stopped half way: the lease
// passes over, and every record is chained exactly once, in one chain.
func TestTwoChainersOneChain(t *testing.T) {
	st, _ := openStore(t)
	quiet := slog.New(slog.DiscardHandler)
	cfg := func(name string) ChainerConfig {
		return ChainerConfig{Holder: name, LeaseTTL: 300 * time.Millisecond, Poll: 5 * time.Millisecond, Batch: 7, Logger: quiet}
	}
	first, second := NewChainer(st, cfg("first")), NewChainer(st, cfg("second"))
	ctx1, stop1 := context.WithCancel(context.Background())
	ctx2, stop2 := context.WithCancel(context.Background())
	var running sync.WaitGroup
	running.Add(2)
	go func() { defer running.Done(); first.Run(ctx1) }()
	go func() { defer running.Done(); second.Run(ctx2) }()
	defer func() { stop1(); stop2(); running.Wait() }()

	a := New(st, Config{Environment: plinth.EnvProduction, FailClosed: true, MaxBatch: 5,
		Appended: func() { first.Notify(); second.Notify() }})
	const writers, each = 4, 40
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				r := sample(w*each + i)
				if w%2 == 0 {
					if _, err := a.Record(context.Background(), r); err != nil {
						t.Error(err)
						return
					}
					continue
				}
				err := st.Write(context.Background(), func(tx plinth.Tx) error {
					got, err := tx.(plinth.AuditTx).AppendAudit(context.Background(), r)
					if err == nil && !got.Stored() {
						err = fmt.Errorf("Tx.AppendAudit returned %+v", got)
					}
					return err
				})
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
		if w == writers/2 {
			stop1() // the first chainer goes away while records arrive
		}
	}
	wg.Wait()
	a.Close()
	allChained(t, st, 10*time.Second)
	seen := map[string]int{}
	if err := st.ScanAudit(context.Background(), 0, func(r plinth.AuditRecord) error {
		seen[r.CorrelationID]++
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for i := range writers * each {
		if n := seen[fmt.Sprintf("corr-%d", i)]; n != 1 {
			t.Errorf("corr-%d chained %d times, want once", i, n)
		}
	}
	rep := verify(t, st)
	if rep.Broken != nil || rep.Records != writers*each {
		t.Fatalf("verify: %+v %v", rep, rep.Broken)
	}
	// A batch shows in the store a moment before its chainer counts it.
	plinthtest.Eventually(t, 0, func() bool { return second.Status().Chained > 0 }, "the second chainer did not take over")
	if !second.Status().Active {
		t.Errorf("the second chainer is not active: %+v", second.Status())
	}
}

// A chainer whose idea of the head is stale (another chainer moved it)
// gets ErrConflict, reads the head again and goes on, forking nothing.
func TestChainerRecoversFromAMovedHead(t *testing.T) {
	st, _ := openStore(t)
	fill(t, st, 3)
	c := NewChainer(st, ChainerConfig{Holder: "stale", Logger: slog.New(slog.DiscardHandler)})
	ctx := context.Background()
	if _, err := c.chainOnce(ctx); err != nil { // reads the head: record 3
		t.Fatal(err)
	}
	fill(t, st, 2) // another chainer (ChainPending) moves the head to 5
	a := New(st, Config{FailClosed: true})
	if _, err := a.Record(ctx, sample(9)); err != nil {
		t.Fatal(err)
	}
	a.Close()
	if _, err := c.chainOnce(ctx); err == nil {
		t.Fatal("chaining after a stale head: no error")
	}
	if n, err := c.chainOnce(ctx); err != nil || n != 1 {
		t.Fatalf("chaining after reading the head again: %d, %v", n, err)
	}
	if rep := verify(t, st); rep.Broken != nil || rep.Records != 6 || rep.Unchained != 0 {
		t.Fatalf("verify: %+v %v", rep, rep.Broken)
	}
}

// countingStore counts the chainer's reads of the audit log.
type countingStore struct {
	plinth.AuditStore
	mu    sync.Mutex
	reads int
}

func (s *countingStore) UnchainedAudit(ctx context.Context, limit int) ([]plinth.AuditRecord, error) {
	s.mu.Lock()
	s.reads++
	s.mu.Unlock()
	return s.AuditStore.UnchainedAudit(ctx, limit)
}

func (s *countingStore) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reads
}

// Under steady writes the chainer gathers the Auditor's notifications of
// Linger into one batch instead of reading the log and chaining after
// every group commit; the records are all chained all the same.
func TestChainerLingerGathersGroupCommits(t *testing.T) {
	sq, _ := openStore(t)
	st := &countingStore{AuditStore: sq}
	const linger = 200 * time.Millisecond
	c := NewChainer(st, ChainerConfig{Holder: "a", Poll: time.Hour, Linger: linger, QuietLinger: linger,
		Logger: slog.New(slog.DiscardHandler)})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	a := New(st, Config{Environment: plinth.EnvProduction, FailClosed: true, Appended: c.Notify})
	defer a.Close()
	plinthtest.Eventually(t, 0, func() bool { return c.Status().Active }, "the chainer is not active")

	before := st.count()
	start := time.Now()
	const n = 30
	for i := range n {
		if _, err := a.Record(context.Background(), sample(i)); err != nil {
			t.Fatal(err)
		}
	}
	allChained(t, st, 5*time.Second)
	elapsed := time.Since(start)
	reads := st.count() - before
	// One batch at once, then at most one per Linger; without Linger
	// every one of the n commits starts a batch of its own.
	if most := 2 + int(elapsed/linger); reads > most || reads >= n {
		t.Errorf("%d reads of the audit log for %d records in %v, want at most %d (Linger %v)", reads, n, elapsed, most, linger)
	}
	if rep := verify(t, st); rep.Broken != nil || rep.Records != n || rep.Unchained != 0 {
		t.Fatalf("verify: %+v", rep)
	}
}

func TestChainerLingerDefault(t *testing.T) {
	sq, _ := openStore(t)
	if got := (ChainerConfig{}).withDefaults(sq).Linger; got != defaultChainLinger || got <= 0 {
		t.Errorf("default Linger %v", got)
	}
}

// lingeringStore is a store that asks for a linger of its own.
type lingeringStore struct {
	plinth.AuditStore
	linger time.Duration
}

func (s lingeringStore) ChainLinger() time.Duration { return s.linger }

// A store's ChainLinger is the default Linger; a configured Linger wins,
// and a store that asks for none (zero) gets the general default.
func TestChainerLingerFromStore(t *testing.T) {
	sq, _ := openStore(t)
	for _, tc := range []struct {
		store, configured, want time.Duration
	}{
		{store: 321 * time.Millisecond, want: 321 * time.Millisecond},
		{store: 321 * time.Millisecond, configured: 7 * time.Millisecond, want: 7 * time.Millisecond},
		{store: 0, want: defaultChainLinger},
		{store: -time.Second, want: defaultChainLinger},
	} {
		st := lingeringStore{AuditStore: sq, linger: tc.store}
		cfg := (ChainerConfig{Linger: tc.configured}).withDefaults(st)
		if cfg.Linger != tc.want {
			t.Errorf("store %v, configured %v: Linger %v, want %v", tc.store, tc.configured, cfg.Linger, tc.want)
		}
		if want := min(tc.want, defaultChainLinger); cfg.QuietLinger != want {
			t.Errorf("store %v, configured %v: QuietLinger %v, want %v", tc.store, tc.configured, cfg.QuietLinger, want)
		}
	}
}

// The chainer lingers long only while the batches it is handed show
// requests overlapping, and goes back to the quiet linger after busyFor.
func TestChainerLingersLongOnlyWhenBusy(t *testing.T) {
	sq, _ := openStore(t)
	st := lingeringStore{AuditStore: sq, linger: 250 * time.Millisecond}
	c := NewChainer(st, ChainerConfig{Logger: slog.New(slog.DiscardHandler)})
	if got := c.linger(); got != defaultChainLinger {
		t.Fatalf("linger before any record: %v, want the quiet %v", got, defaultChainLinger)
	}
	one := []plinth.AuditRecord{sample(0)}
	for range 10 {
		c.Hold(one) // one request at a time, however many
	}
	if got := c.linger(); got != defaultChainLinger {
		t.Errorf("linger after batches of one: %v, want the quiet %v", got, defaultChainLinger)
	}
	c.Hold([]plinth.AuditRecord{sample(0), sample(1), sample(2)})
	if got := c.linger(); got != 250*time.Millisecond {
		t.Errorf("linger after a batch of %d: %v, want the store's 250ms", busyBatch, got)
	}
	c.busyAt.Store(time.Now().Add(-busyFor).UnixNano())
	if got := c.linger(); got != defaultChainLinger {
		t.Errorf("linger %v after a busy batch: %v, want the quiet %v", busyFor, got, defaultChainLinger)
	}
}

// countingIDStore is a countingStore that lists the log's ids, as the
// chainer's stores do.
type countingIDStore struct {
	*countingStore
	ids unchainedIDLister
}

func (s countingIDStore) UnchainedAuditIDs(ctx context.Context, limit int) ([]string, error) {
	return s.ids.UnchainedAuditIDs(ctx, limit)
}

// The chainer chains the records it holds up to the first it does not
// hold (one handed to Hold a moment after the store listed it), and reads
// the log back only when it does not hold the first.
func TestChainerChainsTheHeldPrefix(t *testing.T) {
	sq, _ := openStore(t)
	st := countingIDStore{&countingStore{AuditStore: sq}, sq}
	c := NewChainer(st, ChainerConfig{Holder: "a", Logger: slog.New(slog.DiscardHandler)})
	ctx := context.Background()
	held, err := sq.AppendAudit(ctx, []plinth.AuditRecord{sample(0), sample(1), sample(2)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sq.AppendAudit(ctx, []plinth.AuditRecord{sample(3), sample(4)}); err != nil {
		t.Fatal(err)
	}
	c.heldMu.Lock()
	for _, r := range held {
		c.held[r.LogID] = heldRecord{rec: r, at: time.Now()}
	}
	c.heldMu.Unlock()
	if n, err := c.chainOnce(ctx); err != nil || n != 3 || st.count() != 0 {
		t.Fatalf("first pass chained %d (%v) with %d reads of the log, want the 3 held and no read", n, err, st.count())
	}
	if n, err := c.chainOnce(ctx); err != nil || n != 2 || st.count() != 1 {
		t.Fatalf("second pass chained %d (%v) with %d reads of the log, want the other 2 read back once", n, err, st.count())
	}
	if rep := verify(t, st); rep.Broken != nil || rep.Records != 5 || rep.Unchained != 0 {
		t.Fatalf("verify: %+v", rep)
	}
}
