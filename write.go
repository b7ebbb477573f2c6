package plinth

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"time"
)

// Writer is the one write path. Every change to records or access — from
// the HTTP API, the API as a Lambda, migration sync and change capture, the
// Developer Hub — goes through it, so that each commits in one transaction
// together with its outbox event and its audit record: nothing is published
// that was not committed, and nothing is committed without its record.
type Writer struct {
	store    Store
	env      string
	events   bool
	audit    bool
	onCommit func(audited AuditRecord, evented bool)
}

// WriterConfig configures a Writer.
type WriterConfig struct {
	Store       Store
	Environment string
	// Events writes a change event into the outbox with every change; the
	// store's transactions must implement EventTx.
	Events bool
	// Audit writes an audit record with every change; the store's
	// transactions must implement AuditTx.
	Audit bool
	// OnCommit runs after a change committed: to mirror its audit record
	// and wake the outbox relay when it wrote an event.
	OnCommit func(audited AuditRecord, evented bool)
}

// ErrMissingCapability is returned by NewWriter when the store cannot do
// what the configuration requires.
var ErrMissingCapability = errors.New("the store lacks a capability the configuration requires")

// NewWriter checks that the store's transactions can carry what cfg asks
// for (events, audit records) and returns the write path. It refuses rather
// than skip: a store without an outbox cannot serve with events on.
func NewWriter(ctx context.Context, cfg WriterConfig) (*Writer, error) {
	if cfg.Store == nil {
		return nil, fmt.Errorf("%w: no store", ErrMissingCapability)
	}
	if cfg.OnCommit == nil {
		cfg.OnCommit = func(AuditRecord, bool) {}
	}
	probe := errors.New("probe")
	var missing []string
	err := cfg.Store.Write(ctx, func(tx Tx) error {
		if _, ok := tx.(EventTx); cfg.Events && !ok {
			missing = append(missing, "an outbox for change events in its transactions (plinth.EventTx)")
		}
		if _, ok := tx.(AuditTx); cfg.Audit && !ok {
			missing = append(missing, "audit records in its transactions (plinth.AuditTx)")
		}
		if _, ok := tx.(AccessTx); !ok {
			missing = append(missing, "grants and policies in its transactions (plinth.AccessTx)")
		}
		return probe
	})
	if err != nil && !errors.Is(err, probe) {
		return nil, fmt.Errorf("checking the store: %w", err)
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%w: it needs %v", ErrMissingCapability, missing)
	}
	return &Writer{store: cfg.Store, env: cfg.Environment, events: cfg.Events, audit: cfg.Audit, onCommit: cfg.OnCommit}, nil
}

// Origin says who makes a change and where it comes from, for its event
// and its audit record.
type Origin struct {
	Principal     Principal
	CorrelationID string
	// SourceSystem names where the change came from in its event; empty
	// means the domain's Platform API.
	SourceSystem string
	// Audit returns the audit record of the change, given the ids of the
	// records it touched; the HTTP API fills it from the request. nil
	// means a record made from the fields above (for migration and other
	// callers without a request).
	Audit func(ids []string) AuditRecord
}

// Written is the outcome of a change.
type Written struct {
	Record  Record      // the record after the change (before it, for a delete)
	Changed bool        // false for an update or upsert that changed nothing
	Created bool        // an upsert that inserted
	IDs     []string    // the ids of the records (or grants, policies) touched
	Audited AuditRecord // the audit record committed with the change
	Evented bool        // an event was written to the outbox
}

// Create inserts a new record.
func (w *Writer) Create(ctx context.Context, e *Entity, data map[string]any, o Origin) (Written, error) {
	return w.run(ctx, e, "create", o, func(tx Tx) (Written, error) {
		rec, err := tx.Insert(ctx, e, data)
		if err != nil {
			return Written{}, err
		}
		evented, err := w.event(ctx, tx, e, EventCreated, nil, &rec, o)
		return Written{Record: rec, Changed: true, Created: true, Evented: evented}, err
	})
}

