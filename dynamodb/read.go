package dynamodb

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/plinth-data/plinth"
)

// listBudget is how many items one List call examines, once it has at
// least one record to return, before it returns a short page that says
// more may follow. Only lists that no index narrows (no filter, contains,
// ranges) come near it.
const listBudget = 2000

func (s *Store) get(ctx context.Context, l *layout, id any) (plinth.Record, error) {
	it, err := s.getItem(ctx, l, id)
	if err != nil {
		return plinth.Record{}, err
	}
	return l.record(it)
}

// getItem reads a record's item; ErrNotFound when there is none.
func (s *Store) getItem(ctx context.Context, l *layout, id any) (map[string]types.AttributeValue, error) {
	out, err := s.db.GetItem(ctx, &ddb.GetItemInput{TableName: aws.String(l.table), Key: l.keyAttrs(id), ConsistentRead: aws.Bool(true)})
	if err != nil {
		return nil, wrap(err, "get from "+l.table)
	}
	if out.Item == nil {
		return nil, fmt.Errorf("%s %v: %w", l.e.Name, id, plinth.ErrNotFound)
	}
	return out.Item, nil
}

// Get reads one record with a consistent GetItem.
func (s *Store) Get(ctx context.Context, e *plinth.Entity, id any) (plinth.Record, error) {
	l, err := s.layout(e)
	if err != nil {
		return plinth.Record{}, err
	}
	id, err = l.canonicalKey(id)
	if err != nil {
		return plinth.Record{}, err
	}
	return s.get(ctx, l, id)
}

// List reads a page in key order from the source the conditions allow
// (see plan) and keeps the records that meet every condition.
func (s *Store) List(ctx context.Context, e *plinth.Entity, q plinth.Query) (plinth.Page, error) {
	l, err := s.layout(e)
	if err != nil {
		return plinth.Page{}, err
	}
	limit := q.Limit
	if limit <= 0 {
		limit = plinth.DefaultLimit
	}
	after := ""
	if q.After != nil {
		id, err := l.canonicalKey(q.After)
		if err != nil {
			return plinth.Page{}, err
		}
		after = l.sortKey(id)
	}
	src := s.plan(l, q.Conditions, after, pageSize(limit, q.Conditions), false)
	var page plinth.Page
	for examined := 0; ; examined++ {
		if examined >= listBudget && len(page.Records) > 0 {
			page.More = true
			return page, nil
		}
		it, ok, err := src.next(ctx)
		if err != nil {
			return plinth.Page{}, err
		}
		if !ok {
			return page, nil
		}
		r, err := l.record(it)
		if err != nil {
			return plinth.Page{}, err
		}
		if !q.Matches(r.Data) {
			continue
		}
		if len(page.Records) == limit {
			page.More = true
			return page, nil
		}
		page.Records = append(page.Records, r)
	}
}

func pageSize(limit int, conds []plinth.Condition) int32 {
	if len(conds) == 0 {
		return int32(limit + 1)
	}
	return int32(max(limit+1, 100))
}

// Count counts the records shard by shard (Select COUNT queries).
func (s *Store) Count(ctx context.Context, e *plinth.Entity) (int64, error) {
	l, err := s.layout(e)
	if err != nil {
		return 0, err
	}
	var n int64
	for sh := range l.shards {
		in := &ddb.QueryInput{TableName: aws.String(l.table), KeyConditionExpression: aws.String("sh = :sh"),
			ExpressionAttributeValues: map[string]types.AttributeValue{":sh": str(strconv.Itoa(sh))},
			Select:                    types.SelectCount, ConsistentRead: aws.Bool(true)}
		for {
			out, err := s.db.Query(ctx, in)
			if err != nil {
				return 0, wrap(err, "count "+l.table)
			}
			n += int64(out.Count)
			if len(out.LastEvaluatedKey) == 0 {
				break
			}
			in.ExclusiveStartKey = out.LastEvaluatedKey
		}
	}
	return n, nil
}

// source yields record items in key order.
type source interface {
	next(ctx context.Context) (map[string]types.AttributeValue, bool, error)
}

