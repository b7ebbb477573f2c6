package dynamodb

import (
	"context"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/plinth-data/plinth"
)

// BulkInsert is BulkLoad with ConflictFail.
func (s *Store) BulkInsert(ctx context.Context, e *plinth.Entity, data []map[string]any) error {
	_, err := s.BulkLoad(ctx, e, data, plinth.BulkOptions{})
	return err
}

// BulkLoad checks everything it can before writing anything (types, item
// sizes, keys given twice, keys already stored, read with consistent
// BatchGetItems), then writes in TransactWriteItems of up to 100 items,
// the checkpoint in the last. A call is therefore all or nothing against
// bad data and existing keys; but a concurrent writer that inserts one of
// its keys between the check and the write, or an outage part-way, leaves
// the transactions already committed (storetest's BulkLoadAtomicity
// capability; resume with ConflictSkip and the checkpoint).
func (s *Store) BulkLoad(ctx context.Context, e *plinth.Entity, data []map[string]any, opts plinth.BulkOptions) (plinth.BulkResult, error) {
	var res plinth.BulkResult
	if err := opts.CheckMetadata(len(data)); err != nil {
		return res, err
	}
	l, err := s.layout(e)
	if err != nil {
		return res, err
	}
	metas := map[*pending]plinth.RecordMeta{} // BulkOptions.Metadata, by record
	use, dropped := plinth.DistinctKeys(e, data, opts.OnConflict)
	res.Skipped = dropped
	var recs []*pending
	seen := map[string]bool{}
	now := plinth.Now()
	for i, d := range data {
		if use != nil && !use[i] {
			continue
		}
		d = clean(d)
		id, ok := d[e.Key.Name]
		if !ok {
			if !e.Key.Generated {
				return res, fmt.Errorf("%s: record %d has no key %s", e.Name, i, e.Key.Name)
			}
			if id, err = s.newKey(ctx, l); err != nil {
				return res, err
			}
		} else {
			if id, err = l.canonicalKey(id); err != nil {
				return res, fmt.Errorf("%s: record %d: %w", e.Name, i, err)
			}
			if err := s.keyGiven(ctx, l, id); err != nil {
				return res, err
			}
		}
		d[e.Key.Name] = id
		if seen[l.sortKey(id)] {
			return res, fmt.Errorf("%s %v is given twice: %w", e.Name, id, plinth.ErrConflict)
		}
		seen[l.sortKey(id)] = true
		r := plinth.Record{Data: d, Version: 1, CreatedAt: now, UpdatedAt: now}
		if opts.Metadata != nil {
			r.Version, r.CreatedAt, r.UpdatedAt = opts.Metadata[i].Resolve(now)
		}
		if _, err := l.item(r, 0); err != nil {
			return res, err
		}
		p := &pending{l: l, id: id, cur: &r}
		if opts.Metadata != nil {
			metas[p] = opts.Metadata[i]
		}
		recs = append(recs, p)
	}
	recs, err = s.resolveConflicts(ctx, l, recs, opts.OnConflict, metas, &res)
	if err != nil {
		return res, err
	}
	// Nothing is committed yet: BeforeCommit runs before the first of the
	// call's transactions, so that its error leaves nothing behind.
	if opts.BeforeCommit != nil {
		if err := opts.BeforeCommit(); err != nil {
			return plinth.BulkResult{}, err
		}
	}
	return res, s.writeChunks(ctx, recs, opts.Checkpoint)
}

