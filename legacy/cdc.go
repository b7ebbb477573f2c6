package legacy

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/plinth-data/plinth"
)

// ErrResnapshot is returned by a Stream when the source no longer holds
// the changes after the position (its retention passed it): change
// capture then loads a new snapshot instead of skipping them.
var ErrResnapshot = errors.New("the source's change retention has passed the stored position")

// Change is one row change a capture read from the source.
type Change struct {
	Table         string // lower case
	Before, After Row    // Before is nil for an insert, After for a delete
}

// Batch is the changes of one or more committed source transactions, in
// commit order, and the source position after the last of them.
type Batch struct {
	Changes   []Change
	Position  string
	Committed time.Time // commit time of the last transaction, for lag
}

// Stream reads committed changes from a position onwards.
type Stream interface {
	// Next blocks until at least one transaction committed (it may return
	// a batch without changes that only moves the position).
	Next(ctx context.Context) (Batch, error)
	Close() error
}

// Acknowledger is a Stream whose source may discard the changes before a
// position once told that the target holds them (a PostgreSQL replication
// slot). RunCDC reads a batch ahead of the one it applies, so it calls
// Stored with a batch's position once the position is stored.
type Acknowledger interface {
	Stored(position string)
}

// PositionFirst is a Capture that may take its position before the
// snapshot opens instead of reading the snapshot's own (MySQL keeps no
// binlog_snapshot_* for a consistent-snapshot transaction). Everything
// committed before that position is in the snapshot; some changes after it
// may be too, and are then replayed from the stream: harmless, because a
// replayed change re-reads its record from the source and writes only what
// differs (see RunCDC).
type PositionFirst interface {
	// PositionBefore returns the source's current position and true, or
	// false when the capture reads the snapshot's (SnapshotPosition).
	PositionBefore(ctx context.Context) (position string, ok bool, err error)
}

// Backlogger is a Capture that can tell how far the source's change log
// runs past a position the target stored: the bytes of log it has yet to
// take in (binlog: to the end of the binary log; pgoutput: to the WAL's
// insert position). It is asked every few seconds, during the initial
// load (the position it pinned) and while a stream's Next runs.
type Backlogger interface {
	Backlog(ctx context.Context, stored string) (int64, error)
}

// CDCBacklog is how far the target is behind the source, beside the
// seconds of CDCStatus.Lag: what the source has and the target not yet.
type CDCBacklog struct {
	// Bytes of the source's change log after the applied position (-1:
	// the source cannot tell).
	Bytes int64 `json:"bytes"`
	// Pending is how many row changes were received from the source and
	// are not yet applied.
	Pending int64     `json:"pending"`
	At      time.Time `json:"at"`
}

// PositionHolder is a Capture that can tell whether the source still
// serves the changes after a position (the binlog file is still there, the
// slot still exists): an initial load interrupted under that position may
// then resume instead of starting again.
type PositionHolder interface {
	Holds(ctx context.Context, position string) (bool, error)
}

// Capture is a source's change capture (MariaDB binlog, PostgreSQL
// pgoutput, SQL Server Change Tracking or CDC).
type Capture interface {
	// SnapshotPosition is the position of the snapshot: every change
	// after it is not in the snapshot, every change before it is.
	SnapshotPosition(ctx context.Context, snap *Snapshot) (string, error)
	// Open streams changes after from.
	Open(ctx context.Context, from string) (Stream, error)
}

// CDCStatus is where change capture stands; kept in the store.
type CDCStatus struct {
	Position     string  `json:"position"`
	SnapshotDone bool    `json:"snapshotDone"`
	Applied      int64   `json:"applied"`  // records changed since capture began
	Lag          float64 `json:"lag"`      // seconds from the last commit applied to its applying
	Rejected     int64   `json:"rejected"` // source rows that could not become valid records
	// LastRejection says which and why, for the operator.
	LastRejection string    `json:"lastRejection,omitempty"`
	Committed     time.Time `json:"committed"`
	At            time.Time `json:"at"`
}

// CDCOptions tunes change capture.
type CDCOptions struct {
	Meter MeterFunc
	// OnApplied is told the status after each batch is applied (metrics).
	OnApplied func(CDCStatus)
	// OnBacklog is told the backlog every BacklogEvery (default 5 s) once
	// a position is stored; it is also kept in the store, under
	// CheckpointName("cdc-backlog"), for plinth migrate status.
	OnBacklog    func(CDCBacklog)
	BacklogEvery time.Duration
	// DuringSnapshot, when set, runs after the snapshot's position is
	// taken and before it is loaded (tests write to the source then).
	DuringSnapshot func()
	// Notice is told what the operator should know: a new snapshot
	// loaded because the source no longer serves the stored position, and
	// why.
	Notice func(msg string)
	// LoadBatch is the initial load's batch (default DefaultBatch);
	// AfterLoadBatch, when set, is called after each of its committed
	// batches (tests interrupt the load there); OnLoad is told what a load
	// from a snapshot did.
	LoadBatch      int
	AfterLoadBatch func(loaded int) error
	OnLoad         func(FullResult)
}

// RunCDC keeps the target in step with the source until ctx ends: an
// initial full load from a snapshot whose source position is known, then
// every change after that position. A changed row re-reads its root
// record (a child row's change re-emits its parent) and applies it through
// the write path only when its data differs, so replaying a change after a
// restart writes nothing: at least once, no double. The position is stored
// in the transaction that applies the last of its changes (see applyPlan),
// so it is never ahead of what the target holds.
func RunCDC(ctx context.Context, src *Source, st plinth.Store, w *plinth.Writer, m *Mapping, c Capture, opts CDCOptions) error {
	ck := &cdcCheckpoint{name: m.CheckpointName("cdc"), st: st, bl: &backlog{}}
	if saved, found, err := st.Checkpoint(ctx, ck.name); err != nil {
		return err
	} else if found {
		if err := json.Unmarshal(saved.Value, &ck.status); err != nil {
			return fmt.Errorf("the checkpoint %s does not decode: %w", ck.name, err)
		}
	}
	pctx, stopPolling := context.WithCancel(ctx)
	var polling sync.WaitGroup
	polling.Go(func() { ck.bl.poll(pctx, st, m, c, opts) })
	err := runCDC(ctx, src, st, w, m, c, ck, opts)
	stopPolling()
	polling.Wait()
	if ctx.Err() != nil {
		return nil // stopped
	}
	return err
}

// cdcCheckpoint is where change capture stands and where it keeps it.
type cdcCheckpoint struct {
	name   string
	st     plinth.Store
	status CDCStatus
	bl     *backlog
}

func (ck *cdcCheckpoint) value() []byte {
	ck.status.At = plinth.Now()
	b, _ := json.Marshal(ck.status)
	return b
}

// save stores the status on its own.
func (ck *cdcCheckpoint) save(ctx context.Context) error {
	return ck.st.SetCheckpoint(ctx, ck.name, ck.value())
}

// saveIn stores the status in tx, with the changes it covers.
func (ck *cdcCheckpoint) saveIn(ctx context.Context, tx plinth.Tx) error {
	return tx.SetCheckpoint(ctx, ck.name, ck.value())
}

func runCDC(ctx context.Context, src *Source, st plinth.Store, w *plinth.Writer, m *Mapping, c Capture, ck *cdcCheckpoint, opts CDCOptions) error {
	if !ck.status.SnapshotDone {
		if err := initialLoad(ctx, src, st, w, m, c, ck, opts); err != nil {
			return err
		}
	}
	for {
		err := follow(ctx, src, st, w, m, c, ck, opts)
		if !errors.Is(err, ErrResnapshot) {
			return err
		}
		if opts.Notice != nil {
			opts.Notice(err.Error() + ": loading a new snapshot")
		}
		ck.status.SnapshotDone = false
		if err := initialLoad(ctx, src, st, w, m, c, ck, opts); err != nil {
			return err
		}
	}
}

