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
// flight first. The number is taken on first use, and again if a record
// read since has a number as high: a record's numbers rise with its
// versions, so its events are in the order of its versions.
func (t *tx) seq(ctx context.Context) (int64, error) {
	if t.token == "" {
		token, until, err := t.s.begin(ctx)
		if err != nil {
			return 0, err
		}
		t.token, t.until = token, until
	}
	if t.n <= t.floor {
		t.n = t.s.tick(t.floor + 1)
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
	b, err := t.build(n, t.token)
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

// build turns the transaction into items stamped with change number n and
// the write's token.
func (t *tx) build(n int64, token string) (*txItems, error) {
	b := &txItems{}
	b.add(t.s.flightDone(t.token), fmt.Errorf("dynamodb: %w: the write took so long that it was expired", plinth.ErrUnavailable))
	prevs := t.chainEvents(n, token)
	tomb := 0
	for _, key := range t.order {
		p := t.recs[key]
		if err := p.items(b, n, token, &tomb, t.s.sys); err != nil {
			return nil, err
		}
	}
	for name, v := range t.ckpts {
		b.add(t.checkpointPut(name, v))
	}
	for i, e := range t.events {
		if err := t.s.eventItems(b, changeKey(n, token, i), prevs[i], e); err != nil {
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

// chainEvents links each event to the one before it of its record: it
// returns, per event, the outbox item of the record's event before, and
// notes the event's own on the record (its item's "ev"). The relay holds
// an event back while the one before is still waiting (PendingEvents).
func (t *tx) chainEvents(n int64, token string) []string {
	prevs := make([]string, len(t.events))
	for i, e := range t.events {
		for _, key := range t.order {
			if p := t.recs[key]; e.Record != "" && plinth.RecordRef(p.l.e, p.id) == e.Record {
				prevs[i], p.ev = p.ev, changeKey(n, token, i)
				break
			}
		}
	}
	return prevs
}

func put(table string, item map[string]types.AttributeValue) types.TransactWriteItem {
	return types.TransactWriteItem{Put: &types.Put{TableName: aws.String(table), Item: item}}
}

// items adds what one record's change needs: the record put or delete,
// conditioned on the state the transaction read; its index items; its
// tombstones; and its "gone" item, which holds the change number (and
// last event) of a deleted record's deletion until the key is used again,
// so that a record created again under the key takes a higher number and
// its events follow (see touchKnown).
func (p *pending) items(b *txItems, n int64, token string, tomb *int, sys string) error {
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
		if p.ev != "" {
			it["ev"] = str(p.ev)
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
		b.add(put(sys, tombstoneItem(l, n, changeKey(n, token, *tomb), p.id)), nil)
		*tomb++
	}
	switch gone := sysKey("gone|"+l.table, l.sortKey(p.id)); {
	case p.cur == nil && p.tombs > 0:
		attrs := map[string]types.AttributeValue{"cs": num(n)}
		if p.ev != "" {
			attrs["ev"] = str(p.ev)
		}
		b.add(put(sys, withAttrs(gone, attrs)), nil)
	case p.cur != nil && p.gone:
		b.add(types.TransactWriteItem{Delete: &types.Delete{TableName: aws.String(sys), Key: gone}}, nil)
	}
	return nil
}
