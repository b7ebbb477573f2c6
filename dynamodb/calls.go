package dynamodb

import (
	"context"
	"reflect"
	"sync"

	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go/middleware"
)

// Usage is what one kind of DynamoDB operation cost.
type Usage struct {
	Calls int64
	// ReadUnits and WriteUnits are the capacity units DynamoDB reported in
	// ConsumedCapacity. (Emulators such as minidyn report none.)
	ReadUnits, WriteUnits float64
}

// callCounter counts the DynamoDB operations a store makes and asks every
// one for its consumed capacity, so tests can check which operations a
// list used (never Scan for exact and prefix filters) and bench/run can
// report what each API operation costs.
type callCounter struct {
	mu sync.Mutex
	by map[string]Usage
}

func (c *callCounter) middleware(stack *middleware.Stack) error {
	return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("plinthUsage",
		func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
			setTotalCapacity(in.Parameters)
			out, md, err := next.HandleInitialize(ctx, in)
			c.add(awsmiddleware.GetOperationName(ctx), out.Result)
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

func (c *callCounter) add(op string, result any) {
	u := Usage{Calls: 1}
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
	c.by[op] = Usage{Calls: old.Calls + 1, ReadUnits: old.ReadUnits + u.ReadUnits, WriteUnits: old.WriteUnits + u.WriteUnits}
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
