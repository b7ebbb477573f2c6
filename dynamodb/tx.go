package dynamodb

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/google/uuid"

	"github.com/plinth-data/plinth"
)

// A Write buffers its changes in a tx and sends them as one
// TransactWriteItems when fn returns. Reads inside it are consistent
// GetItems; the writes are conditioned on what was read (version, absence),
// so a concurrent writer makes the transaction fail as a whole, and Write
// runs fn again (the Store contract allows it): fn then reads the new state.

// maxRuns is how often Write runs fn when its transaction loses a race.
const maxRuns = 8

// errRerun marks a commit that lost a race on a record: run fn again.
var errRerun = errors.New("dynamodb: a concurrent write changed an item this transaction read")

// Write runs fn and commits what it did in one TransactWriteItems.
func (s *Store) Write(ctx context.Context, fn func(plinth.Tx) error) error {
	for run := 1; ; run++ {
		t := &tx{s: s, recs: map[string]*pending{}}
		if err := fn(t); err != nil {
			t.abort(ctx)
			return err
		}
		err := t.commit(ctx)
		if errors.Is(err, errRerun) && run < maxRuns {
			continue
		}
		if errors.Is(err, errRerun) {
			return fmt.Errorf("%w: %w", plinth.ErrVersionConflict, err)
		}
		return err
	}
}

// pending is what a transaction did to one record.
type pending struct {
	l     *layout
	id    any
	base  *plinth.Record // as stored when the transaction first read it; nil if absent
	cur   *plinth.Record // as it will be stored; nil if absent
	tombs int            // deletions to record
	gone  bool           // a "gone" item holds the change number of the key's last deletion
	ev    string         // the outbox item of the record's last event ("ev" on its item)
}

type tx struct {
	s           *Store
	recs        map[string]*pending
	order       []string
	ckpts       map[string][]byte
	swaps       map[string]swap // conditions on checkpoints (SwapCheckpoint)
	events      []plinth.OutboxEntry
	audits      []plinth.AuditRecord
	access      map[string]*accessWrite // grants and policies
	accessOrder []string
	n           int64     // the change number, once taken
	floor       int64     // the highest change number of the records read: n must be above it
	token       string    // the in-flight item, once registered
	until       time.Time // when the in-flight item expires
}

var (
	_ plinth.Tx       = (*tx)(nil)
	_ plinth.EventTx  = (*tx)(nil)
	_ plinth.AuditTx  = (*tx)(nil)
	_ plinth.AccessTx = (*tx)(nil)
)

// touch returns the pending state of a record, reading it on first use.
func (t *tx) touch(ctx context.Context, e *plinth.Entity, id any) (*pending, error) {
	return t.touchKnown(ctx, e, id, false)
}

// touchKnown is touch; absent says the record cannot exist (a key just
// generated), so it is not read: the insert's condition still checks.
func (t *tx) touchKnown(ctx context.Context, e *plinth.Entity, id any, absent bool) (*pending, error) {
	l, err := t.s.layout(e)
	if err != nil {
		return nil, err
	}
	id, err = l.canonicalKey(id)
	if err != nil {
		return nil, err
	}
	key := l.table + "\x00" + l.sortKey(id)
	if p, ok := t.recs[key]; ok {
		return p, nil
	}
	p := &pending{l: l, id: id}
	if absent {
		t.recs[key] = p
		t.order = append(t.order, key)
		return p, nil
	}
	it, err := t.s.getItem(ctx, l, id)
	switch {
	case err == nil:
		r, err := l.record(it)
		if err != nil {
			return nil, err
		}
		p.base, p.cur = &r, &r
	case !errors.Is(err, plinth.ErrNotFound):
		return nil, err
	default: // absent: above its deletion, if it had one
		if it, err = t.s.getSys(ctx, sysKey("gone|"+l.table, l.sortKey(id))); err != nil {
			return nil, err
		}
		p.gone = it != nil
	}
	t.floor = max(t.floor, numOf(it["cs"]))
	p.ev = strOf(it["ev"])
	t.recs[key] = p
	t.order = append(t.order, key)
	return p, nil
}

func (t *tx) Get(ctx context.Context, e *plinth.Entity, id any) (plinth.Record, error) {
	p, err := t.touch(ctx, e, id)
	if err != nil {
		return plinth.Record{}, err
	}
	if p.cur == nil {
		return plinth.Record{}, fmt.Errorf("%s %v: %w", e.Name, id, plinth.ErrNotFound)
	}
	return copyRecord(*p.cur), nil
}

