// Package audit writes, verifies and searches Plinth's audit trail.
//
// Every request that touches data or access, allowed or denied, produces one
// plinth.AuditRecord. Writes append their record inside the write's own
// transaction (plinth.AuditTx) and hand it to Auditor.Committed once the
// transaction has committed; reads and admin calls go through
// Auditor.Record, which makes the record durable before the response is
// sent. Record uses group commit: while one batch is being committed, the
// records of concurrent requests gather in a queue, and the next batch takes
// them all in one store transaction (at most the store's MaxAtomicBatch),
// so auditing costs one commit per batch rather than one per request. A
// lone request commits at once; under steady concurrent load a batch waits
// a little (at most half the previous commit, 4ms by default) to be as
// large as the one before (Config.GatherWait).
//
// # Appended, then chained
//
// Appending makes a record durable in the store's audit log, unchained, and
// contends on nothing every writer shares: there is no chain head that
// every write transaction must lock. The Chainer, one per store at a time
// (it holds a lease, like the event relay), then gives the records their
// sequence numbers and hashes in the log's order, within tens of
// milliseconds, in atomic batches. The Auditor hands the chainer the
// records it appended (Config.Chain, Chainer.Hold), so that on a store
// that can list the log's ids alone the chainer does not read them back.
// Verify, Head and anchoring work on the chain; Report.Unchained says how
// many records still wait for it. See docs/audit-chain.md.
//
// # The hash chain: what it proves
//
// The chainer gives every record a sequence number (1, 2, 3 … with no
// gaps), the hash of the record before it (PrevHash) and its own hash:
// SHA-256 over a canonical encoding of every field, sequence and PrevHash
// included (see plinth.AuditRecord.ComputeHash). Verify walks the chain from
// the start and reports the first place where it does not hold:
//
//   - a record edited after it was written: its hash no longer matches its
//     content ("record N was changed after it was written");
//   - a record deleted: a sequence number is missing ("record N is missing"),
//     or, if the later records were renumbered to close the gap, the first
//     renumbered one no longer matches its hash;
//   - a record inserted: the forged record or the one after it fails its hash
//     or its link, or a sequence number appears twice;
//   - records reordered: a record's sequence number or link to its
//     predecessor no longer matches its hash.
//
// So any edit, deletion, insertion or reordering of records before the head
// (the newest record) is detected, unless every record after the change was
// rewritten with it, which anchoring (below) catches.
//
// # What it does not prove
//
// The hash is not keyed: anyone who can write to the audit table can compute
// it. Two changes are therefore not detectable from the table alone:
//
//   - truncation: deleting the newest records leaves a shorter chain that is
//     still perfectly linked;
//   - a rewrite: someone with write access can change a record and recompute
//     the hashes of it and of every record after it.
//
// Both are caught by anchoring: copying the head ("SEQ:HASH", printed by
// `plinth audit head`) regularly into a system the database's administrators
// cannot change — the event bus, a central log, a ticket, an e-mail — and
// checking later that the anchored record is still in the chain with the same
// hash (`plinth audit verify --expect-head SEQ:HASH`, or an Anchor passed to
// Verify). A chain that still contains the anchored head unchanged has not
// been rewritten or truncated up to that point; only records after the
// latest anchor remain open to truncation or rewrite. The chain also says
// nothing about requests that were never recorded: it proves the trail was
// not changed, not that every request reached it (that is what failing
// closed, with Config.FailClosed, is for).
//
// # Personal data
//
// Filter values may hold personal data (a name, a date of birth). They are
// kept in the audit record, because an auditor needs them, and written to the
// optional mirror, which is part of the audit trail, but never to the
// application log: the warnings this package logs name the correlation id,
// operation and route, never filters or record ids.
package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/plinth-data/plinth"
)

// DefaultMaxBatch is how many records one commit holds at most unless
// configured.
const DefaultMaxBatch = 256

// DefaultTimeout bounds one batch commit unless configured.
const DefaultTimeout = 10 * time.Second

// DefaultGatherWait is Config.GatherWait's default.
const DefaultGatherWait = 4 * time.Millisecond

