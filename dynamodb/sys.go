package dynamodb

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/google/uuid"
)

// Change numbers, without a counter. Every write takes a number from its
// process's hybrid logical clock (see tick): microseconds since 1970, but
// always above the last number the process handed out and above the
// number of every record the write read. It takes it when it appends its
// first event or audit record, or else just before it commits, and stamps
// it on what it writes ("cs" on records; the sort key of tombstones,
// outbox entries and audit log records, with the write's token so that
// numbers of two processes never collide). No item is shared by all
// writes: a write's outbox, audit log and in-flight items go to one of
// `lanes` partitions, chosen by its token.
//
// Before taking a number a write registers itself as in flight (an item
// "inflight|{lane}", "{token}" holding a number below any it will take),
// and its transaction deletes that item. Readers that need "nothing at or
// below here can still commit" (a scan's watermark, the relay, the
// chainer) take the bound: the clock, then, after waiting the clock skew
// the store allows (?clock_skew=, DefaultClockSkew), the lowest "from" of
// the in-flight items of every lane (see bound). A write that registers
// after the reader looked takes numbers above the reader's clock: within
// one process always, across processes while their clocks agree within
// the allowed skew. An in-flight item lives at most inflightTTL; a reader
// deletes expired ones, which makes their writer's commit fail, so a
// crashed writer cannot hold the relay back. See README, "DynamoDB store".

// lanes is how many partitions the outbox, the audit log and the in-flight
// items are spread over. Readers read them all; a write uses one.
const lanes = 8

// inflightTTL is how long a write may take from its registration to its
// commit.
const inflightTTL = 2 * time.Minute

// laneOf is the lane of a write's token.
func laneOf(token string) string {
	h := fnv.New32a()
	h.Write([]byte(token))
	return strconv.Itoa(int(h.Sum32() % lanes))
}

// tick returns the next number of the process's clock: the time in
// microseconds, but above every number it returned before and at least
// floor.
func (s *Store) tick(floor int64) int64 {
	for {
		last := s.clock.Load()
		n := max(time.Now().UnixMicro()+s.offset, last+1, floor)
		if s.clock.CompareAndSwap(last, n) {
			return n
		}
	}
}

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

// begin registers a write as in flight: numbers it takes from now on are
// above the item's "from".
func (s *Store) begin(ctx context.Context) (token string, until time.Time, err error) {
	token = uuid.NewString()
	until = time.Now().Add(inflightTTL)
	_, err = s.db.PutItem(ctx, &ddb.PutItemInput{TableName: aws.String(s.sys),
		Item: withAttrs(sysKey("inflight|"+laneOf(token), token), map[string]types.AttributeValue{
			"from": num(s.tick(0)), "until": num(until.UnixMicro())})})
	if err != nil {
		return "", until, wrap(err, "register a write")
	}
	return token, until, nil
}

// endFlight removes a write's in-flight item when it will not commit.
func (s *Store) endFlight(ctx context.Context, token string) {
	s.db.DeleteItem(ctx, &ddb.DeleteItemInput{TableName: aws.String(s.sys), Key: sysKey("inflight|"+laneOf(token), token)})
}

// flightDone is the transaction item that ends a write's flight; it fails
// when a reader expired it.
func (s *Store) flightDone(token string) types.TransactWriteItem {
	return types.TransactWriteItem{Delete: &types.Delete{TableName: aws.String(s.sys), Key: sysKey("inflight|"+laneOf(token), token),
		ConditionExpression: aws.String("attribute_exists(pk)")}}
}

