// Package auth is Plinth's authorizer: it verifies user tokens (HS256 with a
// shared secret, or RS256/ES256 through a JWKS) and Plinth's own service
// tokens, and decides with the access policies and service-token grants of
// an AccessStore whether a request may go ahead. The HTTP middleware and the
// Lambda authorizer both call Decide, so the same rules hold on a server and
// behind API Gateway.
//
// Revocation bound: grants and access policies are cached for at most
// CacheTTL (never more than MaxCacheTTL, 5 s), and a verified token is
// remembered for at most CacheTTL too, so disabling a grant or changing a
// policy takes effect within 5 s, and a key removed from a JWKS stops
// verifying within 5 s of Plinth reading the new JWKS (a JWKS URL is
// re-fetched every 5 min to 1 h, following its Cache-Control, and when a
// token names an unknown kid, at most every 10 s; a JWKS file is re-read
// when it changes).
package auth

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/plinth-data/plinth"
)

// Defaults and bounds of Config.
const (
	DefaultClockSkew               = 30 * time.Second
	DefaultMaxServiceTokenLifetime = 365 * 24 * time.Hour
	// MaxCacheTTL bounds how long a grant, a policy or a verified token is
	// used without asking the store (or the key source) again: the
	// documented revocation bound.
	MaxCacheTTL = 5 * time.Second
	// ServiceIssuer is the iss claim of the service tokens Plinth signs.
	ServiceIssuer = "plinth"
)

// Config says which tokens the authorizer accepts and how it caches.
type Config struct {
	Environment string // development | staging | production
	// UserSecret is the HS256 shared secret of user tokens (the
	// organisation's SSO); nil: HS256 user tokens are not accepted.
	UserSecret []byte
	// JWKSURL is the http(s) URL of a JWKS for RS256/ES256 user tokens. It is
	// fetched at start, cached, refreshed periodically and, rate-limited,
	// when a token names an unknown kid.
	JWKSURL string
	// JWKSFile is a JWKS file instead of a URL, re-read when it changes or,
	// rate-limited, when a token names an unknown kid.
	JWKSFile string
	// Issuer and Audience, when set, must be the iss and (one of the) aud of
	// user tokens.
	Issuer   string
	Audience string
	// ClockSkew is the leeway for exp, nbf and iat; 0 means DefaultClockSkew.
	ClockSkew time.Duration
	// ServiceSecret is the HS256 key Plinth signs and verifies its service
	// tokens with; nil: service tokens are disabled.
	ServiceSecret []byte
	// PreviousUserSecrets are earlier HS256 user secrets still accepted
	// during a key rotation window; empty outside one.
	PreviousUserSecrets [][]byte
	// PreviousServiceSecrets are earlier service-token keys still accepted
	// during a rotation window, selected by the token's kid (ServiceKeyID);
	// new tokens are signed with ServiceSecret.
	PreviousServiceSecrets [][]byte
	// MaxServiceTokenLifetime bounds a grant's expiry from its issue; 0
	// means DefaultMaxServiceTokenLifetime.
	MaxServiceTokenLifetime time.Duration
	// AdminGroups may use /admin/v1/...
	AdminGroups []string
	// AuditorGroups may search the audit trail (GET /admin/v1/audit) and
	// nothing else of the admin API.
	AuditorGroups []string
	// CacheTTL is how long grants, policies and verified tokens are cached;
	// 0 means, and values above are capped to, MaxCacheTTL.
	CacheTTL time.Duration
}

// ErrServiceTokensDisabled is returned by IssueServiceToken when no
// ServiceSecret is configured, and ErrUserTokensDisabled by IssueUserToken
// when no UserSecret is.
var (
	ErrServiceTokensDisabled = errors.New("auth: service tokens are disabled: no service secret is configured")
	ErrUserTokensDisabled    = errors.New("auth: HS256 user tokens are disabled: no user secret is configured")
)

// Authorizer decides requests. It is safe for concurrent use.
type Authorizer struct {
	cfg      Config
	store    plinth.AccessStore
	routes   *routeTable
	keys     keySource // nil when neither JWKSURL nor JWKSFile is set
	tokens   *tokenCache
	policies *policyCache
	grants   *grantCache
	now      func() time.Time

	userMethods []string // the algs accepted for user tokens

	closeOnce sync.Once
}

// The entry points (http, lambda) know the authorizer only by the domain
// language's interface.
var _ plinth.Authorizer = (*Authorizer)(nil)

