package plinth

import (
	"context"
	"errors"
)

// BatchChange is one change of Writer.Apply: an upsert of Data, or (Data
// nil) the deletion of the record with key Key at the version it has.
type BatchChange struct {
	Data map[string]any
	Key  any
}

// Apply writes changes to records of one entity in one transaction, in
// order, each with its own event and audit record as Upsert and Delete
// write them, then runs then (when set) with their outcomes in the same
// transaction: to store the position the changes bring a replica to, so
// that the position and the changes commit together or not at all. A
// change that finds the record already so (an upsert of the same data, a
// delete of a record that is gone) writes nothing, not even an audit
// record, so that replaying changes after a restart leaves no trace. It is
// for replication, where one commit per change cannot keep up; a store may
// refuse a transaction this large (*TooLargeError), and the caller then
// applies fewer at a time. then sees each outcome's Audited only once the
// store has written it (AuditAtCommitTx): it is complete after Apply returns.
func (w *Writer) Apply(ctx context.Context, e *Entity, changes []BatchChange, o Origin, then func(Tx, []Written) error) ([]Written, error) {
	// Never grown past its capacity, so never moved: the audit records are
	// written into it at commit (audited).
	out := make([]Written, 0, len(changes))
	err := w.store.Write(ShortWrite(ctx), func(tx Tx) error { // short: see run
		out = out[:0] // a store may run fn again
		for _, c := range changes {
			res, op, err := w.applyOne(ctx, tx, e, c, o)
			if err != nil {
				return err
			}
			out = append(out, res)
			if res.Changed {
				if err := w.audited(ctx, tx, e, op, o, &out[len(out)-1]); err != nil {
					return err
				}
			}
		}
		if then != nil {
			return then(tx, out)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, r := range out {
		if r.Changed {
			w.onCommit(r.Audited, r.Evented)
		}
	}
	return out, nil
}

// applyOne makes one change of Apply in tx and returns the audit
// operation it is.
func (w *Writer) applyOne(ctx context.Context, tx Tx, e *Entity, c BatchChange, o Origin) (Written, string, error) {
	if c.Data != nil {
		res, err := w.upsert(ctx, tx, e, c.Data, o)
		return res, "upsert", err
	}
	cur, err := tx.Get(ctx, e, c.Key)
	if errors.Is(err, ErrNotFound) {
		return Written{}, "delete", nil
	} else if err != nil {
		return Written{}, "", err
	}
	if err := tx.Delete(ctx, e, c.Key, cur.Version); err != nil {
		return Written{}, "", err
	}
	evented, err := w.event(ctx, tx, e, EventDeleted, &cur, nil, o)
	return Written{Record: cur, Changed: true, Evented: evented}, "delete", err
}
