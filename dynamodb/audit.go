package dynamodb

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/plinth-data/plinth"
)

// The audit trail (docs/audit-chain.md): writers put log items in their
// own transactions, in the write's lane "auditlog|{lane}", sort key a
// changeKey (which is the LogID), so no two appends touch one item; the
// chainer reads the lanes up to the bound (nothing below it can still
// commit) in change number order, and moves records into the chain,
// "audit|{seq}", with the head item "audithead" conditioned on the
// sequence it expects. One chained record is a delete and a put, so
// ChainAudit takes at most 49 records (98 items and the head); AppendAudit
// the same, for one limit.
const maxAuditBatch = (MaxTxItems - 2) / 2

var headKey = sysKey("audithead", "-")

// MaxAtomicBatch is how many records AppendAudit and ChainAudit take.
func (s *Store) MaxAtomicBatch() int { return maxAuditBatch }

// AppendAudit adds a record to the write's audit log. Its LogID is the
// log item's sort key: the write's change number and its place in the write.
func (t *tx) AppendAudit(ctx context.Context, rec plinth.AuditRecord) (plinth.AuditRecord, error) {
	n, err := t.seq(ctx)
	if err != nil {
		return plinth.AuditRecord{}, err
	}
	rec = plinth.NormalizeAudit(rec)
	rec.Sequence, rec.PrevHash, rec.Hash = 0, "", ""
	rec.LogID = changeKey(n, t.token, len(t.audits))
	t.audits = append(t.audits, rec)
	return rec, nil
}

func auditLogItem(r plinth.AuditRecord) (map[string]types.AttributeValue, error) {
	lid := r.LogID
	r.LogID = ""
	b, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	key, _ := laneKey("auditlog", lid)
	it := withAttrs(key, map[string]types.AttributeValue{"r": str(string(b))})
	if size := itemSize(it); size > MaxItemBytes {
		return nil, &plinth.TooLargeError{Limit: "DynamoDB's item limit of 400 KB", Detail: fmt.Sprintf("an audit record takes %d bytes", size)}
	}
	return it, nil
}

// AppendAudit appends records in one write.
func (s *Store) AppendAudit(ctx context.Context, recs []plinth.AuditRecord) ([]plinth.AuditRecord, error) {
	if len(recs) > maxAuditBatch {
		return nil, fmt.Errorf("dynamodb: %d audit records in one append; at most %d", len(recs), maxAuditBatch)
	}
	var out []plinth.AuditRecord
	err := s.Write(ctx, func(ptx plinth.Tx) error {
		out = out[:0]
		for _, r := range recs {
			got, err := ptx.(*tx).AppendAudit(ctx, r)
			if err != nil {
				return err
			}
			out = append(out, got)
		}
		return nil
	})
	return out, err
}

func decodeAudit(it map[string]types.AttributeValue) (plinth.AuditRecord, error) {
	var r plinth.AuditRecord
	if err := json.Unmarshal([]byte(strOf(it["r"])), &r); err != nil {
		return r, fmt.Errorf("dynamodb: audit item %s: %w", strOf(it["sk"]), err)
	}
	r.Time = r.Time.UTC()
	return r, nil
}

// UnchainedAudit returns log records up to the bound, in log order
// (readLanes).
func (s *Store) UnchainedAudit(ctx context.Context, limit int) ([]plinth.AuditRecord, error) {
	if limit <= 0 {
		limit = plinth.DefaultLimit
	}
	items, err := s.readLanes(ctx, "auditlog", limit)
	if err != nil {
		return nil, err
	}
	out := make([]plinth.AuditRecord, 0, len(items))
	for _, it := range items {
		r, err := decodeAudit(it)
		if err != nil {
			return nil, err
		}
		r.LogID = strOf(it["sk"])
		out = append(out, r)
	}
	return out, nil
}

// CountUnchainedAudit counts the log.
func (s *Store) CountUnchainedAudit(ctx context.Context) (int64, error) {
	var n int64
	for _, pk := range s.partitions("auditlog") {
		if err := s.querySys(ctx, pk, "", "", 0, func(map[string]types.AttributeValue) bool { n++; return true }); err != nil {
			return n, err
		}
	}
	return n, nil
}

// AuditHead reads the head item.
func (s *Store) AuditHead(ctx context.Context) (int64, string, error) {
	it, err := s.getSys(ctx, headKey)
	return numOf(it["seq"]), strOf(it["hash"]), err
}

