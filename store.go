package plinth

import (
	"context"
	"time"
)

// Record is one stored record of an entity.
type Record struct {
	// Data holds the canonical field values (see Entity.Validate); an absent
	// key means null. It includes the key field.
	Data      map[string]any
	Version   int64
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Store keeps the records of one or more domains. Implementations: sqlite,
// postgres. Every implementation passes the storetest contract suite, which
// also pins rules this interface cannot say: keys sort in byte order (string
// and uuid keys) or numerically (integer keys); each condition on a field of
// an array of objects may be met by a different item, but the _from and _to
// ends of one range condition must be met by the same item; Insert and
// BulkInsert keep a key the data already has, even for generated keys (for
// migrations), and later generated keys are higher.
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
	// did is kept and the error is returned.
	Write(ctx context.Context, fn func(Tx) error) error
	// BulkInsert adds many new records (version 1) in as few round trips as
	// the engine allows, for seeding and migration. Generated keys are
	// assigned when absent.
	BulkInsert(ctx context.Context, e *Entity, data []map[string]any) error
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
}

// Now is the clock stores use for createdAt and updatedAt: UTC, truncated to
// microseconds, which every engine can hold exactly.
func Now() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }
