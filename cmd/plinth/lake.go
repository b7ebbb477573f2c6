package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/audit"
	"github.com/plinth-data/plinth/lake"
	"github.com/plinth-data/plinth/lease"
	plinthnats "github.com/plinth-data/plinth/nats"
	"github.com/plinth-data/plinth/parquet"
	"github.com/plinth-data/plinth/s3"
)

// lakeDurable is the durable consumer the lake reads each domain's
// stream with.
const lakeDurable = "plinth-lake"

// lakeFlags are the settings every lake command reads.
var lakeFlags = []string{"env", "log-level", "data-dir", "domains", "lake", "lake-s3-endpoint", "lake-special-domains"}

func lakeCommand() *cobra.Command {
	var flushEvents int
	var drain bool
	var compression string
	cmd := &cobra.Command{
		Use:   "lake",
		Short: "Land the change events of every domain in the data lake (Parquet)",
		Long: `Land the change events of every domain in the data lake as Parquet files:
one durable JetStream consumer per domain buffers events and writes them to
{lake}/{domain}/{entity}/events/import_year=YYYY/import_month=MM/import_day=DD/import_date=YYYYMMDD/part-<first>-<last>.parquet
when the buffer holds --flush-events events or 64 MiB, or --lake-flush-interval
after its first event. A file is visible all at once and acknowledged only
once it is durable; after a crash, events already landed are skipped, so
each event is in the lake exactly once. Several lake processes may run: one
lands each domain's stream while the others stand by on its lease (kept in
the NATS key-value bucket PLINTH_LEASES) and take over within 30 seconds
when it stops or dies (--drain waits at most a minute for it). With the
embedded NATS, which no other process reaches, there is no lease.

plinth serve runs the same landing inside (on by default in development,
--lake-serve). Without --nats-url this command uses the embedded NATS of the
data directory, which only one process at a time can open.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			codec, err := parquet.Codec(compression)
			if err != nil {
				return fmt.Errorf("--compression: %w", err)
			}
			return runLake(cmd.Context(), cfg, lake.Config{FlushEvents: flushEvents, Drain: drain, Parquet: parquet.Options{Compression: codec}})
		},
	}
	addConfigFlags(cmd, with(lakeFlags, "nats-url", "lake-flush-interval")...)
	cmd.Flags().IntVar(&flushEvents, "flush-events", lake.DefaultFlushEvents, "land a domain's buffer when it holds this many events")
	cmd.Flags().BoolVar(&drain, "drain", false, "land the events waiting in the streams, then exit")
	cmd.Flags().StringVar(&compression, "compression", "zstd", "compression of the event files: zstd (smaller) or snappy (less CPU)")
	cmd.AddCommand(lakeSnapshotCommand(), lakeCompactCommand(), lakeDDLCommand(), lakeEraseCommand(), lakeAuditCommand())
	return cmd
}

// openLake opens the configured lake: a folder or s3://bucket/prefix.
func openLake(ctx context.Context, cfg Config) (lake.Target, error) {
	root := cfg.LakeRoot()
	if s3.IsURL(root) {
		return s3.Open(ctx, root, s3.Options{Endpoint: cfg.LakeS3Endpoint})
	}
	d := lake.Dir(root)
	return d, nil
}

func runLake(ctx context.Context, cfg Config, lc lake.Config) error {
	// A process that only lands events collects less often, as seed does
	// (unless GOGC says otherwise): less CPU per event (BENCHMARKS.md,
	// "Data lake") for a larger heap, held near 1 GiB by a soft memory
	// limit (unless GOMEMLIMIT says otherwise).
	if os.Getenv("GOGC") == "" {
		defer bulkGC()()
	}
	logger := newLogger(cfg.LogLevel)
	ds, err := loadDomains(cfg.Domains)
	if err != nil {
		return err
	}
	target, err := openLake(ctx, cfg)
	if err != nil {
		return err
	}
	if d, ok := target.(lake.Dir); ok {
		if err := d.CleanTemp(); err != nil {
			return err
		}
	}
	bus, err := openEventBus(cfg, "", logger)
	if err != nil {
		return err
	}
	defer bus.Close()
	pub, err := plinthnats.NewPublisher(ctx, bus.nc, cfg.Environment, ds, streamRetention(cfg))
	if err != nil {
		return err
	}
	logger.Info("landing events in the lake", "lake", target.String(), "nats", bus.where)
	return landDomains(ctx, cfg, lc, ds, lakeBus{pub: pub, shared: bus.embedded == nil}, target, logger)
}

// lakeBus is where landers read the events from.
type lakeBus struct {
	pub *plinthnats.Publisher
	// shared: other processes may reach the NATS server, so a lander holds
	// its stream's lease; an embedded server that does not listen is this
	// process's alone.
	shared bool
	// live: pub is the relay's publisher in this process, so a lander takes
	// the events it stores from it as they are stored (nats.LiveSource)
	// and reads the stream only to catch up.
	live bool
}

// landDomains runs a lander per domain until ctx is done (or, draining,
// until every stream is landed). A lander that fails starts again after a
// pause, from the last acknowledged event.
func landDomains(ctx context.Context, cfg Config, lc lake.Config, ds []*plinth.Domain, bus lakeBus, target lake.Target, logger *slog.Logger) error {
	lc.FlushInterval = cfg.LakeFlushInterval
	lc.Logger = logger
	special := splitList(cfg.LakeSpecial)
	var wg sync.WaitGroup
	errs := make([]error, len(ds))
	for i, d := range ds {
		c := lc
		c.Special = slices.Contains(special, d.Name)
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = landDomain(ctx, cfg, c, d, bus, target, logger)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// lakeLeaseTTL is how long a lander's lease of a stream lasts unrenewed.
const lakeLeaseTTL = 30 * time.Second

// landDomain lands a domain's events until ctx is done.
func landDomain(ctx context.Context, cfg Config, lc lake.Config, d *plinth.Domain, bus lakeBus, target lake.Target, logger *slog.Logger) error {
	stream := plinthnats.StreamName(cfg.Environment, d.Name)
	// The ack wait outlasts a batch held for the whole flush interval and
	// the time to write it.
	ackWait := 2*lc.FlushInterval + time.Minute
	pause := time.Second
	land := func(ctx context.Context, held func() bool) error {
		var src lake.Source
		if bus.live {
			live, err := plinthnats.NewLiveSource(ctx, bus.pub, stream, lakeDurable)
			if err != nil {
				return err
			}
			defer live.Close()
			src = live
		} else {
			batch, err := plinthnats.NewBatchSource(ctx, bus.pub.JetStream(), stream, lakeDurable, ackWait)
			if err != nil {
				return err
			}
			src = batch
		}
		c := lc
		c.Held = held
		return lake.NewLander(d, target, c).Run(ctx, src)
	}
	xc := lake.ExclusiveConfig{Holder: lease.DefaultHolder("lake"), TTL: lakeLeaseTTL, Logger: logger.With("domain", d.Name)}
	if lc.Drain {
		xc.MaxWait = 2 * lakeLeaseTTL // long enough for a dead holder's lease to lapse
	}
	for {
		var err error
		if bus.shared {
			// One lander per stream: the others stand by on its lease.
			var kl *plinthnats.KVLease
			if kl, err = plinthnats.NewKVLease(ctx, bus.pub.JetStream(), plinthnats.LakeLeaseName(stream, lakeDurable)); err == nil {
				err = lake.Exclusive(ctx, kl, xc, land)
			}
		} else {
			err = land(ctx, nil) // an embedded NATS no other process reaches
		}
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return nil
		}
		if lc.Drain || errors.Is(err, lake.ErrSchema) {
			return fmt.Errorf("lake: domain %s: %w", d.Name, err)
		}
		logger.Error("landing events failed; trying again", "domain", d.Name, "error", err, "retryIn", pause)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(pause):
		}
		pause = min(2*pause, 30*time.Second)
	}
}

// serveLakeConfig is how serve lands events: in row groups of at most
// 4 MiB of values rather than 16, because a lander holds its open row
// group in memory and serve shares the process with the API (its peak
// memory under writes, BENCHMARKS.md). plinth lake, on its own, keeps the
// defaults; compaction merges the smaller row groups later either way.
var serveLakeConfig = lake.Config{Parquet: parquet.Options{RowGroupBytes: 4 << 20}}

// startLake lands events in the lake inside serve, until ctx is done.
func startLake(ctx context.Context, wg *sync.WaitGroup, cfg Config, ds []*plinth.Domain, st plinth.Store, pub *plinthnats.Publisher, logger *slog.Logger) error {
	target, err := openLake(ctx, cfg)
	if err != nil {
		return err
	}
	if d, ok := target.(lake.Dir); ok {
		if err := d.CleanTemp(); err != nil {
			return err
		}
	}
	logger.Info("landing events in the lake", "lake", target.String())
	wg.Add(1)
	go func() {
		defer wg.Done()
		shared := cfg.NATSURL != "" || cfg.NATSListen != ""
		bus := lakeBus{pub: pub, shared: shared, live: !shared}
		if err := landDomains(ctx, cfg, serveLakeConfig, ds, bus, target, logger); err != nil {
			logger.Error("the lake stopped", "error", err)
		}
	}()
	if cfg.LakeSnapshotDaily {
		wg.Add(1)
		go func() {
			defer wg.Done()
			snapshotDaily(ctx, cfg, ds, st, pub.JetStream(), target, logger)
		}()
	}
	return nil
}

// snapshotDaily writes the day's snapshot of every entity that has none
// yet, checking every hour, until ctx is done.
func snapshotDaily(ctx context.Context, cfg Config, ds []*plinth.Domain, st plinth.Store, js jetstream.JetStream, target lake.Target, logger *slog.Logger) {
	special := splitList(cfg.LakeSpecial)
	for {
		day := time.Now().UTC()
		for _, d := range ds {
			for _, e := range d.Entities {
				manifest := lake.SnapshotPartition(lake.EntityPrefix(e), day) + "_manifest.json"
				if _, err := target.Get(ctx, manifest); !errors.Is(err, lake.ErrNotFound) {
					continue // taken already (or the lake cannot be read: next hour)
				}
				m, err := lake.Snapshot(ctx, st, e, target, day, lake.SnapshotOptions{Special: slices.Contains(special, d.Name),
					Position: streamPosition(js, cfg.Environment, d)})
				if err != nil {
					if ctx.Err() == nil {
						logger.Error("the daily lake snapshot failed; trying again within the hour", "entity", d.Name+"/"+e.Plural, "error", err)
					}
					continue
				}
				logger.Info("daily lake snapshot", "entity", d.Name+"/"+e.Plural, "records", m.Records, "files", len(m.Files))
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Hour):
		}
	}
}

// streamPosition reads the last sequence of a domain's stream, the
// position a snapshot records; nil without a bus.
func streamPosition(js jetstream.JetStream, env string, d *plinth.Domain) func(context.Context) (uint64, error) {
	if js == nil {
		return nil
	}
	return func(ctx context.Context) (uint64, error) {
		return plinthnats.LastSequence(ctx, js, plinthnats.StreamName(env, d.Name))
	}
}

// lakeOf is how the lake commands start: the domains they work on (only
// the named one, when given) and the configured lake.
func lakeOf(ctx context.Context, cfg Config, ds []*plinth.Domain, domain string) ([]*plinth.Domain, lake.Target, error) {
	ds, err := lakeDomains(ds, domain)
	if err != nil {
		return nil, nil, err
	}
	target, err := openLake(ctx, cfg)
	return ds, target, err
}

// lakeDomains returns the configured domains, or the one --domain names.
func lakeDomains(ds []*plinth.Domain, name string) ([]*plinth.Domain, error) {
	if name == "" {
		return ds, nil
	}
	for _, d := range ds {
		if d.Name == name {
			return []*plinth.Domain{d}, nil
		}
	}
	return nil, fmt.Errorf("--domain: no domain is called %s", name)
}

func lakeSnapshotCommand() *cobra.Command {
	var domain string
	cmd := &cobra.Command{
		Use:   "snapshot",
		Short: "Write the full current state of every entity to the lake",
		Long: `Write the full state of every entity of every domain (or --domain), each from
one consistent scan of the store, to
{lake}/{domain}/{entity}/snapshot/import_date=YYYYMMDD/part-….parquet, with a
_manifest.json giving the store's watermark, the number of records and the
position: the last sequence of the domain's event stream when the snapshot
began. Every event at or below it is in the snapshot; the events that build
on it are those above it whose entityVersion is higher than the snapshot
row's version. The stream is read through --nats-url, or the embedded NATS
of the data directory when no other process holds it; when it cannot be
read the snapshot is written without a position (positionKnown false). A
second snapshot on the same day replaces the first (its files are written
before the old ones go).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, ds, st, err := openConfigured(cmd)
			if err != nil {
				return err
			}
			defer st.Close()
			ctx := cmd.Context()
			ds, target, err := lakeOf(ctx, cfg, ds, domain)
			if err != nil {
				return err
			}
			special := splitList(cfg.LakeSpecial)
			logger := newLogger(cfg.LogLevel)
			var js jetstream.JetStream
			if bus, err := openEventBus(cfg, "", logger); err != nil {
				logger.Warn("cannot read the event streams: the snapshots record no position", "error", err)
			} else {
				defer bus.Close()
				if js, err = jetstream.New(bus.nc); err != nil {
					return err
				}
			}
			day := time.Now().UTC()
			for _, d := range ds {
				for _, e := range d.Entities {
					// The total is not known before the scan: progress lines.
					p := newProgress(-1, "snapshot "+d.Name+"/"+e.Plural, logger)
					m, err := lake.Snapshot(ctx, st, e, target, day, lake.SnapshotOptions{
						Special:  slices.Contains(special, d.Name),
						Progress: func(n int64) { p.Add(int(n - p.done)) },
						Position: streamPosition(js, cfg.Environment, d),
					})
					if err != nil {
						p.Stop()
						return err
					}
					p.Finish()
					pos := "unknown"
					if m.PositionKnown {
						pos = strconv.FormatUint(m.Position, 10)
					}
					fmt.Fprintf(cmd.OutOrStdout(), "%s/%s: %d records in %d files (watermark %s, stream position %s)\n", d.Name, e.Plural, m.Records, len(m.Files), m.Watermark, pos)
				}
			}
			return nil
		},
	}
	addConfigFlags(cmd, with(lakeFlags, "store", "nats-url")...)
	cmd.Flags().StringVar(&domain, "domain", "", "only this domain")
	return cmd
}

