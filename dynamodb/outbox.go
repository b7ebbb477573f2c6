package dynamodb

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/plinth-data/plinth"
)

// The outbox: an entry is two items written in the change's transaction,
// "event|{id}" (makes the event ID unique) and "outbox|{n}|{i}" (waiting
// to be published, in change order). Its Sequence is n·100000 + i. The
// relay reads entries up to a fence, so none with a lower number can still
// commit; publishing deletes the waiting item. Events are therefore
// published in change-number order across the store — per record that is
// the order of its versions; across records, the order the writes drew
// their numbers (which, for concurrent writes, is not necessarily the
// order DynamoDB applied them). DynamoDB Streams is the AWS-native
// alternative (README).
const seqPerWrite = 100000

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

func (s *Store) eventItems(b *txItems, n int64, i int, e plinth.OutboxEntry) error {
	sk := pad(n) + "|" + fmt.Sprintf("%05d", i)
	it := withAttrs(sysKey("outbox", sk), map[string]types.AttributeValue{
		"id": str(e.EventID), "domain": str(e.Domain), "subject": str(e.Subject),
		"payload": &types.AttributeValueMemberB{Value: append([]byte{'p'}, e.Payload...)}})
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

// PendingEvents fences the change counter and returns the waiting entries
// at or below it, in order.
func (s *Store) PendingEvents(ctx context.Context, limit int) ([]plinth.OutboxEntry, error) {
	if limit <= 0 {
		limit = plinth.DefaultLimit
	}
	mark, err := s.bound(ctx)
	if err != nil {
		return nil, err
	}
	var out []plinth.OutboxEntry
	var perr error
	err = s.querySys(ctx, "outbox", "", pad(mark)+"|~", int32(limit), func(it map[string]types.AttributeValue) bool {
		seq, err := outboxSequence(strOf(it["sk"]))
		if err != nil {
			perr = err
			return false
		}
		// The payload carries one leading byte: minidyn cannot read back an
		// empty binary attribute.
		payload := []byte{}
		if b, ok := it["payload"].(*types.AttributeValueMemberB); ok && len(b.Value) > 0 {
			payload = b.Value[1:]
		}
		out = append(out, plinth.OutboxEntry{Sequence: seq, Domain: strOf(it["domain"]), Subject: strOf(it["subject"]),
			EventID: strOf(it["id"]), Payload: payload})
		return len(out) < limit
	})
	if err == nil {
		err = perr
	}
	return out, err
}

func outboxSequence(sk string) (int64, error) {
	n, i, ok := strings.Cut(sk, "|")
	a, err1 := strconv.ParseInt(n, 10, 64)
	b, err2 := strconv.ParseInt(i, 10, 64)
	if !ok || err1 != nil || err2 != nil {
		return 0, fmt.Errorf("dynamodb: outbox item %q", sk)
	}
	return a*seqPerWrite + b, nil
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
		if _, err := s.db.DeleteItem(ctx, &ddb.DeleteItemInput{TableName: aws.String(s.sys), Key: sysKey("outbox", strOf(it["o"]))}); err != nil {
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
