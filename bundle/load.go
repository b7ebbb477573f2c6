package bundle

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"

	"github.com/plinth-data/plinth"
)

// DefaultBatch is how many records Load writes per BulkLoad call.
const DefaultBatch = 1000

// bulkLoadThreshold is the load size from which Load asks the store to
// build its filter indexes once at the end (into an empty entity).
const bulkLoadThreshold = 50_000

// LoadOptions tune Load.
type LoadOptions struct {
	// Environment is the target's environment (development, staging or
	// production); see CheckEnvironment.
	Environment string
	// Domains, when set, loads only these domains of the bundle.
	Domains []string
	// AllowSpecChange loads a domain whose spec hash differs from the
	// target's spec. Every record is still validated against the target's
	// spec; without it such a bundle is refused.
	AllowSpecChange bool
	// Batch is the number of records per BulkLoad call (DefaultBatch).
	Batch int
	Meter MeterFunc
	// AfterBatch, when set, is called after each committed batch with the
	// entity's plural and the last line loaded; an error stops the load
	// (tests use it to interrupt one).
	AfterBatch func(plural string, line int64) error
}

// EntityResult is what Load did with one entity.
type EntityResult struct {
	Domain   string `json:"domain"`
	Plural   string `json:"plural"`
	Records  int64  `json:"records"`  // in the bundle
	Resumed  int64  `json:"resumed"`  // lines passed over, loaded by an earlier run
	Inserted int64  `json:"inserted"` // new records
	Skipped  int64  `json:"skipped"`  // keys the store already had, left as they were
}

// LoadResult is what Load did.
type LoadResult struct {
	Manifest   *Manifest
	Provenance plinth.Provenance // recorded in the target
	Entities   []EntityResult
}

// CheckpointName is the name of the checkpoint that records how far a load
// of an entity got.
func CheckpointName(e *plinth.Entity) string {
	return "plinth.load." + e.Domain.Name + "." + e.Plural
}

// loadPosition is the value of a load checkpoint: the last line of the
// file (by its checksum) that is loaded.
type loadPosition struct {
	File   string `json:"file"`
	SHA256 string `json:"sha256"`
	Line   int64  `json:"line"`
}

type planned struct {
	e  *plinth.Entity
	em EntityManifest
}

// Load loads the bundle in dir into st, whose domains are ds. Before it
// writes anything it refuses a bundle whose class the environment does not
// accept (CheckEnvironment), a domain or entity the target does not have, a
// spec hash that differs from the target's spec (unless AllowSpecChange),
// a file that does not match its checksum, and any line that is not a valid
// record of the target's spec stored exactly as written (naming the file,
// line, entity and field). Then it records the target's provenance and
// loads each entity through Store.BulkLoad in batches, with a checkpoint
// of the last line written in the same transaction, so a load that is
// interrupted resumes after the last committed batch when run again; keys
// the target already holds are left as they are (counted as skipped).
//
// Each record is validated once: the check pass keeps, per batch, the
// SHA-256 of lines it found valid and exactly their record's JSON, and the
// load pass decodes a batch with the same hash by the fields' types
// without validating it again (a batch that differs is validated again).
// The load pass decodes on every core while the store writes the batch
// before.
//
// Records keep their data, keys, version, createdAt and updatedAt
// (BulkOptions.Metadata); a line without them gets version 1 and the time
// of the load.
func Load(ctx context.Context, st plinth.Store, ds []*plinth.Domain, dir string, opts LoadOptions) (*LoadResult, error) {
	m, err := ReadManifest(dir)
	if err != nil {
		return nil, err
	}
	if err := CheckEnvironment(opts.Environment, m.Class); err != nil {
		return nil, fmt.Errorf("refused: %w", err)
	}
	plan, err := planLoad(m, ds, opts)
	if err != nil {
		return nil, err
	}
	for _, p := range plan {
		if err := verifyFile(dir, p.em); err != nil {
			return nil, err
		}
	}
	batch := opts.Batch
	if batch <= 0 {
		batch = DefaultBatch
	}
	checked := make([]checkedBatches, len(plan))
	for i, p := range plan {
		if checked[i], err = checkRecords(ctx, dir, p, batch, opts.Meter); err != nil {
			return nil, err
		}
	}
	prov, err := targetProvenance(ctx, st, ds, dir, m)
	if err != nil {
		return nil, err
	}
	if err := plinth.SetStoreProvenance(ctx, st, prov); err != nil {
		return nil, err
	}
	res := &LoadResult{Manifest: m, Provenance: prov}
	for i, p := range plan {
		er, err := loadEntity(ctx, st, dir, p, checked[i], batch, opts)
		if err != nil {
			return res, err
		}
		res.Entities = append(res.Entities, er)
	}
	return res, nil
}

// planLoad matches the bundle's domains and entities with the target's.
func planLoad(m *Manifest, ds []*plinth.Domain, opts LoadOptions) ([]planned, error) {
	for _, name := range opts.Domains {
		if m.Domain(name) == nil {
			return nil, fmt.Errorf("--domain %s: the bundle has no such domain; it has %s", name, strings.Join(domainNames(m), ", "))
		}
	}
	var plan []planned
	for _, dm := range m.Domains {
		if len(opts.Domains) > 0 && !slices.Contains(opts.Domains, dm.Name) {
			continue
		}
		i := slices.IndexFunc(ds, func(d *plinth.Domain) bool { return d.Name == dm.Name })
		if i < 0 {
			names := make([]string, len(ds))
			for j, d := range ds {
				names[j] = d.Name
			}
			return nil, fmt.Errorf("the bundle's domain %s is not among the target's domains (%s): load with --domains naming its spec, or pick others with --domain",
				dm.Name, strings.Join(names, ", "))
		}
		d := ds[i]
		if h := SpecHash(d); h != dm.SpecHash && !opts.AllowSpecChange {
			return nil, fmt.Errorf("refused: domain %s was exported with a different spec than the target's (spec hash %.12s… in the bundle, %.12s… here), so its records may not fit: "+
				"load it where the spec is the same, or pass --allow-spec-change to load it anyway (every record is still checked against the target's spec and the load refused if one does not fit)",
				dm.Name, dm.SpecHash, h)
		}
		for _, em := range dm.Entities {
			j := slices.IndexFunc(d.Entities, func(e *plinth.Entity) bool { return e.Plural == em.Plural })
			if j < 0 {
				return nil, fmt.Errorf("the bundle's entity %s/%s is not in the target's spec of %s", dm.Name, em.Plural, dm.Name)
			}
			plan = append(plan, planned{e: d.Entities[j], em: em})
		}
	}
	return plan, nil
}

func domainNames(m *Manifest) []string {
	var out []string
	for _, d := range m.Domains {
		out = append(out, d.Name)
	}
	return out
}

// checkedBatches are the batches of an entity's file that the check pass
// found valid and exact (every line the API's JSON of its record), by the
// line number of their first line: the SHA-256 of their lines, each
// followed by a newline. The load pass decodes a batch whose lines have
// the same hash without validating them again (decodeChecked); any other
// batch (the file changed after all, or a resumed load that does not start
// at a batch boundary) is validated as it is loaded.
type checkedBatches map[int64][sha256.Size]byte