func lakeCompactCommand() *cobra.Command {
	var domain string
	var targetSize int64
	cmd := &cobra.Command{
		Use:   "compact",
		Short: "Merge the small event files of closed partitions into larger ones",
		Long: `Merge the small event files of every closed partition (days before today, UTC)
into files of about --target-size bytes. The open partition is never touched.
Rows are copied as they are, so the lake holds the same rows before and after;
a merged file is written before the files it replaces are removed, and a
compaction that was interrupted is finished by the next.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, ds, err := loadConfigAndDomains(cmd)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			ds, target, err := lakeOf(ctx, cfg, ds, domain)
			if err != nil {
				return err
			}
			for _, d := range ds {
				for _, prefix := range []string{d.Name + "/", "_special/" + d.Name + "/"} {
					st, err := lake.Compact(ctx, target, prefix, lake.CompactOptions{Target: targetSize,
						Progress: func(p string, merged, files int) {
							fmt.Fprintf(cmd.ErrOrStderr(), "compacted %s: %d of %d files merged\n", p, merged, files)
						}})
					if err != nil {
						return err
					}
					if st.Partitions > 0 {
						fmt.Fprintf(cmd.OutOrStdout(), "%s: %d partitions, %d files merged into %d (%d rows), %d leftovers removed\n",
							strings.TrimSuffix(prefix, "/"), st.Partitions, st.FilesMerged, st.FilesWritten, st.Rows, st.Recovered)
					}
				}
			}
			return nil
		},
	}
	addConfigFlags(cmd, lakeFlags...)
	cmd.Flags().StringVar(&domain, "domain", "", "only this domain")
	cmd.Flags().Int64Var(&targetSize, "target-size", lake.DefaultCompactTarget, "size of the merged files, in bytes")
	return cmd
}

func lakeDDLCommand() *cobra.Command {
	var format, location string
	cmd := &cobra.Command{
		Use:   "ddl",
		Short: "Print the lake's table definitions for Athena, Trino or DuckDB",
		Long: `Print the table definitions of the lake: per entity a table of events and one
of snapshots. Athena: CREATE EXTERNAL TABLE with partition projection; Trino:
Hive connector tables; DuckDB: views over read_parquet with Hive partitioning,
and a macro {domain}_{plural}_as_of(day) giving the state of every record at
the end of a day (latest snapshot up to that day, plus the events after it).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, ds, err := loadConfigAndDomains(cmd)
			if err != nil {
				return err
			}
			loc := location
			if loc == "" {
				loc = cfg.LakeRoot()
			}
			if format != lake.FormatDuckDB && !s3.IsURL(loc) {
				return fmt.Errorf("--location: %s tables need the lake's s3:// URL, not %q", format, loc)
			}
			if format == lake.FormatDuckDB && !s3.IsURL(loc) {
				if abs, err := filepath.Abs(loc); err == nil {
					loc = abs
				}
			}
			var has func(prefix, dataset string) bool
			if format == lake.FormatDuckDB {
				target, err := openLake(cmd.Context(), cfg)
				if err != nil {
					return err
				}
				has = func(prefix, dataset string) bool {
					objs, err := target.List(cmd.Context(), prefix+dataset+"/")
					return err == nil && slices.ContainsFunc(objs, func(o lake.Object) bool { return strings.HasSuffix(o.Key, ".parquet") })
				}
			}
			out, err := lake.DDL(ds, format, loc, splitList(cfg.LakeSpecial), has)
			if err != nil {
				return fmt.Errorf("--format: %w", err)
			}
			fmt.Fprint(cmd.OutOrStdout(), out)
			return nil
		},
	}
	addConfigFlags(cmd, "env", "data-dir", "domains", "lake", "lake-special-domains")
	cmd.Flags().StringVar(&format, "format", lake.FormatDuckDB, "athena, trino or duckdb")
	cmd.Flags().StringVar(&location, "location", "", "the lake as the engine reaches it (default --lake)")
	return cmd
}