// bound returns a change number at or below which every write has
// committed or never will. It waits the allowed clock skew between taking
// the clock and reading the in-flight items, so that a write registering
// after that read, on a host whose clock is behind by less than the skew,
// still takes numbers above the bound.
func (s *Store) bound(ctx context.Context) (int64, error) {
	s.bounds.Add(1)
	b := s.tick(0)
	if d := s.opts.ClockSkew; d > 0 {
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	now := time.Now().UnixMicro()
	for _, pk := range s.partitions("inflight") {
		var expired []string
		err := s.querySys(ctx, pk, "", "", 0, func(it map[string]types.AttributeValue) bool {
			if numOf(it["until"]) < now {
				expired = append(expired, strOf(it["sk"]))
			} else {
				b = min(b, numOf(it["from"]))
			}
			return true
		})
		if err != nil {
			return 0, err
		}
		for _, token := range expired {
			_, err := s.db.DeleteItem(ctx, &ddb.DeleteItemInput{TableName: aws.String(s.sys), Key: sysKey(pk, token),
				ConditionExpression:       aws.String("#u < :now"),
				ExpressionAttributeNames:  map[string]string{"#u": "until"},
				ExpressionAttributeValues: map[string]types.AttributeValue{":now": num(now)}})
			if err != nil && !isConditionFailed(err) {
				return 0, wrap(err, "expire an abandoned write")
			}
		}
	}
	for {
		k := s.known.Load()
		if b <= k || s.known.CompareAndSwap(k, b) {
			return b, nil
		}
	}
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

// changeKey is the sort key of an item a write makes in the outbox, the
// audit log or the tombstones: its change number, its token (so that the
// numbers of two processes never collide) and its place in the write.
func changeKey(n int64, token string, i int) string {
	return pad(n) + "|" + token + "|" + fmt.Sprintf("%05d", i)
}

// parseChangeKey splits a changeKey, or the "{n}|{i}" of a store written
// before lanes (token ""); ok is false when sk is neither.
func parseChangeKey(sk string) (n int64, token string, i int, ok bool) {
	parts := strings.Split(sk, "|")
	if len(parts) == 2 {
		parts = []string{parts[0], "", parts[1]}
	} else if len(parts) != 3 || parts[1] == "" {
		return 0, "", 0, false
	}
	n, err1 := strconv.ParseInt(parts[0], 10, 64)
	i, err2 := strconv.Atoi(parts[2])
	return n, parts[1], i, err1 == nil && err2 == nil
}

// laneKey is the key of a write's item in a laned partition ("outbox",
// "auditlog"), from its changeKey: in its token's lane, or in the partition
// without lanes of a store written before them.
func laneKey(part, sk string) (map[string]types.AttributeValue, bool) {
	_, token, _, ok := parseChangeKey(sk)
	if token == "" {
		return sysKey(part, sk), ok
	}
	return sysKey(part+"|"+laneOf(token), sk), ok
}

// Stores written before lanes and clocks (one counter item, "seq", and
// the partitions "outbox", "auditlog" and "inflight" without lanes): when
// Prepare finds the counter, readers also read those partitions, so that
// events and audit records written then, or by processes of the old
// version still running, are published and chained, first (their numbers,
// drawn from the counter, are far below any clock's). Delete the item
// "seq"/"seq" once no process of the old version runs and those
// partitions are empty.
var legacyCounterKey = sysKey("seq", "seq")

// partitions lists the partitions of a laned part.
func (s *Store) partitions(part string) []string {
	out := make([]string, 0, lanes+1)
	if s.legacy.Load() {
		out = append(out, part)
	}
	for lane := range lanes {
		out = append(out, part+"|"+itoa(lane))
	}
	return out
}

// findLegacy notes whether the store was written before lanes.
func (s *Store) findLegacy(ctx context.Context) error {
	it, err := s.getSys(ctx, legacyCounterKey)
	s.legacy.Store(it != nil)
	return err
}

// readLanes returns up to limit items of a laned partition at or below
// a bound, in change number order. It first reads the lanes as they are:
// nothing there (an idle store costs one Query per lane) is the answer; so
// are limit items below the last bound it took, which is still a bound.
// Otherwise it takes a new bound, waiting the clock skew, and reads the
// lanes again below it: no item it leaves out can then come before one it
// returns.
func (s *Store) readLanes(ctx context.Context, part string, limit int) ([]map[string]types.AttributeValue, error) {
	items, err := s.readBelow(ctx, part, limit, "")
	if err != nil || len(items) == 0 {
		return nil, err
	}
	known := pad(s.known.Load()) + "|~"
	n := 0
	for n < len(items) && strOf(items[n]["sk"]) <= known {
		n++
	}
	if n == limit {
		return items, nil
	}
	mark, err := s.bound(ctx)
	if err != nil {
		return nil, err
	}
	return s.readBelow(ctx, part, limit, pad(mark)+"|~")
}

// readBelow reads up to limit items of each lane of a part, with sort keys
// up to through ("" for all), and merges them, cut where the first lane
// that had more stops.
func (s *Store) readBelow(ctx context.Context, part string, limit int, through string) ([]map[string]types.AttributeValue, error) {
	cut := "~"
	var all []map[string]types.AttributeValue
	for _, pk := range s.partitions(part) {
		var got []map[string]types.AttributeValue
		err := s.querySys(ctx, pk, "", through, int32(limit), func(it map[string]types.AttributeValue) bool {
			got = append(got, it)
			return len(got) < limit
		})
		if err != nil {
			return nil, err
		}
		if len(got) == limit {
			cut = min(cut, strOf(got[limit-1]["sk"]))
		}
		all = append(all, got...)
	}
	slices.SortFunc(all, func(a, b map[string]types.AttributeValue) int { return strings.Compare(strOf(a["sk"]), strOf(b["sk"])) })
	n := 0
	for n < len(all) && n < limit && strOf(all[n]["sk"]) <= cut {
		n++
	}
	return all[:n], nil
}

// sysExist returns the sort keys of the system table items among keys that
// exist, read consistently, 100 a BatchGetItem.
func (s *Store) sysExist(ctx context.Context, keys []map[string]types.AttributeValue) (map[string]bool, error) {
	out := map[string]bool{}
	for len(keys) > 0 {
		k := min(len(keys), maxBatchGet)
		req := map[string]types.KeysAndAttributes{s.sys: {Keys: keys[:k], ConsistentRead: aws.Bool(true), ProjectionExpression: aws.String("sk")}}
		keys = keys[k:]
		for len(req) > 0 {
			res, err := s.db.BatchGetItem(ctx, &ddb.BatchGetItemInput{RequestItems: req})
			if err != nil {
				return nil, wrap(err, "read the outbox")
			}
			for _, it := range res.Responses[s.sys] {
				out[strOf(it["sk"])] = true
			}
			req = res.UnprocessedKeys
		}
	}
	return out, nil
}
