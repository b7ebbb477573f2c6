package plinth

import (
	"context"
	"fmt"
)

// StateTx is what Writer.State hands its change: named checkpoints and
// grants and policies, in one transaction. The Developer Hub keeps its
// access requests, keys and contracts in checkpoints this way, so each
// step commits with the grants it makes and its audit record.
type StateTx interface {
	AccessTx
	CheckpointSwapper
	Checkpoint(ctx context.Context, name string) (c Checkpoint, found bool, err error)
	SetCheckpoint(ctx context.Context, name string, value []byte) error
}

// CheckpointSwapper is implemented by a store's Tx that sets a checkpoint
// only while it still holds what the caller read (compare-and-set): state
// that several processes change, such as the Developer Hub's, is read
// outside the transaction and swapped in, and the step is retried when
// another process changed it first. Reading inside the transaction would
// not do: neither PostgreSQL (read committed) nor DynamoDB locks a read.
type CheckpointSwapper interface {
	// SwapCheckpoint sets the named checkpoint to value if it holds old
	// (if there is none, when found is false). Otherwise it returns an
	// error wrapping ErrVersionConflict and the transaction must fail.
	SwapCheckpoint(ctx context.Context, name string, old []byte, found bool, value []byte) error
}

type stateTx struct {
	Tx
	AccessTx
}

// Checkpoint and SetCheckpoint come from the Tx (AccessTx has none).
func (s stateTx) Checkpoint(ctx context.Context, name string) (Checkpoint, bool, error) {
	return s.Tx.Checkpoint(ctx, name)
}

func (s stateTx) SetCheckpoint(ctx context.Context, name string, value []byte) error {
	return s.Tx.SetCheckpoint(ctx, name, value)
}

func (s stateTx) SwapCheckpoint(ctx context.Context, name string, old []byte, found bool, value []byte) error {
	sw, ok := s.Tx.(CheckpointSwapper)
	if !ok {
		return fmt.Errorf("%w: compare-and-set of checkpoints (CheckpointSwapper)", ErrMissingCapability)
	}
	return sw.SwapCheckpoint(ctx, name, old, found, value)
}

// State changes checkpoints (and grants or policies) together with the
// audit record of the change; change returns the ids it touched. op is the
// audit record's operation when o.Audit is nil.
func (w *Writer) State(ctx context.Context, op string, o Origin, change func(StateTx) (ids []string, err error)) (AuditRecord, error) {
	res, err := w.run(ctx, nil, op, o, func(tx Tx) (Written, error) {
		atx, ok := tx.(AccessTx)
		if !ok {
			return Written{}, fmt.Errorf("%w: grants and policies in its transactions", ErrMissingCapability)
		}
		ids, err := change(stateTx{Tx: tx, AccessTx: atx})
		return Written{IDs: ids}, err
	})
	return res.Audited, err
}
