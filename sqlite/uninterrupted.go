package sqlite

import (
	"context"

	"github.com/plinth-data/plinth"
)

// uninterrupted is the Tx a Write's fn gets. SQLite rolls the whole
// transaction back when a statement is interrupted midway, and the driver
// interrupts a statement whose context ends; the transaction is shared by
// a group of Writes (group.go), so one client going away would undo the
// others' writes. So each call checks its context first and then runs
// without its cancellation: a write stops between statements, never
// inside one.
type uninterrupted struct{ x *tx }

var (
	_ plinth.Tx                = uninterrupted{}
	_ plinth.EventTx           = uninterrupted{}
	_ plinth.AuditTx           = uninterrupted{}
	_ plinth.CheckpointSwapper = uninterrupted{}
	_ plinth.AccessTx          = uninterrupted{}
)

// live returns ctx without its cancellation, or its error if it has ended.
func live(ctx context.Context) (context.Context, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return context.WithoutCancel(ctx), nil
}

func (u uninterrupted) Get(ctx context.Context, e *plinth.Entity, id any) (plinth.Record, error) {
	ctx, err := live(ctx)
	if err != nil {
		return plinth.Record{}, err
	}
	return u.x.Get(ctx, e, id)
}

func (u uninterrupted) Insert(ctx context.Context, e *plinth.Entity, data map[string]any) (plinth.Record, error) {
	ctx, err := live(ctx)
	if err != nil {
		return plinth.Record{}, err
	}
	return u.x.Insert(ctx, e, data)
}

func (u uninterrupted) Update(ctx context.Context, e *plinth.Entity, id any, version int64, data map[string]any) (plinth.Record, error) {
	ctx, err := live(ctx)
	if err != nil {
		return plinth.Record{}, err
	}
	return u.x.Update(ctx, e, id, version, data)
}

func (u uninterrupted) Delete(ctx context.Context, e *plinth.Entity, id any, version int64) error {
	ctx, err := live(ctx)
	if err != nil {
		return err
	}
	return u.x.Delete(ctx, e, id, version)
}

func (u uninterrupted) Upsert(ctx context.Context, e *plinth.Entity, data map[string]any) (plinth.UpsertResult, error) {
	ctx, err := live(ctx)
	if err != nil {
		return plinth.UpsertResult{}, err
	}
	return u.x.Upsert(ctx, e, data)
}

func (u uninterrupted) AppendEvent(ctx context.Context, e plinth.OutboxEntry) error {
	ctx, err := live(ctx)
	if err != nil {
		return err
	}
	return u.x.AppendEvent(ctx, e)
}

func (u uninterrupted) AppendAudit(ctx context.Context, rec plinth.AuditRecord) (plinth.AuditRecord, error) {
	ctx, err := live(ctx)
	if err != nil {
		return plinth.AuditRecord{}, err
	}
	return u.x.AppendAudit(ctx, rec)
}

func (u uninterrupted) Checkpoint(ctx context.Context, name string) (plinth.Checkpoint, bool, error) {
	ctx, err := live(ctx)
	if err != nil {
		return plinth.Checkpoint{}, false, err
	}
	return u.x.Checkpoint(ctx, name)
}

func (u uninterrupted) SetCheckpoint(ctx context.Context, name string, value []byte) error {
	ctx, err := live(ctx)
	if err != nil {
		return err
	}
	return u.x.SetCheckpoint(ctx, name, value)
}

func (u uninterrupted) SwapCheckpoint(ctx context.Context, name string, old []byte, found bool, value []byte) error {
	ctx, err := live(ctx)
	if err != nil {
		return err
	}
	return u.x.SwapCheckpoint(ctx, name, old, found, value)
}

func (u uninterrupted) CreateGrant(ctx context.Context, g plinth.Grant) error {
	ctx, err := live(ctx)
	if err != nil {
		return err
	}
	return u.x.CreateGrant(ctx, g)
}

func (u uninterrupted) SetGrantEnabled(ctx context.Context, id string, enabled bool) (plinth.Grant, error) {
	ctx, err := live(ctx)
	if err != nil {
		return plinth.Grant{}, err
	}
	return u.x.SetGrantEnabled(ctx, id, enabled)
}

func (u uninterrupted) PutPolicy(ctx context.Context, p plinth.AccessPolicy) error {
	ctx, err := live(ctx)
	if err != nil {
		return err
	}
	return u.x.PutPolicy(ctx, p)
}

func (u uninterrupted) DeletePolicy(ctx context.Context, domain, environment string) error {
	ctx, err := live(ctx)
	if err != nil {
		return err
	}
	return u.x.DeletePolicy(ctx, domain, environment)
}