func (t *tx) Insert(ctx context.Context, e *plinth.Entity, data map[string]any) (plinth.Record, error) {
	l, err := t.s.layout(e)
	if err != nil {
		return plinth.Record{}, err
	}
	data = clean(data)
	id, given := data[e.Key.Name]
	generated := !given || id == nil
	if generated {
		if !e.Key.Generated {
			return plinth.Record{}, fmt.Errorf("%s: the key %s is missing", e.Name, e.Key.Name)
		}
		if id, err = t.s.newKey(ctx, l); err != nil {
			return plinth.Record{}, err
		}
	} else if err := t.s.keyGiven(ctx, l, id); err != nil {
		return plinth.Record{}, err
	}
	p, err := t.touchKnown(ctx, e, id, generated)
	if err != nil {
		return plinth.Record{}, err
	}
	if p.cur != nil {
		return plinth.Record{}, fmt.Errorf("%s %v: %w", e.Name, id, plinth.ErrConflict)
	}
	data[e.Key.Name] = p.id
	now := plinth.Now()
	r := plinth.Record{Data: data, Version: 1, CreatedAt: now, UpdatedAt: now}
	if _, err := l.item(r, 0); err != nil {
		return plinth.Record{}, err
	}
	p.cur = &r
	return copyRecord(r), nil
}

func (t *tx) Update(ctx context.Context, e *plinth.Entity, id any, version int64, data map[string]any) (plinth.Record, error) {
	p, err := t.touch(ctx, e, id)
	if err != nil {
		return plinth.Record{}, err
	}
	switch {
	case p.cur == nil:
		return plinth.Record{}, fmt.Errorf("%s %v: %w", e.Name, id, plinth.ErrNotFound)
	case p.cur.Version != version:
		return plinth.Record{}, fmt.Errorf("%s %v is at version %d, not %d: %w", e.Name, id, p.cur.Version, version, plinth.ErrVersionConflict)
	}
	data = clean(data)
	data[e.Key.Name] = p.id
	r := plinth.Record{Data: data, Version: version + 1, CreatedAt: p.cur.CreatedAt, UpdatedAt: plinth.Now()}
	if _, err := p.l.item(r, 0); err != nil {
		return plinth.Record{}, err
	}
	p.cur = &r
	return copyRecord(r), nil
}

func (t *tx) Delete(ctx context.Context, e *plinth.Entity, id any, version int64) error {
	p, err := t.touch(ctx, e, id)
	if err != nil {
		return err
	}
	switch {
	case p.cur == nil:
		return fmt.Errorf("%s %v: %w", e.Name, id, plinth.ErrNotFound)
	case p.cur.Version != version:
		return fmt.Errorf("%s %v is at version %d, not %d: %w", e.Name, id, p.cur.Version, version, plinth.ErrVersionConflict)
	}
	p.cur = nil
	p.tombs++
	return nil
}

func (t *tx) Upsert(ctx context.Context, e *plinth.Entity, data map[string]any) (plinth.UpsertResult, error) {
	return plinth.UpsertVia(ctx, t, e, data)
}

func (t *tx) Checkpoint(ctx context.Context, name string) (plinth.Checkpoint, bool, error) {
	if v, ok := t.ckpts[name]; ok {
		return plinth.Checkpoint{Name: name, Value: append([]byte(nil), v...), UpdatedAt: plinth.Now()}, true, nil
	}
	return t.s.Checkpoint(ctx, name)
}

func (t *tx) SetCheckpoint(ctx context.Context, name string, value []byte) error {
	if name == "" {
		return errors.New("dynamodb: a checkpoint needs a name")
	}
	if t.ckpts == nil {
		t.ckpts = map[string][]byte{}
	}
	t.ckpts[name] = append([]byte{}, value...)
	return nil
}

// clean copies data without null values (an absent key means null).
func clean(data map[string]any) map[string]any {
	out := make(map[string]any, len(data))
	for k, v := range data {
		if v != nil {
			out[k] = v
		}
	}
	return out
}

func copyRecord(r plinth.Record) plinth.Record {
	r.Data = maps.Clone(r.Data)
	return r
}

// newKey generates a key: a version 7 UUID, or the next number of the
// entity's key counter (one item per entity: prefer UUID keys on DynamoDB).
func (s *Store) newKey(ctx context.Context, l *layout) (any, error) {
	if l.e.Key.Type == plinth.KeyUUID {
		u, err := uuid.NewV7()
		return u.String(), err
	}
	out, err := s.db.UpdateItem(ctx, &ddb.UpdateItemInput{TableName: aws.String(s.sys), Key: sysKey("key", l.table),
		UpdateExpression:          aws.String("ADD n :one"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":one": num(1)},
		ReturnValues:              types.ReturnValueUpdatedNew})
	if err != nil {
		return nil, wrap(err, "generate a key for "+l.table)
	}
	return numOf(out.Attributes["n"]), nil
}

// keyGiven moves an integer key counter past a key given by the caller,
// so that later generated keys are higher.
func (s *Store) keyGiven(ctx context.Context, l *layout, id any) error {
	n, ok := id.(int64)
	if !ok || l.e.Key.Type != plinth.KeyInteger || !l.e.Key.Generated {
		return nil
	}
	_, err := s.db.UpdateItem(ctx, &ddb.UpdateItemInput{TableName: aws.String(s.sys), Key: sysKey("key", l.table),
		UpdateExpression:          aws.String("SET n = :n"),
		ConditionExpression:       aws.String("attribute_not_exists(n) OR n < :n"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":n": num(n)}})
	if err != nil && !isConditionFailed(err) {
		return wrap(err, "move the key counter of "+l.table)
	}
	return nil
}