// Config configures an Auditor.
type Config struct {
	// Environment is filled into records that do not name one.
	Environment string
	// FailClosed makes Record return an error wrapping
	// plinth.ErrUnavailable when the record cannot be written, so the
	// request is refused (503). Otherwise a warning is logged and Record
	// returns no error. Production fails closed.
	FailClosed bool
	// Mirror, when set, receives every committed record as one line of
	// JSON, for central log collection. Write errors are logged, never
	// returned: the store is the trail of record.
	Mirror io.Writer
	// Logger receives warnings; slog.Default() when nil.
	Logger *slog.Logger
	// MaxBatch is how many records one commit holds at most; default 256,
	// and never more than the store's MaxAtomicBatch.
	MaxBatch int
	// Appended, when set, is called after records were appended: after
	// each batch Record commits, and by Committed. plinth serve passes the
	// Chainer's Notify, so records are chained at once.
	Appended func()
	// Chain, when set, is given the records appended, as the store
	// returned them, at the same points as Appended. plinth serve passes
	// the Chainer's Hold, which chains them without reading them back.
	// It must not keep or change them beyond what Chainer.Hold does.
	Chain func([]plinth.AuditRecord)
	// Timeout bounds one batch commit; default 10s.
	Timeout time.Duration
	// GatherWait is the most a batch waits under load for more records
	// (see gatherWait); default 4ms, and never more than half the
	// previous commit. Negative: never wait.
	GatherWait time.Duration
}

// Auditor makes audit records durable, gathering the records of concurrent
// requests into one commit. It is safe for concurrent use.
type Auditor struct {
	store  plinth.AuditStore
	cfg    Config
	logger *slog.Logger

	mu     sync.RWMutex // guards closed and sends on queue
	closed bool
	queue  chan *pending
	done   chan struct{} // closed when the writer has stopped
	// busy counts the records queued or being committed, and the direct
	// appends in flight (Direct).
	busy atomic.Int64

	mirrorMu sync.Mutex
}

// pending is one record waiting for its batch to commit.
type pending struct {
	rec    plinth.AuditRecord
	stored plinth.AuditRecord
	err    error
	done   chan struct{}
	// waiting is false once the caller stopped waiting (its context
	// ended), so the writer logs a failure no one else will see.
	waitMu  sync.Mutex
	waiting bool
}

// ErrClosed is returned (wrapped with plinth.ErrUnavailable) by Record after
// Close.
var ErrClosed = errors.New("the auditor is closed")

// New starts an Auditor writing to store.
func New(store plinth.AuditStore, cfg Config) *Auditor {
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = DefaultMaxBatch
	}
	if m := store.MaxAtomicBatch(); m > 0 && cfg.MaxBatch > m {
		cfg.MaxBatch = m
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.GatherWait == 0 {
		cfg.GatherWait = DefaultGatherWait
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	a := &Auditor{
		store:  store,
		cfg:    cfg,
		logger: logger,
		queue:  make(chan *pending, cfg.MaxBatch),
		done:   make(chan struct{}),
	}
	go a.write()
	return a
}

// Record makes rec durable (and mirrored) and returns it as stored:
// normalised, with its LogID, not yet chained (Sequence 0 and no hash; the
// Chainer adds them shortly after). A zero Time is set to now and an empty
// Environment to the configured one.
//
// Once Record is called the record is committed exactly once, whatever
// happens to ctx: if ctx ends while the record waits for its batch, Record
// returns ctx's error at once, and the record is still committed (and
// mirrored) with its batch. It is never retried after a failed commit, since
// a commit that reported an error may still have succeeded; a retry could
// record the request twice.
//
// When the record cannot be written, Record returns an error wrapping
// plinth.ErrUnavailable if the Auditor fails closed; otherwise it logs a
// warning and returns rec unchanged with no error.
func (a *Auditor) Record(ctx context.Context, rec plinth.AuditRecord) (plinth.AuditRecord, error) {
	if rec.Time.IsZero() {
		rec.Time = plinth.Now()
	}
	if rec.Environment == "" {
		rec.Environment = a.cfg.Environment
	}
	p := &pending{rec: rec, done: make(chan struct{}), waiting: true}
	a.mu.RLock()
	if a.closed {
		a.mu.RUnlock()
		return rec, a.failed([]*pending{p}, ErrClosed)
	}
	a.busy.Add(1)
	a.queue <- p // the writer drains the queue until Close, so this never blocks for long
	a.mu.RUnlock()

	select {
	case <-p.done:
	case <-ctx.Done():
		p.waitMu.Lock()
		select {
		case <-p.done: // finished meanwhile: report the outcome
			p.waitMu.Unlock()
		default:
			p.waiting = false
			p.waitMu.Unlock()
			return rec, fmt.Errorf("audit: stopped waiting for the record to commit (it will still be written): %w", ctx.Err())
		}
	}
	if p.err != nil {
		return rec, p.err
	}
	return p.stored, nil
}

// directMax is how many records may be in the auditor's hands (queued,
// committing, or appended directly) for Direct to let a request append
// its own: two requests at a time each commit alone, as group commit
// would commit them, but a round trip sooner (BENCHMARKS.md, "A read and
// its record in one statement"); beyond that a shared commit costs the
// database less than a commit each.
const directMax = 2

// Direct lets the caller append its request's record itself, in the same
// transaction as the read it records (plinth.AuditedReader), while the
// auditor is nearly idle. ok is false when other records are waiting or
// being committed, or after Close: the caller then calls Record, whose
// group commit shares one commit among them. Otherwise the caller calls
// done once its append has ended, and Committed with the record if it was
// appended (or Record if it was not).
func (a *Auditor) Direct() (done func(), ok bool) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	for !a.closed {
		n := a.busy.Load()
		if n >= directMax {
			return nil, false
		}
		if a.busy.CompareAndSwap(n, n+1) {
			return func() { a.busy.Add(-1) }, true
		}
	}
	return nil, false
}

