package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/audit"
	"github.com/plinth-data/plinth/auth"
	"github.com/plinth-data/plinth/events"
	plinthhttp "github.com/plinth-data/plinth/http"
	"github.com/plinth-data/plinth/nats"
	"github.com/plinth-data/plinth/otel"
	"github.com/plinth-data/plinth/postgres"
)

// app is what serve runs, wired once: the stores, the authorizer, the
// audit writer and chainer, the outbox relay and the HTTP handler (API and
// Hub). serve puts it behind a listener; the API as a Lambda behind API
// Gateway events; the background Lambda runs its background work.
type app struct {
	cfg     Config
	logger  *slog.Logger
	ds      []*plinth.Domain
	st      plinth.Store
	authz   *auth.Authorizer
	devMode bool
	auditor *audit.Auditor
	chainer *audit.Chainer
	relay   *events.Relay
	pub     busPublisher
	natsPub *nats.Publisher // nil when events go to SNS
	handler http.Handler
	tracing *otel.Tracing // nil unless otelEndpoint is set

	// background ends the Hub's sweep and what runBackground started on
	// it; Close cancels it and waits.
	background     context.Context
	stopBackground context.CancelFunc
	wg             sync.WaitGroup
	closers        []func() // run by Close, last first
}

// openApp wires everything serve needs; base is the public URL. Close it.
func openApp(ctx context.Context, cfg Config, base string, logger *slog.Logger) (_ *app, err error) {
	a := &app{cfg: cfg, logger: logger}
	a.background, a.stopBackground = context.WithCancel(context.Background())
	defer func() {
		if err != nil {
			a.Close() // what was opened before the failure
		}
	}()
	if cfg.OTelEndpoint != "" {
		if a.tracing, err = otel.Start(ctx, cfg.OTelEndpoint, "plinth", version); err != nil {
			return nil, err
		}
		a.onClose(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			a.tracing.Shutdown(ctx)
		})
	}
	if a.ds, err = loadDomains(cfg.Domains); err != nil {
		return nil, err
	}
	if a.st, err = openStores(ctx, cfg, a.ds); err != nil {
		return nil, err
	}
	a.onClose(func() { a.st.Close() })
	if err := a.prepareData(ctx); err != nil {
		return nil, err
	}
	auditStore, err := a.openAudit()
	if err != nil {
		return nil, err
	}
	// Change events: the transactional outbox, relayed to NATS JetStream.
	outbox, ok := a.st.(plinth.OutboxStore)
	if !ok {
		return nil, fmt.Errorf("the store cannot keep an outbox of events")
	}
	pub, natsPub, stopBus, err := openPublisher(ctx, cfg, a.ds, logger)
	if err != nil {
		return nil, err
	}
	a.pub, a.natsPub = pub, natsPub
	// The bus closes after the background work that publishes on it.
	a.onClose(stopBus)
	a.onClose(func() { a.stopBackground(); a.wg.Wait() })
	var relayPub plinth.Publisher = pub
	if a.tracing != nil {
		relayPub = a.tracing.Publisher(pub)
	}
	a.relay = events.NewRelay(outbox, relayPub, relayConfig(cfg, logger))
	return a, a.openHandler(ctx, base, auditStore)
}

// prepareData opens the authorizer, loads the access policies and checks
// (or sets) the store's data class.
func (a *app) prepareData(ctx context.Context) error {
	cfg := a.cfg
	prov, err := checkStoreClass(ctx, cfg, a.st, a.ds, a.logger)
	if err != nil {
		return err
	}
	access, err := accessStore(a.st)
	if err != nil {
		return err
	}
	if a.authz, a.devMode, err = newAuthorizer(ctx, cfg, access, a.ds); err != nil {
		return err
	}
	a.onClose(func() { a.authz.Close() })
	if err := loadPolicies(ctx, cfg, access, a.ds, a.devMode, a.logger); err != nil {
		return err
	}
	if prov.Source != plinth.SourceEmpty {
		return nil
	}
	if cfg.Environment == plinth.EnvDevelopment && cfg.DemoData && cfg.DemoResidents > 0 {
		return seedIfEmpty(ctx, a.st, a.ds, cfg.DemoResidents, a.logger)
	}
	return classEmptyStore(ctx, cfg, a.st)
}

// openAudit opens the audit writer: every request that touches data or
// access is audited; production fails closed when the audit trail cannot
// be written.
func (a *app) openAudit() (plinth.AuditStore, error) {
	auditStore, ok := a.st.(plinth.AuditStore)
	if !ok {
		return nil, fmt.Errorf("the store cannot keep an audit trail")
	}
	mirror, err := audit.OpenMirror(a.cfg.AuditMirror)
	if err != nil {
		return nil, err
	}
	// Records are appended unchained; the chainer (one per store, by
	// lease) links them into the hash chain within tens of milliseconds (a
	// quarter of a second under concurrent load on PostgreSQL:
	// ChainLinger; QuietLinger otherwise).
	a.chainer = audit.NewChainer(auditStore, audit.ChainerConfig{Logger: a.logger})
	a.auditor = audit.New(auditStore, audit.Config{Environment: a.cfg.Environment,
		FailClosed: a.cfg.Environment == plinth.EnvProduction, Mirror: mirror, Logger: a.logger,
		Chain: a.chainer.Hold})
	// Closed after the background work (registered later, so run
	// earlier): the audit writer drains last, then the mirror closes.
	a.onClose(func() {
		if err := a.auditor.Close(); err != nil {
			a.logger.Error("closing the audit writer", "error", err)
		}
		if mirror != nil {
			mirror.Close()
		}
	})
	return auditStore, nil
}

