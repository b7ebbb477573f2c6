package audit

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/plinth-data/plinth"
)

// Report is the result of walking the audit chain.
type Report struct {
	Records      int64  // how many records the chain holds
	HeadSequence int64  // sequence of the newest record; 0 when there is none
	HeadHash     string // its hash
	// Unchained is how many records were durable in the audit log but
	// not yet chained when the walk ended: they are not part of the
	// chain yet, and not a break.
	Unchained int64
	// Broken names the first place where the chain does not hold; nil when
	// it is intact (and every anchor was found in it).
	Broken *Break
}

// Head returns the head as "SEQ:HASH", the form Anchor parses.
func (r Report) Head() string { return Anchor{Sequence: r.HeadSequence, Hash: r.HeadHash}.String() }

// Break is the first broken link of the chain.
type Break struct {
	Sequence int64  // the first sequence at which the chain does not hold
	Problem  string // what is wrong there, for people
}

func (b *Break) Error() string { return b.Problem }

// Anchor is a head of the chain recorded outside the store: a record that
// must still be in the chain, with this hash. Chain names the store's
// chain when there are several (plinth.yaml's stores:); "" is the default.
type Anchor struct {
	Chain    string
	Sequence int64
	Hash     string
}

// String returns the anchor as "SEQ:HASH", or "STORE=SEQ:HASH" for a chain
// other than the default.
func (a Anchor) String() string {
	s := strconv.FormatInt(a.Sequence, 10) + ":" + a.Hash
	if a.Chain != "" && a.Chain != DefaultChain {
		s = a.Chain + "=" + s
	}
	return s
}

// ChainName is the name of the anchor's chain.
func (a Anchor) ChainName() string {
	if a.Chain == "" {
		return DefaultChain
	}
	return a.Chain
}

var hashPattern = regexp.MustCompile(`^[0-9a-f]{64}$`)

// ParseAnchor reads "SEQ:HASH", as printed by `plinth audit head`, or
// "STORE=SEQ:HASH" for the chain of another store than the default.
func ParseAnchor(s string) (Anchor, error) {
	s = strings.TrimSpace(s)
	chain, rest, named := strings.Cut(s, "=")
	if !named {
		chain, rest = "", s
	}
	seq, hash, ok := strings.Cut(rest, ":")
	n, err := strconv.ParseInt(seq, 10, 64)
	hash = strings.ToLower(hash)
	if !ok || err != nil || n < 1 || !hashPattern.MatchString(hash) || (named && chain == "") {
		return Anchor{}, fmt.Errorf("anchor %q: give SEQ:HASH as printed by plinth audit head, such as 1042:%s (STORE=SEQ:HASH for another store's chain)", s, strings.Repeat("0", 64))
	}
	return Anchor{Chain: chain, Sequence: n, Hash: hash}, nil
}

// progressEvery is how many records pass between progress calls.
const progressEvery = 1000

// Verify walks the whole audit chain in sequence order and reports its
// head, how many records wait to be chained (Report.Unchained), and the
// first broken link, if any: a record whose hash does not match
// its content, a sequence number missing, repeated or out of order, or a
// record whose PrevHash is not the hash of the record before. The walk goes
// on to the end after a break, so Records and the head describe the whole
// table.
//
// Each anchor must be in the chain with its hash; one that is not is a
// break too (the chain was rewritten, or truncated before the anchor).
// progress, when not nil, is called with the number of records checked so
// far every thousand records and at the end. The error is for failures to
// read the chain; a broken chain is reported in Report.Broken.
func Verify(ctx context.Context, store plinth.AuditStore, progress func(done int64), anchors ...Anchor) (Report, error) {
	return VerifyWithArchive(ctx, store, nil, progress, anchors...)
}

// Archive holds the older part of an audit trail outside the store (the
// data lake's _audit dataset): records 1…n of the chain, as they were
// chained, with their hashes. The store may have been trimmed of them
// (plinth.AuditTrimmer).
type Archive interface {
	// ScanArchive calls fn for every archived record after sequence
	// after, in order, exactly as archived.
	ScanArchive(ctx context.Context, after int64, fn func(plinth.AuditRecord) error) error
}