// Update changes the record at the expected version: next gets the
// current record and returns its new data. If nothing changes, the record
// and its version stay as they are and no event is written; the request
// is still audited.
func (w *Writer) Update(ctx context.Context, e *Entity, id any, version int64, next func(cur Record) (map[string]any, error), o Origin) (Written, error) {
	return w.run(ctx, e, "update", o, func(tx Tx) (Written, error) {
		cur, err := current(ctx, tx, e, id, version)
		if err != nil {
			return Written{}, err
		}
		data, err := next(cur)
		if err != nil {
			return Written{}, err
		}
		if reflect.DeepEqual(data, cur.Data) {
			return Written{Record: cur}, nil
		}
		rec, err := tx.Update(ctx, e, id, version, data)
		if err != nil {
			return Written{}, err
		}
		evented, err := w.event(ctx, tx, e, EventUpdated, &cur, &rec, o)
		return Written{Record: rec, Changed: true, Evented: evented}, err
	})
}

// Delete removes the record at the expected version.
func (w *Writer) Delete(ctx context.Context, e *Entity, id any, version int64, o Origin) (Written, error) {
	return w.run(ctx, e, "delete", o, func(tx Tx) (Written, error) {
		cur, err := current(ctx, tx, e, id, version)
		if err != nil {
			return Written{}, err
		}
		if err := tx.Delete(ctx, e, id, version); err != nil {
			return Written{}, err
		}
		evented, err := w.event(ctx, tx, e, EventDeleted, &cur, nil, o)
		return Written{Record: cur, Changed: true, Evented: evented}, err
	})
}

// Upsert stores data under its key, for replication and migration sync:
// it inserts a record that is absent, replaces one whose data differs, and
// leaves one with the same data alone (no new version, no event), so a
// change applied twice is harmless. Each is audited.
func (w *Writer) Upsert(ctx context.Context, e *Entity, data map[string]any, o Origin) (Written, error) {
	return w.run(ctx, e, "upsert", o, func(tx Tx) (Written, error) {
		return w.upsert(ctx, tx, e, data, o)
	})
}

// upsert is Upsert's change within tx, with its event.
func (w *Writer) upsert(ctx context.Context, tx Tx, e *Entity, data map[string]any, o Origin) (Written, error) {
	up, err := tx.Upsert(ctx, e, data)
	if err != nil {
		return Written{}, err
	}
	res := Written{Record: up.Record, Changed: up.Change != Unchanged, Created: up.Change == Created}
	switch up.Change {
	case Created:
		res.Evented, err = w.event(ctx, tx, e, EventCreated, nil, &up.Record, o)
	case Updated:
		res.Evented, err = w.event(ctx, tx, e, EventUpdated, up.Before, &up.Record, o)
	}
	return res, err
}

// Access changes grants or policies; change returns the ids it touched,
// for the audit record.
func (w *Writer) Access(ctx context.Context, o Origin, change func(AccessTx) (ids []string, err error)) (AuditRecord, error) {
	res, err := w.run(ctx, nil, "admin", o, func(tx Tx) (Written, error) {
		atx, ok := tx.(AccessTx)
		if !ok {
			return Written{}, fmt.Errorf("%w: grants and policies in its transactions", ErrMissingCapability)
		}
		ids, err := change(atx)
		return Written{IDs: ids}, err
	})
	return res.Audited, err
}

// current returns the locked record an update or delete starts from, when
// it is still at version.
func current(ctx context.Context, tx Tx, e *Entity, id any, version int64) (Record, error) {
	cur, err := tx.Get(ctx, e, id)
	if err == nil && cur.Version != version {
		err = ErrVersionConflict
	}
	return cur, err
}