// openHandler builds the API and the Hub in front of it.
func (a *app) openHandler(ctx context.Context, base string, auditStore plinth.AuditStore) error {
	cfg, relay := a.cfg, a.relay
	var requestAuditor plinthhttp.Auditor = a.auditor
	if !cfg.Audit {
		a.logger.Warn("auditing is off (development only)")
		requestAuditor = nil
	}
	doc, err := openAPIDocument(a.ds, base, cfg.Environment)
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	opsMetrics(reg, relay, auditStore)
	if requestAuditor != nil {
		requestAuditor = newCountingAuditor(reg, requestAuditor)
	}
	access, _ := a.st.(plinth.AccessStore)
	apiStore := a.st
	if a.tracing != nil {
		apiStore = a.tracing.Store(a.st)
	}
	api, err := plinthhttp.NewServer(ctx, plinthhttp.Config{
		Registry:          reg,
		Store:             apiStore,
		Domains:           a.ds,
		OpenAPI:           doc,
		MaxBodyBytes:      cfg.MaxBodyBytes,
		ReportMaxDuration: cfg.ReportMaxDuration,
		ReportIdleTimeout: cfg.ReportIdleTimeout,
		Logger:            a.logger,
		Authorizer:        a.authz,
		Access:            access,
		Environment:       cfg.Environment,
		Auditor:           requestAuditor,
		AuditOff:          !cfg.Audit,
		Audit:             auditStore,
		AuditTrail:        audit.Trail(audit.Chains(auditStore)),
		Events:            true,
		EventsCommitted:   relay.Notify,
		Checks: map[string]func(context.Context) error{
			"bus": a.pub.Check,
			"relay": func(context.Context) error {
				if st := relay.Status(); cfg.Relay && st.LastError != nil {
					return fmt.Errorf("the event relay is failing: %w", st.LastError)
				}
				return nil
			},
		},
	})
	if err != nil {
		return err
	}
	a.onClose(api.Close) // before the auditor closes: writes the held-back denial records
	a.handler, err = withHub(ctx, cfg, api, a.st, a.ds, doc, base, a.authz, a.auditor, a.logger, a.background, &a.wg)
	if err == nil && a.tracing != nil {
		a.handler = a.tracing.Handler(a.handler)
	}
	return err
}

// runBackground starts serve's background work on ctx, each on wg: the
// outbox relay (when cfg.Relay), the audit chainer, the other stores'
// relays and chainers, the sweep of expired support roles (PostgreSQL),
// the purge of old tombstones and, when configured, lake landing.
func (a *app) runBackground(ctx context.Context, wg *sync.WaitGroup) error {
	cfg, logger := a.cfg, a.logger
	goLog := func(what string, run func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := run(ctx); err != nil && ctx.Err() == nil {
				logger.Error(what+" stopped", "error", err)
			}
		}()
	}
	if cfg.Relay {
		goLog("the event relay", a.relay.Run)
	}
	goLog("the audit chainer", a.chainer.Run)
	runOtherStores(ctx, wg, cfg, a.st, a.pub, logger)
	if pg, ok := a.st.(*postgres.Store); ok {
		goLog("the support sweep", func(ctx context.Context) error { sweepSupport(ctx, pg, logger); return nil })
	}
	goLog("the tombstone purge", func(ctx context.Context) error {
		purgeTombstones(ctx, a.st, cfg.TombstoneRetention, logger)
		return nil
	})
	switch {
	case !cfg.LakeInServe():
	case a.natsPub != nil:
		return startLake(ctx, wg, cfg, a.ds, a.st, a.natsPub, logger)
	case cfg.IsSet("lakeServe"):
		return fmt.Errorf("lakeServe: the lake lands events from NATS JetStream, and eventBus sends them to SNS; land them with plinth lake against a NATS bus, or turn lakeServe off")
	default:
		logger.Warn("no lake landing in serve: events go to SNS (eventBus)")
	}
	return nil
}

func (a *app) onClose(f func()) { a.closers = append(a.closers, f) }

// Close stops the background work, then closes the handler, the bus, the
// audit writer and the stores, in that order.
func (a *app) Close() {
	for i := len(a.closers) - 1; i >= 0; i-- {
		a.closers[i]()
	}
	a.closers = nil
	a.stopBackground()
}
