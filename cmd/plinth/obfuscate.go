package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/bundle"
	"github.com/plinth-data/plinth/datasafety"
	"github.com/plinth-data/plinth/internal/ordered"
)

// obfuscateBatch is how many records are obfuscated and loaded at a time;
// each batch commits with the checkpoint a resumed run starts from. (A
// variable so that tests can interrupt a run after a few small batches.)
var obfuscateBatch = 5000

// obfuscateAfterBatch, when set (by tests), is called after each batch
// commits.
var obfuscateAfterBatch func(entity string, batches int)

// obfuscateCheckpoint is what a run keeps per entity in the target store:
// the source key of the last record loaded, sealed with the obfuscation
// key (a natural key can be personal data), and whether the entity is done.
type obfuscateCheckpoint struct {
	Fingerprint string `json:"keyFingerprint"`
	LastKey     []byte `json:"lastKey,omitempty"` // sealed JSON of the source key
	Records     int64  `json:"records"`
	Complete    bool   `json:"complete,omitempty"`
	// Source is the SHA-256 of the bundle file read ("" for a store): a
	// run from a bundle resumes after the first Records lines.
	Source string `json:"source,omitempty"`
}

func obfuscateCommand() *cobra.Command {
	var from, to, keyFile, special, nhsRange string
	var domainNames, specialFor []string
	var window int
	var restart bool
	cmd := &cobra.Command{
		Use:   "obfuscate",
		Short: "Copy a store or bundle into another with personal data pseudonymised (for staging)",
		Long: `Read every record of every entity of the source (a store URL, or an export
bundle's folder: its checksums are verified and every record validated),
pseudonymise it by each field's PII class and format, and bulk-load it into
the target store or write it to a new export bundle (--to a new or empty
folder; its manifest records the class obfuscated and where it came from):
none fields are copied; personal fields get keyed, deterministic pseudonyms
that keep their format (names from name lists, postcodes of a valid shape,
NHS numbers with a valid check digit, one to one (--nhs-range), NI numbers with
an administrative prefix never issued, Ofcom drama phone numbers, e-mail
addresses at example.org, dates shifted alike per record); identifiers
(natural keys, uuids, integers, UPRNs, NI and NHS numbers, legacy ids) map
one to one by format-preserving encryption (FF1), so references between
domains still join; generated keys are kept; special-category fields are
removed or generalised as each domain's spec says (dataSafety.special of
the domain or of the field; remove when it says nothing), unless --special
or --special-for says otherwise. Each record keeps its version, createdAt
and updatedAt.

The same key gives the same output in every run and row order; keep the key
file (32 random bytes or more: head -c 32 /dev/urandom > obfuscate.key)
secret, apart from the copies. An interrupted run into a store resumes where
it stopped; --restart starts again (an interrupted bundle is removed: run
again into an empty folder). The target store or bundle records its
provenance: obfuscated, from which source, with which key fingerprint.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			if from == "" || to == "" || keyFile == "" {
				return fmt.Errorf("give --from (the source: a store URL or a bundle's folder), --to (the target: a store URL or a new folder for a bundle) and --key-file")
			}
			if from == to {
				return fmt.Errorf("--from and --to name the same store; obfuscate into another store")
			}
			key, err := os.ReadFile(keyFile)
			if err != nil {
				return fmt.Errorf("reading the key file: %w", err)
			}
			if err := datasafety.CheckKey(key); err != nil {
				return fmt.Errorf("--key-file %s: %w", keyFile, err)
			}
			policy := datasafety.Policy{DateWindowDays: window, NHS: datasafety.NHSRange(nhsRange), SpecialByDomain: map[string]datasafety.SpecialPolicy{}}
			if special != "" {
				if policy.Special, err = specialPolicy(special); err != nil {
					return err
				}
			}
			for _, s := range specialFor {
				d, p, ok := strings.Cut(s, "=")
				if !ok {
					return fmt.Errorf("--special-for %q: use domain=remove or domain=keep-generalised", s)
				}
				if policy.SpecialByDomain[d], err = specialPolicy(p); err != nil {
					return err
				}
			}
			if policy.NHS != datasafety.NHSTestRange && policy.NHS != datasafety.NHSFull {
				return fmt.Errorf("--nhs-range %q: use test or full", nhsRange)
			}
			ds, err := loadDomains(cfg.Domains)
			if err != nil {
				return err
			}
			if len(domainNames) > 0 {
				var keep []*plinth.Domain
				for _, n := range domainNames {
					i := slices.IndexFunc(ds, func(d *plinth.Domain) bool { return d.Name == n })
					if i < 0 {
						return fmt.Errorf("--domain %s: no such domain in the specs", n)
					}
					keep = append(keep, ds[i])
				}
				ds = keep
			}
			return runObfuscate(cmd.Context(), cmd.OutOrStdout(), obfuscateRun{
				from: from, to: to, domains: ds, obf: datasafety.NewObfuscator(key, policy).SetDomains(ds),
				named: len(domainNames) > 0, restart: restart, logger: newLogger(cfg.LogLevel),
			})
		},
	}
	addConfigFlags(cmd, "domains", "log-level")
	fl := cmd.Flags()
	fl.StringVar(&from, "from", "", "source: a store URL (sqlite:///path.db or postgres://…) or an export bundle's folder")
	fl.StringVar(&to, "to", "", "target: a store URL, or a new or empty folder to write an export bundle to")
	fl.StringVar(&keyFile, "key-file", "", "file holding the obfuscation key: at least 32 random bytes")
	fl.StringSliceVar(&domainNames, "domain", nil, "only this domain (repeatable; default every domain in the specs)")
	fl.StringVar(&special, "special", "", "special-category fields of every domain: remove or keep-generalised, whatever the specs say (default: each spec's dataSafety.special, else remove)")
	fl.StringSliceVar(&specialFor, "special-for", nil, "the special-category policy of one domain, whatever its spec says: domain=remove|keep-generalised (repeatable)")
	fl.IntVar(&window, "date-window", 180, "personal dates shift by up to this many days, alike within a record")
	fl.StringVar(&nhsRange, "nhs-range", "full", "NHS numbers: full (one to one; test-range numbers stay in the 999 test range, others map to valid numbers outside it, which may be issued ones) or test (always in the 999 test range, but distinct numbers from outside it can collide)")
	fl.BoolVar(&restart, "restart", false, "ignore the checkpoints of an earlier run and copy everything again")
	return cmd
}

func specialPolicy(s string) (datasafety.SpecialPolicy, error) {
	switch p := datasafety.SpecialPolicy(s); p {
	case datasafety.SpecialRemove, datasafety.SpecialGeneralise:
		return p, nil
	}
	if s == string(plinth.SpecialGeneralise) {
		return datasafety.SpecialGeneralise, nil
	}
	return "", fmt.Errorf("special-category policy %q: use remove or keep-generalised", s)
}

type obfuscateRun struct {
	from, to string
	domains  []*plinth.Domain
	// named is true when --domain chose the domains.
	named   bool
	obf     *datasafety.Obfuscator
	restart bool
	logger  *slog.Logger
}

type entityReport struct {
	entity  string
	records int64
	skipped int64
	counts  datasafety.Counts
	resumed bool
}

// isBundlePath reports whether an endpoint names a bundle's folder rather
// than a store: it has no URL scheme.
func isBundlePath(s string) bool { return !strings.Contains(s, "://") }

// obfInput is one entity to read, from a store or a bundle.
type obfInput struct {
	e *plinth.Entity
	// source names the data read (a bundle file's SHA-256, "" for a
	// store), so a resumed run is known to read the same.
	source string
	total  func(ctx context.Context) (int64, error)
	// read calls fn with each record in key order: after the key after
	// (stores) or after the first skip records (bundles).
	read func(ctx context.Context, after any, skip int64, fn func(plinth.Record) error) error
}

func storeInput(st plinth.Store, e *plinth.Entity) obfInput {
	return obfInput{e: e,
		total: func(ctx context.Context) (int64, error) { return st.Count(ctx, e) },
		read: func(ctx context.Context, after any, _ int64, fn func(plinth.Record) error) error {
			_, err := st.Scan(ctx, e, plinth.ScanQuery{}, func(rec plinth.Record) error {
				if after != nil && !keyAfter(rec.Data[e.Key.Name], after) {
					return nil
				}
				return fn(rec)
			})
			return err
		}}
}

func bundleInput(src *bundle.Source, se bundle.SourceEntity) obfInput {
	return obfInput{e: se.Entity, source: se.File.SHA256,
		total: func(context.Context) (int64, error) { return se.File.Records, nil },
		read: func(ctx context.Context, _ any, skip int64, fn func(plinth.Record) error) error {
			return src.Records(ctx, se, skip, func(_ int64, rec plinth.Record) error { return fn(rec) })
		}}
}

// obfOutput is where obfuscated records go: a store (resumable, through
// checkpoints) or a new bundle (written whole).
type obfOutput interface {
	// begin starts an entity of total records: the checkpoint of an
	// earlier run to resume from, if any. Call finish after it, also when
	// the entity failed.
	begin(ctx context.Context, in obfInput, total int64, r obfuscateRun) (cp obfuscateCheckpoint, resumed bool, err error)
	// loaders is how many batches write at once.
	loaders() int
	// write adds a batch (records with their source's version and times),
	// with the checkpoint that holds once it is in; it calls beforeCommit
	// before the batch commits (see ordered.Loads).
	write(ctx context.Context, e *plinth.Entity, data []map[string]any, meta []plinth.RecordMeta, cp obfuscateCheckpoint, beforeCommit func() error) (skipped int, err error)
	// end marks the entity complete.
	end(ctx context.Context, e *plinth.Entity, cp obfuscateCheckpoint) error
	// finish ends what begin started (index builds after a bulk load).
	finish(ctx context.Context) error
}

func obfCheckpointName(e *plinth.Entity) string {
	return "plinth.obfuscate." + e.Domain.Name + "." + e.Plural
}

// storeOutput loads into a store. An entity that is empty when a run
// starts afresh is loaded with ConflictFail (COPY straight into the table
// on PostgreSQL) and, when large, as a bulk load (indexes built at the
// end); otherwise with ConflictSkip, so records a resumed run repeats are
// skipped.
type storeOutput struct {
	st     plinth.Store
	fresh  bool
	ending func(context.Context) error
}

func (o *storeOutput) begin(ctx context.Context, in obfInput, total int64, r obfuscateRun) (cp obfuscateCheckpoint, resumed bool, err error) {
	o.fresh, o.ending = false, nil
	cp, resumed, err = o.resume(ctx, in, r)
	if err != nil || resumed {
		return cp, resumed, err
	}
	n, err := o.st.Count(ctx, in.e)
	if err != nil || n > 0 {
		return cp, false, err
	}
	o.fresh = true
	if bl, ok := o.st.(plinth.BulkLoader); ok && total >= bulkLoadThreshold {
		if o.ending, err = bl.BeginBulkLoad(ctx, in.e); err != nil {
			return cp, false, err
		}
	}
	return cp, false, nil
}

func (o *storeOutput) loaders() int {
	if _, ok := o.st.(plinth.BulkLoader); ok {
		return seedLoaders
	}
	return 1
}

func (o *storeOutput) finish(ctx context.Context) error {
	if o.ending == nil {
		return nil
	}
	f := o.ending
	o.ending = nil
	return f(ctx)
}

// resume reads the checkpoint of an earlier run into this target.
func (o *storeOutput) resume(ctx context.Context, in obfInput, r obfuscateRun) (cp obfuscateCheckpoint, resumed bool, err error) {
	name := in.e.Domain.Name + "." + in.e.Plural
	cp = obfuscateCheckpoint{Fingerprint: r.obf.Fingerprint(), Source: in.source}
	if r.restart {
		return cp, false, nil
	}
	c, found, err := o.st.Checkpoint(ctx, obfCheckpointName(in.e))
	if err != nil || !found {
		return cp, false, err
	}
	var old obfuscateCheckpoint
	if err := json.Unmarshal(c.Value, &old); err != nil {
		return cp, false, fmt.Errorf("%s: the checkpoint of an earlier run does not decode (run with --restart): %w", name, err)
	}
	if old.Fingerprint != r.obf.Fingerprint() {
		return cp, false, fmt.Errorf("%s: the target was filled with another key (%s, not %s); use that key, or an empty target store", name, old.Fingerprint, r.obf.Fingerprint())
	}
	if old.Complete {
		return old, true, nil
	}
	if old.Source != in.source {
		return cp, false, fmt.Errorf("%s: an earlier run that did not finish was copying from another source into this target; run with --restart to copy everything again (records already there are kept)", name)
	}
	return old, old.Records > 0, nil
}

func (o *storeOutput) write(ctx context.Context, e *plinth.Entity, data []map[string]any, meta []plinth.RecordMeta, cp obfuscateCheckpoint, beforeCommit func() error) (int, error) {
	v, _ := json.Marshal(cp)
	policy := plinth.ConflictSkip
	if o.fresh {
		policy = plinth.ConflictFail
	}
	br, err := o.st.BulkLoad(ctx, e, data, plinth.BulkOptions{OnConflict: policy, Checkpoint: plinth.Checkpoint{Name: obfCheckpointName(e), Value: v},
		Metadata: meta, BeforeCommit: beforeCommit})
	if err != nil {
		return 0, fmt.Errorf("loading %s.%s: %w", e.Domain.Name, e.Plural, err)
	}
	return br.Skipped, nil
}

func (o *storeOutput) end(ctx context.Context, e *plinth.Entity, cp obfuscateCheckpoint) error {
	cp.Complete = true
	v, _ := json.Marshal(cp)
	return o.st.SetCheckpoint(ctx, obfCheckpointName(e), v)
}

// bundleOutput writes a new bundle; it does not resume (an interrupted
// run removes what it wrote).
type bundleOutput struct {
	w   *bundle.Writer
	ew  *bundle.EntityWriter
	now time.Time
}

func (o *bundleOutput) begin(_ context.Context, in obfInput, _ int64, r obfuscateRun) (obfuscateCheckpoint, bool, error) {
	ew, err := o.w.Entity(in.e)
	if err != nil {
		return obfuscateCheckpoint{}, false, err
	}
	o.ew = ew
	return obfuscateCheckpoint{Fingerprint: r.obf.Fingerprint(), Source: in.source}, false, nil
}

func (o *bundleOutput) loaders() int                   { return 1 }
func (o *bundleOutput) finish(_ context.Context) error { return nil }

func (o *bundleOutput) write(_ context.Context, _ *plinth.Entity, data []map[string]any, meta []plinth.RecordMeta, _ obfuscateCheckpoint, beforeCommit func() error) (int, error) {
	if err := beforeCommit(); err != nil {
		return 0, err
	}
	for i, d := range data {
		// The source's version and times (this run's time where it has
		// none), as a load keeps them.
		version, created, updated := meta[i].Resolve(o.now)
		if err := o.ew.Write(plinth.Record{Data: d, Version: version, CreatedAt: created, UpdatedAt: updated}); err != nil {
			return 0, err
		}
	}
	return 0, nil
}

func (o *bundleOutput) end(_ context.Context, _ *plinth.Entity, _ obfuscateCheckpoint) error {
	ew := o.ew
	o.ew = nil
	return ew.Close("")
}

func (o *bundleOutput) abort() {
	if o.ew != nil {
		o.ew.Abort()
	}
	o.w.Abort()
}

// runObfuscate copies r.from into r.to, each a store URL or a bundle's
// folder.
func runObfuscate(ctx context.Context, out io.Writer, r obfuscateRun) (err error) {
	var inputs []obfInput
	var srcDesc string
	domains := r.domains
	if isBundlePath(r.from) {
		st, err := os.Stat(filepath.Join(r.from, bundle.ManifestFile))
		if err != nil || st.IsDir() {
			return fmt.Errorf("--from %s: neither a store URL (sqlite:///path.db, postgres://…) nor an export bundle (a folder with %s)", r.from, bundle.ManifestFile)
		}
		var only []string
		if r.named {
			for _, d := range r.domains {
				only = append(only, d.Name)
			}
		}
		// Every checksum is verified before a record is read.
		src, err := bundle.Open(r.from, r.domains, only, false)
		if err != nil {
			return fmt.Errorf("the source bundle: %w", err)
		}
		domains = nil
		for _, se := range src.Entities() {
			inputs = append(inputs, bundleInput(src, se))
			if !slices.Contains(domains, se.Entity.Domain) {
				domains = append(domains, se.Entity.Domain)
			}
		}
		abs, err := filepath.Abs(r.from)
		if err != nil {
			abs = r.from
		}
		srcDesc = "bundle " + abs
	} else {
		src, err := openStore(ctx, r.from, r.domains)
		if err != nil {
			return fmt.Errorf("the source store: %w", err)
		}
		defer src.Close()
		for _, d := range r.domains {
			for _, e := range d.Entities {
				inputs = append(inputs, storeInput(src, e))
			}
		}
		srcDesc = redactURL(r.from)
	}
	prov := plinth.Provenance{
		Class:  plinth.ClassObfuscated,
		Source: "obfuscate",
		Detail: srcDesc + " key " + r.obf.Fingerprint(),
	}
	var dst obfOutput
	var bout *bundleOutput
	if isBundlePath(r.to) {
		w, err := bundle.Create(r.to)
		if err != nil {
			return fmt.Errorf("--to %s: %w", r.to, err)
		}
		bout = &bundleOutput{w: w, now: plinth.Now()}
		defer func() {
			if err != nil {
				bout.abort()
			}
		}()
		dst = bout
	} else {
		st, err := openStore(ctx, r.to, domains)
		if err != nil {
			return fmt.Errorf("the target store: %w", err)
		}
		defer st.Close()
		// Marked before the first record lands, so an interrupted copy
		// is never taken for anything else.
		prov.At = time.Now().UTC()
		if err := plinth.SetStoreProvenance(ctx, st, prov); err != nil {
			return fmt.Errorf("recording the target's provenance: %w", err)
		}
		dst = &storeOutput{st: st}
		defer func() {
			if err == nil {
				prov.At = time.Now().UTC()
				if perr := plinth.SetStoreProvenance(ctx, st, prov); perr != nil {
					err = fmt.Errorf("recording the target's provenance: %w", perr)
				}
			}
		}()
	}
	var reports []entityReport
	for _, in := range inputs {
		rep, err := obfuscateEntity(ctx, in, dst, r)
		if err != nil {
			return err
		}
		reports = append(reports, rep)
	}
	if bout != nil {
		prov.At = plinth.Now()
		if _, err := bout.w.Finish(plinth.ClassObfuscated, &prov); err != nil {
			return fmt.Errorf("writing the bundle's manifest: %w", err)
		}
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "entity\trecords\tnone copied\tpersonal pseudonymised\tpersonal kept\tspecial removed\tspecial generalised\t")
	for _, rep := range reports {
		name := rep.entity
		if rep.resumed {
			name += " (resumed)"
		}
		c := rep.counts
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t\n", name, rep.records, c.Copied, c.Pseudonymised, c.Kept, c.Removed, c.Generalised)
	}
	tw.Flush()
	what := "target"
	if bout != nil {
		what = "bundle"
	}
	fmt.Fprintf(out, "%s %s: %s data from %s\n", what, redactURL(r.to), prov.Class, prov.Detail)
	return nil
}

// obfuscateEntity copies one entity: read the source in key order, skip up
// to the checkpoint, obfuscate batches on every core, write them in order
// with the checkpoint in the same call.
func obfuscateEntity(ctx context.Context, in obfInput, dst obfOutput, r obfuscateRun) (rep entityReport, err error) {
	e := in.e
	name := e.Domain.Name + "." + e.Plural
	rep.entity = name
	total, err := in.total(ctx)
	if err != nil {
		return rep, err
	}
	cp, resumed, err := dst.begin(ctx, in, total, r)
	defer func() {
		if ferr := dst.finish(context.WithoutCancel(ctx)); ferr != nil && err == nil {
			err = ferr
		}
	}()
	if err != nil {
		return rep, err
	}
	var after any // the source key to resume after (stores)
	var skip int64
	if resumed {
		rep.resumed = true
		if cp.Complete {
			rep.records = cp.Records
			r.logger.Info("already obfuscated by an earlier run", "entity", name, "records", cp.Records)
			return rep, nil
		}
		if skip, after, err = resumePoint(in, cp, r); err != nil {
			return rep, fmt.Errorf("%s: checkpoint: %w", name, err)
		}
	}
	before := r.obf.Counts()
	p := newProgress(total, "obfuscating "+name, r.logger)
	if cp.Records > 0 {
		p.Add(int(min(cp.Records, total)))
	}
	defer func() {
		if err != nil {
			p.Stop()
		}
	}()
	defer bulkGC()()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	order, scanErr, stopWorkers := obfuscateBatches(ctx, in, after, skip, r)
	loaders := dst.loaders()
	if in.source != "" {
		// A bundle's keys may repeat (a store's cannot): a later batch
		// holding a key an earlier one also inserts would make the earlier
		// wait for its lock while it waits in BeforeCommit for the earlier.
		loaders = 1
	}
	loads := ordered.New(ctx, loaders)
	type pend struct {
		out     <-chan error
		n       int
		skipped *int
	}
	var pending []pend
	batches := 0
	collect := func() error {
		pd := pending[0]
		pending = pending[1:]
		if err := <-pd.out; err != nil {
			return err
		}
		rep.records += int64(pd.n)
		rep.skipped += int64(*pd.skipped)
		p.Add(pd.n)
		batches++
		if obfuscateAfterBatch != nil {
			obfuscateAfterBatch(name, batches)
		}
		return nil
	}
	var loadErr error
	for fut := range order {
		var res obfuscated
		select {
		case res = <-fut:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			loadErr = ctx.Err()
			break
		}
		if res.err != nil {
			loadErr = res.err
			break
		}
		for len(pending) > loaders && loadErr == nil {
			loadErr = collect()
		}
		if loadErr != nil {
			break
		}
		k, _ := json.Marshal(res.lastKey)
		cp.LastKey = r.obf.Seal(k)
		cp.Records += int64(len(res.data))
		batchCP, skipped := cp, new(int)
		out := loads.Submit(func(beforeCommit func() error) error {
			var err error
			*skipped, err = dst.write(ctx, e, res.data, res.meta, batchCP, beforeCommit)
			return err
		})
		pending = append(pending, pend{out, len(res.data), skipped})
	}
	for len(pending) > 0 && loadErr == nil {
		loadErr = collect()
	}
	cancel()
	for range order { // let the reader finish
	}
	loads.Close()
	stopWorkers()
	serr := <-scanErr
	if loadErr != nil {
		return rep, loadErr
	}
	if serr != nil && !errors.Is(serr, context.Canceled) {
		return rep, fmt.Errorf("reading %s: %w", name, serr)
	}
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return rep, err
	}
	if err := dst.end(context.WithoutCancel(ctx), e, cp); err != nil {
		return rep, err
	}
	rep.records = cp.Records
	rep.counts = r.obf.Counts().Sub(before)
	p.Finish("entity", name, "skippedAsPresent", rep.skipped)
	return rep, nil
}

// resumePoint is where a resumed run starts reading: after the first skip
// records of a bundle, or after the source key the checkpoint holds.
func resumePoint(in obfInput, cp obfuscateCheckpoint, r obfuscateRun) (skip int64, after any, err error) {
	if in.source != "" {
		return cp.Records, nil, nil
	}
	if cp.LastKey == nil {
		return 0, nil, nil
	}
	b, err := r.obf.Open(cp.LastKey)
	if err != nil {
		return 0, nil, err
	}
	var k any
	if err := json.Unmarshal(b, &k); err != nil {
		return 0, nil, err
	}
	if n, ok := k.(float64); ok {
		k = int64(n)
	}
	return 0, k, nil
}

// obfuscated is one batch of obfuscated records with their source's
// metadata, and the source key of its last record.
type obfuscated struct {
	data    []map[string]any
	meta    []plinth.RecordMeta
	lastKey any
	err     error
}

// obfuscateBatches reads the source in batches of obfuscateBatch and
// obfuscates them on every core. It returns the batches' futures in source
// order (closed after the last), the reader's outcome, and a function that
// waits for the workers once order is drained.
func obfuscateBatches(ctx context.Context, in obfInput, after any, skip int64, r obfuscateRun) (<-chan chan obfuscated, <-chan error, func()) {
	e := in.e
	type job struct {
		raw []plinth.Record
		res chan obfuscated
	}
	workers := max(runtime.GOMAXPROCS(0), 1)
	jobs := make(chan job)
	order := make(chan chan obfuscated, 2*workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				j.res <- obfuscateBatchOf(e, j.raw, r)
			}
		}()
	}
	scanErr := make(chan error, 1)
	go func() {
		defer close(order)
		defer close(jobs)
		var batch []plinth.Record
		send := func() error {
			fut := make(chan obfuscated, 1)
			select {
			case order <- fut:
			case <-ctx.Done():
				return ctx.Err()
			}
			select {
			case jobs <- job{raw: batch, res: fut}:
			case <-ctx.Done():
				return ctx.Err()
			}
			batch = nil
			return nil
		}
		err := in.read(ctx, after, skip, func(rec plinth.Record) error {
			batch = append(batch, rec)
			if len(batch) == obfuscateBatch {
				return send()
			}
			return nil
		})
		if err == nil && len(batch) > 0 {
			err = send()
		}
		scanErr <- err
	}()
	return order, scanErr, wg.Wait
}

func obfuscateBatchOf(e *plinth.Entity, raw []plinth.Record, r obfuscateRun) obfuscated {
	res := obfuscated{lastKey: raw[len(raw)-1].Data[e.Key.Name]}
	res.data = make([]map[string]any, 0, len(raw))
	res.meta = make([]plinth.RecordMeta, 0, len(raw))
	for _, rec := range raw {
		o, err := r.obf.RecordInPlace(e, rec.Data) // the source record is not needed again
		if err != nil {
			res.err = err
			break
		}
		res.data = append(res.data, o)
		res.meta = append(res.meta, plinth.RecordMeta{Version: rec.Version, CreatedAt: rec.CreatedAt, UpdatedAt: rec.UpdatedAt})
	}
	return res
}

// keyAfter reports whether key k sorts after key a in the store's key
// order: numerically for integer keys, by bytes for string and uuid keys.
func keyAfter(k, a any) bool {
	switch x := k.(type) {
	case int64:
		y, ok := a.(int64)
		return !ok || x > y
	case string:
		y, ok := a.(string)
		return !ok || x > y
	}
	return true
}
