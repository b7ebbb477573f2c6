package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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
	// are chained sooner: the Auditor calls Notify (Config.Appended).
	Poll time.Duration
	// Linger is the least time between the starts of two batches when
	// Notify calls come faster; default 20ms. Under steady load the
	// Auditor notifies after every group commit, and a batch per group
	// commit (a read of the log and a chaining transaction for a handful
	// of records) cost serve more CPU than reading and writing the records
	// being audited: gathering the notifications of 20ms chains them in a
	// few larger batches. A record written after a quiet spell is still
	// chained at once.
	Linger time.Duration
	// Batch is the most records chained in one atomic ChainAudit; default
	// and most the store's MaxAtomicBatch.
	Batch int
	// Logger receives errors and lease changes; default slog.Default().
	Logger *slog.Logger
}

// defaultChainPoll is ChainerConfig.Poll's default.
const defaultChainPoll = 50 * time.Millisecond

// defaultChainLinger is ChainerConfig.Linger's default.
const defaultChainLinger = 20 * time.Millisecond

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
	if c.Linger <= 0 {
		c.Linger = defaultChainLinger
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
}

// NewChainer returns a chainer of store's audit log. Call Run to start it.
func NewChainer(store plinth.AuditStore, cfg ChainerConfig) *Chainer {
	cfg = cfg.withDefaults(store)
	c := &Chainer{
		store: store,
		cfg:   cfg,
		log:   cfg.Logger.With("component", "audit-chainer", "holder", cfg.Holder),
	}
	c.runner = lease.New(lease.Config{
		Holder:  cfg.Holder,
		TTL:     cfg.LeaseTTL,
		Poll:    cfg.Poll,
		Linger:  cfg.Linger,
		Acquire: store.AcquireChainLease,
		Release: c.releaseLease,
		Step:    c.chainOnce,
		Batch:   cfg.Batch,
		Again: func(err error) bool {
			if !errors.Is(err, plinth.ErrConflict) {
				return false
			}
			// Another chainer moved the head: chainOnce reads it again.
			c.log.Warn("the audit chain head moved under this chainer; reading it again", "error", err)
			return true
		},
		// Another chainer may move the head while this one stands by.
		Lost:   func() { c.known = false },
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
	recs, err := c.store.UnchainedAudit(ctx, c.cfg.Batch)
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
	return len(recs), nil
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
