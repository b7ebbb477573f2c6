package hub

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"time"

	"github.com/google/uuid"

	"github.com/plinth-data/plinth"
)

// Base is the path the Hub is served under.
const Base = "/hub"

//go:embed templates/*.html static/*
var assets embed.FS

// Auditor makes audit records durable; *audit.Auditor implements it (the
// same one the API records through).
type Auditor interface {
	Record(ctx context.Context, rec plinth.AuditRecord) (plinth.AuditRecord, error)
	Committed(recs ...plinth.AuditRecord)
}

// Compliance is what the running configuration does to protect data, as
// the compliance panel shows it.
type Compliance struct {
	Authorizer bool
	Audit      bool
	Outbox     bool
	// DataClass is the class of the data in the store (plinth.ClassOf).
	DataClass plinth.Provenance
}

// Config is what the Hub needs.
type Config struct {
	Domains []*plinth.Domain
	// OpenAPI is the document the API serves, rendered on each API's page.
	OpenAPI     []byte
	Environment string
	// BaseURL is where the API is served ("https://api.example.gov.uk").
	BaseURL string
	// Store keeps the Hub's state (a checkpoint) and the grants contracts make.
	Store plinth.Store
	// Authorizer signs users in (their token must verify, as on the API)
	// and issues the service tokens of contracts.
	Authorizer plinth.Authorizer
	// Auditor records every step; required unless AuditOff.
	Auditor  Auditor
	AuditOff bool
	// Compliance is shown on every API's page.
	Compliance Compliance
	// Lake is the data lake's root, where each domain's events land.
	Lake string
	// AdminGroups approve requests to domains that name no owner groups.
	AdminGroups []string
	// SecureCookies marks the session cookie Secure (serve sets it when
	// the public URL is https).
	SecureCookies bool
	// SessionLifetime bounds a sign-in; 0 means 8 hours.
	SessionLifetime time.Duration
	// SessionKeys seal the session cookie (at least 32 bytes each): the
	// first seals, all open (earlier keys, during a rotation). Every
	// replica must have the same; serve derives them from the service-token
	// secret. None: a key made at start, for one replica only.
	SessionKeys [][]byte
	// Deployments are the base URLs of other Plinth deployments whose APIs
	// the catalogue lists (read from their /hub/catalogue.json and
	// /api/v1/openapi.json); External are APIs registered by hand.
	Deployments []string
	External    []ExternalAPI
	// HTTPClient reads other deployments; http.DefaultClient when nil.
	HTTPClient *http.Client
	// AuditSearch reads the audit records a query selects, for the access
	// review's charts: serve passes the store's trail with the lake's
	// archive of records the store may have trimmed
	// (audit.SearchAllWithArchive). Nil: the review shows no charts.
	AuditSearch func(ctx context.Context, q plinth.AuditQuery, fn func(plinth.AuditRecord) error) error
	// Support, when set, carries out approved exceptions as break-glass
	// support grants (serve gives the PostgreSQL store); without it
	// exceptions are not offered.
	Support plinth.SupportGranter
	// OIDC, when set, signs users in with the organisation's OpenID
	// Connect provider; the token form stays (in development, the printed
	// token).
	OIDC   *OIDC
	Logger *slog.Logger
}

// Server serves the Hub's pages.
type Server struct {
	cfg       Config
	writer    *plinth.Writer
	auditor   Auditor
	pages     map[string]*template.Template
	mux       *http.ServeMux
	sessions  *sessions
	oidc      *oidcClient
	catalogue []apiEntry
	hubGroups map[string]bool // the groups that own an API here
	external  []apiEntry
	remote    remotes
	docs      map[string]apiDoc
	logger    *slog.Logger
}

// New builds the Hub. Like the API it refuses to run without an
// authorizer, or without an auditor unless auditing is off explicitly.
func New(ctx context.Context, cfg Config) (*Server, error) {
	switch {
	case cfg.Authorizer == nil:
		return nil, errors.New("hub: an authorizer is required")
	case cfg.Auditor == nil && !cfg.AuditOff:
		return nil, errors.New("hub: an auditor is required unless auditing is turned off explicitly (AuditOff)")
	case cfg.Store == nil:
		return nil, errors.New("hub: a store is required")
	}
	if cfg.SessionLifetime <= 0 {
		cfg.SessionLifetime = 8 * time.Hour
	}
	s := &Server{cfg: cfg, auditor: cfg.Auditor, logger: cfg.Logger}
	if s.logger == nil {
		s.logger = slog.Default()
	}
	var err error
	if s.sessions, err = newSessions(cfg.SessionKeys, cfg.SessionLifetime, cfg.Store); err != nil {
		return nil, err
	}
	if o := cfg.OIDC; o != nil {
		if o.Issuer == "" || o.ClientID == "" || o.RedirectURL == "" {
			return nil, errors.New("hub: OpenID Connect sign-in needs an issuer, a client ID and a redirect URL")
		}
		s.oidc = &oidcClient{cfg: *o}
	}
	s.writer, err = plinth.NewWriter(ctx, plinth.WriterConfig{
		Store: cfg.Store, Environment: cfg.Environment, Audit: cfg.Auditor != nil,
		OnCommit: func(audited plinth.AuditRecord, _ bool) {
			if s.auditor != nil && audited.Stored() {
				s.auditor.Committed(audited)
			}
		},
	})
	if err != nil {
		return nil, fmt.Errorf("hub: %w", err)
	}
	if s.pages, err = parsePages(); err != nil {
		return nil, err
	}
	s.catalogue = buildCatalogue(cfg)
	s.hubGroups = map[string]bool{}
	for _, a := range s.catalogue {
		for _, g := range a.OwnerGroups {
			s.hubGroups[g] = true
		}
	}
	if s.external, err = externalEntries(cfg.External, s.catalogue); err != nil {
		return nil, err
	}
	if s.docs, err = buildDocs(cfg.OpenAPI, cfg.Domains); err != nil {
		return nil, err
	}
	s.routes()
	return s, nil
}

func (s *Server) routes() {
	m := http.NewServeMux()
	static, _ := fs.Sub(assets, "static")
	m.Handle("GET "+Base+"/static/", http.StripPrefix(Base+"/static/", http.FileServerFS(static)))
	m.HandleFunc("GET "+Base+"/signin", s.signInPage)
	m.HandleFunc("GET "+Base+"/catalogue.json", s.catalogueJSON)
	m.HandleFunc("POST "+Base+"/signin", s.signIn)
	if s.oidc != nil {
		m.HandleFunc("GET "+Base+"/signin/oidc", s.oidcStart)
		m.HandleFunc("GET "+Base+"/signin/callback", s.oidcCallback)
	}
	m.HandleFunc("POST "+Base+"/signout", s.signedIn(s.signOut))
	m.HandleFunc("GET "+Base+"", s.signedIn(s.cataloguePage))
	m.HandleFunc("GET "+Base+"/{$}", s.signedIn(s.cataloguePage))
	m.HandleFunc("GET "+Base+"/apis/{api}", s.signedIn(s.apiPage))
	m.HandleFunc("GET "+Base+"/apis/{api}/access", s.signedIn(s.reviewPage))
	m.HandleFunc("GET "+Base+"/keys", s.signedIn(s.keysPage))
	m.HandleFunc("POST "+Base+"/keys", s.signedIn(s.addKey))
	m.HandleFunc("GET "+Base+"/apis/{api}/request", s.signedIn(s.requestForm))
	m.HandleFunc("POST "+Base+"/apis/{api}/request", s.signedIn(s.createRequest))
	m.HandleFunc("GET "+Base+"/apis/{api}/exception", s.signedIn(s.kindForm(KindException)))
	m.HandleFunc("POST "+Base+"/apis/{api}/exception", s.signedIn(s.fileKind(KindException)))
	m.HandleFunc("GET "+Base+"/apis/{api}/endpoint", s.signedIn(s.kindForm(KindEndpoint)))
	m.HandleFunc("POST "+Base+"/apis/{api}/endpoint", s.signedIn(s.fileKind(KindEndpoint)))
	m.HandleFunc("POST "+Base+"/requests/{id}/open", s.signedIn(s.openException))
	m.HandleFunc("GET "+Base+"/requests", s.signedIn(s.requestsPage))
	m.HandleFunc("GET "+Base+"/requests/{id}", s.signedIn(s.requestPage))
	m.HandleFunc("GET "+Base+"/requests/{id}/contract.json", s.signedIn(s.contractFile))
	m.HandleFunc("POST "+Base+"/requests/{id}/decision", s.signedIn(s.decide))
	m.HandleFunc("POST "+Base+"/requests/{id}/sign", s.signedIn(s.sign))
	m.HandleFunc("POST "+Base+"/requests/{id}/revoke", s.signedIn(s.revoke))
	s.mux = m
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	// The Hub loads nothing from elsewhere and may not be framed.
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cache-Control", "no-store")
	r = r.WithContext(withCorrelation(r.Context(), r.Header.Get("x-correlation-id")))
	h.Set("x-correlation-id", correlationFrom(r.Context()))
	s.mux.ServeHTTP(w, r)
}

type correlationKey struct{}

func withCorrelation(ctx context.Context, id string) context.Context {
	if id == "" || len(id) > 128 {
		id = uuid.NewString()
	}
	return context.WithValue(ctx, correlationKey{}, id)
}

func correlationFrom(ctx context.Context) string {
	id, _ := ctx.Value(correlationKey{}).(string)
	return id
}