// follow applies the stream's changes until ctx ends (nil) or it fails.
// The next batch is read from the source while this one is written: the
// batches are still applied one after the other, each after the last
// committed, so a record's changes reach the target in order.
func follow(ctx context.Context, src *Source, st plinth.Store, w *plinth.Writer, m *Mapping, c Capture, ck *cdcCheckpoint, opts CDCOptions) error {
	status := &ck.status
	stream, err := c.Open(ctx, status.Position)
	if err != nil {
		return err
	}
	defer stream.Close()
	ap := &applier{st: st, w: w, m: m, res: &SyncResult{},
		origin: plinth.Origin{Principal: Principal, SourceSystem: m.System}}
	rctx, cancel := context.WithCancel(ctx)
	// Changes an earlier stream read and never applied are read again
	// from the position: they are no longer pending.
	bl := ck.bl
	bl.applied(status.Position, int(bl.pending.Load()))
	ahead := planAhead(rctx, src, m, stream, &bl.pending)
	defer func() { // the reader stops before the stream closes
		cancel()
		for range ahead {
		}
	}()
	for p := range ahead {
		if p.err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return p.err
		}
		ap.origin.CorrelationID = uuid.NewString()
		status.Position = p.batch.Position
		if n := len(p.rejected); n > 0 {
			last := p.rejected[n-1]
			status.Rejected += int64(n)
			status.LastRejection = "legacy key " + last.Key + ": " + last.Reason
		}
		if !p.batch.Committed.IsZero() {
			status.Committed = p.batch.Committed
			status.Lag = max(0, time.Since(p.batch.Committed).Seconds())
		}
		applied := status.Applied
		err := ap.applyPlan(ctx, p.changes, func(tx plinth.Tx, changed int) error {
			status.Applied = applied + int64(changed)
			return ck.saveIn(ctx, tx)
		})
		if err != nil {
			return err
		}
		bl.applied(status.Position, len(p.batch.Changes))
		if ack, ok := stream.(Acknowledger); ok {
			ack.Stored(status.Position)
		}
		if opts.OnApplied != nil {
			opts.OnApplied(*status)
		}
	}
	return nil
}

// backlog follows what the target has yet to take in: the position last
// stored and the changes received but not applied.
type backlog struct {
	mu      sync.Mutex
	stored  string
	pending atomic.Int64
}

// applied notes the position stored and how many changes it applied.
func (b *backlog) applied(position string, changes int) {
	b.mu.Lock()
	b.stored = position
	b.mu.Unlock()
	b.pending.Add(-int64(changes))
}

// poll reports the backlog every opts.BacklogEvery until ctx ends, once a
// position is stored: to OnBacklog and into the store. A source that
// cannot tell its log's end reports -1 bytes; a failed look is reported
// nowhere and tried again.
func (b *backlog) poll(ctx context.Context, st plinth.Store, m *Mapping, c Capture, opts CDCOptions) {
	every := cmp.Or(opts.BacklogEvery, 5*time.Second)
	bl, canTell := c.(Backlogger)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		b.mu.Lock()
		stored := b.stored
		b.mu.Unlock()
		if stored == "" {
			continue
		}
		now := CDCBacklog{Bytes: -1, Pending: b.pending.Load(), At: plinth.Now()}
		if canTell {
			n, err := bl.Backlog(ctx, stored)
			if err != nil {
				continue
			}
			now.Bytes = n
		}
		v, _ := json.Marshal(now)
		_ = st.SetCheckpoint(ctx, m.CheckpointName("cdc-backlog"), v)
		if opts.OnBacklog != nil { // after the store has it
			opts.OnBacklog(now)
		}
	}
}

// planned is a batch read from the stream with the changes it makes to
// the target's records.
type planned struct {
	batch    Batch
	changes  []plinth.BatchChange
	rejected []Rejection
	err      error
}

// planAhead reads batches from the stream and the current rows they touch
// from the source on a goroutine of its own, one batch ahead of the
// writing; the channel closes after an error or when ctx is done.
func planAhead(ctx context.Context, src *Source, m *Mapping, stream Stream, pending *atomic.Int64) <-chan planned {
	ch := make(chan planned, 1)
	go func() {
		defer close(ch)
		for {
			var p planned
			p.batch, p.err = stream.Next(ctx)
			pending.Add(int64(len(p.batch.Changes)))
			var keys []LegacyKey
			if p.err == nil {
				p.err = AwaitVisible(ctx, src, m, p.batch)
			}
			if p.err == nil {
				keys, p.err = m.rootKeys(ctx, src, m.ParentsOf(p.batch.Changes))
			}
			if p.err == nil {
				p.changes, p.rejected, p.err = m.plan(ctx, src, keys)
			}
			select {
			case ch <- p:
			case <-ctx.Done():
				return
			}
			if p.err != nil {
				return
			}
		}
	}()
	return ch
}

