package legacy

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/internal/ordered"
)

// Meter and MeterFunc are the root package's: a progress display the CLI
// provides.
type (
	Meter     = plinth.Meter
	MeterFunc = plinth.MeterFunc
)

// DefaultBatch is how many root rows a full load reads, writes and
// checkpoints at a time.
const DefaultBatch = 1000

// FullOptions tunes a full load.
type FullOptions struct {
	Batch int
	Meter MeterFunc
	// Restart ignores a checkpoint of an interrupted load.
	Restart bool
	// AfterBatch, when set, is called after each committed batch (tests
	// use it to interrupt a load).
	AfterBatch func(loaded int) error
	// Snapshot, when set, is the snapshot to read (change capture takes
	// it where it knows the source's position); Full leaves it open.
	Snapshot *Snapshot
	// Checkpoint names the store checkpoint of the load's progress
	// (default CheckpointName("full"); change capture's initial load
	// keeps its own).
	Checkpoint string
}

// FullResult says what a full load did.
type FullResult struct {
	Read, Loaded, Filtered int
	Rejected               []Rejection
	Resumed                bool // it continued an interrupted load
}

// fullCheckpoint is the position of a full load: the last legacy key
// loaded, or Done when the load completed.
type fullCheckpoint struct {
	After  LegacyKey `json:"after,omitempty"`
	Loaded int       `json:"loaded"`
	Done   bool      `json:"done"`
}

// CheckpointName is the store checkpoint a mapping's mode keeps its position in.
func (m *Mapping) CheckpointName(mode string) string {
	return fmt.Sprintf("legacy.%s.%s.%s.%s", mode, m.Domain, m.Plural, m.System)
}

// Full loads every row of the source, read from one consistent snapshot,
// through the store's bulk path: batches of root rows in key order, each
// written (upsert by key, so a re-run is safe) atomically with a
// checkpoint of its last key, so an interrupted load resumes after it;
// two at once where the store loads concurrent calls in parallel,
// committing in order.
// Rows the conditions exclude are skipped; rows that cannot form a valid
// record are reported, not loaded.
func Full(ctx context.Context, src *Source, st plinth.Store, m *Mapping, opts FullOptions) (res FullResult, err error) {
	if opts.Batch <= 0 {
		opts.Batch = DefaultBatch
	}
	name := cmp.Or(opts.Checkpoint, m.CheckpointName("full"))
	var cp fullCheckpoint
	if saved, found, err := st.Checkpoint(ctx, name); err != nil {
		return res, err
	} else if found && !opts.Restart {
		if err := decodeKeyJSON(saved.Value, &cp); err != nil {
			return res, fmt.Errorf("the checkpoint %s does not decode: %w", name, err)
		}
		if cp.Done {
			cp = fullCheckpoint{}
		}
		res.Resumed = cp.After != nil
	}
	snap := opts.Snapshot
	if snap == nil {
		if snap, err = src.Snapshot(ctx); err != nil {
			return res, err
		}
		defer snap.Close()
	}
	total, err := snap.count(ctx, m)
	if err != nil {
		return res, err
	}
	// Into an empty entity, records go in with the engine's fastest path
	// (PostgreSQL: COPY, indexes built once at the end); a resumed or
	// repeated load upserts.
	conflict := plinth.ConflictReplace
	if n, err := st.Count(ctx, m.Entity); err != nil {
		return res, err
	} else if n == 0 && cp.After == nil {
		conflict = plinth.ConflictFail
		if bl, ok := st.(plinth.BulkLoader); ok {
			finish, err := bl.BeginBulkLoad(ctx, m.Entity)
			if err != nil {
				return res, err
			}
			defer func() {
				if ferr := finish(ctx); ferr != nil && err == nil {
					err = ferr
				}
			}()
		}
	}
	meter := opts.Meter.Start("migrate "+m.Plural, total)
	meter.Add(cp.Loaded)
	// Reading and building the next batch overlaps writing this one.
	batches, stop := readAhead(ctx, snap, m, cp.After, opts.Batch)
	defer stop()
	if err := load(ctx, st, m, batches, fullLoad{name, conflict, opts.AfterBatch}, &cp, &res, meter); err != nil {
		meter.Stop()
		return res, err
	}
	if err := ctx.Err(); err != nil {
		meter.Stop()
		return res, err
	}
	done, _ := json.Marshal(fullCheckpoint{Loaded: cp.Loaded, Done: true})
	if err := st.SetCheckpoint(ctx, name, done); err != nil {
		return res, err
	}
	meter.Finish()
	return res, nil
}

