package dynamodb

import (
	"context"
	"reflect"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go/middleware"
)

// Usage is what one kind of DynamoDB operation cost.
type Usage struct {
	Calls int64
	// ReadUnits and WriteUnits are the capacity units DynamoDB reported in
	// ConsumedCapacity. Emulators such as minidyn report none; then they are
	// estimated from the item sizes by DynamoDB's published rules (see
	// estimate), and Estimated is set.
	ReadUnits, WriteUnits float64
	Estimated             bool
}

// callCounter counts the DynamoDB operations a store makes and asks every
// one for its consumed capacity, so tests can check which operations a
// list used (never Scan for exact and prefix filters) and bench/run can
// report what each API operation costs.
type callCounter struct {
	mu    sync.Mutex
	by    map[string]Usage
	watch func(op string, params any) // sees every call's input (tests)
}

func (c *callCounter) middleware(stack *middleware.Stack) error {
	return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("plinthUsage",
		func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
			setTotalCapacity(in.Parameters)
			c.mu.Lock()
			watch := c.watch
			c.mu.Unlock()
			if watch != nil {
				watch(awsmiddleware.GetOperationName(ctx), in.Parameters)
			}
			out, md, err := next.HandleInitialize(ctx, in)
			c.add(awsmiddleware.GetOperationName(ctx), in.Parameters, out.Result)
			return out, md, err
		}), middleware.After)
}

// setTotalCapacity sets ReturnConsumedCapacity to TOTAL on inputs that have it.
func setTotalCapacity(params any) {
	v := reflect.ValueOf(params)
	if v.Kind() != reflect.Pointer || v.IsNil() || v.Elem().Kind() != reflect.Struct {
		return
	}
	f := v.Elem().FieldByName("ReturnConsumedCapacity")
	if f.IsValid() && f.CanSet() && f.String() == "" {
		f.SetString(string(types.ReturnConsumedCapacityTotal))
	}
}

func (c *callCounter) add(op string, params, result any) {
	u := Usage{Calls: 1}
	if len(consumed(result)) == 0 {
		u.ReadUnits, u.WriteUnits = estimate(params, result)
		u.Estimated = true
	}
	for _, cc := range consumed(result) {
		if cc.ReadCapacityUnits != nil || cc.WriteCapacityUnits != nil {
			u.ReadUnits += deref(cc.ReadCapacityUnits)
			u.WriteUnits += deref(cc.WriteCapacityUnits)
		} else if cc.CapacityUnits != nil && (op == "PutItem" || op == "UpdateItem" || op == "DeleteItem" || op == "TransactWriteItems" || op == "BatchWriteItem") {
			u.WriteUnits += *cc.CapacityUnits
		} else {
			u.ReadUnits += deref(cc.CapacityUnits)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.by == nil {
		c.by = map[string]Usage{}
	}
	old := c.by[op]
	c.by[op] = Usage{Calls: old.Calls + 1, ReadUnits: old.ReadUnits + u.ReadUnits, WriteUnits: old.WriteUnits + u.WriteUnits,
		Estimated: old.Estimated || u.Estimated}
}

func (c *callCounter) snapshot() map[string]Usage {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]Usage, len(c.by))
	for k, v := range c.by {
		out[k] = v
	}
	return out
}

// consumed finds the ConsumedCapacity of any operation's output.
func consumed(result any) []types.ConsumedCapacity {
	v := reflect.ValueOf(result)
	if v.Kind() != reflect.Pointer || v.IsNil() || v.Elem().Kind() != reflect.Struct {
		return nil
	}
	f := v.Elem().FieldByName("ConsumedCapacity")
	if !f.IsValid() {
		return nil
	}
	switch x := f.Interface().(type) {
	case *types.ConsumedCapacity:
		if x != nil {
			return []types.ConsumedCapacity{*x}
		}
	case []types.ConsumedCapacity:
		return x
	}
	return nil
}

func deref(p *float64) float64 {
	if p == nil {
		return 0
	}
	return *p
}

// estimate applies DynamoDB's pricing rules to a call: a read unit per
// 4 KB read strongly consistently (half for eventually consistent reads; a
// Query rounds its total, GetItem each item), a write unit per 1 KB
// written, transactions twice that (a ConditionCheck is a transactional
// read). Item sizes are the items returned or written; deletes and
// updates count their key items as at least one unit.
func estimate(params, result any) (read, write float64) {
	readUnits := func(bytes int, consistent bool) float64 {
		u := float64((bytes + 4095) / 4096)
		if u == 0 {
			u = 1
		}
		if !consistent {
			u /= 2
		}
		return u
	}
	writeUnits := func(bytes int) float64 { return float64(max(1, (bytes+1023)/1024)) }
	switch in := params.(type) {
	case *ddb.GetItemInput:
		if out, ok := result.(*ddb.GetItemOutput); ok {
			read = readUnits(itemSize(out.Item), aws.ToBool(in.ConsistentRead))
		}
	case *ddb.BatchGetItemInput:
		if out, ok := result.(*ddb.BatchGetItemOutput); ok {
			for table, items := range out.Responses {
				for _, it := range items {
					read += readUnits(itemSize(it), aws.ToBool(in.RequestItems[table].ConsistentRead))
				}
			}
		}
	case *ddb.QueryInput:
		if out, ok := result.(*ddb.QueryOutput); ok {
			n := 0
			for _, it := range out.Items {
				n += itemSize(it)
			}
			read = readUnits(n, aws.ToBool(in.ConsistentRead))
		}
	case *ddb.PutItemInput:
		write = writeUnits(itemSize(in.Item))
	case *ddb.UpdateItemInput, *ddb.DeleteItemInput:
		write = 1
	case *ddb.TransactWriteItemsInput:
		for _, it := range in.TransactItems {
			switch {
			case it.Put != nil:
				write += 2 * writeUnits(itemSize(it.Put.Item))
			case it.Delete != nil, it.Update != nil:
				write += 2
			case it.ConditionCheck != nil:
				read += 2
			}
		}
	}
	return read, write
}