// initialLoad takes a snapshot and stores its position, then brings the
// target to it. An empty target is loaded from the snapshot through the
// bulk path (the migration; no events), checkpointed by key range under
// the stored position (see resumeLoad). A target that holds records (a
// re-snapshot after the source's retention passed the position, or a load
// interrupted under a position the source no longer serves) is synced
// instead: only the differences, each through the write path with its
// event, deletions included, so nothing that changed in the gap goes
// unannounced. Its reads are later than the position, so changes after it
// may be applied again: harmless.
func initialLoad(ctx context.Context, src *Source, st plinth.Store, w *plinth.Writer, m *Mapping, c Capture, ck *cdcCheckpoint, opts CDCOptions) error {
	status := &ck.status
	load := m.CheckpointName("cdc-load")
	if resumed, err := resumeLoad(ctx, src, st, m, c, ck, load, opts); resumed || err != nil {
		return err
	}
	// A new position: the progress of a load under an earlier one goes
	// first, so that it is never resumed under this one.
	if err := st.SetCheckpoint(ctx, load, []byte(`{"loaded":0,"done":true}`)); err != nil {
		return err
	}
	pos, early, err := positionFirst(ctx, c)
	if err != nil {
		return err
	}
	snap, err := src.Snapshot(ctx)
	if err != nil {
		return err
	}
	defer snap.Close()
	if !early {
		if pos, err = c.SnapshotPosition(ctx, snap); err != nil {
			return err
		}
	}
	status.Position = pos
	if err := ck.save(ctx); err != nil {
		return err
	}
	ck.bl.applied(pos, 0)
	if opts.DuringSnapshot != nil {
		opts.DuringSnapshot()
	}
	n, err := st.Count(ctx, m.Entity)
	if err != nil {
		return err
	}
	if n == 0 {
		var res FullResult
		res, err = Full(ctx, src, st, m, FullOptions{Snapshot: snap, Meter: opts.Meter, Restart: true,
			Checkpoint: load, Batch: opts.LoadBatch, AfterBatch: opts.AfterLoadBatch})
		if err == nil && opts.OnLoad != nil {
			opts.OnLoad(res)
		}
	} else {
		_, err = Sync(ctx, src, st, w, m, opts.Meter)
	}
	if err != nil {
		return err
	}
	status.SnapshotDone = true
	return ck.save(ctx)
}

// resumeLoad continues an initial load that was interrupted (its key-range
// checkpoint is not done) under the position stored before it began, when
// the source still serves that position: the rows after the last loaded
// key are read from a new snapshot and upserted, and the changes after the
// position are then followed as usual. Rows already loaded are not read
// again. That is no gap and no double for the same reason as PositionFirst:
// both snapshots are later than the position, so every change they miss
// is in the stream after it, and a change the target already reflects
// writes nothing. It reports whether it resumed.
func resumeLoad(ctx context.Context, src *Source, st plinth.Store, m *Mapping, c Capture, ck *cdcCheckpoint, load string, opts CDCOptions) (bool, error) {
	status := &ck.status
	saved, found, err := st.Checkpoint(ctx, load)
	if err != nil || !found || status.Position == "" {
		return false, err
	}
	var cp fullCheckpoint
	if err := decodeKeyJSON(saved.Value, &cp); err != nil || cp.Done || cp.After == nil {
		return false, nil
	}
	notice := func(why string) {
		if opts.Notice != nil {
			opts.Notice(fmt.Sprintf("the initial load was interrupted after %d rows and %s: loading a new snapshot", cp.Loaded, why))
		}
	}
	holder, ok := c.(PositionHolder)
	if !ok {
		notice("this source cannot tell whether it still holds the changes after its position")
		return false, nil
	}
	if held, err := holder.Holds(ctx, status.Position); err != nil {
		return false, err
	} else if !held {
		notice("the source no longer holds the changes after its position " + status.Position + " (binlog purged, slot gone)")
		return false, nil
	}
	ck.bl.applied(status.Position, 0)
	snap, err := src.Snapshot(ctx)
	if err != nil {
		return false, err
	}
	defer snap.Close()
	res, err := Full(ctx, src, st, m, FullOptions{Snapshot: snap, Meter: opts.Meter, Checkpoint: load,
		Batch: opts.LoadBatch, AfterBatch: opts.AfterLoadBatch})
	if err != nil {
		return true, err
	}
	if opts.OnLoad != nil {
		opts.OnLoad(res)
	}
	status.SnapshotDone = true
	return true, ck.save(ctx)
}