// plan picks where a list reads from: the key (GetItem), an exact filter's
// index, an array filter's index items, a prefix filter's index (the
// three-rune bucket when the prefix is that long), or else every shard,
// merged. Every condition is still checked on each record, so the index
// only narrows what is read. consistent asks for strongly consistent reads
// (indexes cannot give them: a Scan then uses the index items or shards).
func (s *Store) plan(l *layout, conds []plinth.Condition, after string, size int32, consistent bool) source {
	best, rank := "", 0
	var bestIndex string
	for _, c := range conds {
		f := c.Filter
		switch {
		case c.Op == plinth.OpEqual && f.Array == nil && len(f.Path) == 1 && f.Path[0] == l.e.Key.Name:
			return &keySource{s: s, l: l, id: c.Value, after: after}
		case c.Op == plinth.OpEqual && f.Match == plinth.MatchExact && f.Array == nil && !consistent && rank < 5:
			v, _ := exactText(c.Value)
			best, bestIndex, rank = v, "x_"+f.Param, 5
		case c.Op == plinth.OpEqual && f.Match == plinth.MatchExact && f.Array != nil && rank < 4:
			v, _ := exactText(c.Value)
			best, bestIndex, rank = "ix|"+f.Param+"|"+v, "", 4
		case c.Op == plinth.OpPrefix && f.Match == plinth.MatchPrefix:
			folded := c.Value.(string)
			short, long := buckets(folded)
			r, ix, v := 1, "p1_"+f.Param, short
			if utf8.RuneCountInString(folded) >= prefixLong {
				r, ix, v = 3, "p3_"+f.Param, long
			}
			if f.Array != nil {
				ix, v = "", "ix"+strconv.Itoa(r)+"|"+f.Param+"|"+v
			} else if consistent {
				continue
			}
			if rank < r {
				best, bestIndex, rank = v, ix, r
			}
		}
	}
	switch {
	case rank == 0:
		return newMerge(s, l, after, size, consistent)
	case bestIndex != "":
		return &pager{s: s, table: l.table, index: bestIndex, hashName: bestIndex, hash: best, after: after, size: size}
	}
	return &indexItems{s: s, l: l, p: &pager{s: s, table: l.table, hashName: "sh", hash: best, after: after, size: min(size, maxBatchGet), consistent: true}}
}

// pager reads one partition (of the table or an index) in key order,
// page by page. It continues with a key condition (k > last) rather than
// ExclusiveStartKey, so a page boundary on an item deleted meanwhile is
// harmless (minidyn, unlike DynamoDB, needs ExclusiveStartKey to exist).
type pager struct {
	s          *Store
	table      string
	index      string
	hashName   string
	hash       string
	after      string
	size       int32
	consistent bool
	buf        []map[string]types.AttributeValue
	done       bool
	// ahead, when set, delivers the pages a goroutine fetches ahead
	// (merge.prefetch); after and done are then that goroutine's.
	ahead <-chan fetched
}

// fetched is a page read ahead, or the error reading it.
type fetched struct {
	items []map[string]types.AttributeValue
	err   error
}

func (p *pager) next(ctx context.Context) (map[string]types.AttributeValue, bool, error) {
	it, ok, err := p.peek(ctx)
	if ok {
		p.buf[0] = nil // a scan's memory is the items not yet merged
		p.buf = p.buf[1:]
	}
	return it, ok, err
}

func (p *pager) peek(ctx context.Context) (map[string]types.AttributeValue, bool, error) {
	for len(p.buf) == 0 {
		if p.ahead != nil {
			pg, ok := <-p.ahead
			switch {
			case !ok && ctx.Err() != nil:
				return nil, false, ctx.Err()
			case !ok:
				return nil, false, nil
			case pg.err != nil:
				return nil, false, pg.err
			}
			p.buf = pg.items
			continue
		}
		if p.done {
			return nil, false, nil
		}
		items, err := p.fetch(ctx)
		if err != nil {
			return nil, false, err
		}
		p.buf = items
	}
	return p.buf[0], true, nil
}

// fetchAhead fetches the pager's pages into pages, each while the reader
// works through the one before, until the last or ctx ends; then closes it.
func (p *pager) fetchAhead(ctx context.Context, pages chan<- fetched) {
	defer close(pages)
	for !p.done {
		items, err := p.fetch(ctx)
		select {
		case pages <- fetched{items, err}:
		case <-ctx.Done():
			return
		}
		if err != nil {
			return
		}
	}
}

// fetch reads the next page and moves after past it.
func (p *pager) fetch(ctx context.Context) ([]map[string]types.AttributeValue, error) {
	cond := "#h = :h AND k > :after"
	vals := map[string]types.AttributeValue{":h": str(p.hash), ":after": str(p.after)}
	if p.after == "" {
		cond = "#h = :h"
		delete(vals, ":after")
	}
	in := &ddb.QueryInput{TableName: aws.String(p.table), KeyConditionExpression: aws.String(cond),
		ExpressionAttributeNames: map[string]string{"#h": p.hashName}, ExpressionAttributeValues: vals,
		Limit: aws.Int32(p.size)}
	if p.index != "" {
		in.IndexName = aws.String(p.index)
	} else {
		in.ConsistentRead = aws.Bool(p.consistent)
	}
	out, err := p.s.db.Query(ctx, in)
	if err != nil {
		return nil, wrap(err, "query "+p.table)
	}
	if len(out.LastEvaluatedKey) == 0 {
		p.done = true
	} else {
		p.after = strOf(out.LastEvaluatedKey["k"])
	}
	if n := len(out.Items); n > 0 && strOf(out.Items[n-1]["k"]) > p.after {
		p.after = strOf(out.Items[n-1]["k"])
	}
	return out.Items, nil
}