// ChainAudit moves records from the log into the chain in one transaction,
// conditioned on the head and on each log item still being there.
func (s *Store) ChainAudit(ctx context.Context, recs []plinth.AuditRecord) error {
	if len(recs) == 0 {
		return nil
	}
	if len(recs) > maxAuditBatch {
		return fmt.Errorf("dynamodb: %d audit records in one chain step; at most %d", len(recs), maxAuditBatch)
	}
	conflict := func(why string) error { return fmt.Errorf("dynamodb: chain audit: %s: %w", why, plinth.ErrConflict) }
	var items []types.TransactWriteItem
	for i, r := range recs {
		if i > 0 && (r.Sequence != recs[i-1].Sequence+1 || r.PrevHash != recs[i-1].Hash) {
			return conflict("the records do not link")
		}
		key, ok := laneKey("auditlog", r.LogID)
		if !ok {
			return conflict(fmt.Sprintf("%q is not in the log", r.LogID))
		}
		items = append(items, types.TransactWriteItem{Delete: &types.Delete{TableName: aws.String(s.sys),
			Key: key, ConditionExpression: aws.String("attribute_exists(pk)")}})
		r.LogID = ""
		b, err := json.Marshal(r)
		if err != nil {
			return err
		}
		items = append(items, put(s.sys, withAttrs(sysKey("audit", pad(r.Sequence)), map[string]types.AttributeValue{"r": str(string(b))})))
	}
	first, last := recs[0], recs[len(recs)-1]
	head := types.Put{TableName: aws.String(s.sys),
		Item: withAttrs(headKey, map[string]types.AttributeValue{"seq": num(last.Sequence), "hash": str(last.Hash)})}
	if first.Sequence == 1 {
		head.ConditionExpression = aws.String("attribute_not_exists(pk)")
		if first.PrevHash != "" {
			return conflict("the first record has a previous hash")
		}
	} else {
		head.ConditionExpression = aws.String("seq = :seq AND #h = :hash")
		head.ExpressionAttributeNames = map[string]string{"#h": "hash"}
		head.ExpressionAttributeValues = map[string]types.AttributeValue{":seq": num(first.Sequence - 1), ":hash": str(first.PrevHash)}
	}
	items = append(items, types.TransactWriteItem{Put: &head})
	_, err := s.db.TransactWriteItems(ctx, &ddb.TransactWriteItemsInput{TransactItems: items})
	var tce *types.TransactionCanceledException
	if errors.As(err, &tce) {
		return conflict("the head moved or a record left the log")
	}
	return wrap(err, "chain audit")
}

// ScanAudit reads the chain after a sequence, in order.
func (s *Store) ScanAudit(ctx context.Context, after int64, fn func(plinth.AuditRecord) error) error {
	var ferr error
	err := s.querySys(ctx, "audit", pad(after), "", 0, func(it map[string]types.AttributeValue) bool {
		r, err := decodeAudit(it)
		if err == nil {
			err = fn(r)
		}
		ferr = err
		return err == nil
	})
	if err != nil {
		return err
	}
	return ferr
}

// AuditRecords pages through the chain, keeping the matching records. The
// chain is read in order and filtered here: audit search is an
// occasional, operator-driven read.
func (s *Store) AuditRecords(ctx context.Context, q plinth.AuditQuery) ([]plinth.AuditRecord, bool, error) {
	limit := q.Limit
	if limit <= 0 {
		limit = plinth.DefaultLimit
	}
	out := []plinth.AuditRecord{}
	more := false
	var derr error
	err := s.querySys(ctx, "audit", pad(q.After), "", 0, func(it map[string]types.AttributeValue) bool {
		r, err := decodeAudit(it)
		if err != nil {
			derr = err
			return false
		}
		if !q.Matches(r) {
			return true
		}
		if len(out) == limit {
			more = true
			return false
		}
		out = append(out, r)
		return true
	})
	return out, more, errors.Join(err, derr)
}

// AcquireChainLease takes or renews the chainer's lease.
func (s *Store) AcquireChainLease(ctx context.Context, holder string, ttl time.Duration) (bool, error) {
	return s.acquireLease(ctx, "chain", holder, ttl)
}

var _ = strings.Cut

// trimBatch is how many chain items TrimAudit reads before deleting them.
const trimBatch = 1000

// TrimAudit deletes chained records up to through, but never the head
// (plinth.AuditTrimmer), oldest first, with BatchWriteItem (25 deletes a
// call). Unlike SQL stores it is not one transaction — DynamoDB's hold 100
// items — so a trim cut short leaves the oldest records deleted and the
// rest in place; running it again finishes it. The chain after through,
// and the head item, are never touched.
func (s *Store) TrimAudit(ctx context.Context, through int64) (int64, error) {
	head, _, err := s.AuditHead(ctx)
	if err != nil {
		return 0, err
	}
	through = min(through, head-1)
	var n int64
	for through >= 1 {
		var keys []map[string]types.AttributeValue
		err := s.querySys(ctx, "audit", "", pad(through), 0, func(it map[string]types.AttributeValue) bool {
			keys = append(keys, sysKey("audit", strOf(it["sk"])))
			return len(keys) < trimBatch
		})
		if err != nil {
			return n, err
		}
		if len(keys) == 0 {
			break
		}
		for len(keys) > 0 {
			k := min(len(keys), 25)
			if err := s.deleteSysItems(ctx, keys[:k]); err != nil {
				return n, wrap(err, "trim the audit trail")
			}
			n, keys = n+int64(k), keys[k:]
		}
	}
	return n, nil
}

// deleteSysItems deletes up to 25 items of the system table, sending
// again what DynamoDB leaves unprocessed.
func (s *Store) deleteSysItems(ctx context.Context, keys []map[string]types.AttributeValue) error {
	reqs := make([]types.WriteRequest, len(keys))
	for i, k := range keys {
		reqs[i] = types.WriteRequest{DeleteRequest: &types.DeleteRequest{Key: k}}
	}
	for wait := 10 * time.Millisecond; len(reqs) > 0; wait = min(2*wait, time.Second) {
		out, err := s.db.BatchWriteItem(ctx, &ddb.BatchWriteItemInput{RequestItems: map[string][]types.WriteRequest{s.sys: reqs}})
		if err != nil {
			return err
		}
		if reqs = out.UnprocessedItems[s.sys]; len(reqs) > 0 {
			select {
			case <-time.After(wait):
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	return nil
}