// New builds an authorizer for the domains. With a JWKSURL it fetches the
// JWKS before it returns, failing when it cannot (ctx bounds that fetch),
// and keeps refreshing it in the background until Close.
func New(ctx context.Context, cfg Config, store plinth.AccessStore, domains []*plinth.Domain) (*Authorizer, error) {
	switch cfg.Environment {
	case plinth.EnvDevelopment, plinth.EnvStaging, plinth.EnvProduction:
	default:
		return nil, fmt.Errorf("auth: environment %q is not one of development, staging, production", cfg.Environment)
	}
	if store == nil {
		return nil, errors.New("auth: no access store")
	}
	if cfg.JWKSURL != "" && cfg.JWKSFile != "" {
		return nil, errors.New("auth: configure a JWKS URL or a JWKS file, not both")
	}
	if cfg.UserSecret != nil && len(cfg.UserSecret) == 0 {
		return nil, errors.New("auth: the user secret is empty; leave it nil to refuse HS256 user tokens")
	}
	if cfg.ServiceSecret != nil && len(cfg.ServiceSecret) == 0 {
		return nil, errors.New("auth: the service secret is empty; leave it nil to disable service tokens")
	}
	if cfg.UserSecret != nil && bytes.Equal(cfg.UserSecret, cfg.ServiceSecret) {
		return nil, errors.New("auth: the user secret and the service secret must differ, or user tokens could pass as service tokens")
	}
	if err := checkRotation(cfg); err != nil {
		return nil, err
	}
	if cfg.ClockSkew <= 0 {
		cfg.ClockSkew = DefaultClockSkew
	}
	if cfg.MaxServiceTokenLifetime <= 0 {
		cfg.MaxServiceTokenLifetime = DefaultMaxServiceTokenLifetime
	}
	if cfg.CacheTTL <= 0 || cfg.CacheTTL > MaxCacheTTL {
		cfg.CacheTTL = MaxCacheTTL
	}
	cfg.AdminGroups = append([]string(nil), cfg.AdminGroups...)
	cfg.AuditorGroups = append([]string(nil), cfg.AuditorGroups...)
	routes, err := newRouteTable(domains)
	if err != nil {
		return nil, err
	}
	a := &Authorizer{
		cfg:      cfg,
		store:    store,
		routes:   routes,
		tokens:   newTokenCache(defaultTokenCacheSize),
		policies: &policyCache{},
		grants:   newGrantCache(defaultGrantCacheSize),
		now:      time.Now,
	}
	if cfg.UserSecret != nil {
		a.userMethods = append(a.userMethods, "HS256")
	}
	switch {
	case cfg.JWKSURL != "":
		a.keys, err = newURLKeys(ctx, cfg.JWKSURL)
	case cfg.JWKSFile != "":
		a.keys, err = newFileKeys(cfg.JWKSFile)
	}
	if err != nil {
		return nil, err
	}
	if a.keys != nil {
		a.userMethods = append(a.userMethods, asymmetricAlgs...)
	}
	return a, nil
}

// Close stops the JWKS refresher. Decide still works after Close, with the
// keys it has and without refreshing them.
func (a *Authorizer) Close() {
	a.closeOnce.Do(func() {
		if a.keys != nil {
			a.keys.close()
		}
	})
}

// Route classifies a request: ok is false for a path (or method) that is
// not a route Plinth knows, which needs a valid token and is then left to
// the router (404 or 405).
func (a *Authorizer) Route(method, path string) (plinth.Route, bool) {
	return a.routes.match(method, path)
}

// Decide says whether the request may go ahead, and as whom.
func (a *Authorizer) Decide(ctx context.Context, r plinth.AuthRequest) plinth.Decision {
	route, known := a.routes.match(r.Method, r.Path)
	d := plinth.Decision{Route: route}
	if known && route.Operation == plinth.OpPublic {
		d.Allow, d.Status = true, http.StatusOK
		return d
	}
	raw, ok := bearer(r.Authorization)
	if !ok {
		return deny(d, http.StatusUnauthorized, plinth.ReasonMissingToken)
	}
	now := a.now()
	tok, reason := a.verify(ctx, raw, now)
	if tok == nil {
		return deny(d, http.StatusUnauthorized, reason)
	}
	d.Principal = tok.principal
	if tok.service {
		return a.decideService(ctx, d, known, r.Method, tok, now)
	}
	if !known {
		d.Allow, d.Status = true, http.StatusOK
		return d
	}
	return a.decideUser(ctx, d, r.Method, tok.principal.Groups)
}

func deny(d plinth.Decision, status int, reason string) plinth.Decision {
	d.Allow, d.Status, d.Reason = false, status, reason
	return d
}

