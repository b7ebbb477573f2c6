// Package http serves the Platform API: one REST resource per entity of each
// loaded domain, health checks, the OpenAPI document and Prometheus metrics,
// with problem+json errors and correlation ids.
package http

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/plinth-data/plinth"
)

// DefaultMaxBodyBytes bounds request bodies unless configured otherwise.
const DefaultMaxBodyBytes = 1 << 20

// Config is what a Server needs.
type Config struct {
	Store   plinth.Store
	Domains []*plinth.Domain
	// OpenAPI is the document served at /api/v1/openapi.json.
	OpenAPI []byte
	// MaxBodyBytes bounds request bodies; 0 means DefaultMaxBodyBytes.
	MaxBodyBytes int64
	Logger       *slog.Logger
	// Registry receives the HTTP metrics; nil means a new registry.
	Registry *prometheus.Registry
	// Checks are extra readiness checks by name; the store is always checked.
	Checks map[string]func(context.Context) error
	// Authorizer decides every request. It is required unless Unprotected
	// is set.
	Authorizer plinth.Authorizer
	// Access keeps service-token grants and access policies, for the admin
	// API (served only when both Access and Authorizer are set).
	Access plinth.AccessStore
	// Environment is the environment the server runs in.
	Environment string
	// Auditor records every request that touches data or access. It is
	// required unless AuditOff or Unprotected is set.
	Auditor Auditor
	// AuditOff serves without auditing, as asked explicitly (plinth serve
	// --audit=false, development only).
	AuditOff bool
	// Unprotected serves without an authorizer and without auditing. Only
	// tests of the API's own behaviour set it: protection is never turned
	// off by leaving a field empty.
	Unprotected bool
	// Events turns every committed change into an event in the outbox;
	// the store's transactions must support it (plinth.EventTx).
	Events bool
	// Audit is searched by GET /admin/v1/audit when set, unless AuditTrail
	// is set too.
	Audit plinth.AuditStore
	// AuditTrail, when set, searches the audit trail for GET
	// /admin/v1/audit instead: audit.Trail, over every store's chain when
	// plinth.yaml's stores: puts domains on several stores.
	AuditTrail AuditSearcher
	// ReportMaxDuration bounds how long one report may stream (its read
	// snapshot holds back PostgreSQL's vacuum and SQLite's WAL checkpoints
	// meanwhile); 0 means DefaultReportMaxDuration. ReportIdleTimeout drops
	// a report's client that reads nothing for that long; 0 means
	// DefaultReportIdleTimeout.
	ReportMaxDuration time.Duration
	ReportIdleTimeout time.Duration
	// DenialsPerMinute is how many denied requests per client address and
	// minute are audited one by one; the rest of the minute are counted
	// into one aggregated record. 0 means DefaultDenialsPerMinute.
	DenialsPerMinute int
	// EventsCommitted is called after a transaction that wrote events
	// commits, to wake the relay.
	EventsCommitted func()
}

// Server is the Platform API.
type Server struct {
	store   plinth.Store
	domains []*plinth.Domain
	openAPI []byte
	maxBody int64
	logger  *slog.Logger
	metrics *metrics
	checks  map[string]func(context.Context) error
	router  *chi.Mux

	authz       plinth.Authorizer
	access      plinth.AccessStore
	environment string
	auditor     Auditor
	// auditing counts the audited requests being served: a view appends
	// its own record with its read only while few are (entityHandler.view).
	auditing    atomic.Int64
	events      bool
	notify      func()
	auditSearch AuditSearcher
	denials     *denialLimiter

	reportMaxDuration time.Duration
	reportIdleTimeout time.Duration
	writer            *plinth.Writer

	reg *prometheus.Registry
}

