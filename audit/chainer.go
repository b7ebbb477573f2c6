package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/lease"
)

// ChainerConfig tunes a Chainer. Zero values take the defaults.
type ChainerConfig struct {
	// Holder names this chainer in the store's lease; default
	// hostname:pid. Every chainer against one store must have its own
	// name.
	Holder string
	// LeaseTTL is how long the lease lasts without renewal; default 10s.
	// When the active chainer dies, a standby takes over within about
	// this time.
	LeaseTTL time.Duration
	// Poll is how often the active chainer looks at the audit log when
	// nobody calls Notify; default 50ms. Records appended by this process
	// are chained sooner: the Auditor calls Hold or Notify (Config.Chain,
	// Config.Appended).
	Poll time.Duration
	// Linger is the least time between the starts of two batches when
	// Notify calls come faster; default the store's ChainLinger when it
	// has one (PostgreSQL: 250ms), else 20ms. Under steady load the
	// Auditor notifies after every group commit, and a batch per group
	// commit (a read of the log and a chaining transaction for a handful
	// of records) cost serve more CPU than reading and writing the records
	// being audited: gathering the notifications chains them in a few
	// larger batches. A record written after a quiet spell is still
	// chained at once; under load a record waits at most about Linger
	// before it is chained (and searchable). A full batch
	// (MaxAtomicBatch) is followed by the next at once.
	Linger time.Duration
	// QuietLinger replaces Linger while requests hardly overlap: while no
	// batch handed to Hold in the last second (busyFor) held several
	// records (busyBatch; the Auditor's group commits hold one or two
	// then). Default the smaller of Linger and 20ms. A long linger saves
	// the store work under concurrent load, but the batch it gathers is
	// chained in one burst of the store's work, which the few requests
	// running meanwhile wait behind: audited views on PostgreSQL at 2
	// connections had a p99 6–8 × their p50 with 250ms, 5 × with 60ms and
	// 4 × with 20ms, at the same rate and p50 (BENCHMARKS.md, "The
	// chainer's linger and the tail").
	QuietLinger time.Duration
	// Batch is the most records chained in one atomic ChainAudit; default
	// and most the store's MaxAtomicBatch.
	Batch int
	// Logger receives errors and lease changes; default slog.Default().
	Logger *slog.Logger
}

// defaultChainPoll is ChainerConfig.Poll's default.
const defaultChainPoll = 50 * time.Millisecond

// defaultChainLinger is ChainerConfig.Linger's default for a store
// without a ChainLinger of its own.
const defaultChainLinger = 20 * time.Millisecond

// A chainer is busy (ChainerConfig.QuietLinger) for busyFor after Hold was
// given busyBatch records or more at once: the Auditor's gatherFrom.
const (
	busyBatch = gatherFrom
	busyFor   = time.Second
)

// ChainLingerer is a store that gathers chaining into batches at least
// ChainLinger apart under load (ChainerConfig.Linger), because each batch
// costs it much more than its records do; zero or less means the default.
type ChainLingerer interface {
	ChainLinger() time.Duration
}

