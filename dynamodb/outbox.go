package dynamodb

import (
	"context"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/plinth-data/plinth"
)

// The outbox: an entry is two items written in the change's transaction,
// "event|{id}" (makes the event ID unique) and an item in the write's lane
// "outbox|{lane}", sort key changeKey (waiting to be published, in change
// number order). Its Sequence is n·1000 + its place in the write. The
// relay reads entries up to the bound, so none with a lower number can
// still commit; publishing deletes the waiting item. Per record, change
// numbers rise with versions (a write takes a number above the record's),
// so a record's events are published in the order of its versions; across
// records, in change number order, which is the order the writes took
// their numbers while the writers' clocks agree within clockSkew. DynamoDB
// Streams is the AWS-native alternative (README).
const seqPerWrite = 1000

// AppendEvent adds an event to the write's outbox.
func (t *tx) AppendEvent(ctx context.Context, e plinth.OutboxEntry) error {
	for _, o := range t.events {
		if o.EventID == e.EventID {
			return fmt.Errorf("event %s: %w", e.EventID, plinth.ErrConflict)
		}
	}
	it, err := t.s.getSys(ctx, sysKey("event", e.EventID))
	if err != nil {
		return err
	}
	if it != nil {
		return fmt.Errorf("event %s: %w", e.EventID, plinth.ErrConflict)
	}
	if len(t.events) >= seqPerWrite {
		return fmt.Errorf("dynamodb: a write may append at most %d events", seqPerWrite)
	}
	if _, err := t.seq(ctx); err != nil {
		return err
	}
	e.Payload = append([]byte(nil), e.Payload...)
	t.events = append(t.events, e)
	return nil
}

func (s *Store) eventItems(b *txItems, sk, prev string, e plinth.OutboxEntry) error {
	key, _ := laneKey("outbox", sk)
	it := withAttrs(key, map[string]types.AttributeValue{
		"id": str(e.EventID), "domain": str(e.Domain), "subject": str(e.Subject),
		"payload": &types.AttributeValueMemberB{Value: append([]byte{'p'}, e.Payload...)}})
	if prev != "" {
		it["prev"] = str(prev)
	}
	if e.Trace != "" {
		it["trace"] = str(e.Trace)
	}
	if size := itemSize(it); size > MaxItemBytes {
		return &plinth.TooLargeError{Limit: "DynamoDB's item limit of 400 KB",
			Detail: fmt.Sprintf("the change event %s (old data, new data and state) takes %d bytes", e.EventID, size)}
	}
	b.add(put(s.sys, it), nil)
	b.add(types.TransactWriteItem{Put: &types.Put{TableName: aws.String(s.sys),
		Item:                withAttrs(sysKey("event", e.EventID), map[string]types.AttributeValue{"o": str(sk)}),
		ConditionExpression: aws.String("attribute_not_exists(pk)")}}, fmt.Errorf("event %s: %w", e.EventID, plinth.ErrConflict))
	return nil
}

// PendingEvents returns the waiting entries at or below the bound, in
// change number order (readLanes).
func (s *Store) PendingEvents(ctx context.Context, limit int) ([]plinth.OutboxEntry, error) {
	if limit <= 0 {
		limit = plinth.DefaultLimit
	}
	items, err := s.readLanes(ctx, "outbox", limit)
	if err == nil {
		items, err = s.inRecordOrder(ctx, items)
	}
	if err != nil {
		return nil, err
	}
	out := make([]plinth.OutboxEntry, 0, len(items))
	for _, it := range items {
		n, _, i, ok := parseChangeKey(strOf(it["sk"]))
		if !ok {
			return nil, fmt.Errorf("dynamodb: outbox item %q", strOf(it["sk"]))
		}
		// The payload carries one leading byte: minidyn cannot read back an
		// empty binary attribute.
		payload := []byte{}
		if b, ok := it["payload"].(*types.AttributeValueMemberB); ok && len(b.Value) > 0 {
			payload = b.Value[1:]
		}
		out = append(out, plinth.OutboxEntry{Sequence: n*seqPerWrite + int64(i), Domain: strOf(it["domain"]), Subject: strOf(it["subject"]),
			EventID: strOf(it["id"]), Payload: payload, Trace: strOf(it["trace"])})
	}
	return out, nil
}

// inRecordOrder cuts the batch before the first event whose record's
// event before it ("prev") is still waiting in the outbox but is not in
// the batch. The bound keeps that from happening while the writers' clocks
// agree within the allowed skew; this makes a record's events come in the
// order of its versions on any clocks: the event before committed before
// the later event's write began, so a consistent read sees it unless it
// was published.
func (s *Store) inRecordOrder(ctx context.Context, items []map[string]types.AttributeValue) ([]map[string]types.AttributeValue, error) {
	batch := map[string]bool{}
	var keys []map[string]types.AttributeValue
	for _, it := range items {
		batch[strOf(it["sk"])] = true
		if prev := strOf(it["prev"]); prev != "" && !batch[prev] {
			if key, ok := laneKey("outbox", prev); ok {
				keys = append(keys, key)
			}
		}
	}
	if len(keys) == 0 {
		return items, nil
	}
	waiting, err := s.sysExist(ctx, keys)
	if err != nil {
		return nil, err
	}
	for i, it := range items {
		if prev := strOf(it["prev"]); prev != "" && waiting[prev] {
			return items[:i], nil
		}
	}
	return items, nil
}

// MarkEventsSent deletes the waiting items of the events.
func (s *Store) MarkEventsSent(ctx context.Context, eventIDs []string) error {
	for _, id := range eventIDs {
		it, err := s.getSys(ctx, sysKey("event", id))
		if err != nil {
			return err
		}
		if it == nil || strOf(it["o"]) == "" {
			continue
		}
		key, ok := laneKey("outbox", strOf(it["o"]))
		if !ok {
			return fmt.Errorf("dynamodb: event %s names outbox item %q", id, strOf(it["o"]))
		}
		if _, err := s.db.DeleteItem(ctx, &ddb.DeleteItemInput{TableName: aws.String(s.sys), Key: key}); err != nil {
			return wrap(err, "mark event sent")
		}
		if _, err := s.db.UpdateItem(ctx, &ddb.UpdateItemInput{TableName: aws.String(s.sys), Key: sysKey("event", id),
			UpdateExpression: aws.String("REMOVE o")}); err != nil {
			return wrap(err, "mark event sent")
		}
	}
	return nil
}

// AcquireRelayLease takes or renews the relay's lease.
func (s *Store) AcquireRelayLease(ctx context.Context, holder string, ttl time.Duration) (bool, error) {
	return s.acquireLease(ctx, "relay", holder, ttl)
}

// acquireLease is a conditional put: free, expired, or already ours.
func (s *Store) acquireLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error) {
	now := time.Now()
	_, err := s.db.PutItem(ctx, &ddb.PutItemInput{TableName: aws.String(s.sys),
		Item: withAttrs(sysKey("lease", name), map[string]types.AttributeValue{
			"holder": str(holder), "until": num(now.Add(ttl).UnixMicro())}),
		ConditionExpression:       aws.String("attribute_not_exists(pk) OR holder = :h OR #u < :now"),
		ExpressionAttributeNames:  map[string]string{"#u": "until"},
		ExpressionAttributeValues: map[string]types.AttributeValue{":h": str(holder), ":now": num(now.UnixMicro())}})
	if isConditionFailed(err) {
		return false, nil
	}
	if err != nil {
		return false, wrap(err, "acquire the "+name+" lease")
	}
	return true, nil
}