// gatherFrom is the least size of the previous batch that makes the writer
// wait for more (see gatherWait): one or two requests at a time commit at
// once.
const gatherFrom = 3

// gatherWait is how long the writer waits for a batch to reach the size
// of the one before (last records, whose commit lasted took): under steady
// concurrent load a batch would otherwise hold only what arrived during
// the previous commit, and on PostgreSQL a commit costs about as much
// server CPU as twenty records in it, so a few larger commits beat many
// small ones. The wait is at most half the previous commit and at most
// max; none after a batch smaller than gatherFrom, so a lone request
// commits at once.
func gatherWait(last int, took, max time.Duration) time.Duration {
	if last < gatherFrom {
		return 0
	}
	return min(took/2, max)
}

// write is the single writer: it takes what has queued up, up to MaxBatch
// records (waiting a little under load, see gatherWait), commits it in one
// call, and repeats until the queue is closed and empty.
func (a *Auditor) write() {
	defer close(a.done)
	batch := make([]*pending, 0, a.cfg.MaxBatch)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	var last int           // the previous batch's size
	var took time.Duration // how long its commit took
	for first := range a.queue {
		batch = a.take(append(batch[:0], first), a.cfg.MaxBatch, nil)
		want := min(last, a.cfg.MaxBatch)
		if wait := gatherWait(last, took, a.cfg.GatherWait); wait > 0 && len(batch) < want {
			// Since Go 1.23 a stopped or reset timer delivers no stale tick.
			timer.Reset(wait)
			batch = a.take(batch, want, timer.C)
			timer.Stop()
		}
		start := time.Now()
		a.commit(batch)
		last, took = len(batch), time.Since(start)
	}
}

// take adds queued records to batch until it holds limit. With expired
// nil it takes only what is queued already; otherwise it also waits for
// more until expired fires.
func (a *Auditor) take(batch []*pending, limit int, expired <-chan time.Time) []*pending {
	for len(batch) < limit {
		var p *pending
		var ok bool
		if expired == nil {
			select {
			case p, ok = <-a.queue:
			default:
				return batch
			}
		} else {
			select {
			case p, ok = <-a.queue:
			case <-expired:
				return batch
			}
		}
		if !ok {
			return batch
		}
		batch = append(batch, p)
	}
	return batch
}

// commit appends one batch and tells its callers.
func (a *Auditor) commit(batch []*pending) {
	recs := make([]plinth.AuditRecord, len(batch))
	for i, p := range batch {
		recs[i] = p.rec
	}
	ctx, cancel := context.WithTimeout(context.Background(), a.cfg.Timeout)
	stored, err := a.store.AppendAudit(ctx, recs)
	cancel()
	if err == nil && len(stored) != len(recs) {
		err = fmt.Errorf("the store returned %d records for %d", len(stored), len(recs))
	}
	if err != nil {
		failure := a.failed(batch, err)
		for _, p := range batch {
			p.stored, p.err = p.rec, failure
			a.finish(p)
		}
		return
	}
	// Mirror first, so a record is in the mirror when its caller returns.
	a.mirror(stored)
	a.appended(stored)
	for i, p := range batch {
		p.stored = stored[i]
		a.finish(p)
	}
}

