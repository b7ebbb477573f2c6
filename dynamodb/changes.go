package dynamodb

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/plinth-data/plinth"
)

// watermarkKind names DynamoDB watermarks: "ddb.{n}", n a fenced change
// number. Since=W selects the records whose change number is above n.
const watermarkKind = "ddb"

// scanPage is how many items a scan reads per Query and shard.
var scanPage int32 = 200

// since decodes a watermark into the change number it names.
func (s *Store) since(ctx context.Context, w plinth.Watermark) (int64, error) {
	pos, err := w.Position(watermarkKind)
	if err != nil || w == "" {
		return 0, err
	}
	if len(pos) != 1 {
		return 0, plinth.BadWatermark(w, "it is not a watermark a Plinth store made; pass the watermark of an earlier extract unchanged")
	}
	if pos[0] > uint64(s.tick(0)+s.opts.ClockSkew.Microseconds()) {
		return 0, plinth.BadWatermark(w, "it is ahead of this database: take a full extract")
	}
	return int64(pos[0]), nil
}

// Scan takes the bound (its number is the watermark), then reads every
// shard with consistent Queries in key order and merges them. It is not
// one snapshot (DynamoDB has none): each record is read as it is when its
// page is read, so a scan that runs during writes may see a record's newer
// state, or a record inserted after the scan began, and misses records
// deleted before it reaches them. Each record comes once and in key
// order; writes after the bound are all in the next incremental scan.
func (s *Store) Scan(ctx context.Context, e *plinth.Entity, q plinth.ScanQuery, fn func(plinth.Record) error) (plinth.Watermark, error) {
	l, err := s.layout(e)
	if err != nil {
		return "", err
	}
	after, err := s.since(ctx, q.Since)
	if err != nil {
		return "", err
	}
	mark, err := s.bound(ctx)
	if err != nil {
		return "", err
	}
	src := s.plan(l, q.Conditions, "", scanPage, true)
	if m, ok := src.(*merge); ok && s.opts.ScanPrefetch {
		stop := m.prefetch(ctx)
		defer stop()
	}
	// Since and UpdatedSince are checked here rather than by a
	// FilterExpression: DynamoDB charges for the items read either way,
	// and minidyn counts other partitions' items against a filtered
	// Query's Limit, so its pages would not advance.
	match := plinth.Query{Conditions: q.Conditions}
	for {
		if err := ctx.Err(); err != nil {
			return "", err
		}
		it, ok, err := src.next(ctx)
		if err != nil {
			return "", err
		}
		if !ok {
			return plinth.NewWatermark(watermarkKind, uint64(mark)), nil
		}
		if q.Since != "" && numOf(it["cs"]) <= after || !q.UpdatedSince.IsZero() && timeOf(it["ua"]).Before(q.UpdatedSince) {
			continue
		}
		r, err := l.record(it)
		if err != nil {
			return "", err
		}
		if !match.Matches(r.Data) {
			continue
		}
		if err := fn(r); err != nil {
			return "", err
		}
	}
}

// Tombstones: one item per deletion in the system table, partition
// "tomb|{table}", sort key the write's changeKey, written in the deleting
// transaction. Their order is change order.
func tombstoneItem(l *layout, n int64, sk string, id any) map[string]types.AttributeValue {
	return withAttrs(sysKey("tomb|"+l.table, sk), map[string]types.AttributeValue{
		"key": str(plinth.KeyString(id)), "da": str(timeText(plinth.Now())), "cs": num(n)})
}

var horizonKey = sysKey("tombhorizon", "-")

// Deletions lists the tombstones after since, in change order.
func (s *Store) Deletions(ctx context.Context, e *plinth.Entity, since plinth.Watermark, fn func(plinth.Tombstone) error) (plinth.Watermark, error) {
	l, err := s.layout(e)
	if err != nil {
		return "", err
	}
	after, err := s.since(ctx, since)
	if err != nil {
		return "", err
	}
	mark, err := s.bound(ctx)
	if err != nil {
		return "", err
	}
	if since != "" {
		h, err := s.getSys(ctx, horizonKey)
		if err != nil {
			return "", err
		}
		if h != nil && numOf(h["cs"]) > after {
			return "", &plinth.WatermarkExpiredError{Since: since, Oldest: timeOf(h["before"])}
		}
	}
	var ferr error
	err = s.querySys(ctx, "tomb|"+l.table, pad(after)+"|~", pad(mark)+"|~", 0, func(it map[string]types.AttributeValue) bool {
		if ferr = ctx.Err(); ferr != nil {
			return false
		}
		id, perr := l.e.ParseKey(strOf(it["key"]))
		if perr != nil {
			ferr = fmt.Errorf("dynamodb: tombstone key %q: %w", strOf(it["key"]), perr)
			return false
		}
		ferr = fn(plinth.Tombstone{Key: id, DeletedAt: timeOf(it["da"])})
		return ferr == nil
	})
	if err == nil {
		err = ferr
	}
	if err != nil {
		return "", err
	}
	return plinth.NewWatermark(watermarkKind, uint64(mark)), nil
}