// checkRecords validates every line of an entity's file, on every core,
// in batches of batch lines, and checks that the file holds as many records
// as the manifest says. It reports the first bad line of the file,
// whichever worker found it.
func checkRecords(ctx context.Context, dir string, p planned, batch int, meter MeterFunc) (checkedBatches, error) {
	r, err := openLines(dir, p.em.File)
	if err != nil {
		return nil, fmt.Errorf("bundle %s: %w", dir, err)
	}
	defer r.Close()
	mt := meter.Start("checking "+p.em.File, p.em.Records)
	defer mt.Stop()
	chunks := make(chan *decoded, runtime.GOMAXPROCS(0))
	var (
		mu       sync.Mutex
		firstBad *RecordError
		checked  = checkedBatches{}
		wg       sync.WaitGroup
	)
	failed := func() bool { mu.Lock(); defer mu.Unlock(); return firstBad != nil }
	rf := recordField(p.e)
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range chunks {
				exact, re := c.check(p, rf)
				mu.Lock()
				if re != nil && (firstBad == nil || re.Line < firstBad.Line) {
					firstBad = re
				}
				if re == nil && exact {
					checked[c.first] = sha256.Sum256(c.text)
				}
				mu.Unlock()
			}
		}()
	}
	readErr := func() error {
		defer close(chunks)
		c := &decoded{first: 1, ends: make([]int, 0, batch)}
		for {
			line, err := r.next()
			if err == io.EOF {
				break
			}
			if err != nil {
				return fmt.Errorf("bundle %s: %s line %d: %w", dir, p.em.File, r.line+1, err)
			}
			if c.add(line) == batch {
				if err := ctx.Err(); err != nil {
					return err
				}
				if failed() {
					return nil
				}
				chunks <- c
				mt.Add(len(c.ends))
				c = &decoded{first: r.line + 1, text: make([]byte, 0, len(c.text)), ends: make([]int, 0, batch)}
			}
		}
		if len(c.ends) > 0 {
			chunks <- c
			mt.Add(len(c.ends))
		}
		return nil
	}()
	wg.Wait()
	if firstBad != nil {
		return nil, fmt.Errorf("refused, nothing was loaded: %w", firstBad)
	}
	if readErr != nil {
		return nil, readErr
	}
	if r.line != p.em.Records {
		return nil, fmt.Errorf("bundle %s: %s holds %d records; the manifest says %d", dir, p.em.File, r.line, p.em.Records)
	}
	mt.Finish()
	return checked, nil
}

// targetProvenance is the provenance to record in the target: the
// bundle's class, or, when the target already holds records of a more
// sensitive class (real when none was recorded), that class.
func targetProvenance(ctx context.Context, st plinth.Store, ds []*plinth.Domain, dir string, m *Manifest) (plinth.Provenance, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		abs = dir
	}
	p := plinth.Provenance{Class: m.Class, Source: "load", Detail: "bundle " + abs + " of " + describe(m), At: plinth.Now()}
	cur, found, err := plinth.StoreProvenance(ctx, st)
	if err != nil {
		return p, err
	}
	if found && cur.Source == "load" && cur.Detail == p.Detail {
		return cur, nil // a resumed load of the same bundle
	}
	held := false
	for _, d := range ds {
		for _, e := range d.Entities {
			n, err := st.Count(ctx, e)
			if err != nil {
				return p, err
			}
			held = held || n > 0
		}
	}
	if !held {
		return p, nil
	}
	was := plinth.ClassReal
	if found {
		was = cur.Class
	}
	if classRank(was) > classRank(p.Class) {
		p.Detail += fmt.Sprintf(", added to %s data already in the store", was)
		p.Class = was
	}
	return p, nil
}

// describe says where a bundle's data came from.
func describe(m *Manifest) string {
	if m.Provenance == nil {
		return "a store with no recorded provenance (so real data)"
	}
	s := strings.TrimSpace(m.Provenance.Source + " " + m.Provenance.Detail)
	return fmt.Sprintf("%s data (%s)", m.Class, s)
}

