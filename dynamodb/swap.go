package dynamodb

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/plinth-data/plinth"
)

var _ plinth.CheckpointSwapper = (*tx)(nil)

// swap is what a checkpoint must hold for the transaction to commit.
type swap struct {
	old   []byte
	found bool
}

// SwapCheckpoint sets the named checkpoint if it still holds old (is
// absent, when found is false) when the transaction commits: its put is
// conditioned on that, and the commit fails with ErrVersionConflict
// otherwise.
func (t *tx) SwapCheckpoint(ctx context.Context, name string, old []byte, found bool, value []byte) error {
	if name == "" {
		return errors.New("dynamodb: a checkpoint needs a name")
	}
	if t.swaps == nil {
		t.swaps = map[string]swap{}
	}
	if _, ok := t.swaps[name]; !ok {
		t.swaps[name] = swap{old: bytes.Clone(old), found: found}
	}
	return t.SetCheckpoint(ctx, name, value)
}

// checkpointPut is the put of a checkpoint, conditioned when it was
// swapped, and the error its failed condition means.
func (t *tx) checkpointPut(name string, v []byte) (types.TransactWriteItem, error) {
	it := put(t.s.sys, checkpointItem(name, v))
	sw, ok := t.swaps[name]
	if !ok {
		return it, nil
	}
	if sw.found {
		old := sw.old
		if old == nil {
			old = []byte{}
		}
		it.Put.ConditionExpression = aws.String("#v = :old")
		it.Put.ExpressionAttributeNames = map[string]string{"#v": "value"}
		it.Put.ExpressionAttributeValues = map[string]types.AttributeValue{":old": &types.AttributeValueMemberB{Value: old}}
	} else {
		it.Put.ConditionExpression = aws.String("attribute_not_exists(pk)")
	}
	return it, fmt.Errorf("dynamodb: checkpoint %q changed since it was read: %w", name, plinth.ErrVersionConflict)
}