// PurgeTombstones deletes the tombstones of deletions before olderThan in
// every prepared entity and raises the horizon to the highest change
// number purged.
func (s *Store) PurgeTombstones(ctx context.Context, olderThan time.Time) (int64, error) {
	var n, top int64
	ds := s.domains.Load()
	if ds == nil {
		return 0, nil
	}
	for _, d := range *ds {
		for _, e := range d.Entities {
			l, err := s.layout(e)
			if err != nil {
				return n, err
			}
			var gone []map[string]types.AttributeValue
			err = s.querySys(ctx, "tomb|"+l.table, "", "", 0, func(it map[string]types.AttributeValue) bool {
				if timeOf(it["da"]).Before(olderThan) {
					gone = append(gone, it)
				}
				return true
			})
			if err != nil {
				return n, err
			}
			for _, it := range gone {
				if _, err := s.db.DeleteItem(ctx, &ddb.DeleteItemInput{TableName: aws.String(s.sys), Key: sysKey(strOf(it["pk"]), strOf(it["sk"]))}); err != nil {
					return n, wrap(err, "purge tombstones")
				}
				n++
				top = max(top, numOf(it["cs"]))
			}
			if err := s.purgeGone(ctx, l, olderThan); err != nil {
				return n, err
			}
		}
	}
	if n == 0 {
		return 0, nil
	}
	return n, s.raiseHorizon(ctx, top, olderThan)
}

// purgeGone deletes the gone items (commit.go) of deletions before
// olderThan: long after, a record created again under the key takes a
// higher number from the clock alone.
func (s *Store) purgeGone(ctx context.Context, l *layout, olderThan time.Time) error {
	var keys []string
	err := s.querySys(ctx, "gone|"+l.table, "", "", 0, func(it map[string]types.AttributeValue) bool {
		if numOf(it["cs"]) < olderThan.UnixMicro() {
			keys = append(keys, strOf(it["sk"]))
		}
		return true
	})
	for _, k := range keys {
		if err != nil {
			break
		}
		_, err = s.db.DeleteItem(ctx, &ddb.DeleteItemInput{TableName: aws.String(s.sys), Key: sysKey("gone|"+l.table, k),
			ConditionExpression:       aws.String("cs < :t"),
			ExpressionAttributeValues: map[string]types.AttributeValue{":t": num(olderThan.UnixMicro())}})
		if isConditionFailed(err) {
			err = nil
		}
	}
	return wrap(err, "purge the gone items of "+l.table)
}

func (s *Store) raiseHorizon(ctx context.Context, cs int64, before time.Time) error {
	h, err := s.getSys(ctx, horizonKey)
	if err != nil {
		return err
	}
	if h != nil {
		cs = max(cs, numOf(h["cs"]))
		if b := timeOf(h["before"]); b.After(before) {
			before = b
		}
	}
	_, err = s.db.PutItem(ctx, &ddb.PutItemInput{TableName: aws.String(s.sys),
		Item: withAttrs(horizonKey, map[string]types.AttributeValue{"cs": num(cs), "before": str(timeText(before))})})
	return wrap(err, "record the tombstone horizon")
}

// LastUpdated reads the "ua" index of each shard (newest first, one item)
// and the newest tombstone.
func (s *Store) LastUpdated(ctx context.Context, e *plinth.Entity) (time.Time, error) {
	l, err := s.layout(e)
	if err != nil {
		return time.Time{}, err
	}
	var last time.Time
	for sh := range l.shards {
		out, err := s.db.Query(ctx, &ddb.QueryInput{TableName: aws.String(l.table), IndexName: aws.String("ua"),
			KeyConditionExpression:    aws.String("sh = :sh"),
			ExpressionAttributeValues: map[string]types.AttributeValue{":sh": str(strconv.Itoa(sh))},
			ScanIndexForward:          aws.Bool(false), Limit: aws.Int32(1)})
		if err != nil {
			return time.Time{}, wrap(err, "read the newest record of "+l.table)
		}
		for _, it := range out.Items {
			if t := timeOf(it["ua"]); t.After(last) {
				last = t
			}
		}
	}
	out, err := s.db.Query(ctx, &ddb.QueryInput{TableName: aws.String(s.sys),
		KeyConditionExpression:    aws.String("pk = :pk"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":pk": str("tomb|" + l.table)},
		ScanIndexForward:          aws.Bool(false), Limit: aws.Int32(1), ConsistentRead: aws.Bool(true)})
	if err != nil {
		return time.Time{}, wrap(err, "read the newest tombstone of "+l.table)
	}
	for _, it := range out.Items {
		if t := timeOf(it["da"]); t.After(last) {
			last = t
		}
	}
	return last, nil
}
