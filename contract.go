package plinth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// nestedJSONKey marks a context made by WithNestedJSON.
type nestedJSONKey struct{}

// WithNestedJSON returns ctx asking Store.Get for object and array fields
// as JSONText, as ScanQuery.NestedJSON does for lists and scans: for
// callers that only write the record out as the API's JSON (the view
// route), which then skip decoding the nested values and encoding them
// again. It is a context value rather than a parameter so that it passes
// through the stores that wrap others (storemux, otel); a store may ignore
// it, since Entity.MarshalRecord writes either form the same. Tx.Get does
// not look at it: a write works on decoded values.
func WithNestedJSON(ctx context.Context) context.Context {
	return context.WithValue(ctx, nestedJSONKey{}, true)
}

// NestedJSONWanted reports whether ctx came from WithNestedJSON.
func NestedJSONWanted(ctx context.Context) bool {
	v, _ := ctx.Value(nestedJSONKey{}).(bool)
	return v
}

// recordJSONKey marks a context made by WithRecordJSON.
type recordJSONKey struct{}

// WithRecordJSON returns ctx asking Store.Get for the record as the API's
// JSON in Record.JSON, as Query.RecordJSON asks List (with nested values
// as JSON text, as WithNestedJSON asks): for the view route, which only
// writes the record out. A store may ignore it; Tx.Get does not look at it.
func WithRecordJSON(ctx context.Context) context.Context {
	return context.WithValue(ctx, recordJSONKey{}, true)
}

// RecordJSONWanted reports whether ctx came from WithRecordJSON.
func RecordJSONWanted(ctx context.Context) bool {
	v, _ := ctx.Value(recordJSONKey{}).(bool)
	return v
}

// ScanQuery selects the records Store.Scan reads.
type ScanQuery struct {
	// Conditions are the list filters (see Entity.ParseQuery), ANDed.
	Conditions []Condition
	// UpdatedSince, when not zero, keeps only records whose UpdatedAt is
	// at or after it: an incremental export asks for what changed since
	// the UpdatedAt of the last record it took, and may see that one again.
	UpdatedSince time.Time
	// Since, when set, keeps only records inserted or updated by writes
	// that the snapshot which produced the watermark did not see (see
	// Store.Scan). Unlike UpdatedSince it misses no write that committed
	// while the earlier scan ran. A watermark the store did not make is
	// an error wrapping ErrBadWatermark.
	Since Watermark
	// NestedJSON asks for object and array fields as JSONText, the API's
	// JSON text, instead of decoded values: for consumers that only write
	// them out again as JSON (reports), which then skip decoding them. A
	// store may ignore it; Field.AppendJSON writes either form the same.
	NestedJSON bool
	// ReuseData says that fn keeps no record's Data once it has returned
	// (it writes each record out, as reports do), so the store may reuse
	// the map for a later record instead of allocating one per record.
	ReuseData bool
	// FieldValues asks for each record's field values as Record.Values,
	// in field order, instead of Data: for consumers that walk the fields
	// in order (reports), which then skip building and reading a map per
	// record. A store may ignore it; Record.Value reads either form.
	// With ReuseData, the Values slice may be reused as the Data map is.
	FieldValues bool
}

// Conflict is what BulkLoad does with a record whose key is already stored.
type Conflict int

const (
	// ConflictFail fails the call with ErrConflict; nothing is written.
	ConflictFail Conflict = iota
	// ConflictSkip keeps the stored record as it is, so that a re-run of
	// an interrupted load passes over the records it already wrote.
	ConflictSkip
	// ConflictReplace replaces the stored data, as Tx.Upsert does: the
	// version goes up only when the data differs.
	ConflictReplace
)

func (c Conflict) String() string {
	switch c {
	case ConflictFail:
		return "fail"
	case ConflictSkip:
		return "skip"
	case ConflictReplace:
		return "replace"
	}
	return fmt.Sprintf("Conflict(%d)", int(c))
}

// BulkOptions tune Store.BulkLoad.
type BulkOptions struct {
	OnConflict Conflict
	// Checkpoint, when its Name is set, is written in the same
	// transaction as the records, so a resumed load starts where the last
	// committed call ended.
	Checkpoint Checkpoint
	// BeforeCommit, when set, is called once, after the call has written
	// its records and before it writes the checkpoint and commits (so that
	// concurrent calls that name one checkpoint do not wait for each
	// other's lock on it while they wait for each other here); an error
	// from it rolls the whole call back and is returned. A loader that
	// runs calls concurrently uses it to commit them in order, so that
	// what is committed is always a prefix of its input.
	BeforeCommit func() error
	// Metadata, when not nil, has one entry per record of data: the
	// record is stored with the entry's Version, CreatedAt and UpdatedAt
	// (to the microsecond) instead of version 1 and the time of the load,
	// so that a bundle load or an obfuscated copy keeps them as the
	// source had them. A zero field of an entry takes the default. With
	// ConflictReplace a replaced record takes them too; skipped records
	// are left as they are. A length that differs from data's is an error.
	Metadata []RecordMeta
}

// RecordMeta is the metadata of a stored record that BulkOptions.Metadata
// can carry over from a source.
type RecordMeta struct {
	Version   int64
	CreatedAt time.Time
	UpdatedAt time.Time
}

// CheckMetadata reports whether opts.Metadata fits n records: nil, or one
// entry per record with no negative version.
func (opts BulkOptions) CheckMetadata(n int) error {
	if opts.Metadata == nil {
		return nil
	}
	if len(opts.Metadata) != n {
		return fmt.Errorf("bulk load: %d metadata entries for %d records", len(opts.Metadata), n)
	}
	for i, m := range opts.Metadata {
		if m.Version < 0 {
			return fmt.Errorf("bulk load: record %d: version %d is negative", i, m.Version)
		}
	}
	return nil
}

