package dynamodb

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"sort"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/plinth-data/plinth"
)

// DynamoDB's limits, enforced before a request is sent.
const (
	MaxItemBytes   = 400 * 1024 // one item
	MaxTxItems     = 100        // one TransactWriteItems
	MaxTableGSIs   = 20         // global secondary indexes per table
	maxBatchGet    = 100        // one BatchGetItem
	prefixShort    = 1          // runes in the short prefix bucket
	prefixLong     = 3          // runes in the long prefix bucket
	timeTextLayout = "2006-01-02T15:04:05.000000Z"
)

// layout is the storage of one entity.
type layout struct {
	e      *plinth.Entity
	table  string
	shards int
	exact  []*plinth.Filter // top-level exact filters (not on the key): x_ indexes
	prefix []*plinth.Filter // top-level prefix filters: p1_ and p3_ indexes
	arrays []*plinth.Filter // exact and prefix filters into arrays: index items
	object *plinth.Field    // the record as one object field, for decoding
}

func newLayout(e *plinth.Entity, prefix string, shards int) *layout {
	l := &layout{e: e, table: prefix + e.Domain.Name + "." + e.Plural, shards: shards,
		object: &plinth.Field{Name: e.Name, Type: plinth.TypeObject, Fields: e.Fields}}
	for _, f := range e.Filters {
		switch {
		case f.Match != plinth.MatchExact && f.Match != plinth.MatchPrefix:
			// contains and range: served by the shard merge, checked on the record
		case f.Array != nil:
			l.arrays = append(l.arrays, f)
		case f.Match == plinth.MatchPrefix:
			l.prefix = append(l.prefix, f)
		case len(f.Path) == 1 && f.Path[0] == e.Key.Name:
			// the key: GetItem
		default:
			l.exact = append(l.exact, f)
		}
	}
	return l
}

// Index is one global secondary index of an entity table.
type Index struct {
	Name, Hash string // the range key is "k", or "ua" for the ua index
}

// MarshalJSON writes the index for infrastructure code.
func (ix Index) MarshalJSON() ([]byte, error) {
	return json.Marshal(map[string]string{"indexName": ix.Name, "partitionKey": ix.Hash, "sortKey": ix.Range(), "projection": "ALL"})
}

// indexes lists the table's global secondary indexes.
func (l *layout) indexes() []Index {
	out := []Index{{Name: "ua", Hash: "sh"}}
	for _, f := range l.exact {
		out = append(out, Index{Name: "x_" + f.Param, Hash: "x_" + f.Param})
	}
	for _, f := range l.prefix {
		out = append(out, Index{Name: "p1_" + f.Param, Hash: "p1_" + f.Param}, Index{Name: "p3_" + f.Param, Hash: "p3_" + f.Param})
	}
	return out
}

// Range is the range key of an index: "ua" sorts by updatedAt, the others by key.
func (ix Index) Range() string {
	if ix.Name == "ua" {
		return "ua"
	}
	return "k"
}

// sortKey is the key as the table sorts it: integers as offset, zero-padded
// decimals (so that text order is number order, negative keys included),
// strings and UUIDs as they are (DynamoDB orders S by UTF-8 bytes, as Go
// compares strings).
func (l *layout) sortKey(id any) string {
	if n, ok := id.(int64); ok {
		return fmt.Sprintf("%020d", uint64(n)^(1<<63))
	}
	return plinth.KeyString(id)
}

// canonicalKey returns id as records hold it: 7 for "7", a lower-case UUID.
func (l *layout) canonicalKey(id any) (any, error) {
	k, err := l.e.ParseKey(plinth.KeyString(id))
	if err != nil {
		return nil, fmt.Errorf("%s key %v: %s: %w", l.e.Name, id, err, plinth.ErrNotFound)
	}
	return k, nil
}

func (l *layout) shard(id any) string {
	h := fnv.New32a()
	h.Write([]byte(plinth.KeyString(id)))
	return strconv.Itoa(int(h.Sum32() % uint32(l.shards)))
}

// keyAttrs is the primary key of a record's item.
func (l *layout) keyAttrs(id any) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{"sh": str(l.shard(id)), "k": str(l.sortKey(id))}
}

func str(s string) *types.AttributeValueMemberS { return &types.AttributeValueMemberS{Value: s} }
func num(n int64) *types.AttributeValueMemberN {
	return &types.AttributeValueMemberN{Value: strconv.FormatInt(n, 10)}
}

func timeText(t time.Time) string { return t.UTC().Format(timeTextLayout) }

// item encodes a record, with the change number cs of the write.
func (l *layout) item(r plinth.Record, cs int64) (map[string]types.AttributeValue, error) {
	if err := checkTypes(l.e, r.Data); err != nil {
		return nil, err
	}
	d, err := json.Marshal(r.Data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", l.e.Name, err)
	}
	id := r.Data[l.e.Key.Name]
	it := l.keyAttrs(id)
	it["d"] = str(string(d))
	it["v"] = num(r.Version)
	it["ca"] = str(timeText(r.CreatedAt))
	it["ua"] = str(timeText(r.UpdatedAt))
	it["cs"] = num(cs)
	for _, f := range l.exact {
		if v, ok := exactText(valueAt(r.Data, f.Path)); ok {
			it["x_"+f.Param] = str(v)
		}
	}
	for _, f := range l.prefix {
		if s, ok := valueAt(r.Data, f.Path).(string); ok {
			if short, long := buckets(plinth.Fold(s)); short != "" {
				it["p1_"+f.Param], it["p3_"+f.Param] = str(short), str(long)
			}
		}
	}
	if n := itemSize(it); n > MaxItemBytes {
		return nil, &plinth.TooLargeError{Limit: "DynamoDB's item limit of 400 KB",
			Detail: fmt.Sprintf("%s %v takes %d bytes as a DynamoDB item", l.e.Name, id, n)}
	}
	return it, nil
}

