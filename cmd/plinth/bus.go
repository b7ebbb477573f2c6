package main

import (
	"context"
	"log/slog"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/nats"
)

// startBus opens the configured NATS (external, or embedded on the data
// directory, reachable at natsListen when set) and returns a publisher
// with one stream per domain. stop closes what it opened.
func startBus(ctx context.Context, cfg Config, ds []*plinth.Domain, logger *slog.Logger) (pub *nats.Publisher, stop func(), err error) {
	bus, err := openEventBus(cfg, cfg.NATSListen, logger)
	if err != nil {
		return nil, nil, err
	}
	pub, err = nats.NewPublisher(ctx, bus.nc, cfg.Environment, ds)
	if err != nil {
		bus.Close()
		return nil, nil, err
	}
	logger.Info("event bus", "nats", bus.where)
	return pub, bus.Close, nil
}