// finish wakes the caller of p, and counts p out of busy.
func (a *Auditor) finish(p *pending) {
	a.busy.Add(-1)
	p.waitMu.Lock()
	close(p.done)
	p.waitMu.Unlock()
}

// failed logs a failure to write records and returns the error their
// callers get: one wrapping plinth.ErrUnavailable when failing closed, nil
// otherwise. Callers that stopped waiting are always logged, as an error:
// nobody else will hear of it.
func (a *Auditor) failed(batch []*pending, cause error) error {
	for _, p := range batch {
		p.waitMu.Lock()
		abandoned := !p.waiting
		p.waitMu.Unlock()
		level, msg := slog.LevelWarn, "audit record not written; the request was served without it"
		switch {
		case abandoned:
			level, msg = slog.LevelError, "audit record not written; its request had already ended"
		case a.cfg.FailClosed:
			msg = "audit record not written; the request is refused"
		}
		// Never the filters or record ids: they may hold personal data.
		a.logger.Log(context.Background(), level, msg, "error", cause.Error(),
			"correlationId", p.rec.CorrelationID, "operation", p.rec.Operation, "method", p.rec.Method,
			"route", p.rec.Route, "status", p.rec.Status, "decision", p.rec.Decision)
	}
	if !a.cfg.FailClosed {
		return nil
	}
	return fmt.Errorf("audit: the audit record could not be written: %w: %w", plinth.ErrUnavailable, cause)
}

// Committed mirrors records that were appended inside a write transaction
// (plinth.AuditTx), once that transaction has committed, and tells
// Config.Appended.
func (a *Auditor) Committed(recs ...plinth.AuditRecord) {
	if len(recs) > 0 {
		a.mirror(recs)
		a.appended(recs)
	}
}

// appended tells Config.Appended and Config.Chain about stored records.
func (a *Auditor) appended(recs []plinth.AuditRecord) {
	if a.cfg.Chain != nil {
		a.cfg.Chain(recs)
	}
	if a.cfg.Appended != nil {
		a.cfg.Appended()
	}
}

// mirror writes records to the mirror as JSON lines, in one write. The
// records are mirrored as appended: unchained, identified by correlationId
// and logId, without sequence or hash (the chain in the store has those).
func (a *Auditor) mirror(recs []plinth.AuditRecord) {
	if a.cfg.Mirror == nil || len(recs) == 0 {
		return
	}
	var buf []byte
	for _, r := range recs {
		b, err := json.Marshal(r)
		if err != nil {
			a.logger.Warn("audit mirror: encoding a record failed", "correlationId", r.CorrelationID, "error", err.Error())
			continue
		}
		buf = append(append(buf, b...), '\n')
	}
	a.mirrorMu.Lock()
	defer a.mirrorMu.Unlock()
	if _, err := a.cfg.Mirror.Write(buf); err != nil {
		a.logger.Warn("audit mirror: writing records failed; they are in the store", "error", err.Error(),
			"records", len(recs), "firstCorrelationId", recs[0].CorrelationID)
	}
}

// Close stops taking records, commits those already queued, and returns
// once the writer has stopped. Record fails after Close.
func (a *Auditor) Close() error {
	a.mu.Lock()
	if !a.closed {
		a.closed = true
		close(a.queue)
	}
	a.mu.Unlock()
	<-a.done
	return nil
}

// OpenMirror opens the mirror a setting names: "" for none, "-" or "stdout"
// for standard output, "stderr", or a file path, which is created if needed
// (mode 0600: the records hold personal data) and appended to. Close the
// result when done; closing standard output or error does nothing.
func OpenMirror(name string) (io.WriteCloser, error) {
	switch name {
	case "":
		return nil, nil
	case "-", "stdout":
		return nopCloser{os.Stdout}, nil
	case "stderr":
		return nopCloser{os.Stderr}, nil
	}
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit mirror: %w", err)
	}
	return f, nil
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }
