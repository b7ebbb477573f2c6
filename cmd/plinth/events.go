package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/events"
	plinthnats "github.com/plinth-data/plinth/nats"
)

// eventBus is this process's connection to NATS JetStream: an external
// server when cfg.NATSURL is set, else the embedded server with its files in
// the data directory.
type eventBus struct {
	embedded *plinthnats.Embedded // nil with an external server
	nc       *natsgo.Conn
	where    string // for messages: the URL, or "embedded (<dir>)"
}

// openEventBus connects to the configured NATS. listen, for the embedded
// server only, also accepts TCP clients on that address ("" for none).
func openEventBus(cfg Config, listen string, logger *slog.Logger) (*eventBus, error) {
	if cfg.NATSURL != "" {
		nc, err := plinthnats.Connect(cfg.NATSURL)
		if err != nil {
			return nil, err
		}
		return &eventBus{nc: nc, where: plinthnats.RedactURL(cfg.NATSURL)}, nil
	}
	srv, err := plinthnats.StartEmbedded(plinthnats.EmbeddedConfig{Dir: cfg.DataDir, Listen: listen, Logger: logger})
	if err != nil {
		return nil, err
	}
	nc, err := srv.Conn()
	if err != nil {
		srv.Shutdown()
		return nil, err
	}
	where := "embedded (" + srv.StoreDir() + ")"
	if u := srv.ClientURL(); u != "" {
		where = "embedded (" + srv.StoreDir() + ", clients at " + u + ")"
	}
	return &eventBus{embedded: srv, nc: nc, where: where}, nil
}

// Close drains the connection and stops the embedded server, if any.
func (b *eventBus) Close() {
	if b == nil {
		return
	}
	if err := b.nc.Drain(); err != nil {
		b.nc.Close()
	}
	// Drain is asynchronous; wait (briefly) for it before stopping the
	// server underneath it.
	for i := 0; i < 100 && !b.nc.IsClosed(); i++ {
		time.Sleep(10 * time.Millisecond)
	}
	b.nc.Close()
	b.embedded.Shutdown()
}

// outboxStore returns the store's outbox, or an error naming the store.
func outboxStore(st plinth.Store, url string) (plinth.OutboxStore, error) {
	ob, ok := st.(plinth.OutboxStore)
	if !ok {
		return nil, fmt.Errorf("store %s keeps no event outbox; use sqlite:// or postgres://", redactURL(url))
	}
	return ob, nil
}

func relayCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "relay",
		Short: "Publish the store's change events to NATS JetStream (the outbox relay on its own)",
		Long: `Run the outbox relay alone: publish the events that writes leave in the store's
outbox, in commit order, to NATS JetStream, one stream per domain, and mark them
sent. plinth serve runs a relay too (unless --relay=false); any number may run
against one store: one publishes, the others stand by and take over within
about 10 seconds when it stops.

A standalone relay normally uses --nats-url: the embedded NATS server keeps its
files in the data directory, and only one process at a time can use them, so
without --nats-url this command fails while plinth serve (with its embedded
server) runs on the same data directory.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			return runRelay(cmd.Context(), cfg)
		},
	}
	addConfigFlags(cmd, with(storeFlags, "env", "log-level", "nats-url", "event-bus")...)
	return cmd
}

func runRelay(ctx context.Context, cfg Config) error {
	logger := newLogger(cfg.LogLevel)
	ds, err := loadDomains(cfg.Domains)
	if err != nil {
		return err
	}
	st, err := openStores(ctx, cfg, ds)
	if err != nil {
		return err
	}
	defer st.Close()
	outbox, err := outboxStore(st, cfg.StoreURL())
	if err != nil {
		return err
	}
	cfg.NATSListen = "" // the relay never serves the embedded server to others
	pub, _, stopBus, err := openPublisher(ctx, cfg, ds, logger)
	if err != nil {
		return err
	}
	defer stopBus()
	relay := events.NewRelay(outbox, pub, relayConfig(cfg, logger))
	logger.Info("relay started", "holder", relay.Status().Holder, "environment", cfg.Environment,
		"store", redactURL(cfg.StoreURL()))
	var wg sync.WaitGroup
	defer wg.Wait()
	relayOthers(ctx, &wg, st, pub, relayConfig(cfg, logger))
	err = relay.Run(ctx)
	logger.Info("relay stopped", "published", relay.Status().Published)
	return err
}

func eventsCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "events",
		Short: "Look at the change events on the bus",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(eventsTailCommand())
	return cmd
}

func eventsTailCommand() *cobra.Command {
	var domain, since string
	var short bool
	cmd := &cobra.Command{
		Use:   "tail",
		Short: "Print change events as they arrive",
		Long: `Print the environment's change events as they arrive, one JSON line each (or a
short line with --short), until interrupted. --since starts further back: a
duration (15m, 2h) or a time (2024-05-01T09:00:00Z, 2024-05-01).

Without --nats-url this opens the embedded server's files in the data
directory, which works only while no plinth serve or relay uses them. To tail a
running plinth serve, point --nats-url at the NATS server it publishes to; with
its embedded server, start serve with --nats-listen 127.0.0.1:4222 and tail
with --nats-url nats://127.0.0.1:4222.`,
		Example: `  plinth events tail --nats-url nats://127.0.0.1:4222
  plinth events tail --nats-url nats://127.0.0.1:4222 --domain residents --since 1h --short`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			var from time.Time
			if since != "" {
				if from, err = parseSince(since, time.Now()); err != nil {
					return err
				}
			}
			bus, err := openEventBus(cfg, "", newLogger("warn"))
			if err != nil {
				return err
			}
			defer bus.Close()
			return tailEvents(cmd.Context(), bus.nc, cfg.Environment, domain, from, short, cmd.OutOrStdout())
		},
	}
	addConfigFlags(cmd, "env", "data-dir", "nats-url")
	cmd.Flags().StringVar(&domain, "domain", "", "only this domain's events (default: every domain)")
	cmd.Flags().StringVar(&since, "since", "", "start this far back (15m, 2h) or at this time (RFC 3339 or a date); default: new events only")
	cmd.Flags().BoolVar(&short, "short", false, "one short human-readable line per event instead of its JSON")
	return cmd
}

// parseSince reads --since: a duration back from now, an RFC 3339 time or
// a date (midnight UTC).
func parseSince(s string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			d = -d
		}
		return now.Add(-d), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("--since %q: give a duration such as 15m or 2h, or a time such as 2024-05-01T09:00:00Z or 2024-05-01", s)
}

// tailEvents prints events of the environment (one domain's, when domain
// is set) from from (zero: new ones only) until ctx ends.
func tailEvents(ctx context.Context, nc *natsgo.Conn, env, domain string, from time.Time, short bool, out io.Writer) error {
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	var streams []string
	if domain != "" {
		name := plinthnats.StreamName(env, domain)
		if _, err := js.Stream(ctx, name); errors.Is(err, jetstream.ErrStreamNotFound) {
			return fmt.Errorf("no events of domain %s in %s yet: the stream %s does not exist (it is created when a relay starts)", domain, env, name)
		} else if err != nil {
			return fmt.Errorf("looking up stream %s: %w", name, err)
		}
		streams = []string{name}
	} else {
		lister := js.StreamNames(ctx, jetstream.WithStreamListSubject(plinth.SubjectPrefix(env)+">"))
		for name := range lister.Name() {
			streams = append(streams, name)
		}
		if err := lister.Err(); err != nil {
			return fmt.Errorf("listing event streams: %w", err)
		}
		if len(streams) == 0 {
			return fmt.Errorf("no event streams for environment %s on this NATS server: they are created when a relay starts (plinth serve or plinth relay)", env)
		}
		slices.Sort(streams)
	}

	occ := jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverNewPolicy}
	if !from.IsZero() {
		occ.DeliverPolicy = jetstream.DeliverByStartTimePolicy
		occ.OptStartTime = &from
	}
	var mu sync.Mutex // one line at a time from several streams
	var writeErr error
	failed := make(chan struct{})
	var failOnce sync.Once
	for _, name := range streams {
		cons, err := js.OrderedConsumer(ctx, name, occ)
		if err != nil {
			return fmt.Errorf("subscribing to %s: %w", name, err)
		}
		cc, err := cons.Consume(func(m jetstream.Msg) {
			line := tailLine(m, short)
			mu.Lock()
			defer mu.Unlock()
			if writeErr != nil {
				return
			}
			if _, err := out.Write(line); err != nil {
				writeErr = err
				failOnce.Do(func() { close(failed) })
			}
		})
		if err != nil {
			return fmt.Errorf("subscribing to %s: %w", name, err)
		}
		defer cc.Stop()
	}
	select {
	case <-ctx.Done():
		return nil
	case <-failed:
		mu.Lock()
		defer mu.Unlock()
		return writeErr
	}
}

// tailLine formats one message: its payload as one JSON line, or a short
// line: time, event type, domain/plural/id, version, user, changed fields.
func tailLine(m jetstream.Msg, short bool) []byte {
	if !short {
		return append(append([]byte(nil), m.Data()...), '\n')
	}
	ev, err := plinth.DecodeEvent(m.Data())
	if err != nil {
		return fmt.Appendf(nil, "%s (not a Plinth event: %v)\n", m.Subject(), err)
	}
	// plinth.<env>.<domain>.<plural>.<kind>
	where := ev.SourceDomain
	if parts := strings.Split(m.Subject(), "."); len(parts) == 5 {
		where = parts[2] + "/" + parts[3]
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s %-28s %s/%s v%d", ev.DateTime.UTC().Format(time.RFC3339), ev.EventType, where, ev.EntityID, ev.EntityVersion)
	if u := eventUserLabel(ev.User); u != "" {
		fmt.Fprintf(&b, " by %s", u)
	}
	if strings.HasSuffix(ev.EventType, "UpdatedEvent") && len(ev.EventData.NewData) > 0 {
		fields := make([]string, 0, len(ev.EventData.NewData))
		for k := range ev.EventData.NewData {
			fields = append(fields, k)
		}
		slices.Sort(fields)
		fmt.Fprintf(&b, " changed %s", strings.Join(fields, ", "))
	}
	b.WriteByte('\n')
	return []byte(b.String())
}

func eventUserLabel(u plinth.EventUser) string {
	switch {
	case u.Name != "" && u.Email != "" && u.Name != u.Email:
		return u.Name + " <" + u.Email + ">"
	case u.Name != "":
		return u.Name
	}
	return u.Email
}