func (a *Authorizer) decideUser(ctx context.Context, d plinth.Decision, method string, groups []string) plinth.Decision {
	route := d.Route
	if route.Template == plinth.RouteReports {
		return allowIndex(d)
	}
	if route.Operation == plinth.OpAdmin {
		auditor := route.Template == plinth.RouteAudit && method == http.MethodGet && intersects(groups, a.cfg.AuditorGroups)
		if !auditor && !intersects(groups, a.cfg.AdminGroups) {
			return deny(d, http.StatusForbidden, "the token's groups may not use the admin API")
		}
		d.Allow, d.Status = true, http.StatusOK
		return d
	}
	pols, err := a.policies.get(ctx, a.store, a.cfg.Environment, a.cfg.CacheTTL, a.now)
	if err != nil {
		return deny(d, http.StatusServiceUnavailable, plinth.ReasonUnavailable)
	}
	p := pols[route.Domain]
	if p == nil {
		return deny(d, http.StatusForbidden, "no access policy for domain "+route.Domain+" in environment "+a.cfg.Environment)
	}
	read, write := entityGroups(p, route.Entity)
	mayRead := intersects(groups, read) || (p.WriteImpliesRead && intersects(groups, write))
	var allowed bool
	switch route.Operation {
	case plinth.OpRead:
		allowed = mayRead
	case plinth.OpWrite:
		allowed = intersects(groups, write)
	case plinth.OpReport:
		allowed = intersects(groups, p.ReportingGroups)
	}
	if !allowed {
		return deny(d, http.StatusForbidden, "the token's groups may not "+string(route.Operation)+" "+route.Entity)
	}
	d.Allow, d.Status, d.MayRead = true, http.StatusOK, mayRead
	return d
}

// entityGroups returns the groups that may read and write one entity: the
// domain's, unless the entity overrides them.
func entityGroups(p *plinth.AccessPolicy, entity string) (read, write []string) {
	read, write = p.ReadGroups, p.WriteGroups
	if ep, ok := p.Entities[entity]; ok {
		if ep.ReadGroups != nil {
			read = ep.ReadGroups
		}
		if ep.WriteGroups != nil {
			write = ep.WriteGroups
		}
	}
	return read, write
}

func (a *Authorizer) decideService(ctx context.Context, d plinth.Decision, known bool, method string, tok *verified, now time.Time) plinth.Decision {
	g, found, err := a.grants.get(ctx, a.store, tok.principal.TokenID, a.cfg.CacheTTL, now)
	switch {
	case err != nil:
		return deny(d, http.StatusServiceUnavailable, plinth.ReasonUnavailable)
	case !found:
		return deny(d, http.StatusUnauthorized, "the service token's grant does not exist")
	case g.Consumer != tok.principal.Consumer:
		return deny(d, http.StatusUnauthorized, "the service token does not match its grant")
	case !g.Enabled:
		return deny(d, http.StatusForbidden, "the service token has been revoked")
	case !g.ExpiresAt.IsZero() && !now.Before(g.ExpiresAt):
		return deny(d, http.StatusForbidden, "the service token's grant has expired")
	case g.Environment != a.cfg.Environment:
		return deny(d, http.StatusForbidden, "the service token is for the "+g.Environment+" environment, not "+a.cfg.Environment)
	}
	if !known {
		d.Allow, d.Status = true, http.StatusOK
		return d
	}
	if d.Route.Template == plinth.RouteReports {
		return allowIndex(d)
	}
	route := d.Route
	switch {
	case route.Operation == plinth.OpAdmin:
		return deny(d, http.StatusForbidden, "service tokens may not use the admin API")
	case g.API != route.Domain:
		return deny(d, http.StatusForbidden, "the service token is for the "+g.API+" API, not "+route.Domain)
	case g.Endpoint != route.Template:
		return deny(d, http.StatusForbidden, "the service token does not grant "+route.Template)
	case !methodGranted(g.Methods, method):
		return deny(d, http.StatusForbidden, "the service token does not grant "+method+" on "+route.Template)
	}
	// A grant names one endpoint of the entity: with GET on it, its holder
	// may read the entity's records.
	d.Allow, d.Status, d.MayRead = true, http.StatusOK, methodGranted(g.Methods, http.MethodGet)
	return d
}

// allowIndex admits any valid token to the list of reports: the list shows
// only the entities the token may report on.
func allowIndex(d plinth.Decision) plinth.Decision {
	d.Allow, d.Status = true, http.StatusOK
	return d
}

// methodGranted reports whether method is among the granted ones; HEAD is
// granted with GET.
func methodGranted(methods []string, method string) bool {
	for _, m := range methods {
		if m == method || (method == http.MethodHead && m == http.MethodGet) {
			return true
		}
	}
	return false
}

// intersects reports whether a and b share an element. Both are short, so
// the nested loop beats building a set.
func intersects(a, b []string) bool {
	for _, x := range a {
		for _, y := range b {
			if x == y {
				return true
			}
		}
	}
	return false
}

// bearer extracts the token of an Authorization header value.
func bearer(h string) (string, bool) {
	const scheme = "Bearer "
	if len(h) < len(scheme) || !strings.EqualFold(h[:len(scheme)], scheme) {
		return "", false
	}
	tok := strings.TrimSpace(h[len(scheme):])
	return tok, tok != ""
}
