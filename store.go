package plinth

import (
	"context"
	"time"
)

// Record is one stored record of an entity.
type Record struct {
	// Data holds the canonical field values (see Entity.Validate); an absent
	// key means null. It includes the key field.
	Data map[string]any
	// Values, when not nil, holds the field values in the order of the
	// entity's Fields (nil for null), and Data is nil: what a scan may give
	// when asked for ScanQuery.FieldValues. Value reads either form.
	Values    []any
	Version   int64
	CreatedAt time.Time
	UpdatedAt time.Time
	// JSON, when not nil, is the record as Entity.MarshalRecord writes it,
	// which MarshalRecord then writes as it is. A store sets it only when
	// the read asks for it (Query.RecordJSON, WithRecordJSON), for callers
	// that only write the record out (the list and view routes), so that
	// the row goes straight to the API's JSON; Data and Values may then be
	// nil, and Key holds the record's key (Entity.KeyOf reads it).
	JSON []byte
	Key  any
}

// Value returns the value of f, the entity's i-th field (e.Fields[i]),
// from Values or Data.
func (r Record) Value(i int, f *Field) any {
	if r.Values != nil {
		return r.Values[i]
	}
	return r.Data[f.Name]
}

// Store keeps the records of one or more domains. Implementations: sqlite,
// postgres (and, planned, dynamodb; docs/store-contract.md maps every
// method to each engine). It serves every consumer: point reads and keyset
// pages for the API, a snapshot-consistent streaming Scan for reports, lake
// snapshots and migration checks, upsert by key and a resumable BulkLoad
// for migration and replication, and named checkpoints for their positions.
//
// Every implementation passes the storetest contract suite, which also pins
// rules this interface cannot say: keys sort in byte order (string and uuid
// keys) or numerically (integer keys); each condition on a field of an
// array of objects may be met by a different item, but the _from and _to
// ends of one range condition must be met by the same item; Insert and
// BulkLoad keep a key the data already has, even for generated keys (for
// migrations), and later generated keys are higher; generated UUID keys are
// version 7, so they grow with time on every store.
type Store interface {
	// Prepare creates (or additively evolves) the storage for the domains.
	Prepare(ctx context.Context, domains []*Domain) error
	// Get returns one record; ErrNotFound when there is none.
	Get(ctx context.Context, e *Entity, id any) (Record, error)
	// List returns up to q.Limit records in key order after q.After;
	// q.Limit <= 0 means DefaultLimit. Stores do not cap the limit: the
	// API's parameter checks do.
	List(ctx context.Context, e *Entity, q Query) (Page, error)
	// Count returns how many records the entity has.
	Count(ctx context.Context, e *Entity) (int64, error)
	// Write runs fn in one transaction. If fn returns an error, nothing fn
	// did is kept and the error is returned (fn is not run again).
	//
	// fn may be run more than once: after a conflict the engine reports as
	// retryable and that left nothing committed (a PostgreSQL
	// serialization failure or deadlock, a DynamoDB TransactionConflict),
	// a store may roll back and run fn again in a new transaction. So fn
	// must have no effect outside tx that cannot be repeated, and must
	// reset what it gathers (returned records, audit records, events) when
	// it starts. (The sqlite and postgres stores run fn once today and
	// return such conflicts as errors.)
	//
	// When ctx is marked ShortWrite, the store may run fn in a transaction
	// shared with other marked Writes and commit them together; fn is still
	// all or nothing, and Write returns only once fn's changes committed.
	Write(ctx context.Context, fn func(Tx) error) error
	// BulkInsert is BulkLoad with ConflictFail: it adds new records
	// (version 1), all of them or, on error, none.
	BulkInsert(ctx context.Context, e *Entity, data []map[string]any) error
	// BulkLoad writes many records in as few round trips as the engine
	// allows, for seeding and migration. Each call is atomic: all of its
	// records (and opts.Checkpoint) are written, or on error none, on
	// every store; callers that load more than they want to lose on a
	// failure load in several calls and record progress in a checkpoint.
	// Generated keys are assigned when absent. opts.OnConflict says what
	// happens to a record whose key exists (see Conflict).
	BulkLoad(ctx context.Context, e *Entity, data []map[string]any, opts BulkOptions) (BulkResult, error)
	// Scan calls fn with every record of the entity that matches q, in
	// key order, all read from one consistent snapshot: writes committed
	// after the scan began are not seen, and every record is seen once.
	// Records are streamed, so memory stays flat however many there are.
	// Scan stops when ctx is done (returning ctx.Err()) or when fn returns
	// an error (returning it unchanged). The snapshot does not block
	// writers, so fn may write through the store.
	//
	// Scan returns the Watermark of its snapshot ("" with an error). Passed
	// back as q.Since, it selects the records inserted or updated by
	// writes the snapshot did not see, however their updatedAt compares:
	// a write that began before the snapshot and committed after it is
	// in the next incremental scan. A record may come again in that scan
	// (a store may re-send records whose transactions were in flight when
	// the snapshot was taken; consumers upsert), but none is missed.
	// Deleted records are reported by Deletions. The watermark is
	// opaque, URL-safe text (docs/store-contract.md maps it to each
	// engine).
	Scan(ctx context.Context, e *Entity, q ScanQuery, fn func(Record) error) (Watermark, error)
	// Deletions calls fn with the tombstone of every record of the entity
	// deleted by a write the snapshot that made since did not see (every
	// tombstone kept when since is ""), in change order (the order of the
	// deleting transactions: commit order on SQLite, transaction id order
	// on PostgreSQL; within one, the order of the deletes), all read from
	// one snapshot, and returns that snapshot's watermark. Every
	// Tx.Delete leaves a tombstone, written in its transaction. When tombstones since then have been purged (see
	// PurgeTombstones) it returns a *WatermarkExpiredError, before calling
	// fn; a watermark the store did not make is an error wrapping
	// ErrBadWatermark. It stops as Scan does.
	//
	// A key deleted and inserted again after since is in both the
	// incremental Scan and Deletions: consumers apply the deletions of a
	// round before its upserts, and pass the watermark of the first of the
	// two calls (the Scan) as since next time (docs/store-contract.md).
	Deletions(ctx context.Context, e *Entity, since Watermark, fn func(Tombstone) error) (Watermark, error)
	// PurgeTombstones deletes the tombstones of deletions made before
	// olderThan, of every entity, and returns how many went. The store
	// remembers the horizon, so that Deletions with a since older than
	// what it purged fails with *WatermarkExpiredError instead of
	// silently missing deletions.
	PurgeTombstones(ctx context.Context, olderThan time.Time) (int64, error)
	// LastUpdated returns the latest UpdatedAt of the entity's records or
	// DeletedAt of its tombstones, whichever is later; the zero time when
	// there are neither. It reads an index, not the records.
	LastUpdated(ctx context.Context, e *Entity) (time.Time, error)
	// Checkpoint returns the named checkpoint; found is false when none
	// was set.
	Checkpoint(ctx context.Context, name string) (c Checkpoint, found bool, err error)
	// SetCheckpoint creates or replaces the named checkpoint. To write one
	// with the data it describes, use Tx.SetCheckpoint.
	SetCheckpoint(ctx context.Context, name string, value []byte) error
	// Ping checks that the storage answers.
	Ping(ctx context.Context) error
	Close() error
}

