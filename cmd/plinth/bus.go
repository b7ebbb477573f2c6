package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/events"
	"github.com/plinth-data/plinth/nats"
	"github.com/plinth-data/plinth/sns"
)

// startBus opens the configured NATS (external, or embedded on the data
// directory, reachable at natsListen when set) and returns a publisher
// with one stream per domain. stop closes what it opened.
func startBus(ctx context.Context, cfg Config, ds []*plinth.Domain, logger *slog.Logger) (pub *nats.Publisher, stop func(), err error) {
	bus, err := openEventBus(cfg, cfg.NATSListen, logger)
	if err != nil {
		return nil, nil, err
	}
	pub, err = nats.NewPublisher(ctx, bus.nc, cfg.Environment, ds, streamRetention(cfg))
	if err != nil {
		bus.Close()
		return nil, nil, err
	}
	logger.Info("event bus", "nats", bus.where)
	return pub, bus.Close, nil
}

// busPublisher is what serve publishes events through: NATS JetStream, or
// SNS (eventBus).
type busPublisher interface {
	plinth.Publisher
	Check(context.Context) error
}

// openPublisher opens the configured event bus: SNS when eventBus is set
// (natsPub is then nil), else NATS as startBus.
func openPublisher(ctx context.Context, cfg Config, ds []*plinth.Domain, logger *slog.Logger) (pub busPublisher, natsPub *nats.Publisher, stop func(), err error) {
	if sns.IsURL(cfg.EventBus) {
		p, err := sns.Open(ctx, cfg.EventBus, cfg.Environment, ds, sns.Options{})
		if err != nil {
			return nil, nil, nil, err
		}
		logger.Info("event bus", "sns", cfg.EventBus)
		return p, nil, func() {}, nil
	}
	natsPub, stop, err = startBus(ctx, cfg, ds, logger)
	if err != nil {
		return nil, nil, nil, err
	}
	return natsPub, natsPub, stop, nil
}

// embeddedDuplicateWindow is the duplicate window of the embedded NATS
// server's streams. The relay reads a stream's tail back before it
// publishes again after a stop or a failure, so the window only has to
// outlast a publish still on its way when the relay gave up waiting for
// it (a step ends within 9 s): in process, far less than this. JetStream
// keeps the ids of the window in serve's memory, about 200 bytes an event
// (48 MB at 2,000 events/s for the default two minutes).
const embeddedDuplicateWindow = 30 * time.Second

// streamRetention is the configured retention and replicas of the
// domains' streams, and the embedded server's duplicate window.
func streamRetention(cfg Config) nats.Option {
	r := nats.Retention{MaxAge: cfg.StreamMaxAge, MaxBytes: cfg.StreamMaxBytes}
	if cfg.NATSURL == "" {
		r.Duplicates = embeddedDuplicateWindow
	}
	retention := nats.WithRetention(r)
	replicas := nats.WithReplicas(cfg.StreamReplicas)
	return func(p *nats.Publisher) { retention(p); replicas(p) }
}

// relayConfig is the outbox relay's configuration.
func relayConfig(cfg Config, logger *slog.Logger) events.RelayConfig {
	return events.RelayConfig{Logger: logger, Retention: cfg.OutboxRetention}
}
