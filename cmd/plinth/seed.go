package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/datasafety"
	"github.com/plinth-data/plinth/internal/ordered"
)

// seedBatch is how many records are generated and loaded at a time (one
// transaction each).
const seedBatch = 5000

// seedLoaders is how many batches load at once into a store that loads
// concurrent calls in parallel: PostgreSQL then parses and writes on two
// backends, so on more than one core.
const seedLoaders = 2

// bulkGCPercent is the garbage collector's target while seed, obfuscate
// and load run: they allocate many short-lived records, and collecting less often
// saves about a fifth of their CPU for a few hundred MB more memory.
// bulkMemoryLimit makes the collector work harder again near 1 GiB (unless
// GOMEMLIMIT says otherwise).
const (
	bulkGCPercent   = 400
	bulkMemoryLimit = 1 << 30
)

// bulkGC sets the collector for bulk work and returns what restores it.
func bulkGC() func() {
	percent := debug.SetGCPercent(bulkGCPercent)
	limit := debug.SetMemoryLimit(-1)
	if limit == math.MaxInt64 {
		debug.SetMemoryLimit(bulkMemoryLimit)
	}
	return func() {
		debug.SetGCPercent(percent)
		debug.SetMemoryLimit(limit)
	}
}

// bulkLoadThreshold is the load size from which seed asks the store to
// build its filter indexes once at the end (when the entity is empty).
const bulkLoadThreshold = 50_000