// Resolve returns the version, createdAt and updatedAt a record loaded at
// now is stored with: the entry's, or version 1 and now where it has none.
func (m RecordMeta) Resolve(now time.Time) (version int64, created, updated time.Time) {
	version, created, updated = 1, now, now
	if m.Version > 0 {
		version = m.Version
	}
	if !m.CreatedAt.IsZero() {
		created = m.CreatedAt.UTC().Truncate(time.Microsecond)
	}
	if !m.UpdatedAt.IsZero() {
		updated = m.UpdatedAt.UTC().Truncate(time.Microsecond)
	}
	return version, created, updated
}

// BulkResult counts what a BulkLoad did. A key given more than once in one
// call counts once: with ConflictSkip the first record given is used, with
// ConflictReplace the last (ConflictFail fails on the second).
type BulkResult struct {
	Inserted int // new records, version 1
	Replaced int // stored records whose data changed (ConflictReplace)
	Skipped  int // stored records left as they were
}

// Checkpoint is a named position kept in the store: a migration's last key,
// a change-capture log position, a lake consumer's state.
type Checkpoint struct {
	Name      string
	Value     []byte
	UpdatedAt time.Time // set by the store
}

// Change is what Tx.Upsert did.
type Change int

const (
	Unchanged Change = iota // the stored data was the same; nothing written
	Created                 // the key was absent; the record has version 1
	Updated                 // the data was replaced and the version incremented
)

func (c Change) String() string {
	switch c {
	case Unchanged:
		return "unchanged"
	case Created:
		return "created"
	case Updated:
		return "updated"
	}
	return fmt.Sprintf("Change(%d)", int(c))
}

// UpsertResult is the outcome of Tx.Upsert.
type UpsertResult struct {
	Change Change
	Record Record  // the record as stored after the call
	Before *Record // the record before an update or an unchanged call; nil when created
}

// SameData reports whether two canonical records hold the same data. It
// compares their JSON, so that numbers compare by value whatever Go type
// holds them (int64(2) and float64(2) are the same).
func SameData(a, b map[string]any) bool {
	ja, errA := json.Marshal(a)
	jb, errB := json.Marshal(b)
	return errA == nil && errB == nil && string(ja) == string(jb)
}

// UpsertVia implements Tx.Upsert with the Tx's Get, Insert and Update, for
// stores whose Get locks the record: it reads the record, and inserts,
// replaces or leaves it. When a concurrent writer inserts the key between
// the read and the insert, it reads again, once.
func UpsertVia(ctx context.Context, tx Tx, e *Entity, data map[string]any) (UpsertResult, error) {
	id, ok := data[e.Key.Name]
	if !ok || id == nil {
		return UpsertResult{}, fmt.Errorf("upsert %s: the key %s is missing", e.Name, e.Key.Name)
	}
	for attempt := 0; ; attempt++ {
		cur, err := tx.Get(ctx, e, id)
		if errors.Is(err, ErrNotFound) {
			r, err := tx.Insert(ctx, e, data)
			if errors.Is(err, ErrConflict) && attempt == 0 {
				continue
			}
			return UpsertResult{Change: Created, Record: r}, err
		}
		if err != nil {
			return UpsertResult{}, err
		}
		if SameData(cur.Data, storedForm(e, data, cur)) {
			return UpsertResult{Change: Unchanged, Record: cur, Before: &cur}, nil
		}
		r, err := tx.Update(ctx, e, id, cur.Version, data)
		return UpsertResult{Change: Updated, Record: r, Before: &cur}, err
	}
}

// storedForm returns data as the store would hold it next to cur: without
// nil values (an absent key means null) and with cur's key, so that a key
// given as 7 or in upper case matches the stored one.
func storedForm(e *Entity, data map[string]any, cur Record) map[string]any {
	out := make(map[string]any, len(data))
	for k, v := range data {
		if v != nil {
			out[k] = v
		}
	}
	out[e.Key.Name] = cur.Data[e.Key.Name]
	return out
}

// DistinctKeys picks the records BulkLoad applies when a key is given more
// than once in one call: the first record of a key under ConflictSkip, the
// last under ConflictReplace. use[i] reports whether data[i] is applied;
// use is nil when all are. Records without a key (generated later) are all
// applied. Under ConflictFail every record is applied and the store
// reports the duplicate.
func DistinctKeys(e *Entity, data []map[string]any, policy Conflict) (use []bool, dropped int) {
	if policy == ConflictFail {
		return nil, 0
	}
	use = make([]bool, len(data))
	seen := make(map[string]int, len(data)) // key → index applied
	for i, d := range data {
		id, ok := d[e.Key.Name]
		if !ok || id == nil {
			use[i] = true
			continue
		}
		k := keyText(e, id)
		j, dup := seen[k]
		switch {
		case !dup:
			seen[k], use[i] = i, true
		case policy == ConflictReplace:
			use[j], use[i], seen[k] = false, true, i
			dropped++
		default:
			dropped++
		}
	}
	if dropped == 0 {
		return nil, 0
	}
	return use, dropped
}

// keyText is the canonical text of a key, so that 7, int64(7) and "7" are
// one key, as are a UUID in upper and lower case.
func keyText(e *Entity, id any) string {
	s := KeyString(id)
	if e.Key.Type != KeyText {
		if k, err := e.ParseKey(s); err == nil {
			return KeyString(k)
		}
	}
	return s
}
