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
	Checkpoint(ctx context.Context, name string) (c Checkpoint, found bool, err error)
	SetCheckpoint(ctx context.Context, name string, value []byte) error
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
