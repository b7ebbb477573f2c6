package legacy

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sort"
	"sync"

	"github.com/google/uuid"

	"github.com/plinth-data/plinth"
)

// Report compares the source with the target record by record.
type Report struct {
	Source   int // valid records the source makes
	Target   int // records the target holds
	Filtered int // source rows the mapping's conditions exclude
	Rejected []Rejection
	// Record keys (as text) that differ: in the source only, in the target
	// only, in both with different data.
	Missing, Extra, Differ []string
}

// Clean reports whether source and target hold the same records.
func (r Report) Clean() bool { return len(r.Missing)+len(r.Extra)+len(r.Differ) == 0 }

type sourceEntry struct {
	hash   Hash
	legacy LegacyKey
}

type targetEntry struct {
	key     any
	version int64
}

// diff is what a comparison found, with what sync needs to act on it.
type diff struct {
	Report
	changed []LegacyKey            // missing or differing, by legacy key
	extra   map[string]targetEntry // in the target only
	target  map[string]targetEntry // every target record
}

// Compare reads the source (one snapshot) and the target (one Store.Scan)
// and compares per-record hashes.
func Compare(ctx context.Context, src *Source, st plinth.Store, m *Mapping, meter MeterFunc) (Report, error) {
	d, err := compare(ctx, src, st, m, meter)
	return d.Report, err
}

func compare(ctx context.Context, src *Source, st plinth.Store, m *Mapping, meter MeterFunc) (*diff, error) {
	d := &diff{extra: map[string]targetEntry{}, target: map[string]targetEntry{}}
	source, err := d.readSource(ctx, src, m, meter)
	if err != nil {
		return d, err
	}
	e := m.Entity
	_, err = st.Scan(ctx, e, plinth.ScanQuery{}, func(r plinth.Record) error {
		d.Target++
		key := plinth.KeyString(e.KeyOf(r))
		d.target[key] = targetEntry{key: e.KeyOf(r), version: r.Version}
		s, ok := source[key]
		switch {
		case !ok:
			d.Extra = append(d.Extra, key)
			d.extra[key] = targetEntry{key: e.KeyOf(r), version: r.Version}
		case s.hash != HashData(r.Data):
			d.Differ = append(d.Differ, key)
			d.changed = append(d.changed, s.legacy)
		}
		delete(source, key)
		return nil
	})
	if err != nil {
		return d, fmt.Errorf("scanning %s in the store: %w", e.Plural, err)
	}
	missing := make([]string, 0, len(source))
	for key := range source {
		missing = append(missing, key)
	}
	sort.Strings(missing)
	for _, key := range missing {
		d.Missing = append(d.Missing, key)
		d.changed = append(d.changed, source[key].legacy)
	}
	return d, nil
}

// readSource hashes every record the source makes, from one snapshot.
func (d *diff) readSource(ctx context.Context, src *Source, m *Mapping, meter MeterFunc) (map[string]sourceEntry, error) {
	snap, err := src.Snapshot(ctx)
	if err != nil {
		return nil, err
	}
	defer snap.Close()
	total, err := snap.count(ctx, m)
	if err != nil {
		return nil, err
	}
	mt := meter.Start("compare "+m.Plural, total)
	out := map[string]sourceEntry{}
	// The next batches are read and built while this one is hashed.
	batches, stop := readAhead(ctx, snap, m, nil, DefaultBatch)
	defer stop()
	for next := range batches {
		if next.err != nil {
			mt.Stop()
			return nil, next.err
		}
		hashes := hashAll(next.built)
		for i, b := range next.built {
			switch {
			case b.Filtered:
				d.Filtered++
			case b.Err != nil:
				d.Rejected = append(d.Rejected, Rejection{Key: b.Legacy.Text(m.Key.Separator), Reason: b.Err.Error()})
			default:
				d.Source++
				out[plinth.KeyString(b.Key)] = sourceEntry{hash: hashes[i], legacy: b.Legacy}
			}
		}
		mt.Add(len(next.built))
	}
	if err := ctx.Err(); err != nil {
		mt.Stop()
		return nil, err
	}
	mt.Finish()
	return out, nil
}

// hashAll hashes the data of the built records, on every core.
func hashAll(built []Built) []Hash {
	out := make([]Hash, len(built))
	parts := runtime.GOMAXPROCS(0)
	var wg sync.WaitGroup
	for p := range parts {
		lo, hi := p*len(built)/parts, (p+1)*len(built)/parts
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := lo; i < hi; i++ {
				if built[i].Data != nil {
					out[i] = HashData(built[i].Data)
				}
			}
		}()
	}
	wg.Wait()
	return out
}

// SyncResult says what a sync changed.
type SyncResult struct {
	Created, Updated, Deleted int
	Rejected                  []Rejection
	CorrelationID             string
}

// Changes is how many records the sync changed.
func (r SyncResult) Changes() int { return r.Created + r.Updated + r.Deleted }

// Principal is who migration writes as, in audit records.
var Principal = plinth.Principal{Subject: "plinth-migrate", Name: "Plinth legacy migration"}

// Sync compares per-record hashes of source and target and applies only
// the differences through the write path: each insert, update and delete
// is one transaction with its event (sourceSystem: the legacy system) and
// its audit record. A run that finds no difference writes nothing.
func Sync(ctx context.Context, src *Source, st plinth.Store, w *plinth.Writer, m *Mapping, meter MeterFunc) (SyncResult, error) {
	res := SyncResult{CorrelationID: uuid.NewString()}
	d, err := compare(ctx, src, st, m, meter)
	if err != nil {
		return res, err
	}
	res.Rejected = d.Rejected
	origin := plinth.Origin{Principal: Principal, CorrelationID: res.CorrelationID, SourceSystem: m.System}
	ap := &applier{st: st, w: w, m: m, origin: origin, res: &res}
	for start := 0; start < len(d.changed); start += 500 {
		keys := d.changed[start:min(start+500, len(d.changed))]
		if err := ap.reapply(ctx, src, keys, d.target); err != nil {
			return res, err
		}
	}
	for _, t := range d.extra {
		if err := ap.delete(ctx, t.key, t.version); err != nil {
			return res, err
		}
	}
	return res, nil
}

// applier applies changes through the write path.
type applier struct {
	st     plinth.Store
	w      *plinth.Writer
	m      *Mapping
	origin plinth.Origin
	mu     sync.Mutex // guards res when records are applied in parallel
	res    *SyncResult
}

func (a *applier) count(f func(r *SyncResult)) {
	a.mu.Lock()
	f(a.res)
	a.mu.Unlock()
}

// reapply reads the rows of the keys afresh and upserts their records, or
// deletes the records of rows that are gone or now excluded.
func (a *applier) reapply(ctx context.Context, src *Source, keys []LegacyKey, target map[string]targetEntry) error {
	snap, err := src.Snapshot(ctx)
	if err != nil {
		return err
	}
	built, err := snap.readKeys(ctx, a.m, keys)
	snap.Close()
	if err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, b := range built {
		seen[b.Legacy.Text("\x00")] = true
		switch {
		case b.Err != nil:
			a.res.Rejected = append(a.res.Rejected, Rejection{Key: b.Legacy.Text(a.m.Key.Separator), Reason: b.Err.Error()})
		case b.Filtered:
			if t, ok := target[plinth.KeyString(b.Key)]; ok {
				if err := a.delete(ctx, t.key, t.version); err != nil {
					return err
				}
			}
		default:
			if err := a.upsert(ctx, b.Data); err != nil {
				return err
			}
		}
	}
	for _, k := range keys { // gone since the comparison
		if seen[k.Text("\x00")] {
			continue
		}
		if key, err := a.m.TargetKey(k); err == nil {
			if t, ok := target[plinth.KeyString(key)]; ok {
				if err := a.delete(ctx, t.key, t.version); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func (a *applier) upsert(ctx context.Context, data map[string]any) error {
	wr, err := a.w.Upsert(ctx, a.m.Entity, data, a.origin)
	if err != nil {
		return fmt.Errorf("writing %s %v: %w", a.m.Plural, data[a.m.Entity.Key.Name], err)
	}
	a.count(func(r *SyncResult) {
		switch {
		case wr.Created:
			r.Created++
		case wr.Changed:
			r.Updated++
		}
	})
	return nil
}

// delete removes a record at its version; if it changed meanwhile, at the
// version it has now.
func (a *applier) delete(ctx context.Context, key any, version int64) error {
	for range 3 {
		_, err := a.w.Delete(ctx, a.m.Entity, key, version, a.origin)
		switch {
		case err == nil:
			a.count(func(r *SyncResult) { r.Deleted++ })
			return nil
		case errors.Is(err, plinth.ErrNotFound):
			return nil
		case errors.Is(err, plinth.ErrVersionConflict):
			cur, gerr := a.st.Get(ctx, a.m.Entity, key)
			if errors.Is(gerr, plinth.ErrNotFound) {
				return nil
			} else if gerr != nil {
				return gerr
			}
			version = cur.Version
		default:
			return fmt.Errorf("deleting %s %v: %w", a.m.Plural, key, err)
		}
	}
	return fmt.Errorf("deleting %s %v: it kept changing", a.m.Plural, key)
}
