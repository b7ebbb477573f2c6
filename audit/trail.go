package audit

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/plinth-data/plinth"
)

// DefaultChain names the chain of the default store.
const DefaultChain = "default"

// Chain is the audit chain of one store. With plinth.yaml's stores: map
// (storemux) each store keeps the audit records of the writes made in it,
// in the same transaction, and chains them itself: the trail is several
// chains, each verified on its own, searched together.
type Chain struct {
	Name  string // DefaultChain, or the domains of the store, comma-separated
	Store plinth.AuditStore
}

// ChainLister is a store that routes domains to several stores, each with
// a chain of its own (storemux.Mux). The default store's chain comes first.
type ChainLister interface {
	AuditChains() []Chain
}

// Chains returns the audit chains st keeps: one, the default, unless st is
// a ChainLister.
func Chains(st plinth.AuditStore) []Chain {
	if l, ok := st.(ChainLister); ok {
		if cs := l.AuditChains(); len(cs) > 0 {
			return cs
		}
	}
	return []Chain{{Name: DefaultChain, Store: st}}
}

// TrailRecord is an audit record with the chain (store) it is in.
type TrailRecord struct {
	plinth.AuditRecord
	Chain string `json:"store"`
}

// SearchTrail returns one page of the records q selects from every chain,
// merged: each chain's records in sequence order, the chains interleaved
// by time (the earliest next record first; on a tie, the earlier chain).
// after holds, per chain, the sequence of the last record already returned
// (nil: from the start); next is after for the following page. q.After is
// ignored. The merge is deterministic, so paging never repeats or skips a
// record.
func SearchTrail(ctx context.Context, chains []Chain, q plinth.AuditQuery, after []int64) (recs []TrailRecord, next []int64, more bool, err error) {
	if after == nil {
		after = make([]int64, len(chains))
	}
	if len(after) != len(chains) {
		return nil, nil, false, fmt.Errorf("audit: a position for %d chains, but there are %d", len(after), len(chains))
	}
	if q.Limit <= 0 {
		q.Limit = plinth.DefaultLimit
	}
	pages := make([][]plinth.AuditRecord, len(chains))
	for i, c := range chains {
		cq := q
		cq.After = after[i]
		page, m, err := Search(ctx, c.Store, cq)
		if err != nil {
			return nil, nil, false, chainErr(chains, i, err)
		}
		pages[i], more = page, more || m
	}
	next = append([]int64(nil), after...)
	for len(recs) < q.Limit {
		i := earliest(pages)
		if i < 0 {
			return recs, next, more, nil
		}
		r := pages[i][0]
		pages[i] = pages[i][1:]
		next[i] = r.Sequence
		recs = append(recs, TrailRecord{AuditRecord: r, Chain: chains[i].Name})
	}
	// A chain's page holds q.Limit records, so none ran out before the
	// merge stopped: what is left of any page is more.
	return recs, next, more || earliest(pages) >= 0, nil
}

// earliest is the index of the page whose first record is the earliest,
// -1 when every page is empty.
func earliest(pages [][]plinth.AuditRecord) int {
	best := -1
	for i, p := range pages {
		if len(p) > 0 && (best < 0 || p[0].Time.Before(pages[best][0].Time)) {
			best = i
		}
	}
	return best
}

// chainErr names the chain an error came from when there are several.
func chainErr(chains []Chain, i int, err error) error {
	if len(chains) == 1 {
		return err
	}
	return fmt.Errorf("the audit chain of store %s: %w", chains[i].Name, err)
}

// Trail is the audit trail of a deployment: its chains (Chains), the
// default store's first. It implements http.AuditSearcher.
type Trail []Chain

// SearchAudit returns one page of SearchTrail as []TrailRecord, with the
// position after it as text ("" when no more follow): the last sequence
// read from each chain, dot-separated (one number for one chain, as a
// sequence was before there were several).
func (tr Trail) SearchAudit(ctx context.Context, q plinth.AuditQuery, position string) (any, int, string, error) {
	after, err := parsePosition(position, len(tr))
	if err != nil {
		return nil, 0, "", err
	}
	recs, next, more, err := SearchTrail(ctx, tr, q, after)
	if err != nil {
		return nil, 0, "", err
	}
	if recs == nil {
		recs = []TrailRecord{}
	}
	pos := ""
	if more && len(recs) > 0 {
		parts := make([]string, len(next))
		for i, n := range next {
			parts[i] = strconv.FormatInt(n, 10)
		}
		pos = strings.Join(parts, ".")
	}
	return recs, len(recs), pos, nil
}

// parsePosition reads SearchAudit's position for chains chains; "" is the
// start.
func parsePosition(text string, chains int) ([]int64, error) {
	if text == "" {
		return nil, nil
	}
	parts := strings.Split(text, ".")
	if len(parts) != chains {
		return nil, plinth.ErrBadCursor
	}
	pos := make([]int64, chains)
	var sum int64
	for i, p := range parts {
		n, err := strconv.ParseInt(p, 10, 64)
		if err != nil || n < 0 {
			return nil, plinth.ErrBadCursor
		}
		pos[i], sum = n, sum+n
	}
	if sum < 1 {
		return nil, plinth.ErrBadCursor
	}
	return pos, nil
}

// SearchTrailAll calls fn for every record q selects from every chain, in
// SearchTrail's order, a page of q.Limit at a time (plinth.MaxLimit when
// q.Limit <= 0).
func SearchTrailAll(ctx context.Context, chains []Chain, q plinth.AuditQuery, fn func(TrailRecord) error) error {
	if q.Limit <= 0 {
		q.Limit = plinth.MaxLimit
	}
	var after []int64
	for {
		recs, next, more, err := SearchTrail(ctx, chains, q, after)
		if err != nil {
			return err
		}
		for _, r := range recs {
			if err := fn(r); err != nil {
				return err
			}
		}
		if !more || len(recs) == 0 {
			return nil
		}
		after = next
	}
}

// SearchTrailWithArchive is SearchTrailAll whose default chain's older
// records are in an archive (nil for none; the lake archives the default
// store's chain): the archived records q selects first, then the merge of
// every chain, the default's after the archive's last.
func SearchTrailWithArchive(ctx context.Context, chains []Chain, archive Archive, q plinth.AuditQuery, fn func(TrailRecord) error) error {
	var last int64
	if archive != nil {
		err := archive.ScanArchive(ctx, 0, func(r plinth.AuditRecord) error {
			last = r.Sequence
			if q.Matches(r) {
				return fn(TrailRecord{AuditRecord: r, Chain: DefaultChain})
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("audit: searching the archive: %w", err)
		}
	}
	if last == 0 {
		return SearchTrailAll(ctx, chains, q, fn)
	}
	if q.Limit <= 0 {
		q.Limit = plinth.MaxLimit
	}
	after := make([]int64, len(chains))
	for i, c := range chains {
		if c.Name == DefaultChain {
			after[i] = last
		}
	}
	for {
		recs, next, more, err := SearchTrail(ctx, chains, q, after)
		if err != nil {
			return err
		}
		for _, r := range recs {
			if err := fn(r); err != nil {
				return err
			}
		}
		if !more || len(recs) == 0 {
			return nil
		}
		after = next
	}
}

// ChainReport is the verification of one chain.
type ChainReport struct {
	Chain string
	Report
}

// VerifyTrail verifies every chain on its own (Verify), the default one
// with the archive. An anchor whose Chain is empty is the default chain's;
// one naming no chain is an error.
func VerifyTrail(ctx context.Context, chains []Chain, archive Archive, progress func(done int64), anchors ...Anchor) ([]ChainReport, error) {
	byChain := map[string][]Anchor{}
	for _, a := range anchors {
		name := a.ChainName()
		if !hasChain(chains, name) {
			return nil, fmt.Errorf("anchor %s names store %q, which keeps no audit chain here", a, name)
		}
		byChain[name] = append(byChain[name], a)
	}
	var reports []ChainReport
	var before int64 // records of the chains already walked
	for _, c := range chains {
		var arch Archive
		if c.Name == DefaultChain {
			arch = archive
		}
		var p func(int64)
		if progress != nil {
			base := before
			p = func(done int64) { progress(base + done) }
		}
		rep, err := VerifyWithArchive(ctx, c.Store, arch, p, byChain[c.Name]...)
		if err != nil {
			return reports, chainErr(chains, len(reports), err)
		}
		before += rep.Records
		reports = append(reports, ChainReport{Chain: c.Name, Report: rep})
	}
	return reports, nil
}

func hasChain(chains []Chain, name string) bool {
	for _, c := range chains {
		if c.Name == name {
			return true
		}
	}
	return false
}

// ChainPendingTrail chains what waits in every chain's log (ChainPending)
// and returns how many records it chained; ErrChainerActive when a running
// chainer holds a chain's lease (the others are still chained).
func ChainPendingTrail(ctx context.Context, chains []Chain) (int64, error) {
	var total int64
	var active bool
	for i, c := range chains {
		n, err := ChainPending(ctx, c.Store)
		total += n
		switch {
		case errors.Is(err, ErrChainerActive):
			active = true
		case err != nil:
			return total, chainErr(chains, i, err)
		}
	}
	if active {
		return total, ErrChainerActive
	}
	return total, nil
}