// BulkLoader is implemented by stores that load faster when told a large
// load into an empty entity is coming (PostgreSQL builds its filter indexes
// once at the end instead of row by row). finish must be called after the
// load, also when it failed.
type BulkLoader interface {
	BeginBulkLoad(ctx context.Context, e *Entity) (finish func(context.Context) error, err error)
}

// Tx is a write transaction of a Store.
type Tx interface {
	// Get returns the current record, locking it against concurrent writers
	// where the engine supports it.
	Get(ctx context.Context, e *Entity, id any) (Record, error)
	// Insert stores a new record with version 1, assigning the key when it
	// is generated. ErrConflict when the key exists.
	Insert(ctx context.Context, e *Entity, data map[string]any) (Record, error)
	// Update replaces the data of the record whose version is version, and
	// increments the version. ErrNotFound or ErrVersionConflict otherwise.
	Update(ctx context.Context, e *Entity, id any, version int64, data map[string]any) (Record, error)
	// Delete removes the record whose version is version.
	Delete(ctx context.Context, e *Entity, id any, version int64) error
	// Upsert stores data under its key, for replication: it inserts the
	// record (version 1) when the key is absent, replaces the data and
	// increments the version when the stored data differs (see SameData),
	// and changes nothing when it is the same, so applying a change twice
	// is harmless. The result says which happened, so that the caller
	// emits an event only for a change. data must carry the key.
	Upsert(ctx context.Context, e *Entity, data map[string]any) (UpsertResult, error)
	// Checkpoint reads the named checkpoint within the transaction.
	Checkpoint(ctx context.Context, name string) (c Checkpoint, found bool, err error)
	// SetCheckpoint creates or replaces the named checkpoint within the
	// transaction, so that it commits (or not) with the data it describes.
	SetCheckpoint(ctx context.Context, name string, value []byte) error
}

// Now is the clock stores use for createdAt and updatedAt: UTC, truncated to
// microseconds, which every engine can hold exactly.
func Now() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }
