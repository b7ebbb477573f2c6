package main

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/lake"
	plinthnats "github.com/plinth-data/plinth/nats"
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
	cmd := &cobra.Command{
		Use:   "lake",
		Short: "Land the change events of every domain in the data lake (Parquet)",
		Long: `Land the change events of every domain in the data lake as Parquet files:
one durable JetStream consumer per domain buffers events and writes them to
{lake}/{domain}/{entity}/events/import_year=YYYY/import_month=MM/import_day=DD/import_date=YYYYMMDD/part-<first>-<last>.parquet
when the buffer holds --flush-events events or 64 MiB, or --lake-flush-interval
after its first event. A file is visible all at once and acknowledged only
once it is durable; after a crash, events already landed are skipped, so
each event is in the lake exactly once.

plinth serve runs the same landing inside (on by default in development,
--lake-serve). Without --nats-url this command uses the embedded NATS of the
data directory, which only one process at a time can open.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			return runLake(cmd.Context(), cfg, lake.Config{FlushEvents: flushEvents, Drain: drain})
		},
	}
	addConfigFlags(cmd, with(lakeFlags, "nats-url", "lake-flush-interval")...)
	cmd.Flags().IntVar(&flushEvents, "flush-events", lake.DefaultFlushEvents, "land a domain's buffer when it holds this many events")
	cmd.Flags().BoolVar(&drain, "drain", false, "land the events waiting in the streams, then exit")
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
	pub, err := plinthnats.NewPublisher(ctx, bus.nc, cfg.Environment, ds)
	if err != nil {
		return err
	}
	logger.Info("landing events in the lake", "lake", target.String(), "nats", bus.where)
	return landDomains(ctx, cfg, lc, ds, pub.JetStream(), target, logger)
}

// landDomains runs a lander per domain until ctx is done (or, draining,
// until every stream is landed). A lander that fails starts again after a
// pause, from the last acknowledged event.
func landDomains(ctx context.Context, cfg Config, lc lake.Config, ds []*plinth.Domain, js jetstream.JetStream, target lake.Target, logger *slog.Logger) error {
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
			errs[i] = landDomain(ctx, cfg, c, d, js, target, logger)
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

func landDomain(ctx context.Context, cfg Config, lc lake.Config, d *plinth.Domain, js jetstream.JetStream, target lake.Target, logger *slog.Logger) error {
	stream := plinthnats.StreamName(cfg.Environment, d.Name)
	// The ack wait outlasts a batch held for the whole flush interval and
	// the time to write it.
	ackWait := 2*lc.FlushInterval + time.Minute
	pause := time.Second
	for {
		src, err := plinthnats.NewBatchSource(ctx, js, stream, lakeDurable, ackWait)
		if err == nil {
			err = lake.NewLander(d, target, lc).Run(ctx, src)
			if err == nil {
				return nil
			}
		}
		if ctx.Err() != nil {
			return nil
		}
		if lc.Drain {
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

// startLake lands events in the lake inside serve, until ctx is done.
func startLake(ctx context.Context, wg *sync.WaitGroup, cfg Config, ds []*plinth.Domain, pub *plinthnats.Publisher, logger *slog.Logger) error {
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
		if err := landDomains(ctx, cfg, lake.Config{}, ds, pub.JetStream(), target, logger); err != nil {
			logger.Error("the lake stopped", "error", err)
		}
	}()
	return nil
}