// positionFirst asks a PositionFirst capture for the position to read
// before the snapshot opens.
func positionFirst(ctx context.Context, c Capture) (string, bool, error) {
	if pf, ok := c.(PositionFirst); ok {
		return pf.PositionBefore(ctx)
	}
	return "", false, nil
}

// ParentRef names root rows by the values of some of their columns: their
// key columns (a root row's own change) or a child's parent columns. A
// child nested deeper, or reached through link tables, names rows of the
// table it joins instead (via): rootKeys follows them up to the root.
type ParentRef struct {
	Columns []string
	Values  LegacyKey
	via     *JoinedTable // the table Columns are of; nil: the root
}

// JoinedTable is a table a mapping joins (a child, a link on the way to
// one, a child nested in one): its rows whose Join columns hold values join
// the rows of the table above (Above; nil: the root) whose Parent columns
// hold them.
type JoinedTable struct {
	Table        string
	Join, Parent []string
	Above        *JoinedTable
}

// Joins lists every table the mapping joins, at every depth, each with
// the way up to the root.
func (m *Mapping) Joins() []*JoinedTable {
	var out []*JoinedTable
	var walk func(children []*ChildMap, above *JoinedTable)
	walk = func(children []*ChildMap, above *JoinedTable) {
		for _, c := range children {
			prev := above
			for _, h := range c.Through {
				prev = &JoinedTable{Table: h.Table, Join: h.Join, Parent: h.Parent, Above: prev}
				out = append(out, prev)
			}
			j := &JoinedTable{Table: c.Table, Join: c.Join, Parent: c.Parent, Above: prev}
			out = append(out, j)
			walk(c.Children, j)
		}
	}
	walk(m.Children, nil)
	return out
}

// ParentsOf lists the rows the changes touch, as references to root rows
// (a root row's key, before and after; a direct child's parent through its
// join columns) or to the rows of the table a deeper child joins.
func (m *Mapping) ParentsOf(changes []Change) []ParentRef {
	var out []ParentRef
	seen := map[string]bool{}
	add := func(r Row, cols, parent []string, via *JoinedTable) {
		if r == nil {
			return
		}
		v := values(r, cols)
		if slices.Contains(v, nil) {
			return
		}
		if t := fmt.Sprintf("%p", via) + strings.Join(parent, ",") + "\x00" + v.Text("\x00"); !seen[t] {
			seen[t] = true
			out = append(out, ParentRef{Columns: parent, Values: v, via: via})
		}
	}
	joins := m.Joins()
	for _, ch := range changes {
		if strings.EqualFold(ch.Table, m.Table) {
			add(ch.Before, m.Key.Columns, m.Key.Columns, nil)
			add(ch.After, m.Key.Columns, m.Key.Columns, nil)
		}
		for _, j := range joins {
			if strings.EqualFold(ch.Table, j.Table) {
				add(ch.Before, j.Join, j.Parent, j.Above)
				add(ch.After, j.Join, j.Parent, j.Above)
			}
		}
	}
	return out
}

