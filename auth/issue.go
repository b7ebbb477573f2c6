package auth

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"

	"github.com/plinth-data/plinth"
)

// IssueServiceToken validates a grant, stores it (with a new ID, enabled,
// created now) and returns the signed service token and the stored grant.
// The token is not stored anywhere: show it once. Problems with the grant
// come back as a *plinth.ValidationError naming each field.
func (a *Authorizer) IssueServiceToken(ctx context.Context, g plinth.Grant) (string, plinth.Grant, error) {
	return a.IssueServiceTokenIn(ctx, a.store, g)
}

// IssueServiceTokenIn is IssueServiceToken storing the grant through w.
func (a *Authorizer) IssueServiceTokenIn(ctx context.Context, w plinth.GrantWriter, g plinth.Grant) (string, plinth.Grant, error) {
	if a.cfg.ServiceSecret == nil {
		return "", plinth.Grant{}, ErrServiceTokensDisabled
	}
	now := a.now()
	g, verr := a.checkGrant(g, now)
	if verr != nil {
		return "", plinth.Grant{}, verr
	}
	g.ID = uuid.NewString()
	g.Enabled = true
	g.CreatedAt = plinth.Now()
	g.UpdatedAt = g.CreatedAt
	t := jwt.NewWithClaims(jwt.SigningMethodHS256, tokenClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    ServiceIssuer,
			Subject:   g.Consumer,
			ID:        g.ID,
			ExpiresAt: jwt.NewNumericDate(g.ExpiresAt),
			IssuedAt:  jwt.NewNumericDate(now),
		},
		Consumer: g.Consumer,
	})
	t.Header["kid"] = ServiceKeyID(a.cfg.ServiceSecret)
	tok, err := t.SignedString(a.cfg.ServiceSecret)
	if err != nil {
		return "", plinth.Grant{}, fmt.Errorf("auth: signing the service token: %w", err)
	}
	if err := w.CreateGrant(ctx, g); err != nil {
		return "", plinth.Grant{}, fmt.Errorf("auth: storing the grant: %w", err)
	}
	return tok, g, nil
}

// checkGrant normalises a requested grant (trimmed names, upper-case
// methods without repeats, expiry in UTC whole seconds, as the token
// carries it) and lists its problems.
func (a *Authorizer) checkGrant(g plinth.Grant, now time.Time) (plinth.Grant, error) {
	var problems []plinth.FieldError
	add := func(field, format string, args ...any) {
		problems = append(problems, plinth.FieldError{Field: field, Detail: fmt.Sprintf(format, args...)})
	}
	for _, f := range []struct {
		name string
		v    *string
	}{
		{"consumer", &g.Consumer},
		{"consumerType", &g.ConsumerType},
		{"api", &g.API},
		{"endpoint", &g.Endpoint},
		{"environment", &g.Environment},
		{"requestedBy", &g.RequestedBy},
		{"authorisedBy", &g.AuthorisedBy},
	} {
		*f.v = strings.TrimSpace(*f.v)
		if *f.v == "" {
			add(f.name, "is required")
		}
	}

	var ep *endpoint
	if g.API != "" {
		eps, ok := a.routes.endpoints[g.API]
		switch {
		case !ok:
			add("api", "%q is not a loaded domain; loaded: %s", g.API, strings.Join(a.routes.domains, ", "))
		case g.Endpoint != "":
			valid := make([]string, len(eps))
			for i := range eps {
				valid[i] = eps[i].template
				if eps[i].template == g.Endpoint {
					ep = &eps[i]
				}
			}
			if ep == nil {
				add("endpoint", "%q is not a route template of the %s API; valid: %s", g.Endpoint, g.API, strings.Join(valid, ", "))
			}
		}
	}

	methods := make([]string, 0, len(g.Methods))
	for _, m := range g.Methods {
		m = strings.ToUpper(strings.TrimSpace(m))
		if !slices.Contains(methods, m) {
			methods = append(methods, m)
		}
	}
	g.Methods = methods
	switch {
	case len(methods) == 0:
		add("methods", "at least one method is required")
	case ep != nil:
		for _, m := range methods {
			if !slices.Contains(ep.methods, m) {
				add("methods", "%q is not a method of %s; valid: %s", m, ep.template, strings.Join(ep.methods, ", "))
			}
		}
	}

	switch g.Environment {
	case "", plinth.EnvDevelopment, plinth.EnvStaging, plinth.EnvProduction:
	default:
		add("environment", "%q is not one of development, staging, production", g.Environment)
	}

	g.ExpiresAt = g.ExpiresAt.UTC().Truncate(time.Second)
	maxLife := a.cfg.MaxServiceTokenLifetime
	switch {
	case g.ExpiresAt.IsZero():
		add("expiresAt", "is required")
	case !g.ExpiresAt.After(now):
		add("expiresAt", "must be in the future")
	case g.ExpiresAt.After(now.Add(maxLife)):
		add("expiresAt", "must be at most %s from now", lifetime(maxLife))
	}

	if problems != nil {
		return g, &plinth.ValidationError{Errors: problems}
	}
	return g, nil
}

// lifetime writes a duration in days when it is whole days.
func lifetime(d time.Duration) string {
	if d >= 24*time.Hour && d%(24*time.Hour) == 0 {
		n := int(d / (24 * time.Hour))
		if n == 1 {
			return "1 day"
		}
		return fmt.Sprintf("%d days", n)
	}
	return d.String()
}

// IssueUserToken signs an HS256 user token with UserSecret for the
// principal, valid for ttl, carrying the configured issuer and audience:
// for development tokens and tests.
func (a *Authorizer) IssueUserToken(p plinth.Principal, ttl time.Duration) (string, error) {
	if a.cfg.UserSecret == nil {
		return "", ErrUserTokensDisabled
	}
	if ttl <= 0 {
		return "", errors.New("auth: a user token needs a positive lifetime")
	}
	if p.Subject == "" && p.Email == "" {
		return "", errors.New("auth: a user token needs a subject or an e-mail address")
	}
	now := a.now()
	c := tokenClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    a.cfg.Issuer,
			Subject:   p.Subject,
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
		},
		Email:  p.Email,
		Name:   p.Name,
		Groups: p.Groups,
	}
	if a.cfg.Audience != "" {
		c.Audience = jwt.ClaimStrings{a.cfg.Audience}
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(a.cfg.UserSecret)
}
