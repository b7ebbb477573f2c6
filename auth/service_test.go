package auth

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/plinthtest"
)

func grantFor(endpoint string, methods ...string) plinth.Grant {
	api := "residents"
	if strings.Contains(endpoint, "contacts") {
		api = "contacts"
	}
	return plinth.Grant{
		Consumer:     "housing-benefits-listener",
		ConsumerType: "listener",
		API:          api,
		Endpoint:     endpoint,
		Methods:      methods,
		Environment:  plinth.EnvDevelopment,
		ExpiresAt:    time.Now().Add(30 * 24 * time.Hour),
		RequestedBy:  "dev.lead@example.gov.uk",
		AuthorisedBy: "product.owner@example.gov.uk",
	}
}

// serviceJWT signs service-token claims as Plinth would, with key.
func serviceJWT(t testing.TB, key []byte, jti, consumer string, exp time.Time) string {
	return sign(t, jwt.SigningMethodHS256, key, "", jwt.MapClaims{
		"iss": ServiceIssuer, "sub": consumer, "jti": jti, "consumer": consumer,
		"iat": time.Now().Unix(), "exp": exp.Unix(),
	})
}

func TestServiceTokens(t *testing.T) {
	ttl := 50 * time.Millisecond
	f := newFixture(t, func(c *Config) { c.CacheTTL = ttl })
	ctx := context.Background()

	tok, g, err := f.a.IssueServiceToken(ctx, grantFor("/api/v1/residents/{id}", "GET"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := uuid.Parse(g.ID); err != nil || !g.Enabled || g.CreatedAt.IsZero() || !g.UpdatedAt.Equal(g.CreatedAt) {
		t.Fatalf("stored grant: %+v", g)
	}
	stored, err := f.store.Grant(ctx, g.ID)
	if err != nil || stored.Endpoint != g.Endpoint || !stored.Enabled || !stored.ExpiresAt.Equal(g.ExpiresAt) {
		t.Fatalf("grant in the store: %+v %v", stored, err)
	}
	// The token carries only the grant id and consumer.
	var c jwt.MapClaims
	if _, _, err := jwt.NewParser().ParseUnverified(tok, &c); err != nil {
		t.Fatal(err)
	}
	if c["jti"] != g.ID || c["consumer"] != g.Consumer || c["sub"] != g.Consumer || c["iss"] != ServiceIssuer ||
		int64(c["exp"].(float64)) != g.ExpiresAt.Unix() || c["iat"] == nil || c["groups"] != nil || c["endpoint"] != nil {
		t.Fatalf("claims %v", c)
	}

	writer, _, err := f.a.IssueServiceToken(ctx, grantFor("/api/v1/residents", "post", "GET", "POST"))
	if err != nil {
		t.Fatal(err)
	}
	staging := grantFor("/api/v1/residents/{id}", "GET")
	staging.Environment = plinth.EnvStaging
	stagingTok, _, err := f.a.IssueServiceToken(ctx, staging)
	if err != nil {
		t.Fatal(err)
	}
	reports, _, err := f.a.IssueServiceToken(ctx, grantFor("/api/v1/reports/residents", "GET"))
	if err != nil {
		t.Fatal(err)
	}

	// A grant that has expired in the store while its JWT has not.
	expired := grantFor("/api/v1/residents/{id}", "GET")
	expired.ID, expired.Enabled, expired.ExpiresAt = uuid.NewString(), true, time.Now().Add(-time.Minute)
	if err := f.store.CreateGrant(ctx, expired); err != nil {
		t.Fatal(err)
	}
	expiredInStore := serviceJWT(t, serviceSecret, expired.ID, expired.Consumer, time.Now().Add(time.Hour))

	runDecideCases(t, f, []decideCase{
		{"granted endpoint and method", tok, "GET", "/api/v1/residents/42", 200, ""},
		{"HEAD with GET granted", tok, "HEAD", "/api/v1/residents/42", 200, ""},
		{"another endpoint of the API", tok, "GET", "/api/v1/residents", 403, "does not grant /api/v1/residents"},
		{"another method", tok, "PATCH", "/api/v1/residents/42", 403, "does not grant PATCH"},
		{"DELETE", tok, "DELETE", "/api/v1/residents/42", 403, ""},
		{"another API", tok, "GET", "/api/v1/contacts/42", 403, "residents API, not contacts"},
		{"another API's same-shaped endpoint", tok, "GET", "/api/v1/tenancies/42", 403, ""},
		{"another environment", stagingTok, "GET", "/api/v1/residents/42", 403, "staging environment"},
		{"admin route", tok, "GET", "/admin/v1/tokens", 403, "admin API"},
		{"public route", tok, "GET", "/api/v1/healthcheck/ping", 200, ""},
		{"unknown path", tok, "GET", "/api/v1/nothing", 200, ""},
		{"unknown path, other environment", stagingTok, "GET", "/api/v1/nothing", 403, ""},
		{"collection grant: list", writer, "GET", "/api/v1/residents", 200, ""},
		{"collection grant: create", writer, "POST", "/api/v1/residents", 200, ""},
		{"collection grant: not the item (no substring match)", writer, "GET", "/api/v1/residents/1", 403, ""},
		{"collection grant: lookalike path", writer, "GET", "/api/v1/residents-evil", 200, ""}, // unknown route: router 404s
		{"reporting grant", reports, "GET", "/api/v1/reports/residents", 200, ""},
		{"reporting grant on the list", reports, "GET", "/api/v1/residents", 403, ""},
		{"reporting grant on the deletions", reports, "GET", "/api/v1/reports/residents/deletions", 403, ""},
		{"any service token may list reports", tok, "GET", "/api/v1/reports", 200, ""},
		{"the reporting endpoint", tok, "GET", "/api/v1/reports/residents", 403, ""},
		{"expired in the store, not in the JWT", expiredInStore, "GET", "/api/v1/residents/42", 403, "expired"},
		{"expired JWT", serviceJWT(t, serviceSecret, g.ID, g.Consumer, time.Now().Add(-time.Hour)), "GET", "/api/v1/residents/42", 401, "token expired"},
		{"unknown grant", serviceJWT(t, serviceSecret, uuid.NewString(), g.Consumer, time.Now().Add(time.Hour)), "GET", "/api/v1/residents/42", 401, "grant does not exist"},
		{"consumer differs from the grant", serviceJWT(t, serviceSecret, g.ID, "someone-else", time.Now().Add(time.Hour)), "GET", "/api/v1/residents/42", 401, ""},
		{"forged service token", serviceJWT(t, []byte("guessed-service-secret-0123456789abcdef"), g.ID, g.Consumer, time.Now().Add(time.Hour)), "GET", "/api/v1/residents/42", 401, ""},
		{"service claims signed with the user secret", serviceJWT(t, userSecret, g.ID, g.Consumer, time.Now().Add(time.Hour)), "GET", "/api/v1/residents/42", 401, "issuer"},
		{"no jti", sign(t, jwt.SigningMethodHS256, serviceSecret, "", jwt.MapClaims{"iss": ServiceIssuer, "consumer": "x", "exp": time.Now().Add(time.Hour).Unix()}), "GET", "/api/v1/residents/42", 401, "malformed"},
		{"RS256 with iss plinth", rs1(t, with(claims("residents-readers"), "iss", ServiceIssuer)), "GET", "/api/v1/residents/42", 401, "issuer"},
	})

	t.Run("principal", func(t *testing.T) {
		d := f.decide(tok, "GET", "/api/v1/residents/42")
		want := plinth.Principal{Subject: g.Consumer, TokenID: g.ID, Consumer: g.Consumer}
		if !equalPrincipal(d.Principal, want) || !d.Principal.IsService() {
			t.Fatalf("principal %+v, want %+v", d.Principal, want)
		}
	})

	t.Run("revoked within the cache TTL", func(t *testing.T) {
		if d := f.decide(tok, "GET", "/api/v1/residents/42"); d.Status != 200 {
			t.Fatalf("before revoking: %d %q", d.Status, d.Reason)
		}
		if _, err := f.store.SetGrantEnabled(ctx, g.ID, false); err != nil {
			t.Fatal(err)
		}
		revokedAt := time.Now()
		// Not a wait for a condition: the test is that a revocation shows
		// within CacheTTL, so the TTL passes and one decision must see it.
		time.Sleep(ttl + 10*time.Millisecond)
		d := f.decide(tok, "GET", "/api/v1/residents/42")
		if d.Status != 403 || d.Allow || !strings.Contains(d.Reason, "revoked") {
			t.Fatalf("%v after revoking: %d %q", time.Since(revokedAt), d.Status, d.Reason)
		}
		if _, err := f.store.SetGrantEnabled(ctx, g.ID, true); err != nil {
			t.Fatal(err)
		}
		time.Sleep(ttl + 10*time.Millisecond) // the TTL passes, as above
		if d := f.decide(tok, "GET", "/api/v1/residents/42"); d.Status != 200 {
			t.Fatalf("re-enabled: %d %q", d.Status, d.Reason)
		}
	})
}

// With the default 5 s bound, a revocation still shows within 5 s.
func TestRevocationDefaultBound(t *testing.T) {
	if testing.Short() {
		t.Skip("waits 5 s")
	}
	f := newFixture(t, func(c *Config) { c.JWKSURL = "" })
	ctx := context.Background()
	tok, g, err := f.a.IssueServiceToken(ctx, grantFor("/api/v1/residents/{id}", "GET"))
	if err != nil {
		t.Fatal(err)
	}
	if d := f.decide(tok, "GET", "/api/v1/residents/1"); d.Status != 200 {
		t.Fatal(d.Reason)
	}
	if _, err := f.store.SetGrantEnabled(ctx, g.ID, false); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	plinthtest.Eventually(t, MaxCacheTTL+100*time.Millisecond, func() bool {
		return f.decide(tok, "GET", "/api/v1/residents/1").Status != 200
	}, "still allowed after revoking")
	t.Logf("revocation took effect after %v", time.Since(start).Round(time.Millisecond))
}

// A user token that claims iss "plinth" is a user token unless it verifies
// with the service secret.
func TestUserTokenWithPlinthIssuer(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.Issuer = ""; c.Audience = "" })
	_, g, err := f.a.IssueServiceToken(context.Background(), grantFor("/api/v1/residents/{id}", "GET"))
	if err != nil {
		t.Fatal(err)
	}
	user := hs(t, jwt.MapClaims{
		"iss": ServiceIssuer, "sub": "mallory", "jti": g.ID, "consumer": g.Consumer,
		"groups": []string{"residents-readers"}, "exp": time.Now().Add(time.Hour).Unix(),
	})
	d := f.decide(user, "GET", "/api/v1/residents")
	if d.Status != 200 || d.Principal.IsService() || d.Principal.Subject != "mallory" {
		t.Fatalf("got %d %q %+v", d.Status, d.Reason, d.Principal)
	}
	// As a user without write groups it may not write, whatever its jti.
	if d := f.decide(user, "DELETE", "/api/v1/residents/1"); d.Status != 403 || d.Principal.IsService() {
		t.Fatalf("write: %d %+v", d.Status, d.Principal)
	}
}