// run makes one transaction of the change and its audit record, then
// reports the commit.
func (w *Writer) run(ctx context.Context, e *Entity, op string, o Origin, change func(Tx) (Written, error)) (Written, error) {
	var res Written
	// The change, its event and audit record are a few statements with no
	// wait outside the transaction: a store may commit it with others.
	err := w.store.Write(ShortWrite(ctx), func(tx Tx) error {
		var err error
		res = Written{}
		if res, err = change(tx); err != nil {
			return err
		}
		return w.audited(ctx, tx, e, op, o, &res)
	})
	if err != nil {
		return Written{}, err
	}
	w.onCommit(res.Audited, res.Evented)
	return res, nil
}

// audited names the record res changed and appends the audit record of
// the change to tx. Where the store sends the record with the commit
// (AuditAtCommitTx), res.Audited is filled in then: res must stay where it
// is until Store.Write returns.
func (w *Writer) audited(ctx context.Context, tx Tx, e *Entity, op string, o Origin, res *Written) error {
	if e != nil {
		res.IDs = []string{KeyString(e.KeyOf(res.Record))}
	}
	if !w.audit {
		return nil
	}
	var err error
	rec := w.auditRecord(e, op, o, res.IDs)
	if atx, ok := tx.(AuditAtCommitTx); ok {
		err = atx.AppendAuditAtCommit(ctx, rec, &res.Audited)
	} else {
		res.Audited, err = tx.(AuditTx).AppendAudit(ctx, rec)
	}
	if err != nil {
		// A change cannot go ahead without its record: they share
		// the transaction.
		return fmt.Errorf("%w: the audit record could not be written: %v", ErrUnavailable, err)
	}
	return nil
}

// auditRecord is the change's audit record: the caller's, or one made from
// the change for callers without a request.
func (w *Writer) auditRecord(e *Entity, op string, o Origin, ids []string) AuditRecord {
	if o.Audit != nil {
		return o.Audit(ids)
	}
	rec := AuditRecord{Time: Now(), CorrelationID: o.CorrelationID, Environment: w.env, Operation: op,
		Principal: o.Principal, Decision: DecisionAllow, RecordIDs: ids, Count: len(ids), Reason: o.SourceSystem}
	if e != nil {
		rec.Domain, rec.Entity = e.Domain.Name, e.Plural
	}
	return rec
}

// event writes the change's event into the transaction's outbox. An update
// that changes only version and timestamps has none.
func (w *Writer) event(ctx context.Context, tx Tx, e *Entity, kind EventKind, before, after *Record, o Origin) (bool, error) {
	if !w.events {
		return false, nil
	}
	source := o.SourceSystem
	if source == "" {
		source = e.Domain.Name + " Platform API"
	}
	entry, _, changed := buildEvent(e, kind, before, after, EventContext{
		Environment: w.env, SourceSystem: source, CorrelationID: o.CorrelationID, Principal: o.Principal, Now: time.Now(),
	}, false)
	if !changed {
		return false, nil
	}
	entry.Trace = TraceParentFrom(ctx)
	return true, tx.(EventTx).AppendEvent(ctx, entry)
}

// shortWriteKey marks a context whose Write is short (see ShortWrite).
type shortWriteKey struct{}

// ShortWrite marks ctx for Store.Write: the write's fn is short and never
// waits on anything outside its transaction (the Writer's own creates,
// updates, deletes and batches). A store may then let concurrent short
// writes share one transaction and one commit (the sqlite store's group
// commit, docs/store-contract.md); an unmarked Write, whose fn may wait on
// something else while it holds the transaction open, always runs alone.
// Stores that do not group ignore the mark.
func ShortWrite(ctx context.Context) context.Context {
	return context.WithValue(ctx, shortWriteKey{}, true)
}

// IsShortWrite reports whether ctx was marked by ShortWrite.
func IsShortWrite(ctx context.Context) bool {
	v, _ := ctx.Value(shortWriteKey{}).(bool)
	return v
}