// merge reads every shard in key order and merges them: an unfiltered
// list or a scan without an index, S queries per page rather than a Scan.
type merge struct{ shards []*pager }

func newMerge(s *Store, l *layout, after string, size int32, consistent bool) *merge {
	m := &merge{}
	for sh := range l.shards {
		m.shards = append(m.shards, &pager{s: s, table: l.table, hashName: "sh", hash: strconv.Itoa(sh), after: after, size: size, consistent: consistent})
	}
	return m
}

// prefetch reads every shard concurrently for a scan (Options.ScanPrefetch):
// each shard's next page is fetched on a goroutine of its own while the
// merge consumes the page before, so a scan waits for about one round trip
// per page of the slowest shard rather than one per page of every shard.
// Key order is the merge's, as without it. Memory stays flat: the
// hand-over is unbuffered, so a shard holds at most the page being merged
// and the one read ahead (twice what it holds without prefetching). stop
// ends the goroutines and waits for them.
func (m *merge) prefetch(ctx context.Context) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, p := range m.shards {
		pages := make(chan fetched)
		p.ahead = pages
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.fetchAhead(ctx, pages)
		}()
	}
	return func() {
		cancel()
		wg.Wait()
	}
}

func (m *merge) next(ctx context.Context) (map[string]types.AttributeValue, bool, error) {
	var best *pager
	bestK := ""
	for _, p := range m.shards {
		it, ok, err := p.peek(ctx)
		if err != nil {
			return nil, false, err
		}
		if ok && (best == nil || strOf(it["k"]) < bestK) {
			best, bestK = p, strOf(it["k"])
		}
	}
	if best == nil {
		return nil, false, nil
	}
	return best.next(ctx)
}

// keySource is a list filtered by its key: one GetItem.
type keySource struct {
	s     *Store
	l     *layout
	id    any
	after string
	done  bool
}

func (k *keySource) next(ctx context.Context) (map[string]types.AttributeValue, bool, error) {
	if k.done {
		return nil, false, nil
	}
	k.done = true
	id, err := k.l.canonicalKey(k.id)
	if err != nil || k.l.sortKey(id) <= k.after && k.after != "" {
		return nil, false, nil
	}
	out, err := k.s.db.GetItem(ctx, &ddb.GetItemInput{TableName: aws.String(k.l.table), Key: k.l.keyAttrs(id), ConsistentRead: aws.Bool(true)})
	if err != nil {
		return nil, false, wrap(err, "get from "+k.l.table)
	}
	return out.Item, out.Item != nil, nil
}

// indexItems reads an array filter's index items and fetches their
// records with consistent BatchGetItems, a page at a time.
type indexItems struct {
	s   *Store
	l   *layout
	p   *pager
	buf []map[string]types.AttributeValue
}

func (x *indexItems) next(ctx context.Context) (map[string]types.AttributeValue, bool, error) {
	for len(x.buf) == 0 {
		var keys []string
		for len(keys) < maxBatchGet {
			it, ok, err := x.p.next(ctx)
			if err != nil {
				return nil, false, err
			}
			if !ok {
				break
			}
			keys = append(keys, strOf(it["k"]))
			if len(x.p.buf) == 0 {
				break // a page at a time
			}
		}
		if len(keys) == 0 {
			return nil, false, nil
		}
		recs, err := x.s.batchGet(ctx, x.l, keys)
		if err != nil {
			return nil, false, err
		}
		x.buf = recs
	}
	it := x.buf[0]
	x.buf = x.buf[1:]
	return it, true, nil
}

// batchGet reads records by sort key with consistent BatchGetItems and
// returns them in the order of keys (missing ones left out).
func (s *Store) batchGet(ctx context.Context, l *layout, sortKeys []string) ([]map[string]types.AttributeValue, error) {
	found := map[string]map[string]types.AttributeValue{}
	var keys []map[string]types.AttributeValue
	for _, k := range sortKeys {
		keys = append(keys, l.keyAttrs(l.keyFromSort(k)))
	}
	for len(keys) > 0 {
		out, err := s.db.BatchGetItem(ctx, &ddb.BatchGetItemInput{RequestItems: map[string]types.KeysAndAttributes{
			l.table: {Keys: keys, ConsistentRead: aws.Bool(true)}}})
		if err != nil {
			return nil, wrap(err, "batch get from "+l.table)
		}
		for _, it := range out.Responses[l.table] {
			found[strOf(it["k"])] = it
		}
		keys = out.UnprocessedKeys[l.table].Keys
	}
	out := make([]map[string]types.AttributeValue, 0, len(found))
	for _, k := range sortKeys {
		if it, ok := found[k]; ok {
			out = append(out, it)
		}
	}
	return out, nil
}

// keyFromSort inverts sortKey.
func (l *layout) keyFromSort(k string) any {
	if l.e.Key.Type == plinth.KeyInteger {
		u, _ := strconv.ParseUint(k, 10, 64)
		return int64(u ^ (1 << 63))
	}
	return k
}