func lakeEraseCommand() *cobra.Command {
	var domain, entity, id, by, reason string
	cmd := &cobra.Command{
		Use:   "erase",
		Short: "Remove one record from every file of the lake (right to erasure)",
		Long: `Rewrite every file of the lake that holds the record (its events and its
snapshot rows, in the domain's datasets and its special-category dataset)
without it, and record the erasure in the audit trail. Each file is replaced
at once; if the command stops part-way, run it again to finish.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if domain == "" || id == "" {
				return fmt.Errorf("name the record: --domain and --entity-id are required")
			}
			who, err := operator(by)
			if err != nil {
				return fmt.Errorf("say who you are with --by your e-mail address: it goes into the audit trail")
			}
			cfg, ds, st, err := openConfigured(cmd)
			if err != nil {
				return err
			}
			defer st.Close()
			ctx := cmd.Context()
			ds, target, err := lakeOf(ctx, cfg, ds, domain)
			if err != nil {
				return err
			}
			var entities []*plinth.Entity
			for _, e := range ds[0].Entities {
				if entity == "" || e.Plural == entity {
					entities = append(entities, e)
				}
			}
			if len(entities) == 0 {
				return fmt.Errorf("--entity: domain %s has no entity %s", domain, entity)
			}
			return eraseFromLake(cmd, cfg, st, target, entities, id, who, reason)
		},
	}
	addConfigFlags(cmd, with(lakeFlags, "store")...)
	f := cmd.Flags()
	f.StringVar(&domain, "domain", "", "the record's domain (required)")
	f.StringVar(&entity, "entity", "", "the record's entity (plural); default every entity of the domain")
	f.StringVar(&id, "entity-id", "", "the record's key (required)")
	f.StringVar(&by, "by", "", "your e-mail address, for the audit trail (default $USER)")
	f.StringVar(&reason, "reason", "", "why, for the audit trail (such as the erasure request's reference)")
	return cmd
}

// eraseFromLake erases the record, audits what was done, and reports it.
func eraseFromLake(cmd *cobra.Command, cfg Config, st plinth.Store, target lake.Target, entities []*plinth.Entity, id, who, reason string) error {
	ctx := cmd.Context()
	as, ok := st.(plinth.AuditStore)
	if !ok {
		return fmt.Errorf("the store keeps no audit trail, so the erasure cannot be recorded")
	}
	for _, e := range entities {
		start := time.Now()
		res, err := lake.Erase(ctx, target, e, id)
		rec := plinth.AuditRecord{
			Time: plinth.Now(), CorrelationID: uuid.NewString(), Environment: cfg.Environment,
			Domain: e.Domain.Name, Entity: e.Plural, Operation: "lake-erase", Principal: principalOf(who),
			Decision: plinth.DecisionAllow, RecordIDs: []string{id}, Count: int(res.Rows),
			DurationMs: float64(time.Since(start).Microseconds()) / 1000,
			Reason: fmt.Sprintf("erased from the lake %s: %d rows, %d files rewritten, %d removed; reason: %s",
				target, res.Rows, res.FilesRewritten, res.FilesRemoved, orDash(reason)),
		}
		if err != nil {
			rec.Reason = fmt.Sprintf("erasure from the lake %s stopped after %d rows: %v (run it again)", target, res.Rows, err)
		}
		if _, aerr := as.AppendAudit(ctx, []plinth.AuditRecord{rec}); aerr != nil {
			return fmt.Errorf("recording the erasure in the audit trail: %w", aerr)
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(cmd.OutOrStdout(), "%s/%s %s: %d rows erased, %d files rewritten, %d removed; audit record %s\n",
			e.Domain.Name, e.Plural, id, res.Rows, res.FilesRewritten, res.FilesRemoved, rec.CorrelationID)
	}
	if _, err := audit.ChainPending(ctx, as); err != nil && !errors.Is(err, audit.ErrChainerActive) {
		return fmt.Errorf("the erasure is done and audited, but the audit record is not chained yet (plinth audit chain links it): %w", err)
	}
	return nil
}

func lakeAuditCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Archive the audit trail to the lake, then trim the store by --audit-hot-retention",
		Long: `Copy the chained audit records the lake does not hold yet to
{lake}/_audit/import_year=…/import_date=YYYYMMDD/part-<first>-<last>.parquet, each
with its JSON, its hash and the hash before it. plinth audit verify and plinth
audit search read the archive and the store together.

With --audit-hot-retention (default 0: keep every record), records older than
that which are archived are then deleted from the store (never its newest).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, _, st, err := openConfigured(cmd)
			if err != nil {
				return err
			}
			defer st.Close()
			as, ok := st.(plinth.AuditStore)
			if !ok {
				return fmt.Errorf("the store keeps no audit trail")
			}
			ctx := cmd.Context()
			target, err := openLake(ctx, cfg)
			if err != nil {
				return err
			}
			arch := lake.NewAuditArchive(target)
			p := newProgress(-1, "archiving the audit trail", newLogger(cfg.LogLevel))
			res, err := arch.Archive(ctx, as, 0, func(n int64) { p.Add(int(n - p.done)) })
			if err != nil {
				p.Stop()
				return err
			}
			p.Finish()
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "archived %d audit records in %d files to %s; the archive holds records 1–%d\n", res.Records, res.Files, target, res.Last)
			if cfg.AuditHotRetention <= 0 {
				return nil
			}
			trimmer, ok := st.(plinth.AuditTrimmer)
			if !ok {
				return fmt.Errorf("--audit-hot-retention: this store cannot trim its audit trail")
			}
			through, err := arch.TrimThrough(ctx, time.Now().Add(-cfg.AuditHotRetention))
			if err != nil {
				return err
			}
			n, err := trimmer.TrimAudit(ctx, through)
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "trimmed %d audit records older than %s from the store (they are in the archive)\n", n, cfg.AuditHotRetention)
			return nil
		},
	}
	addConfigFlags(cmd, with(lakeFlags, "store", "audit-hot-retention")...)
	return cmd
}

// auditArchive returns the lake's audit archive when it holds records,
// else nil.
func auditArchive(cmd *cobra.Command, cfg Config) (audit.Archive, error) {
	target, err := openLake(cmd.Context(), cfg)
	if err != nil {
		return nil, err
	}
	arch := lake.NewAuditArchive(target)
	empty, err := arch.Empty(cmd.Context())
	if err != nil {
		return nil, fmt.Errorf("reading the audit archive in %s: %w", target, err)
	}
	if empty {
		return nil, nil
	}
	return arch, nil
}
