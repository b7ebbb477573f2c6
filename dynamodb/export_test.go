package dynamodb

import (
	"time"

	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// SetScanPage sets how many items a scan reads per Query and shard, so a
// small test spans several pages; it returns a func that restores it.
func SetScanPage(n int32) (restore func()) {
	old := scanPage
	scanPage = n
	return func() { scanPage = old }
}

// SetClockOffset moves the store's clock, as on a host whose clock is off.
func SetClockOffset(s *Store, d time.Duration) { s.offset = d.Microseconds() }

// WatchWrites calls fn with the items each call that writes names (every
// item of a TransactWriteItems, conditions checks included), as
// "table pk/sk" or "table sh/k", until stop is called.
func WatchWrites(s *Store, fn func(op string, items []string)) (stop func()) {
	s.calls.mu.Lock()
	s.calls.watch = func(op string, params any) {
		if items := writtenItems(params); len(items) > 0 {
			fn(op, items)
		}
	}
	s.calls.mu.Unlock()
	return func() {
		s.calls.mu.Lock()
		s.calls.watch = nil
		s.calls.mu.Unlock()
	}
}

func writtenItems(params any) []string {
	var out []string
	add := func(table *string, key map[string]types.AttributeValue) {
		k := *table + " "
		if _, ok := key["pk"]; ok {
			k += strOf(key["pk"]) + "/" + strOf(key["sk"])
		} else {
			k += strOf(key["sh"]) + "/" + strOf(key["k"])
		}
		out = append(out, k)
	}
	switch in := params.(type) {
	case *ddb.PutItemInput:
		add(in.TableName, in.Item)
	case *ddb.UpdateItemInput:
		add(in.TableName, in.Key)
	case *ddb.DeleteItemInput:
		add(in.TableName, in.Key)
	case *ddb.BatchWriteItemInput:
		for table, reqs := range in.RequestItems {
			for _, r := range reqs {
				if r.PutRequest != nil {
					add(&table, r.PutRequest.Item)
				} else if r.DeleteRequest != nil {
					add(&table, r.DeleteRequest.Key)
				}
			}
		}
	case *ddb.TransactWriteItemsInput:
		for _, it := range in.TransactItems {
			switch {
			case it.Put != nil:
				add(it.Put.TableName, it.Put.Item)
			case it.Update != nil:
				add(it.Update.TableName, it.Update.Key)
			case it.Delete != nil:
				add(it.Delete.TableName, it.Delete.Key)
			case it.ConditionCheck != nil:
				add(it.ConditionCheck.TableName, it.ConditionCheck.Key)
			}
		}
	}
	return out
}

// Lanes is how many lanes the outbox and the audit log have.
const Lanes = lanes

// Bounds returns how many bounds the store took.
func Bounds(s *Store) int64 { return s.bounds.Load() }
