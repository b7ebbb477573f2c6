package dynamodb

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/google/uuid"
)

// The change counter. Every write takes the next number (UpdateItem ADD on
// one counter item) when it appends its first event or audit record, or
// else just before it commits, and stamps it on what it writes ("cs" on
// records; the sort key of tombstones, outbox entries and audit log
// records). Numbers are drawn before commit, so a lower number may commit
// later. Before drawing, a write registers itself as in flight (an item
// "inflight|{token}" holding a number at or below the one it will draw),
// and its transaction deletes that item. Readers that need "nothing at or
// below here can still commit" (a scan's watermark, the relay, the
// chainer) read the counter, then the in-flight items: the bound is the
// lowest of the counter and every in-flight "from" (see bound). An
// in-flight item lives at most inflightTTL; a reader deletes expired ones,
// which makes their writer's commit fail, so a crashed writer cannot hold
// the relay back. The counter is one item every write touches: it bounds a
// store's write rate (about a thousand writes a second on AWS) — see
// README, "DynamoDB store".
var counterKey = sysKey("seq", "seq")

// inflightTTL is how long a write may take from its first draw to its
// commit.
const inflightTTL = 2 * time.Minute

func sysKey(pk, sk string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{"pk": str(pk), "sk": str(sk)}
}

func withAttrs(key, attrs map[string]types.AttributeValue) map[string]types.AttributeValue {
	out := make(map[string]types.AttributeValue, len(key)+len(attrs))
	for k, v := range key {
		out[k] = v
	}
	for k, v := range attrs {
		out[k] = v
	}
	return out
}

// pad formats a change number so that text order is number order.
func pad(n int64) string { return fmt.Sprintf("%019d", n) }

func isConditionFailed(err error) bool {
	var ccf *types.ConditionalCheckFailedException
	return errors.As(err, &ccf)
}

func (s *Store) getSys(ctx context.Context, key map[string]types.AttributeValue) (map[string]types.AttributeValue, error) {
	out, err := s.db.GetItem(ctx, &ddb.GetItemInput{TableName: aws.String(s.sys), Key: key, ConsistentRead: aws.Bool(true)})
	if err != nil {
		return nil, wrap(err, "read "+strOf(key["pk"]))
	}
	return out.Item, nil
}

func (s *Store) ensureCounter(ctx context.Context) error {
	_, err := s.db.PutItem(ctx, &ddb.PutItemInput{TableName: aws.String(s.sys),
		Item:                withAttrs(counterKey, map[string]types.AttributeValue{"n": num(0)}),
		ConditionExpression: aws.String("attribute_not_exists(pk)")})
	if err != nil && !isConditionFailed(err) {
		return wrap(err, "create the change counter")
	}
	return nil
}

// draw takes the next change number.
func (s *Store) draw(ctx context.Context) (int64, error) {
	out, err := s.db.UpdateItem(ctx, &ddb.UpdateItemInput{TableName: aws.String(s.sys), Key: counterKey,
		UpdateExpression:          aws.String("ADD n :one"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":one": num(1)},
		ReturnValues:              types.ReturnValueUpdatedNew})
	if err != nil {
		return 0, wrap(err, "draw a change number")
	}
	return numOf(out.Attributes["n"]), nil
}

// counter reads the counter.
func (s *Store) counter(ctx context.Context) (int64, error) {
	it, err := s.getSys(ctx, counterKey)
	return numOf(it["n"]), err
}

// begin registers a write as in flight and draws its change number.
func (s *Store) begin(ctx context.Context) (n int64, token string, until time.Time, err error) {
	token = uuid.NewString()
	until = time.Now().Add(inflightTTL)
	_, err = s.db.PutItem(ctx, &ddb.PutItemInput{TableName: aws.String(s.sys),
		Item: withAttrs(sysKey("inflight", token), map[string]types.AttributeValue{
			"from": num(s.lastDrawn.Load()), "until": num(until.UnixMicro())})})
	if err != nil {
		return 0, "", until, wrap(err, "register a write")
	}
	if n, err = s.draw(ctx); err != nil {
		s.endFlight(context.WithoutCancel(ctx), token)
		return 0, "", until, err
	}
	for {
		last := s.lastDrawn.Load()
		if n <= last || s.lastDrawn.CompareAndSwap(last, n) {
			break
		}
	}
	return n, token, until, nil
}

// endFlight removes a write's in-flight item when it will not commit.
func (s *Store) endFlight(ctx context.Context, token string) {
	s.db.DeleteItem(ctx, &ddb.DeleteItemInput{TableName: aws.String(s.sys), Key: sysKey("inflight", token)})
}

// flightDone is the transaction item that ends a write's flight; it fails
// when a reader expired it.
func (s *Store) flightDone(token string) types.TransactWriteItem {
	return types.TransactWriteItem{Delete: &types.Delete{TableName: aws.String(s.sys), Key: sysKey("inflight", token),
		ConditionExpression: aws.String("attribute_exists(pk)")}}
}

// bound returns the highest change number at or below which every write
// has committed or never will.
func (s *Store) bound(ctx context.Context) (int64, error) {
	c, err := s.counter(ctx)
	if err != nil {
		return 0, err
	}
	b := c
	now := time.Now().UnixMicro()
	var expired []string
	err = s.querySys(ctx, "inflight", "", "", 0, func(it map[string]types.AttributeValue) bool {
		if numOf(it["until"]) < now {
			expired = append(expired, strOf(it["sk"]))
			return true
		}
		b = min(b, numOf(it["from"]))
		return true
	})
	if err != nil {
		return 0, err
	}
	for _, token := range expired {
		_, err := s.db.DeleteItem(ctx, &ddb.DeleteItemInput{TableName: aws.String(s.sys), Key: sysKey("inflight", token),
			ConditionExpression:       aws.String("#u < :now"),
			ExpressionAttributeNames:  map[string]string{"#u": "until"},
			ExpressionAttributeValues: map[string]types.AttributeValue{":now": num(now)}})
		if err != nil && !isConditionFailed(err) {
			return 0, wrap(err, "expire an abandoned write")
		}
	}
	return b, nil
}

// querySys reads a system partition in sort key order, from after
// (exclusive) up to through (inclusive; "" for no bound), calling fn for
// each item until it returns false.
func (s *Store) querySys(ctx context.Context, pk, after, through string, limit int32, fn func(map[string]types.AttributeValue) bool) error {
	cond := "pk = :pk AND sk > :after"
	vals := map[string]types.AttributeValue{":pk": str(pk), ":after": str(after)}
	if after == "" {
		cond, vals[":after"] = "pk = :pk AND sk >= :after", str(" ")
	}
	if through != "" {
		cond = "pk = :pk AND sk BETWEEN :after AND :through"
		vals[":through"] = str(through)
		if after != "" {
			vals[":after"] = str(after + "\x00")
		} else {
			vals[":after"] = str(" ")
		}
	}
	in := &ddb.QueryInput{TableName: aws.String(s.sys), KeyConditionExpression: aws.String(cond),
		ExpressionAttributeValues: vals, ConsistentRead: aws.Bool(true)}
	if limit > 0 {
		in.Limit = aws.Int32(limit)
	}
	for {
		out, err := s.db.Query(ctx, in)
		if err != nil {
			return wrap(err, "read "+pk)
		}
		for _, it := range out.Items {
			if !fn(it) {
				return nil
			}
		}
		if len(out.LastEvaluatedKey) == 0 {
			return nil
		}
		in.ExclusiveStartKey = out.LastEvaluatedKey
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