// fullLoaders is how many batches a full load writes at once into a store
// that loads concurrent calls in parallel (PostgreSQL: on two backends, so
// on more than one core), as seed and obfuscate do.
const fullLoaders = 2

// fullLoad is how load writes.
type fullLoad struct {
	checkpoint string
	conflict   plinth.Conflict
	afterBatch func(loaded int) error
}

// load writes the batches as they come, each with the checkpoint of its
// last key, committing in order (ordered.Loads): what is committed is
// always a prefix of the source, so an interrupted load resumes without a
// gap. Batches already written when one fails or afterBatch stops the load
// may still commit.
func load(ctx context.Context, st plinth.Store, m *Mapping, batches <-chan readBatchResult, how fullLoad, cp *fullCheckpoint, res *FullResult, meter Meter) error {
	loaders := 1
	if _, ok := st.(plinth.BulkLoader); ok {
		loaders = fullLoaders
	}
	ctx, cancel := context.WithCancel(ctx)
	loads := ordered.New(ctx, loaders)
	defer func() {
		cancel()
		loads.Close()
	}()
	type pend struct {
		out          <-chan error
		after        LegacyKey
		loaded, rows int
	}
	var pending []pend
	collect := func() error {
		pd := pending[0]
		pending = pending[1:]
		if err := <-pd.out; err != nil {
			return fmt.Errorf("writing %s after key %s: %w", m.Plural, pd.after.Text(m.Key.Separator), err)
		}
		res.Loaded += pd.loaded
		meter.Add(pd.rows)
		if how.afterBatch != nil {
			return how.afterBatch(res.Loaded)
		}
		return nil
	}
	for next := range batches {
		if next.err != nil {
			return next.err
		}
		data := res.take(m, next.built)
		for len(pending) >= loaders {
			if err := collect(); err != nil {
				return err
			}
		}
		*cp = fullCheckpoint{After: next.built[len(next.built)-1].Legacy, Loaded: cp.Loaded + len(next.built)}
		value, _ := json.Marshal(cp)
		out := loads.Submit(func(beforeCommit func() error) error {
			_, err := st.BulkLoad(ctx, m.Entity, data, plinth.BulkOptions{OnConflict: how.conflict,
				Checkpoint: plinth.Checkpoint{Name: how.checkpoint, Value: value}, BeforeCommit: beforeCommit})
			return err
		})
		pending = append(pending, pend{out: out, after: cp.After, loaded: len(data), rows: len(next.built)})
	}
	for len(pending) > 0 {
		if err := collect(); err != nil {
			return err
		}
	}
	return nil
}

// take counts a batch's rows and returns the records to load.
func (res *FullResult) take(m *Mapping, batch []Built) []map[string]any {
	var data []map[string]any
	for _, b := range batch {
		res.Read++
		switch {
		case b.Filtered:
			res.Filtered++
		case b.Err != nil:
			res.Rejected = append(res.Rejected, Rejection{Key: b.Legacy.Text(m.Key.Separator), Reason: b.Err.Error()})
		default:
			data = append(data, b.Data)
		}
	}
	return data
}

// decodeKeyJSON decodes a checkpoint keeping integer key values int64.
func decodeKeyJSON(b []byte, v *fullCheckpoint) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	if err := d.Decode(v); err != nil {
		return err
	}
	for i, x := range v.After {
		if n, ok := x.(json.Number); ok {
			if k, err := strconv.ParseInt(string(n), 10, 64); err == nil {
				v.After[i] = k
			} else {
				v.After[i], _ = n.Float64()
			}
		}
	}
	return nil
}

type readBatchResult struct {
	built []Built
	err   error
}

// readAhead reads and builds batches in key order on a goroutine of its
// own, at most two ahead; the channel closes after the last batch, an
// error, or when ctx is done. stop ends the reader and waits for it: call
// it before the snapshot closes.
func readAhead(ctx context.Context, snap *Snapshot, m *Mapping, after LegacyKey, n int) (batches <-chan readBatchResult, stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	ch := make(chan readBatchResult, 2)
	stop = func() {
		cancel()
		for range ch {
		}
	}
	go func() {
		defer close(ch)
		for {
			batch, err := snap.readBatch(ctx, m, after, n)
			if len(batch) == 0 && err == nil {
				return
			}
			select {
			case ch <- readBatchResult{batch, err}:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
			after = batch[len(batch)-1].Legacy
		}
	}()
	return ch, stop
}