func (c ChainerConfig) withDefaults(store plinth.AuditStore) ChainerConfig {
	if c.Holder == "" {
		c.Holder = lease.DefaultHolder("chainer")
	}
	if c.LeaseTTL <= 0 {
		c.LeaseTTL = 10 * time.Second
	}
	if c.Poll <= 0 {
		c.Poll = defaultChainPoll
	}
	if l, ok := store.(ChainLingerer); ok && c.Linger <= 0 {
		c.Linger = l.ChainLinger()
	}
	if c.Linger <= 0 {
		c.Linger = defaultChainLinger
	}
	if c.QuietLinger <= 0 {
		c.QuietLinger = min(c.Linger, defaultChainLinger)
	}
	if m := store.MaxAtomicBatch(); c.Batch <= 0 || c.Batch > m {
		c.Batch = m
	}
	if c.Batch < 1 {
		c.Batch = 1
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Chainer links records of the store's audit log into the hash chain: the
// second half of writing an audit record (see docs/audit-chain.md). Writers
// make their records durable unchained, contending on nothing; the chainer
// reads them in the log's order (plinth.AuditStore.UnchainedAudit), gives
// each the next sequence number, the hash of the record before and its own
// hash, and moves them into the chain in batches of at most the store's
// MaxAtomicBatch (ChainAudit), each all or nothing.
//
// Several chainers may run against one store (one in every plinth serve):
// the store's lease lets one chain at a time, and when its holder dies the
// lease expires and another takes over, within about LeaseTTL. Should two
// ever chain at once (a lease outlived by a stalled process), ChainAudit
// is conditional on the head, so one of them gets plinth.ErrConflict,
// reads the head again and carries on: the chain cannot fork, and a record
// is chained exactly once.
type Chainer struct {
	store  plinth.AuditStore
	cfg    ChainerConfig
	log    *slog.Logger
	runner *lease.Runner

	// The head as this chainer last wrote or read it; known is false
	// when it must be read from the store again. Only Run's goroutine (or
	// ChainPending's) touches them.
	known    bool
	headSeq  int64
	headHash string

	// ids is the store's UnchainedAuditIDs, nil when it has none.
	ids unchainedIDLister
	// held are records this process appended, by log id, as the store
	// returned them (Hold), so that chaining them needs only their log
	// ids from the store.
	heldMu   sync.Mutex
	held     map[string]heldRecord
	prunedAt time.Time

	// busyAt is when Hold was last given busyBatch records or more (Unix
	// nanoseconds).
	busyAt atomic.Int64
}

// unchainedIDLister is implemented by stores that can list the log ids
// UnchainedAudit would return without reading the records (PostgreSQL,
// SQLite).
type unchainedIDLister interface {
	UnchainedAuditIDs(ctx context.Context, limit int) ([]string, error)
}

type heldRecord struct {
	rec plinth.AuditRecord
	at  time.Time
}

// Records held longer than heldFor (chained by another process, or held
// back behind a long transaction) are dropped and read from the store
// when their turn comes; at most heldMax are held.
const (
	heldFor = time.Minute
	heldMax = 5000
)

// NewChainer returns a chainer of store's audit log. Call Run to start it.
func NewChainer(store plinth.AuditStore, cfg ChainerConfig) *Chainer {
	cfg = cfg.withDefaults(store)
	c := &Chainer{
		store: store,
		cfg:   cfg,
		log:   cfg.Logger.With("component", "audit-chainer", "holder", cfg.Holder),
		held:  map[string]heldRecord{},
	}
	c.ids, _ = store.(unchainedIDLister)
	c.runner = lease.New(lease.Config{
		Holder:    cfg.Holder,
		TTL:       cfg.LeaseTTL,
		Poll:      cfg.Poll,
		Linger:    cfg.Linger,
		LingerNow: c.linger,
		Acquire:   store.AcquireChainLease,
		Release:   c.releaseLease,
		Step:      c.chainOnce,
		Batch:     cfg.Batch,
		Again: func(err error) bool {
			if !errors.Is(err, plinth.ErrConflict) {
				return false
			}
			// Another chainer moved the head: chainOnce reads it again.
			c.log.Warn("the audit chain head moved under this chainer; reading it again", "error", err)
			return true
		},
		// Another chainer may move the head while this one stands by, and
		// chain the records it holds.
		Lost: func() {
			c.known = false
			c.heldMu.Lock()
			clear(c.held)
			c.heldMu.Unlock()
		},
		Logger: c.log,
		Name:   "audit chainer",
		Lease:  "audit chain lease",
		Work:   "chaining audit records",
	})
	return c
}

// Notify wakes the chainer to look at the audit log now rather than at
// its next poll. It never blocks.
func (c *Chainer) Notify() { c.runner.Notify() }

// Hold gives the chainer records this process appended, exactly as the
// store's AppendAudit (or AuditTx.AppendAudit) returned them, and wakes
// it (Notify). While this chainer is active and its store can list the
// log's ids alone, it chains them without reading them back from the
// store: it takes from the store only the ids of the records to chain,
// in log order, chains those it holds up to the first it does not, and
// reads the records from the store when it does not hold the first
// (another process's records, or records from before a restart). The
// store must return records exactly as they will be read back (the hash
// is computed over them; storetest's AppendedHashesAsStored proves it for
// every store), and the caller must not change them after.
func (c *Chainer) Hold(recs []plinth.AuditRecord) {
	if len(recs) >= busyBatch {
		c.busyAt.Store(time.Now().UnixNano())
	}
	if c.ids != nil && len(recs) > 0 && c.runner.Status().Active {
		now := time.Now()
		c.heldMu.Lock()
		for _, r := range recs {
			if r.LogID != "" && len(c.held) < heldMax {
				c.held[r.LogID] = heldRecord{rec: r, at: now}
			}
		}
		c.heldMu.Unlock()
	}
	c.Notify()
}

// linger is the runner's linger now: Linger while busy, else QuietLinger.
func (c *Chainer) linger() time.Duration {
	if time.Since(time.Unix(0, c.busyAt.Load())) < busyFor {
		return c.cfg.Linger
	}
	return c.cfg.QuietLinger
}

// ChainerStatus is a snapshot of a chainer, for readiness checks and logs.
type ChainerStatus struct {
	Holder    string // the chainer's name in the lease
	Active    bool   // holds the lease and chains
	Chained   int64  // records chained since Run started
	LastError error  // the last error, nil after a success
}

// Status returns what the chainer is doing.
func (c *Chainer) Status() ChainerStatus {
	st := c.runner.Status()
	return ChainerStatus{Holder: st.Holder, Active: st.Active, Chained: st.Done, LastError: st.LastError}
}

// Run chains until ctx is cancelled, then gives up the lease and returns
// nil. Errors of the store are logged and retried with back-off; Run does
// not give up.
func (c *Chainer) Run(ctx context.Context) error { return c.runner.Run(ctx) }

// releaseLease gives up the lease, so that a standby takes over at once:
// it renews the lease for a moment only.
func (c *Chainer) releaseLease(ctx context.Context, holder string) error {
	_, err := c.store.AcquireChainLease(ctx, holder, time.Millisecond)
	return err
}

// chainOnce chains one batch of the audit log and returns its size. After
// any error the head is read again before the next batch: a failed
// ChainAudit may have committed.
func (c *Chainer) chainOnce(ctx context.Context) (int, error) {
	if !c.known {
		seq, hash, err := c.store.AuditHead(ctx)
		if err != nil {
			return 0, fmt.Errorf("reading the audit chain head: %w", err)
		}
		c.headSeq, c.headHash, c.known = seq, hash, true
	}
	recs, err := c.unchained(ctx)
	if err != nil {
		return 0, fmt.Errorf("reading the audit log: %w", err)
	}
	if len(recs) == 0 {
		return 0, nil
	}
	seq, hash := link(recs, c.headSeq, c.headHash)
	if err := c.store.ChainAudit(ctx, recs); err != nil {
		c.known = false
		return 0, fmt.Errorf("chaining audit records %d–%d: %w", recs[0].Sequence, seq, err)
	}
	c.headSeq, c.headHash = seq, hash
	c.release(recs)
	return len(recs), nil
}

// unchained returns the next records to chain, in log order: the ones it
// holds up to the first it does not, otherwise (it does not hold the
// first) as the store reads them. A record the store listed may be handed
// to Hold a moment after its commit, so the last few are often missing;
// chaining the prefix leaves them to the next pass instead of reading the
// whole batch back.
func (c *Chainer) unchained(ctx context.Context) ([]plinth.AuditRecord, error) {
	c.heldMu.Lock()
	holding := len(c.held) > 0
	c.heldMu.Unlock()
	if c.ids == nil || !holding {
		return c.store.UnchainedAudit(ctx, c.cfg.Batch)
	}
	ids, err := c.ids.UnchainedAuditIDs(ctx, c.cfg.Batch)
	if err != nil {
		return nil, err
	}
	recs := make([]plinth.AuditRecord, 0, len(ids))
	c.heldMu.Lock()
	for _, id := range ids {
		h, ok := c.held[id]
		if !ok {
			break
		}
		recs = append(recs, h.rec)
	}
	c.heldMu.Unlock()
	if len(recs) == 0 && len(ids) > 0 {
		return c.store.UnchainedAudit(ctx, c.cfg.Batch)
	}
	return recs, nil
}

// release forgets held records once chained, and now and then those
// held too long.
func (c *Chainer) release(chained []plinth.AuditRecord) {
	c.heldMu.Lock()
	defer c.heldMu.Unlock()
	for _, r := range chained {
		delete(c.held, r.LogID)
	}
	if now := time.Now(); len(c.held) > 0 && now.Sub(c.prunedAt) > heldFor/4 {
		c.prunedAt = now
		for id, h := range c.held {
			if now.Sub(h.at) > heldFor {
				delete(c.held, id)
			}
		}
	}
}

// link gives recs their places after the head (seq, hash) and returns the
// new head.
func link(recs []plinth.AuditRecord, seq int64, hash string) (int64, string) {
	for i := range recs {
		seq++
		recs[i].Sequence = seq
		recs[i].PrevHash = hash
		recs[i].Hash = recs[i].ComputeHash()
		hash = recs[i].Hash
	}
	return seq, hash
}

// ErrChainerActive is returned by ChainPending when another chainer holds
// the chain lease: that chainer chains the records.
var ErrChainerActive = errors.New("another audit chainer holds the chain lease")

// ChainPending chains the records of the audit log that can be chained
// now, taking the chain lease for the time it runs, and returns how many
// it chained. It is for tools and tests (plinth audit chain) and for
// deployments with no long-running chainer; plinth serve runs a Chainer.
// Records of transactions still open are left for later. When another
// chainer holds the lease it returns ErrChainerActive.
func ChainPending(ctx context.Context, store plinth.AuditStore) (int64, error) {
	cfg := ChainerConfig{Logger: slog.New(slog.DiscardHandler)}.withDefaults(store)
	cfg.Holder = "once:" + cfg.Holder
	c := NewChainer(store, cfg)
	ok, err := store.AcquireChainLease(ctx, c.cfg.Holder, c.cfg.LeaseTTL)
	if err != nil {
		return 0, fmt.Errorf("audit: acquiring the chain lease: %w", err)
	}
	if !ok {
		return 0, ErrChainerActive
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = c.releaseLease(ctx, c.cfg.Holder) // else it expires
	}()
	leaseAt := time.Now()
	var total int64
	for {
		if time.Since(leaseAt) >= c.cfg.LeaseTTL/3 {
			leaseAt = time.Now()
			if ok, err := store.AcquireChainLease(ctx, c.cfg.Holder, c.cfg.LeaseTTL); err != nil || !ok {
				return total, errors.Join(ErrChainerActive, err)
			}
		}
		n, err := c.chainOnce(ctx)
		total += int64(n)
		if err != nil {
			return total, fmt.Errorf("audit: %w", err)
		}
		if n < c.cfg.Batch {
			return total, nil
		}
	}
}