func loadEntity(ctx context.Context, st plinth.Store, dir string, p planned, checked checkedBatches, batch int, opts LoadOptions) (res EntityResult, err error) {
	res = EntityResult{Domain: p.e.Domain.Name, Plural: p.e.Plural, Records: p.em.Records}
	name := CheckpointName(p.e)
	var from int64
	if c, found, err := st.Checkpoint(ctx, name); err != nil {
		return res, err
	} else if found {
		var pos loadPosition
		if json.Unmarshal(c.Value, &pos) == nil && pos.SHA256 == p.em.SHA256 {
			from = pos.Line
		}
	}
	res.Resumed = from
	if from >= p.em.Records {
		return res, nil
	}
	mt := opts.Meter.Start("loading "+p.e.Domain.Name+"/"+p.e.Plural, p.em.Records)
	defer func() {
		if err != nil {
			mt.Stop()
		}
	}()
	mt.Add(int(from))
	if bl, ok := st.(plinth.BulkLoader); ok && from == 0 && p.em.Records >= bulkLoadThreshold {
		finish, err := bl.BeginBulkLoad(ctx, p.e)
		if err != nil {
			return res, err
		}
		defer func() {
			if ferr := finish(context.WithoutCancel(ctx)); ferr != nil && err == nil {
				err = ferr
			}
		}()
	}
	// One goroutine reads batches, every core decodes and validates them,
	// and the store writes them in order while the next ones are decoded.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	batches := make(chan *decoded, runtime.GOMAXPROCS(0)+1)
	go decodeBatches(ctx, dir, p, checked, from, batch, batches)
	// A batch goes in with ConflictFail, which copies straight into the
	// table, until a key turns out to be stored already (a load into a
	// store holding some of the bundle's records); that batch, rolled back
	// whole, and the rest go in with ConflictSkip, which merges through a
	// staging table (about twice the work for the server).
	policy := plinth.ConflictFail
	for b := range batches {
		<-b.done
		if b.err != nil {
			return res, b.err
		}
		if len(b.data) == 0 { // the end, after a full batch
			if b.last != p.em.Records {
				return res, errors.New("bundle " + dir + ": " + p.em.File + " changed while it was loaded")
			}
			break
		}
		pos, _ := json.Marshal(loadPosition{File: p.em.File, SHA256: p.em.SHA256, Line: b.last})
		bo := plinth.BulkOptions{OnConflict: policy, Checkpoint: plinth.Checkpoint{Name: name, Value: pos}, Metadata: b.meta}
		br, err := st.BulkLoad(ctx, p.e, b.data, bo)
		if err != nil && policy == plinth.ConflictFail && errors.Is(err, plinth.ErrConflict) {
			policy, bo.OnConflict = plinth.ConflictSkip, plinth.ConflictSkip
			br, err = st.BulkLoad(ctx, p.e, b.data, bo)
		}
		if err != nil {
			return res, fmt.Errorf("loading %s up to line %d: %w", p.em.File, b.last, err)
		}
		res.Inserted += int64(br.Inserted)
		res.Skipped += int64(br.Skipped)
		mt.Add(len(b.data))
		if opts.AfterBatch != nil {
			if err := opts.AfterBatch(p.e.Plural, b.last); err != nil {
				return res, err
			}
		}
		if b.end {
			if b.last != p.em.Records {
				return res, errors.New("bundle " + dir + ": " + p.em.File + " changed while it was loaded")
			}
			break
		}
	}
	mt.Finish()
	return res, nil
}

// decoded is a batch of records read from a bundle file, up to line last;
// end marks the last batch. Its lines are held in text until a decoder
// fills in data and meta (or err) and closes done.
type decoded struct {
	first int64  // line number of the batch's first line
	text  []byte // the lines, each followed by a newline
	ends  []int  // where each line ends in text (at its newline)
	data  []map[string]any
	meta  []plinth.RecordMeta
	last  int64
	end   bool
	err   error
	done  chan struct{}
}

// add appends a line to the batch and returns how many it holds.
func (b *decoded) add(line []byte) int {
	b.text = append(append(b.text, line...), '\n')
	b.ends = append(b.ends, len(b.text)-1)
	return len(b.ends)
}

// line returns the batch's line i.
func (b *decoded) line(i int) []byte {
	start := 0
	if i > 0 {
		start = b.ends[i-1] + 1
	}
	return b.text[start:b.ends[i]]
}

