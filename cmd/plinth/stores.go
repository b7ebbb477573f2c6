package main

import (
	"context"
	"log/slog"
	"sync"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/audit"
	"github.com/plinth-data/plinth/events"
	"github.com/plinth-data/plinth/storemux"
)

// runOtherStores runs the background work of the stores besides the
// default one (plinth.yaml's stores: map): a chainer for each one's audit
// log and, when serve relays, a relay for each one's outbox. Each store
// keeps the events and audit records of the writes made in it. (Serve's
// tombstone purge goes through the Mux, which purges every store.)
func runOtherStores(ctx context.Context, wg *sync.WaitGroup, cfg Config, st plinth.Store, pub plinth.Publisher, logger *slog.Logger) {
	m, ok := st.(*storemux.Mux)
	if !ok {
		return
	}
	if cfg.Relay {
		relayOthers(ctx, wg, st, pub, relayConfig(cfg, logger))
	}
	for _, o := range m.Others() {
		as, ok := o.(plinth.AuditStore)
		if !ok {
			continue
		}
		chainer := audit.NewChainer(as, audit.ChainerConfig{Logger: logger})
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := chainer.Run(ctx); err != nil && ctx.Err() == nil {
				logger.Error("the audit chainer of another store stopped", "error", err)
			}
		}()
	}
}

// relayOthers runs a relay for the outbox of each store besides the default.
func relayOthers(ctx context.Context, wg *sync.WaitGroup, st plinth.Store, pub plinth.Publisher, rc events.RelayConfig) {
	logger := rc.Logger
	m, ok := st.(*storemux.Mux)
	if !ok {
		return
	}
	for _, o := range m.Others() {
		outbox, ok := o.(plinth.OutboxStore)
		if !ok {
			continue
		}
		relay := events.NewRelay(outbox, pub, rc)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := relay.Run(ctx); err != nil && ctx.Err() == nil {
				logger.Error("the event relay of another store stopped", "error", err)
			}
		}()
	}
}