func seedCommand() *cobra.Command {
	var n int
	var seed uint64
	var plural string
	cmd := &cobra.Command{
		Use:   "seed",
		Short: "Load dummy records into the store (development only)",
		Long: `Generate clearly dummy records from the domain specs and bulk-load them:
names from a fake-data library, e-mail addresses at example.org, NHS numbers
in the 999 test range, NI numbers with prefixes never issued, phone numbers
from Ofcom's drama ranges and an address line that says "Dummy". Every type,
format and constraint of any spec is honoured. The same --seed gives the same
records; references between entities (a field with "references: <plural>",
or named <entity>Id of that entity's key type) point at records this seeds,
so seeding every entity with one seed gives data that joins. An entity that
already has records gets the next ones. Refused outside development, and
refused into a store holding real or obfuscated data (see plinth store
info). Records in the store that it holds dummy data from this seed, before
writing.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			if cfg.Environment != "development" {
				return fmt.Errorf("seed loads dummy data and runs only in development, not %s", cfg.Environment)
			}
			ds, err := loadDomains(cfg.Domains)
			if err != nil {
				return err
			}
			if plural != "" {
				if err := checkEntity(ds, plural); err != nil {
					return err
				}
			}
			st, err := openStores(cmd.Context(), cfg, ds)
			if err != nil {
				return err
			}
			defer st.Close()
			logger := newLogger(cfg.LogLevel)
			detail := fmt.Sprintf("seed %d", seed)
			if plural != "" {
				detail += " (" + plural + " only)"
			}
			if err := recordSeed(cmd.Context(), st, ds, detail); err != nil {
				return err
			}
			return seedDomains(cmd.Context(), st, ds, plural, n, seed, logger)
		},
	}
	addConfigFlags(cmd, with(storeFlags, "env", "log-level")...)
	cmd.Flags().IntVarP(&n, "count", "n", 10000, "records to create for each entity")
	cmd.Flags().Uint64Var(&seed, "seed", uint64(time.Now().UnixNano()), "random seed, for repeatable data")
	cmd.Flags().StringVar(&plural, "entity", "", "only this entity (its plural, e.g. residents)")
	return cmd
}

// checkEntity reports whether --entity names an entity by its plural, and
// lists the valid names when it does not.
func checkEntity(ds []*plinth.Domain, plural string) error {
	var names []string
	hint := ""
	for _, d := range ds {
		for _, e := range d.Entities {
			if e.Plural == plural {
				return nil
			}
			if strings.EqualFold(e.Name, plural) || strings.EqualFold(e.Plural, plural) {
				hint = fmt.Sprintf(" (did you mean %s?)", e.Plural)
			}
			names = append(names, e.Plural)
		}
	}
	return fmt.Errorf("--entity %s: no entity has this plural%s; use one of %s", plural, hint, strings.Join(names, ", "))
}

// recordSeed refuses to seed a store holding real or obfuscated data, and
// otherwise records, before any record is written, that the store holds
// dummy data from Plinth's seed. A store seeded before keeps its earlier
// seeds in Detail.
func recordSeed(ctx context.Context, st plinth.Store, ds []*plinth.Domain, detail string) error {
	p, err := plinth.ClassOf(ctx, st, ds)
	if err != nil {
		return err
	}
	if err := plinth.CheckSeed(p); err != nil {
		return err
	}
	if p.Source == plinth.SourceSeed && p.Detail != "" && p.Detail != detail {
		detail = p.Detail + "; " + detail
	}
	return plinth.SetStoreProvenance(ctx, st, plinth.Provenance{Class: plinth.ClassDummy, Source: plinth.SourceSeed, Detail: detail, At: plinth.Now()})
}

// seedIfEmpty fills a store that has no records at all with n dummy records
// of each entity, and records that it holds dummy data from the seed. A
// store with any data is left alone.
func seedIfEmpty(ctx context.Context, st plinth.Store, ds []*plinth.Domain, n int, logger *slog.Logger) error {
	for _, d := range ds {
		for _, e := range d.Entities {
			c, err := st.Count(ctx, e)
			if err != nil {
				return err
			}
			if c > 0 {
				return nil
			}
		}
	}
	logger.Info("the store is empty; loading dummy demo data", "recordsPerEntity", n)
	if err := recordSeed(ctx, st, ds, "demo data: seed 1"); err != nil {
		return err
	}
	return seedDomains(ctx, st, ds, "", n, 1, logger)
}

// seedDomains loads n dummy records into every entity (or only the one
// with the plural only), all from one seed so that references join: record
// i of an entity always has the same key under a seed (see
// datasafety.Generator), a reference points at one of the records the
// referenced entity holds after this run, and an entity that already has
// records gets the next ones after them.
func seedDomains(ctx context.Context, st plinth.Store, ds []*plinth.Domain, only string, n int, seed uint64, logger *slog.Logger) error {
	g := datasafety.NewGenerator(seed).SetDomains(ds)
	have := map[*plinth.Entity]int{}
	for _, d := range ds {
		for _, e := range d.Entities {
			c, err := st.Count(ctx, e)
			if err != nil {
				return err
			}
			have[e] = int(c)
			pop := int(c)
			if only == "" || e.Plural == only {
				pop += n
			}
			if pop == 0 {
				pop = n
			}
			g.SetPopulation(e.Plural, pop)
		}
	}
	for _, d := range ds {
		for _, e := range d.Entities {
			if only != "" && e.Plural != only {
				continue
			}
			if err := seedEntity(ctx, st, g, e, have[e], n, logger); err != nil {
				return err
			}
		}
	}
	return nil
}

// seedEntity generates and bulk-loads records from … from+n-1 of e, with
// a progress bar on a terminal and progress log lines otherwise. Batches
// are generated on every core while earlier ones load; record i depends on
// the generator's seed and i alone, so the data is repeatable however the
// work is split. Into a store that loads concurrent calls in parallel
// (plinth.BulkLoader), batches load on seedLoaders connections at once but
// commit in order, so an interrupted seed leaves a prefix that a re-run
// continues.
func seedEntity(ctx context.Context, st plinth.Store, g *datasafety.Generator, e *plinth.Entity, from, n int, logger *slog.Logger) (err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer bulkGC()()
	batches := (n + seedBatch - 1) / seedBatch
	workers := runtime.GOMAXPROCS(0)
	loaders := 1
	bl, parallel := st.(plinth.BulkLoader)
	if parallel {
		loaders = seedLoaders
	}
	results := make([]chan generated, batches)
	for i := range results {
		results[i] = make(chan generated, 1)
	}
	// ahead bounds the batches generated but not yet committed.
	ahead := make(chan struct{}, workers+loaders)
	go generateBatches(ctx, g, e, from, n, workers, ahead, results)
	p := newProgress(int64(n), "seeding "+e.Plural, logger)
	defer func() {
		if err != nil {
			p.Stop()
		}
	}()
	start := time.Now()
	defer func() { // after the indexes are built (deferred below)
		if err == nil {
			secs := time.Since(start).Seconds()
			p.Finish("bulkInsertSeconds", secs, "bulkInsertPerSecond", int(float64(n)/max(secs, 1e-9)))
		}
	}()
	if parallel && n >= bulkLoadThreshold {
		finish, err := bl.BeginBulkLoad(ctx, e)
		if err != nil {
			return err
		}
		defer func() {
			if ferr := finish(context.WithoutCancel(ctx)); ferr != nil && err == nil {
				err = ferr
			}
		}()
	}
	return loadSeedBatches(ctx, st, e, results, loaders, func(i int) {
		<-ahead
		p.Add(min(seedBatch, n-i*seedBatch))
	})
}

// loadSeedBatches loads the generated batches on loaders goroutines,
// committing in order, and calls committed(i) as batch i commits. The
// first error (in batch order) is the cause: later batches fail because
// of it.
func loadSeedBatches(ctx context.Context, st plinth.Store, e *plinth.Entity, results []chan generated, loaders int, committed func(i int)) error {
	ctx, cancel := context.WithCancel(ctx)
	loads := ordered.New(ctx, loaders)
	defer func() {
		cancel() // after a failure, loads still waiting for their batch stop
		loads.Close()
	}()
	var pending []<-chan error
	for i := 0; i < len(results) || len(pending) > 0; {
		if i < len(results) && len(pending) <= loaders {
			result := results[i] // not i itself: it moves on while the load runs
			pending = append(pending, loads.Submit(func(beforeCommit func() error) error {
				return seedBatchLoad(ctx, st, e, result, beforeCommit)
			}))
			i++
			continue
		}
		if err := <-pending[0]; err != nil {
			return err
		}
		committed(i - len(pending))
		pending = pending[1:]
	}
	return nil
}

// seedBatchLoad loads one generated batch, committing after beforeCommit.
func seedBatchLoad(ctx context.Context, st plinth.Store, e *plinth.Entity, result <-chan generated, beforeCommit func() error) error {
	var r generated
	select {
	case r = <-result:
	case <-ctx.Done():
		return ctx.Err()
	}
	if r.err != nil {
		return r.err
	}
	if _, err := st.BulkLoad(ctx, e, r.docs, plinth.BulkOptions{BeforeCommit: beforeCommit}); err != nil {
		return fmt.Errorf("seeding %s: %w", e.Plural, err)
	}
	return nil
}

// generated is one batch of dummy records, or why there is none.
type generated struct {
	docs []map[string]any
	err  error
}

// generateBatches generates the batches of seedEntity on workers
// goroutines, each as soon as ahead has room, and sends batch i on
// results[i].
func generateBatches(ctx context.Context, g *datasafety.Generator, e *plinth.Entity, from, n, workers int, ahead chan struct{}, results []chan generated) {
	next := make(chan int)
	for range workers {
		go func() {
			for i := range next {
				docs, err := g.Batch(e, from+i*seedBatch, min(seedBatch, n-i*seedBatch))
				results[i] <- generated{docs, err}
			}
		}()
	}
	defer close(next)
	for i := range results {
		select {
		case ahead <- struct{}{}:
			next <- i
		case <-ctx.Done():
			return
		}
	}
}

// progress reports long work: a bar on a terminal, log lines otherwise.
type progress struct {
	bar     *progressbar.ProgressBar
	w       io.Writer // the bar's
	logger  *slog.Logger
	what    string
	total   int64
	done    int64
	started time.Time
	logged  time.Time
}

func newProgress(total int64, what string, logger *slog.Logger) *progress {
	var w io.Writer
	if term.IsTerminal(int(os.Stderr.Fd())) {
		w = os.Stderr
	}
	return newProgressTo(w, total, what, logger)
}

// newProgressTo draws a bar on w, or logs when w is nil. The bar's clock
// starts now, so its rate counts from the start of the work (not from the
// first batch, which would make it absurd), and it stays on screen at
// 100% when done.
func newProgressTo(w io.Writer, total int64, what string, logger *slog.Logger) *progress {
	p := &progress{logger: logger, what: what, total: total, started: time.Now(), logged: time.Now()}
	if w != nil && total > 0 {
		p.w = w
		p.bar = progressbar.NewOptions64(total, progressbar.OptionSetDescription(what),
			progressbar.OptionSetWriter(w), progressbar.OptionShowCount(), progressbar.OptionShowIts(),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionOnCompletion(func() { fmt.Fprintln(w) }))
		p.bar.StartWithoutRender()
		_ = p.bar.RenderBlank()
	}
	return p
}

func (p *progress) Add(n int) {
	p.done += int64(n)
	if p.bar != nil {
		_ = p.bar.Add(n)
		return
	}
	if time.Since(p.logged) >= 2*time.Second {
		p.logged = time.Now()
		p.logger.Info(p.what, "done", p.done, "total", p.total)
	}
}

// Stop ends the bar's line when the work failed, so the error that follows
// starts on a line of its own.
func (p *progress) Stop() {
	if p.bar != nil && !p.bar.IsFinished() {
		_ = p.bar.Exit()
		fmt.Fprintln(p.w)
	}
}

// Finish reports the totals, with any extra key-value pairs.
func (p *progress) Finish(extra ...any) {
	if p.bar != nil {
		_ = p.bar.Finish()
	}
	elapsed := time.Since(p.started)
	p.logger.Info(p.what+" finished", append([]any{"records", p.done, "seconds", elapsed.Seconds(),
		"perSecond", int(float64(p.done) / max(elapsed.Seconds(), 1e-9))}, extra...)...)
}
