package dynamodb

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/plinth-data/plinth"
)

// txItems is a transaction being built: its items, and for items whose
// failed condition means something other than "run fn again", the error.
type txItems struct {
	items []types.TransactWriteItem
	errs  map[int]error
}

func (b *txItems) add(it types.TransactWriteItem, failure error) {
	if failure != nil {
		if b.errs == nil {
			b.errs = map[int]error{}
		}
		b.errs[len(b.items)] = failure
	}
	b.items = append(b.items, it)
}

// empty reports whether the transaction wrote nothing.
func (t *tx) empty() bool {
	for _, p := range t.recs {
		if p.cur != p.base || p.tombs > 0 {
			return false
		}
	}
	return len(t.ckpts) == 0 && len(t.events) == 0 && len(t.audits) == 0 && len(t.access) == 0
}

// seq returns the write's change number, registering the write as in
// flight and drawing it on first use.
func (t *tx) seq(ctx context.Context) (int64, error) {
	if t.token == "" {
		n, token, until, err := t.s.begin(ctx)
		if err != nil {
			return 0, err
		}
		t.n, t.token, t.until = n, token, until
	}
	return t.n, nil
}

// abort ends the flight of a write that will not commit.
func (t *tx) abort(ctx context.Context) {
	if t.token != "" {
		t.s.endFlight(context.WithoutCancel(ctx), t.token)
		t.token = ""
	}
}

func (t *tx) commit(ctx context.Context) (err error) {
	if t.empty() {
		t.abort(ctx)
		return nil
	}
	defer func() {
		if err != nil {
			t.abort(ctx)
		}
	}()
	n, err := t.seq(ctx)
	if err != nil {
		return err
	}
	b, err := t.build(n)
	if err != nil {
		return err
	}
	if len(b.items) > MaxTxItems {
		return &plinth.TooLargeError{Limit: fmt.Sprintf("DynamoDB's limit of %d items per transaction", MaxTxItems),
			Detail: fmt.Sprintf("the write needs %d items (records, their array index items, tombstones, events and audit records)", len(b.items))}
	}
	if time.Until(t.until) < inflightTTL/4 {
		return fmt.Errorf("dynamodb: %w: the write took longer than %s to commit", plinth.ErrUnavailable, inflightTTL*3/4)
	}
	_, err = t.s.db.TransactWriteItems(ctx, &ddb.TransactWriteItemsInput{TransactItems: b.items})
	if err == nil {
		t.token = ""
		return nil
	}
	return b.failure(err)
}

// failure says what a failed TransactWriteItems means: a specific error
// for a uniqueness check or an expired flight, errRerun when a record
// changed under the transaction.
func (b *txItems) failure(err error) error {
	var tce *types.TransactionCanceledException
	var conflict *types.TransactionConflictException
	switch {
	case errors.As(err, &conflict):
		return errRerun
	case !errors.As(err, &tce):
		return wrap(err, "commit")
	}
	var failed []int
	for i, r := range tce.CancellationReasons {
		switch aws.ToString(r.Code) {
		case "", "None":
		case "ConditionalCheckFailed":
			failed = append(failed, i)
		case "TransactionConflict":
			return errRerun
		default:
			return wrap(err, "commit")
		}
	}
	for _, i := range failed {
		if e, ok := b.errs[i]; ok {
			return e
		}
	}
	return errRerun
}

// build turns the transaction into items stamped with change number n.
func (t *tx) build(n int64) (*txItems, error) {
	b := &txItems{}
	b.add(t.s.flightDone(t.token), fmt.Errorf("dynamodb: %w: the write took so long that it was expired", plinth.ErrUnavailable))
	tomb := 0
	for _, key := range t.order {
		p := t.recs[key]
		if err := p.items(b, n, &tomb, t.s.sys); err != nil {
			return nil, err
		}
	}
	for name, v := range t.ckpts {
		b.add(t.checkpointPut(name, v))
	}
	for i, e := range t.events {
		if err := t.s.eventItems(b, n, i, e); err != nil {
			return nil, err
		}
	}
	for _, r := range t.audits {
		it, err := auditLogItem(r)
		if err != nil {
			return nil, err
		}
		b.add(put(t.s.sys, it), nil)
	}
	t.accessItems(b)
	return b, nil
}

func put(table string, item map[string]types.AttributeValue) types.TransactWriteItem {
	return types.TransactWriteItem{Put: &types.Put{TableName: aws.String(table), Item: item}}
}

// items adds what one record's change needs: the record put or delete,
// conditioned on the state the transaction read; its index items; its
// tombstones.
func (p *pending) items(b *txItems, n int64, tomb *int, sys string) error {
	l := p.l
	key := l.keyAttrs(p.id)
	table := aws.String(l.table)
	absent := aws.String("attribute_not_exists(k)")
	var version map[string]types.AttributeValue
	cond := absent
	if p.base != nil {
		cond = aws.String("v = :v")
		version = map[string]types.AttributeValue{":v": num(p.base.Version)}
	}
	switch {
	case p.cur == p.base && p.tombs == 0:
		return nil // only read
	case p.cur != nil:
		it, err := l.item(*p.cur, n)
		if err != nil {
			return err
		}
		b.add(types.TransactWriteItem{Put: &types.Put{TableName: table, Item: it, ConditionExpression: cond, ExpressionAttributeValues: version}}, nil)
	case p.base != nil:
		b.add(types.TransactWriteItem{Delete: &types.Delete{TableName: table, Key: key, ConditionExpression: cond, ExpressionAttributeValues: version}}, nil)
	default: // inserted and deleted again: it must still be absent
		b.add(types.TransactWriteItem{ConditionCheck: &types.ConditionCheck{TableName: table, Key: key, ConditionExpression: absent}}, nil)
	}
	var before, after map[string]bool
	if p.base != nil {
		before = l.indexItems(p.base.Data)
	}
	if p.cur != nil {
		after = l.indexItems(p.cur.Data)
	}
	k := str(l.sortKey(p.id))
	for _, sh := range sortedKeys(after) {
		if !before[sh] {
			b.add(put(l.table, map[string]types.AttributeValue{"sh": str(sh), "k": k}), nil)
		}
	}
	for _, sh := range sortedKeys(before) {
		if !after[sh] {
			b.add(types.TransactWriteItem{Delete: &types.Delete{TableName: table, Key: map[string]types.AttributeValue{"sh": str(sh), "k": k}}}, nil)
		}
	}
	for range p.tombs {
		b.add(put(sys, tombstoneItem(l, n, *tomb, p.id)), nil)
		*tomb++
	}
	return nil
}