func TestServiceTokensDisabled(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.ServiceSecret = nil })
	if _, _, err := f.a.IssueServiceToken(context.Background(), grantFor("/api/v1/residents/{id}", "GET")); !errors.Is(err, ErrServiceTokensDisabled) {
		t.Fatalf("err %v", err)
	}
	tok := serviceJWT(t, serviceSecret, uuid.NewString(), "x", time.Now().Add(time.Hour))
	if d := f.decide(tok, "GET", "/api/v1/residents/1"); d.Status != 401 {
		t.Fatalf("service token with service tokens disabled: %d", d.Status)
	}
}

func TestIssueServiceTokenValidation(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.MaxServiceTokenLifetime = 90 * 24 * time.Hour; c.JWKSURL = "" })
	ok := grantFor("/api/v1/residents/{id}", "GET")
	cases := []struct {
		name   string
		edit   func(*plinth.Grant)
		fields []string // the fields named, in order
		detail string   // a substring of the first detail
	}{
		{"missing consumer", func(g *plinth.Grant) { g.Consumer = " " }, []string{"consumer"}, "required"},
		{"missing consumer type", func(g *plinth.Grant) { g.ConsumerType = "" }, []string{"consumerType"}, "required"},
		{"missing requested-by", func(g *plinth.Grant) { g.RequestedBy = "" }, []string{"requestedBy"}, "required"},
		{"missing authorised-by", func(g *plinth.Grant) { g.AuthorisedBy = "" }, []string{"authorisedBy"}, "required"},
		{"missing api", func(g *plinth.Grant) { g.API = "" }, []string{"api"}, "required"},
		{"unknown api", func(g *plinth.Grant) { g.API = "benefits" }, []string{"api"}, "contacts, residents, housing"},
		{"missing endpoint", func(g *plinth.Grant) { g.Endpoint = "" }, []string{"endpoint"}, "required"},
		{"endpoint of another api", func(g *plinth.Grant) { g.Endpoint = "/api/v1/contacts/{id}" }, []string{"endpoint"}, "/api/v1/residents, /api/v1/residents/{id}"},
		{"endpoint substring", func(g *plinth.Grant) { g.Endpoint = "/api/v1/resid" }, []string{"endpoint"}, "not a route template"},
		{"endpoint concrete path", func(g *plinth.Grant) { g.Endpoint = "/api/v1/residents/42" }, []string{"endpoint"}, ""},
		{"endpoint with a trailing slash", func(g *plinth.Grant) { g.Endpoint = "/api/v1/residents/" }, []string{"endpoint"}, ""},
		{"no methods", func(g *plinth.Grant) { g.Methods = nil }, []string{"methods"}, "at least one"},
		{"POST on an item", func(g *plinth.Grant) { g.Methods = []string{"GET", "POST"} }, []string{"methods"}, `"POST" is not a method of /api/v1/residents/{id}; valid: GET, PATCH, DELETE`},
		{"PATCH on the collection", func(g *plinth.Grant) { g.Endpoint = "/api/v1/residents"; g.Methods = []string{"PATCH"} }, []string{"methods"}, "valid: GET, POST"},
		{"POST on reports", func(g *plinth.Grant) { g.Endpoint = "/api/v1/reports/residents"; g.Methods = []string{"POST"} }, []string{"methods"}, ""},
		{"unknown method", func(g *plinth.Grant) { g.Methods = []string{"FETCH"} }, []string{"methods"}, ""},
		{"bad environment", func(g *plinth.Grant) { g.Environment = "prod" }, []string{"environment"}, "development, staging, production"},
		{"missing environment", func(g *plinth.Grant) { g.Environment = "" }, []string{"environment"}, "required"},
		{"no expiry", func(g *plinth.Grant) { g.ExpiresAt = time.Time{} }, []string{"expiresAt"}, "required"},
		{"expiry in the past", func(g *plinth.Grant) { g.ExpiresAt = time.Now().Add(-time.Hour) }, []string{"expiresAt"}, "future"},
		{"expiry beyond the maximum", func(g *plinth.Grant) { g.ExpiresAt = time.Now().Add(91 * 24 * time.Hour) }, []string{"expiresAt"}, "at most 90 days"},
		{"several problems", func(g *plinth.Grant) { g.Consumer = ""; g.Methods = nil; g.ExpiresAt = time.Time{} }, []string{"consumer", "methods", "expiresAt"}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := ok
			g.Methods = slices.Clone(ok.Methods)
			c.edit(&g)
			tok, _, err := f.a.IssueServiceToken(context.Background(), g)
			var ve *plinth.ValidationError
			if !errors.As(err, &ve) || tok != "" {
				t.Fatalf("err %v, token %q", err, tok)
			}
			var fields []string
			for _, fe := range ve.Errors {
				fields = append(fields, fe.Field)
			}
			if !slices.Equal(fields, c.fields) {
				t.Fatalf("fields %v, want %v (%v)", fields, c.fields, ve)
			}
			if !strings.Contains(ve.Errors[0].Detail, c.detail) {
				t.Fatalf("detail %q does not contain %q", ve.Errors[0].Detail, c.detail)
			}
		})
	}
	// Nothing was stored.
	if gs, _, err := f.store.Grants(context.Background(), "", 100); err != nil || len(gs) != 0 {
		t.Fatalf("grants stored: %d %v", len(gs), err)
	}

	t.Run("normalised", func(t *testing.T) {
		g := ok
		g.ID, g.Enabled = "chosen-by-caller", false
		g.Methods = []string{"get", " GET", "patch"}
		g.Consumer = "  listener  "
		g.ExpiresAt = time.Now().Add(89 * 24 * time.Hour)
		_, stored, err := f.a.IssueServiceToken(context.Background(), g)
		if err != nil {
			t.Fatal(err)
		}
		if stored.ID == "chosen-by-caller" || !stored.Enabled || stored.Consumer != "listener" ||
			!slices.Equal(stored.Methods, []string{"GET", "PATCH"}) || stored.ExpiresAt.Nanosecond() != 0 || stored.ExpiresAt.Location() != time.UTC {
			t.Fatalf("stored %+v", stored)
		}
	})
}