// resolveConflicts reads the stored records of the load's keys and applies
// the conflict policy.
// A replaced record takes the version and times of its metadata entry,
// where it has one, instead of the stored record's.
func (s *Store) resolveConflicts(ctx context.Context, l *layout, recs []*pending, policy plinth.Conflict, metas map[*pending]plinth.RecordMeta, res *plinth.BulkResult) ([]*pending, error) {
	var out []*pending
	for start := 0; start < len(recs); start += maxBatchGet {
		chunk := recs[start:min(start+maxBatchGet, len(recs))]
		keys := make([]string, len(chunk))
		for i, p := range chunk {
			keys[i] = l.sortKey(p.id)
		}
		items, err := s.batchGet(ctx, l, keys)
		if err != nil {
			return nil, err
		}
		stored := map[string]plinth.Record{}
		for _, it := range items {
			r, err := l.record(it)
			if err != nil {
				return nil, err
			}
			stored[strOf(it["k"])] = r
		}
		for _, p := range chunk {
			old, exists := stored[l.sortKey(p.id)]
			switch {
			case !exists:
				res.Inserted++
				out = append(out, p)
			case policy == plinth.ConflictFail:
				return nil, fmt.Errorf("%s %v: %w", l.e.Name, p.id, plinth.ErrConflict)
			case policy == plinth.ConflictSkip || plinth.SameData(old.Data, p.cur.Data):
				res.Skipped++
			default:
				res.Replaced++
				p.base = &old
				m, given := metas[p]
				if !given || m.Version == 0 {
					p.cur.Version = old.Version + 1
				}
				if !given || m.CreatedAt.IsZero() {
					p.cur.CreatedAt = old.CreatedAt
				}
				out = append(out, p)
			}
		}
	}
	return out, nil
}

// writeChunks writes records in transactions that fit DynamoDB's limit.
func (s *Store) writeChunks(ctx context.Context, recs []*pending, ck plinth.Checkpoint) error {
	t := &tx{s: s, recs: map[string]*pending{}}
	size := 1 // the in-flight item
	flush := func(last bool) error {
		if last && ck.Name != "" {
			t.ckpts = map[string][]byte{ck.Name: ck.Value}
		}
		err := t.commit(ctx)
		if err == errRerun {
			err = fmt.Errorf("%w: a concurrent writer stored one of the keys meanwhile", plinth.ErrConflict)
		}
		t, size = &tx{s: s, recs: map[string]*pending{}}, 1
		return err
	}
	reserve := 0
	if ck.Name != "" {
		reserve = 1
	}
	for _, p := range recs {
		n := 1 + len(p.l.indexItems(p.cur.Data)) + len(p.l.indexItems(baseData(p)))
		if size+n+reserve > MaxTxItems && len(t.order) > 0 {
			if err := flush(false); err != nil {
				return err
			}
		}
		key := p.l.table + "\x00" + p.l.sortKey(p.id)
		t.recs[key] = p
		t.order = append(t.order, key)
		size += n
	}
	if len(t.order) == 0 && ck.Name == "" {
		return nil
	}
	return flush(true)
}

func baseData(p *pending) map[string]any {
	if p.base == nil {
		return nil
	}
	return p.base.Data
}

// Checkpoint reads a named checkpoint.
func (s *Store) Checkpoint(ctx context.Context, name string) (plinth.Checkpoint, bool, error) {
	it, err := s.getSys(ctx, sysKey("checkpoint", name))
	if err != nil || it == nil {
		return plinth.Checkpoint{}, false, err
	}
	var v []byte
	if b, ok := it["value"].(*types.AttributeValueMemberB); ok {
		v = b.Value
	}
	if v == nil {
		v = []byte{}
	}
	return plinth.Checkpoint{Name: name, Value: v, UpdatedAt: timeOf(it["ua"])}, true, nil
}

// SetCheckpoint writes a named checkpoint with one PutItem.
func (s *Store) SetCheckpoint(ctx context.Context, name string, value []byte) error {
	if name == "" {
		return errors.New("dynamodb: a checkpoint needs a name")
	}
	_, err := s.db.PutItem(ctx, &ddb.PutItemInput{TableName: aws.String(s.sys), Item: checkpointItem(name, value)})
	return wrap(err, "set checkpoint "+name)
}

func checkpointItem(name string, value []byte) map[string]types.AttributeValue {
	return withAttrs(sysKey("checkpoint", name), map[string]types.AttributeValue{
		"value": &types.AttributeValueMemberB{Value: append([]byte{}, value...)}, "ua": str(timeText(plinth.Now()))})
}