// NewServer builds the API for the configured domains. It refuses a
// configuration that would turn protection off by omission, or a store that
// lacks what the configuration requires.
func NewServer(ctx context.Context, cfg Config) (*Server, error) {
	switch {
	case cfg.Unprotected:
	case cfg.Authorizer == nil:
		return nil, errors.New("http: an authorizer is required (Unprotected is for tests only)")
	case cfg.Auditor == nil && !cfg.AuditOff:
		return nil, errors.New("http: an auditor is required unless auditing is turned off explicitly (AuditOff)")
	}
	s := &Server{
		store:   cfg.Store,
		domains: cfg.Domains,
		openAPI: cfg.OpenAPI,
		maxBody: cfg.MaxBodyBytes,
		logger:  cfg.Logger,
		reg:     cfg.Registry,
		checks:  map[string]func(context.Context) error{"store": cfg.Store.Ping},

		authz:       cfg.Authorizer,
		access:      cfg.Access,
		environment: cfg.Environment,
		auditor:     cfg.Auditor,
		events:      cfg.Events,
		notify:      cfg.EventsCommitted,
		auditSearch: cfg.AuditTrail,
	}
	if s.notify == nil {
		s.notify = func() {}
	}
	if s.auditSearch == nil && cfg.Audit != nil {
		s.auditSearch = storeSearch{cfg.Audit}
	}
	s.reportMaxDuration, s.reportIdleTimeout = cfg.ReportMaxDuration, cfg.ReportIdleTimeout
	if s.reportMaxDuration <= 0 {
		s.reportMaxDuration = DefaultReportMaxDuration
	}
	if s.reportIdleTimeout <= 0 {
		s.reportIdleTimeout = DefaultReportIdleTimeout
	}
	if s.maxBody <= 0 {
		s.maxBody = DefaultMaxBodyBytes
	}
	if s.logger == nil {
		s.logger = slog.Default()
	}
	// Personal data never reaches the logs: every line is masked (see
	// Server.log for the values of the request at hand).
	s.logger = slog.New(plinth.MaskLogs(s.logger.Handler(), nil))
	if s.reg == nil {
		s.reg = prometheus.NewRegistry()
	}
	for name, check := range cfg.Checks {
		s.checks[name] = check
	}
	s.metrics = newMetrics(s.reg)
	var err error
	s.writer, err = plinth.NewWriter(ctx, plinth.WriterConfig{
		Store: cfg.Store, Environment: cfg.Environment, Events: cfg.Events, Audit: cfg.Auditor != nil,
		OnCommit: func(audited plinth.AuditRecord, evented bool) {
			if s.auditor != nil && audited.Stored() {
				s.auditor.Committed(audited)
			}
			if evented {
				s.notify()
			}
		},
	})
	if err != nil {
		return nil, fmt.Errorf("http: %w", err)
	}
	s.denials = newDenialLimiter(cfg.DenialsPerMinute, func(ctx context.Context, rec plinth.AuditRecord) error {
		_, err := s.auditor.Record(ctx, rec)
		return err
	}, s.logger)

	r := chi.NewRouter()
	r.Use(withCorrelation, s.observe, s.answerOptions)
	if s.authz != nil {
		r.Use(s.authenticate)
	}
	r.Use(strictQuery, middleware.GetHead)
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, r, http.StatusNotFound, "There is no route "+r.URL.Path+"; see "+plinth.RouteOpenAPI+" for the routes this API serves.")
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
		allow := s.allowedMethods(routePath(r))
		w.Header().Set("Allow", strings.Join(allow, ", "))
		writeProblem(w, r, http.StatusMethodNotAllowed, "Method "+r.Method+" is not allowed on "+r.URL.Path+"; this route allows "+strings.Join(allow, ", ")+".")
	})
	if err := s.mountRoutes(r, cfg.Domains); err != nil {
		return nil, err
	}
	s.router = r
	return s, nil
}

// Close writes what the server holds back: the aggregated audit records
// of denied requests in the current minute. Call it after the listener has
// stopped and before the auditor closes.
func (s *Server) Close() {
	if s.auditor != nil {
		s.denials.Flush()
	}
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.router.ServeHTTP(w, r) }

func (s *Server) ping(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]bool{"success": true})
}

type checkResult struct {
	OK     bool   `json:"ok"`
	Detail string `json:"detail,omitempty"`
}

// ready runs every dependency check concurrently with a short deadline.
func (s *Server) ready(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	names := make([]string, 0, len(s.checks))
	for name := range s.checks {
		names = append(names, name)
	}
	sort.Strings(names)
	results := make(map[string]checkResult, len(names))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res := checkResult{OK: true}
			if err := s.checks[name](ctx); err != nil {
				res = checkResult{OK: false, Detail: err.Error()}
				s.log(r).Warn("readiness check failed", "check", name, "error", err)
			}
			mu.Lock()
			results[name] = res
			mu.Unlock()
		}()
	}
	wg.Wait()
	ready := true
	for _, res := range results {
		ready = ready && res.OK
	}
	status := http.StatusOK
	if !ready {
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, map[string]any{"ready": ready, "checks": results})
}

func (s *Server) serveOpenAPI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(s.openAPI)
}