// rootKeys turns parent references into the legacy keys of root rows:
// key references as they are, others by reading which rows hold those
// values now — level by level up the joins for a deeper child's, then in
// the root table.
func (m *Mapping) rootKeys(ctx context.Context, src *Source, refs []ParentRef) ([]LegacyKey, error) {
	var keys []LegacyKey
	byCols := map[string][]LegacyKey{}
	colsOf := map[string][]string{}
	var deeper []ParentRef
	for _, r := range refs {
		switch {
		case r.via != nil:
			deeper = append(deeper, r)
		case slices.Equal(lower(r.Columns), lower(m.Key.Columns)):
			keys = append(keys, r.Values)
		default:
			id := strings.Join(r.Columns, ",")
			byCols[id] = append(byCols[id], r.Values)
			colsOf[id] = r.Columns
		}
	}
	if len(byCols) == 0 && len(deeper) == 0 {
		return keys, nil
	}
	snap, err := src.Snapshot(ctx)
	if err != nil {
		return nil, err
	}
	defer snap.Close()
	for len(deeper) > 0 {
		up, err := snap.refsAbove(ctx, m, deeper)
		if err != nil {
			return nil, err
		}
		deeper = deeper[:0]
		for _, r := range up {
			if r.via != nil {
				deeper = append(deeper, r)
				continue
			}
			id := strings.Join(r.Columns, ",")
			byCols[id] = append(byCols[id], r.Values)
			colsOf[id] = r.Columns
		}
	}
	seen := map[string]bool{}
	for _, k := range keys {
		seen[k.Text("\x00")] = true
	}
	for id, vals := range byCols {
		for start := 0; start < len(vals); start += 500 {
			found, err := snap.keysWhere(ctx, m, colsOf[id], vals[start:min(start+500, len(vals))])
			if err != nil {
				return nil, err
			}
			for _, k := range found {
				if t := k.Text("\x00"); !seen[t] {
					seen[t] = true
					keys = append(keys, k)
				}
			}
		}
	}
	return keys, nil
}

// refsAbove reads the rows the references name (in the tables they are
// of) and returns references, one level up, to the rows those join.
func (s *Snapshot) refsAbove(ctx context.Context, m *Mapping, refs []ParentRef) ([]ParentRef, error) {
	type group struct {
		via  *JoinedTable
		cols []string
		vals []LegacyKey
	}
	var groups []*group
	byID := map[string]*group{}
	for _, r := range refs {
		id := fmt.Sprintf("%p", r.via) + strings.Join(r.Columns, ",")
		if byID[id] == nil {
			byID[id] = &group{via: r.via, cols: r.Columns}
			groups = append(groups, byID[id])
		}
		byID[id].vals = append(byID[id].vals, r.Values)
	}
	var out []ParentRef
	seen := map[string]bool{}
	for _, g := range groups {
		j := g.via
		rows, err := s.joinRows(ctx, m, j.Table, dedupe(append(slices.Clone(g.cols), j.Join...)), g.cols, nil, nil, g.vals)
		if err != nil {
			return nil, err
		}
		for _, r := range flatten(rows) {
			v := values(r, j.Join)
			if slices.Contains(v, nil) {
				continue
			}
			if t := fmt.Sprintf("%p", j.Above) + "\x00" + v.Text("\x00"); !seen[t] {
				seen[t] = true
				out = append(out, ParentRef{Columns: j.Parent, Values: v, via: j.Above})
			}
		}
	}
	return out, nil
}

