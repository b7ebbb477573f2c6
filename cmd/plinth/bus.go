package main

import (
	"context"
	"fmt"
	"log/slog"

	natsgo "github.com/nats-io/nats.go"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/nats"
)

// startBus connects to the configured NATS server, or starts the embedded
// one on the data directory, and returns a publisher with one stream per
// domain. stop closes what it opened.
func startBus(ctx context.Context, cfg Config, ds []*plinth.Domain, logger *slog.Logger) (pub *nats.Publisher, stop func(), err error) {
	var nc *natsgo.Conn
	var embedded *nats.Embedded
	if cfg.NATSURL != "" {
		if nc, err = nats.Connect(cfg.NATSURL); err != nil {
			return nil, nil, err
		}
	} else {
		embedded, err = nats.StartEmbedded(nats.EmbeddedConfig{Dir: cfg.DataDir, Listen: cfg.NATSListen, Logger: logger})
		if err != nil {
			return nil, nil, fmt.Errorf("starting the embedded NATS server: %w", err)
		}
		if nc, err = embedded.Conn(); err != nil {
			embedded.Shutdown()
			return nil, nil, err
		}
	}
	stop = func() {
		_ = nc.Drain()
		nc.Close()
		if embedded != nil {
			embedded.Shutdown()
		}
	}
	pub, err = nats.NewPublisher(ctx, nc, cfg.Environment, ds)
	if err != nil {
		stop()
		return nil, nil, err
	}
	return pub, stop, nil
}