// VerifyWithArchive is Verify over a chain whose older records are in an
// archive (nil for none): it walks the archive, then the store's records
// after the archive's last. Records that are in both must be the same
// record with the same hash, or the chain is broken there.
func VerifyWithArchive(ctx context.Context, store plinth.AuditStore, archive Archive, progress func(done int64), anchors ...Anchor) (Report, error) {
	w := &walker{want: map[int64]string{}, progress: progress}
	for _, a := range anchors {
		w.want[a.Sequence] = strings.ToLower(a.Hash)
	}
	var archived map[int64]string // hashes of archived records the store may still hold
	var last int64
	if archive != nil {
		first, err := firstStored(ctx, store)
		if err != nil {
			return w.rep, err
		}
		archived = map[int64]string{}
		err = archive.ScanArchive(ctx, 0, func(r plinth.AuditRecord) error {
			w.check(r)
			if first > 0 && r.Sequence >= first {
				archived[r.Sequence] = r.Hash
			}
			last = r.Sequence
			return nil
		})
		if err != nil {
			return w.rep, fmt.Errorf("audit: reading the archive: %w", err)
		}
	}
	err := store.ScanAudit(ctx, 0, func(r plinth.AuditRecord) error {
		if r.Sequence <= last {
			switch h, ok := archived[r.Sequence]; {
			case !ok:
			case r.Hash != r.ComputeHash():
				w.breakAt(r.Sequence, "record %d in the store was changed after it was written: %s", r.Sequence, whyChanged(r))
			case r.Hash != h:
				w.breakAt(r.Sequence, "record %d in the store is not the record archived with that sequence", r.Sequence)
			}
			return nil
		}
		w.check(r)
		return nil
	})
	if err != nil {
		return w.rep, fmt.Errorf("audit: reading the chain: %w", err)
	}
	return w.finish(ctx, store)
}

// firstStored returns the sequence of the store's oldest chained record,
// 0 when it has none.
func firstStored(ctx context.Context, store plinth.AuditStore) (int64, error) {
	var first int64
	err := store.ScanAudit(ctx, 0, func(r plinth.AuditRecord) error {
		first = r.Sequence
		return errStop
	})
	if err != nil && !errors.Is(err, errStop) {
		return 0, fmt.Errorf("audit: reading the chain: %w", err)
	}
	return first, nil
}

// walker checks the records of a chain, in order.
type walker struct {
	rep      Report
	prev     *plinth.AuditRecord
	want     map[int64]string // anchors not met yet
	progress func(int64)
}

func (w *walker) breakAt(seq int64, format string, args ...any) {
	if w.rep.Broken == nil {
		w.rep.Broken = &Break{Sequence: seq, Problem: fmt.Sprintf(format, args...)}
	}
}

// check checks one record and its link to the one before.
func (w *walker) check(r plinth.AuditRecord) {
	w.rep.Records++
	prev := w.prev
	expected := int64(1)
	if prev != nil {
		expected = prev.Sequence + 1
	}
	switch {
	case r.Hash != r.ComputeHash():
		w.breakAt(r.Sequence, "record %d was changed after it was written: %s", r.Sequence, whyChanged(r))
	case r.Sequence > expected && prev == nil:
		w.breakAt(expected, "%s missing: the chain starts at record %d", span(expected, r.Sequence-1), r.Sequence)
	case r.Sequence > expected:
		w.breakAt(expected, "%s missing: record %d follows record %d (a record was deleted, or records were reordered)",
			span(expected, r.Sequence-1), r.Sequence, prev.Sequence)
	case r.Sequence < expected:
		w.breakAt(r.Sequence, "record %d appears again or out of order after record %d: a record was inserted or records were reordered",
			r.Sequence, prev.Sequence)
	case prev == nil && r.PrevHash != "":
		w.breakAt(r.Sequence, "record 1 links to a previous record, but it should be the first: the start of the chain was replaced")
	case prev != nil && r.PrevHash != prev.Hash:
		w.breakAt(r.Sequence, "the link from record %d to record %d is broken: a record was inserted, deleted or reordered",
			prev.Sequence, r.Sequence)
	}
	if h, ok := w.want[r.Sequence]; ok {
		if r.Hash != h {
			w.breakAt(r.Sequence, "record %d does not have the anchored hash %s: the chain was rewritten up to there", r.Sequence, h)
		}
		delete(w.want, r.Sequence)
	}
	rr := r
	w.prev = &rr
	if w.progress != nil && w.rep.Records%progressEvery == 0 {
		w.progress(w.rep.Records)
	}
}