// Tables lists the source tables the mapping reads (lower case).
func (m *Mapping) Tables() []string {
	out := []string{strings.ToLower(m.Table)}
	for _, j := range m.Joins() {
		if t := strings.ToLower(j.Table); !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	return out
}

// plan re-reads the root rows of the keys and returns the changes that
// bring their records to what the source holds now, in the keys' order:
// an upsert of each record the source makes, a delete of each that it no
// longer makes (the write path leaves records that are already so alone),
// and the rows that cannot become valid records.
func (m *Mapping) plan(ctx context.Context, src *Source, keys []LegacyKey) ([]plinth.BatchChange, []Rejection, error) {
	found := map[string]Built{}
	for start := 0; start < len(keys); start += 500 {
		snap, err := src.Snapshot(ctx)
		if err != nil {
			return nil, nil, err
		}
		built, err := snap.readKeys(ctx, m, keys[start:min(start+500, len(keys))])
		snap.Close()
		if err != nil {
			return nil, nil, err
		}
		for _, b := range built {
			found[b.Legacy.Text("\x00")] = b
		}
	}
	var out []plinth.BatchChange
	var rejected []Rejection
	for _, k := range keys {
		b, ok := found[k.Text("\x00")]
		switch {
		case ok && b.Err != nil:
			rejected = append(rejected, Rejection{Key: k.Text(m.Key.Separator), Reason: b.Err.Error()})
		case ok && b.Data != nil:
			out = append(out, plinth.BatchChange{Data: b.Data})
		case ok: // now excluded
			out = append(out, plinth.BatchChange{Key: b.Key})
		default: // gone from the source
			if key, err := m.TargetKey(k); err == nil {
				out = append(out, plinth.BatchChange{Key: key})
			}
		}
	}
	return out, rejected, nil
}

// applyWorkers is how many transactions change capture writes at once.
const applyWorkers = 4

// cdcChunk is how many records change capture writes in one transaction:
// few commits, yet short transactions (a variable for tests).
var cdcChunk = 64

// applyPlan writes the changes through the write path, cdcChunk records a
// transaction, each record still with its own event and audit record. The
// changes touch distinct records, so all chunks but the last are written
// at once; the last is written after they committed, and carries then (the
// position), told how many records the changes changed: a crash before it
// leaves the position where it was, and the changes already written are
// found equal, and write nothing, when the batch is replayed.
func (a *applier) applyPlan(ctx context.Context, plan []plinth.BatchChange, then func(tx plinth.Tx, changed int) error) error {
	last := max(0, len(plan)-cdcChunk)
	var earlier atomic.Int64
	if last > 0 {
		sem := make(chan struct{}, applyWorkers)
		errs := make(chan error, (last+cdcChunk-1)/cdcChunk)
		var wg sync.WaitGroup
		for start := 0; start < last; start += cdcChunk {
			wg.Add(1)
			sem <- struct{}{}
			go func(part []plinth.BatchChange) {
				defer wg.Done()
				n, err := a.apply(ctx, part, nil)
				if err != nil {
					errs <- err
				}
				earlier.Add(int64(n))
				<-sem
			}(plan[start:min(start+cdcChunk, last)])
		}
		wg.Wait()
		close(errs)
		if err := <-errs; err != nil {
			return err
		}
	}
	n := int(earlier.Load())
	_, err := a.apply(ctx, plan[last:], func(tx plinth.Tx, changed int) error { return then(tx, n+changed) })
	return err
}

// apply writes changes in one transaction, or in two halves when the store
// cannot take that many at once (then goes with the second), and returns
// how many records they changed; then is told how many of its own did.
func (a *applier) apply(ctx context.Context, changes []plinth.BatchChange, then func(tx plinth.Tx, changed int) error) (int, error) {
	var with func(plinth.Tx, []plinth.Written) error
	if then != nil {
		with = func(tx plinth.Tx, done []plinth.Written) error { return then(tx, changedIn(done)) }
	}
	done, err := a.w.Apply(ctx, a.m.Entity, changes, a.origin, with)
	var tooLarge *plinth.TooLargeError
	if errors.As(err, &tooLarge) && len(changes) > 1 {
		half := len(changes) / 2
		n, err := a.apply(ctx, changes[:half], nil)
		if err != nil {
			return n, err
		}
		var m int
		if then != nil {
			m, err = a.apply(ctx, changes[half:], func(tx plinth.Tx, changed int) error { return then(tx, n+changed) })
		} else {
			m, err = a.apply(ctx, changes[half:], nil)
		}
		return n + m, err
	}
	if err != nil {
		return 0, fmt.Errorf("writing %s: %w", a.m.Plural, err)
	}
	a.count(func(r *SyncResult) {
		for i, wr := range done {
			switch {
			case wr.Created:
				r.Created++
			case !wr.Changed:
			case changes[i].Data == nil:
				r.Deleted++
			default:
				r.Updated++
			}
		}
	})
	return changedIn(done), nil
}

func changedIn(done []plinth.Written) int {
	n := 0
	for _, w := range done {
		if w.Changed {
			n++
		}
	}
	return n
}