// check validates the batch's lines, stopping at the first bad one, and
// reports whether every line is exact (see checkRecord).
func (b *decoded) check(p planned, rf *plinth.Field) (exact bool, bad *RecordError) {
	exact = true
	for i := range b.ends {
		_, ex, err := checkRecord(p.e, rf, p.em.File, b.first+int64(i), b.line(i))
		if err != nil {
			re, ok := err.(*RecordError)
			if !ok {
				re = &RecordError{File: p.em.File, Entity: p.e.Name, Line: b.first + int64(i), Detail: err.Error()}
			}
			return false, re
		}
		exact = exact && ex
	}
	return exact, nil
}

// decode turns the batch's lines into records, stopping at the first bad
// one: without validating them again when the check pass found these very
// lines valid and exact, else as the check pass does.
func (b *decoded) decode(p planned, rf *plinth.Field, checked checkedBatches) {
	defer close(b.done)
	b.data = make([]map[string]any, 0, len(b.ends))
	b.meta = make([]plinth.RecordMeta, 0, len(b.ends))
	sum, found := checked[b.first]
	trusted := found && sum == sha256.Sum256(b.text)
	for i := range b.ends {
		var rec plinth.Record
		var err error
		if trusted {
			rec, err = decodeChecked(p.e, rf, p.em.File, b.first+int64(i), b.line(i))
		} else {
			rec, err = decodeRecord(p.e, p.em.File, b.first+int64(i), b.line(i))
		}
		if err != nil {
			b.err = err
			return
		}
		b.meta = append(b.meta, plinth.RecordMeta{Version: rec.Version, CreatedAt: rec.CreatedAt, UpdatedAt: rec.UpdatedAt})
		b.data = append(b.data, rec.Data)
	}
	b.text, b.ends = nil, nil
}

// decodeBatches reads the lines of an entity's file after line from and
// sends them, in order, as batches that one of GOMAXPROCS decoders turns
// into canonical records (a receiver waits for each batch's done); the
// last batch has end set (and may be empty). A read error is sent as a
// batch of its own, after which it stops, as it does when ctx is done.
func decodeBatches(ctx context.Context, dir string, p planned, checked checkedBatches, from int64, batch int, out chan<- *decoded) {
	defer close(out)
	work := make(chan *decoded)
	defer close(work)
	rf := recordField(p.e)
	for range runtime.GOMAXPROCS(0) {
		go func() {
			for b := range work {
				b.decode(p, rf, checked)
			}
		}()
	}
	// send hands b to a decoder and to the receiver, in that order, so
	// that the receiver sees the batches in the order they were read.
	send := func(b *decoded) bool {
		b.done = make(chan struct{})
		select {
		case work <- b:
		case <-ctx.Done():
			return false
		}
		select {
		case out <- b:
			return true
		case <-ctx.Done():
			return false
		}
	}
	failed := func(err error) {
		b := &decoded{err: err, done: make(chan struct{})}
		close(b.done)
		select {
		case out <- b:
		case <-ctx.Done():
		}
	}
	r, err := openLines(dir, p.em.File)
	if err != nil {
		failed(fmt.Errorf("bundle %s: %w", dir, err))
		return
	}
	defer r.Close()
	b := &decoded{first: from + 1, ends: make([]int, 0, batch)}
	for {
		line, err := r.next()
		if err == io.EOF {
			b.last, b.end = r.line, true
			send(b)
			return
		}
		if err != nil {
			failed(fmt.Errorf("bundle %s: %s line %d: %w", dir, p.em.File, r.line+1, err))
			return
		}
		if r.line <= from {
			continue
		}
		if b.add(line) == batch {
			b.last = r.line
			size := len(b.text) // b is the decoder's once sent
			if !send(b) {
				return
			}
			b = &decoded{first: r.line + 1, text: make([]byte, 0, size), ends: make([]int, 0, batch)}
		}
	}
}