// finish reports the head, the records waiting to be chained and the
// anchors never met.
func (w *walker) finish(ctx context.Context, store plinth.AuditStore) (Report, error) {
	rep := &w.rep
	if w.prev != nil {
		rep.HeadSequence, rep.HeadHash = w.prev.Sequence, w.prev.Hash
	}
	var err error
	if rep.Unchained, err = store.CountUnchainedAudit(ctx); err != nil {
		return *rep, fmt.Errorf("audit: counting unchained records: %w", err)
	}
	// Anchors not met during the walk: the earliest is the break.
	var missing *Anchor
	for seq, h := range w.want {
		if missing == nil || seq < missing.Sequence {
			missing = &Anchor{Sequence: seq, Hash: h}
		}
	}
	if missing != nil {
		switch {
		case rep.Records == 0:
			w.breakAt(missing.Sequence, "the anchored record %d is not in the chain, which is empty: every record was removed", missing.Sequence)
		case missing.Sequence > rep.HeadSequence:
			w.breakAt(missing.Sequence, "the anchored record %d is not in the chain, which ends at record %d: the newest records were removed (truncated)",
				missing.Sequence, rep.HeadSequence)
		default:
			w.breakAt(missing.Sequence, "the anchored record %d is not in the chain: the chain was rewritten", missing.Sequence)
		}
	}
	if w.progress != nil {
		w.progress(rep.Records)
	}
	return *rep, nil
}

// renumberReach is how far from its place whyChanged looks for the
// sequence number a record was written with.
const renumberReach = 16

// whyChanged explains a record whose hash does not match its content: when
// the hash matches with another sequence number nearby, the record was
// renumbered, which is what inserting, deleting or moving a record and
// closing the gap does.
func whyChanged(r plinth.AuditRecord) string {
	for d := int64(1); d <= renumberReach; d++ {
		for _, seq := range []int64{r.Sequence - d, r.Sequence + d} {
			if seq < 1 {
				continue
			}
			moved := r
			moved.Sequence = seq
			if moved.ComputeHash() == r.Hash {
				return fmt.Sprintf("it was written as record %d and renumbered, so a record was inserted, deleted or moved before it", seq)
			}
		}
	}
	return "its hash does not match its content"
}

// span names a run of sequence numbers: "record 5 is" or "records 5–9 are".
func span(from, to int64) string {
	if from == to {
		return fmt.Sprintf("record %d is", from)
	}
	return fmt.Sprintf("records %d–%d are", from, to)
}

// Head returns the newest record's sequence and hash, for anchoring. ok is
// false when the chain is empty. It reads O(log n) records, not the whole
// chain: it looks for the highest sequence that has a record after it.
func Head(ctx context.Context, store plinth.AuditStore) (head Anchor, ok bool, err error) {
	// firstAfter returns the first record after seq, if any.
	firstAfter := func(seq int64) (Anchor, bool, error) {
		var a Anchor
		found := false
		err := store.ScanAudit(ctx, seq, func(r plinth.AuditRecord) error {
			a, found = Anchor{Sequence: r.Sequence, Hash: r.Hash}, true
			return errStop
		})
		if err != nil && !errors.Is(err, errStop) {
			return Anchor{}, false, fmt.Errorf("audit: reading the chain: %w", err)
		}
		return a, found, nil
	}
	// lo has a record after it (that record is last); hi has none.
	last, ok, err := firstAfter(0)
	if err != nil || !ok {
		return Anchor{}, false, err
	}
	lo, hi := last.Sequence, int64(0)
	for step := int64(1024); hi == 0; step *= 2 {
		a, found, err := firstAfter(lo + step)
		if err != nil {
			return Anchor{}, false, err
		}
		if !found {
			hi = lo + step
			break
		}
		lo, last = a.Sequence, a
		if step > 1<<50 {
			return Anchor{}, false, fmt.Errorf("audit: the chain's sequence numbers are implausibly large")
		}
	}
	// Every record after lo is at most hi; find the last one.
	for {
		a, found, err := firstAfter(last.Sequence)
		if err != nil {
			return Anchor{}, false, err
		}
		if !found {
			return last, true, nil
		}
		mid := a.Sequence + (hi-a.Sequence)/2
		b, found, err := firstAfter(mid)
		if err != nil {
			return Anchor{}, false, err
		}
		if found {
			last = b
		} else {
			last, hi = a, mid
		}
	}
}

// errStop ends a scan early.
var errStop = errors.New("stop")