// record decodes an item.
func (l *layout) record(it map[string]types.AttributeValue) (plinth.Record, error) {
	var r plinth.Record
	d, _ := it["d"].(*types.AttributeValueMemberS)
	if d == nil {
		return r, fmt.Errorf("dynamodb: %s: an item without data", l.table)
	}
	v, err := l.object.DecodeStored([]byte(d.Value))
	if err != nil {
		return r, fmt.Errorf("dynamodb: %s: %w", l.table, err)
	}
	r.Data, _ = v.(map[string]any)
	r.Version = numOf(it["v"])
	r.CreatedAt = timeOf(it["ca"])
	r.UpdatedAt = timeOf(it["ua"])
	return r, nil
}

func numOf(av types.AttributeValue) int64 {
	if n, ok := av.(*types.AttributeValueMemberN); ok {
		x, _ := strconv.ParseInt(n.Value, 10, 64)
		return x
	}
	return 0
}

func strOf(av types.AttributeValue) string {
	if s, ok := av.(*types.AttributeValueMemberS); ok {
		return s.Value
	}
	return ""
}

func timeOf(av types.AttributeValue) time.Time {
	t, _ := time.Parse(timeTextLayout, strOf(av))
	return t
}

// indexItems are the partition keys of the index items a record needs:
// one per distinct value of each exact array filter, one per distinct
// prefix bucket of each prefix array filter.
func (l *layout) indexItems(data map[string]any) map[string]bool {
	out := map[string]bool{}
	if data == nil {
		return out
	}
	for _, f := range l.arrays {
		items, _ := data[f.Array.Name].([]any)
		for _, item := range items {
			obj, _ := item.(map[string]any)
			v := valueAt(obj, f.Path[1:])
			if f.Match == plinth.MatchExact {
				if s, ok := exactText(v); ok {
					out["ix|"+f.Param+"|"+s] = true
				}
				continue
			}
			if s, ok := v.(string); ok {
				if short, long := buckets(plinth.Fold(s)); short != "" {
					out["ix1|"+f.Param+"|"+short], out["ix3|"+f.Param+"|"+long] = true, true
				}
			}
		}
	}
	return out
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// buckets returns the first rune and the first three runes of folded text.
func buckets(folded string) (short, long string) {
	return runesOf(folded, prefixShort), runesOf(folded, prefixLong)
}

func runesOf(s string, n int) string {
	i := 0
	for j := range s {
		if i == n {
			return s[:j]
		}
		i++
	}
	return s
}

// exactText is the text an exact filter's index holds for a value; false
// for null and empty text, which no exact filter asks for (DynamoDB keys
// cannot be empty).
func exactText(v any) (string, bool) {
	switch x := v.(type) {
	case nil:
		return "", false
	case string:
		return x, x != ""
	case bool:
		return strconv.FormatBool(x), true
	case int64:
		return strconv.FormatInt(x, 10), true
	case float64:
		if x == float64(int64(x)) {
			return strconv.FormatInt(int64(x), 10), true
		}
		return strconv.FormatFloat(x, 'g', -1, 64), true
	}
	return fmt.Sprint(v), true
}

func valueAt(data map[string]any, path []string) any {
	var v any = data
	for _, name := range path {
		obj, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = obj[name]
	}
	return v
}

// itemSize is an item's size as DynamoDB counts it: names and values.
func itemSize(it map[string]types.AttributeValue) int {
	n := 0
	for name, v := range it {
		n += len(name)
		switch x := v.(type) {
		case *types.AttributeValueMemberS:
			n += len(x.Value)
		case *types.AttributeValueMemberN:
			n += len(x.Value)/2 + 1
		case *types.AttributeValueMemberB:
			n += len(x.Value)
		default:
			n += 1
		}
	}
	return n
}

// checkTypes refuses data whose top-level values are not of their fields'
// canonical types (bulk loads take data that did not pass Validate).
func checkTypes(e *plinth.Entity, data map[string]any) error {
	for name, v := range data {
		f := e.Field(name)
		if f == nil {
			return fmt.Errorf("%s: unknown field %q", e.Name, name)
		}
		ok := true
		switch f.Type {
		case plinth.TypeString, plinth.TypeDate, plinth.TypeDateTime, plinth.TypeUUID:
			s, isStr := v.(string)
			ok = isStr && utf8.ValidString(s)
		case plinth.TypeInteger:
			_, ok = v.(int64)
		case plinth.TypeNumber:
			switch v.(type) {
			case float64, int64:
			default:
				ok = false
			}
		case plinth.TypeBoolean:
			_, ok = v.(bool)
		case plinth.TypeObject:
			_, ok = v.(map[string]any)
		case plinth.TypeArray:
			_, ok = v.([]any)
		}
		if !ok {
			return fmt.Errorf("%s: field %q holds %T, not a %s", e.Name, name, v, f.Type)
		}
	}
	return nil
}

// keyOnly is a projection of the record keys.
var keyOnly = aws.String("k")
