package auth

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/lestrrat-go/jwx/v3/jwk"

	"github.com/plinth-data/plinth"
)

type decideCase struct {
	name   string
	token  string
	method string
	path   string
	status int
	reason string // a substring of the reason, when set
}

func runDecideCases(t *testing.T, f *fixture, cases []decideCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := f.decide(c.token, c.method, c.path)
			if d.Status != c.status || d.Allow != (c.status == http.StatusOK) {
				t.Fatalf("%s %s: got status %d allow %v (%q), want %d", c.method, c.path, d.Status, d.Allow, d.Reason, c.status)
			}
			if c.reason != "" && !strings.Contains(d.Reason, c.reason) {
				t.Fatalf("reason %q does not contain %q", d.Reason, c.reason)
			}
			if d.Allow && d.Reason != "" {
				t.Fatalf("allowed with a reason: %q", d.Reason)
			}
		})
	}
}

func TestUserTokens(t *testing.T) {
	f := newFixture(t)
	readers := claims("residents-readers")
	now := time.Now()
	otherRSA := rsaKey2()

	// A valid HS256 token whose payload is swapped for one with more groups,
	// keeping the signature.
	valid := hs(t, readers)
	parts := strings.Split(valid, ".")
	richer := hs(t, claims("residents-writers", adminGroup))
	tampered := parts[0] + "." + strings.Split(richer, ".")[1] + "." + parts[2]

	none := sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, "", readers)
	noneKID := sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, "1", readers)
	// alg "none" with a stray signature, and alg "NONE".
	noneSig := none + "c2lnbmF0dXJl"
	noneUpper := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"NONE","typ":"JWT"}`)) + "." + strings.Split(none, ".")[1] + "."

	pubDER, err := x509.MarshalPKIXPublicKey(&rsaKey1().PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})

	cases := []decideCase{
		{"missing token", "", "GET", "/api/v1/residents", 401, plinth.ReasonMissingToken},
		{"garbage", "not-a-jwt", "GET", "/api/v1/residents", 401, "malformed"},
		{"three garbage segments", "a.b.c", "GET", "/api/v1/residents", 401, "malformed"},
		{"empty segments", "..", "GET", "/api/v1/residents", 401, "malformed"},
		{"oversized", strings.Repeat("a", maxTokenBytes+1), "GET", "/api/v1/residents", 401, "malformed"},
		{"forged HS256 signature", sign(t, jwt.SigningMethodHS256, []byte("not-the-secret-not-the-secret-000"), "", readers), "GET", "/api/v1/residents", 401, "signature"},
		{"tampered payload", tampered, "POST", "/api/v1/residents", 401, "signature"},
		{"forged RS256 signature (other key, kid 1)", sign(t, jwt.SigningMethodRS256, otherRSA, "1", readers), "GET", "/api/v1/residents", 401, "signature"},
		{"expired", hs(t, with(readers, "exp", now.Add(-time.Hour).Unix())), "GET", "/api/v1/residents", 401, "token expired"},
		{"expired RS256", rs1(t, with(readers, "exp", now.Add(-time.Hour).Unix())), "GET", "/api/v1/residents", 401, "token expired"},
		{"expired within the clock skew", hs(t, with(readers, "exp", now.Add(-10*time.Second).Unix())), "GET", "/api/v1/residents", 200, ""},
		{"no exp", hs(t, with(readers, "exp", nil)), "GET", "/api/v1/residents", 401, "exp"},
		{"not yet valid (nbf)", hs(t, with(readers, "nbf", now.Add(time.Hour).Unix())), "GET", "/api/v1/residents", 401, "not valid yet"},
		{"nbf within the skew", hs(t, with(readers, "nbf", now.Add(10*time.Second).Unix())), "GET", "/api/v1/residents", 200, ""},
		{"iat in the future", hs(t, with(readers, "iat", now.Add(time.Hour).Unix())), "GET", "/api/v1/residents", 401, "issued in the future"},
		{"wrong issuer", hs(t, with(readers, "iss", "https://evil.example.com")), "GET", "/api/v1/residents", 401, "issuer"},
		{"no issuer", hs(t, with(readers, "iss", nil)), "GET", "/api/v1/residents", 401, "issuer"},
		{"wrong audience", hs(t, with(readers, "aud", "another-api")), "GET", "/api/v1/residents", 401, "audience"},
		{"no audience", hs(t, with(readers, "aud", nil)), "GET", "/api/v1/residents", 401, "audience"},
		{"audience among several", hs(t, with(readers, "aud", []string{"x", testAudience})), "GET", "/api/v1/residents", 200, ""},
		{"alg none", none, "GET", "/api/v1/residents", 401, "algorithm"},
		{"alg none with kid", noneKID, "GET", "/api/v1/residents", 401, "algorithm"},
		{"alg none with a signature", noneSig, "GET", "/api/v1/residents", 401, ""},
		{"alg NONE", noneUpper, "GET", "/api/v1/residents", 401, ""},
		{"algorithm confusion: HS256 with the RSA public key PEM", sign(t, jwt.SigningMethodHS256, pubPEM, "1", readers), "GET", "/api/v1/residents", 401, "signature"},
		{"algorithm confusion: HS256 with the RSA public key DER", sign(t, jwt.SigningMethodHS256, pubDER, "1", readers), "GET", "/api/v1/residents", 401, "signature"},
		{"HS512 with the user secret", sign(t, jwt.SigningMethodHS512, userSecret, "", readers), "GET", "/api/v1/residents", 401, "algorithm"},
		{"unknown kid", sign(t, jwt.SigningMethodRS256, otherRSA, "99", readers), "GET", "/api/v1/residents", 401, "key is not known"},
		{"RS256 token naming the EC key", sign(t, jwt.SigningMethodRS256, rsaKey1(), "ec1", readers), "GET", "/api/v1/residents", 401, "algorithm"},
		{"ES256 token naming the RSA key", sign(t, jwt.SigningMethodES256, ecKey1(), "1", readers), "GET", "/api/v1/residents", 401, "algorithm"},
		{"RS384 against a key pinned to RS256", sign(t, jwt.SigningMethodRS384, rsaKey1(), "1", readers), "GET", "/api/v1/residents", 401, "algorithm"},
		{"no subject", hs(t, with(readers, "sub", nil, "email", nil)), "GET", "/api/v1/residents", 401, "subject"},
		{"groups not strings", hs(t, with(readers, "groups", []any{1, 2})), "GET", "/api/v1/residents", 401, "malformed"},

		{"HS256 reader reads", valid, "GET", "/api/v1/residents", 200, ""},
		{"HS256 reader reads one", valid, "GET", "/api/v1/residents/42", 200, ""},
		{"HS256 reader HEAD", valid, "HEAD", "/api/v1/residents/42", 200, ""},
		{"RS256 reader reads", rs1(t, readers), "GET", "/api/v1/residents/42", 200, ""},
		{"ES256 reader reads", sign(t, jwt.SigningMethodES256, ecKey1(), "ec1", readers), "GET", "/api/v1/residents/42", 200, ""},
		{"groups as one string", hs(t, with(readers, "groups", "residents-readers")), "GET", "/api/v1/residents", 200, ""},
		{"no email but a subject", hs(t, with(readers, "email", nil)), "GET", "/api/v1/residents", 200, ""},

		{"wrong group", hs(t, claims("someone-else")), "GET", "/api/v1/residents", 403, "may not read residents"},
		{"no groups", hs(t, with(readers, "groups", nil)), "GET", "/api/v1/residents", 403, ""},
		{"read-only group creates", valid, "POST", "/api/v1/residents", 403, "may not write residents"},
		{"read-only group updates", valid, "PATCH", "/api/v1/residents/42", 403, "may not write"},
		{"read-only group deletes", valid, "DELETE", "/api/v1/residents/42", 403, "may not write"},
		{"writer creates", hs(t, claims("residents-writers")), "POST", "/api/v1/residents", 200, ""},
		{"writer updates", hs(t, claims("residents-writers")), "PATCH", "/api/v1/residents/42", 200, ""},
		{"writer deletes", hs(t, claims("residents-writers")), "DELETE", "/api/v1/residents/42", 200, ""},
		{"writer reads without WriteImpliesRead", hs(t, claims("residents-writers")), "GET", "/api/v1/residents", 403, "may not read"},
		{"writer reads one without WriteImpliesRead", hs(t, claims("residents-writers")), "GET", "/api/v1/residents/42", 403, ""},
		{"writer reads with WriteImpliesRead", hs(t, claims("housing-writers")), "GET", "/api/v1/tenancies/1", 200, ""},
		{"writer writes with WriteImpliesRead", hs(t, claims("housing-writers")), "POST", "/api/v1/tenancies", 200, ""},
		{"entity override: empty read list shuts out domain readers", hs(t, claims("housing-readers")), "GET", "/api/v1/tenancies", 403, ""},
		{"entity override: domain reader of overridden entity", hs(t, claims("housing-readers")), "GET", "/api/v1/properties", 403, "may not read properties"},
		{"entity override: override reader", hs(t, claims("property-readers")), "GET", "/api/v1/properties/7", 200, ""},
		{"entity override: override reader writes", hs(t, claims("property-readers")), "PATCH", "/api/v1/properties/7", 403, ""},
		{"entity override: domain writer writes overridden entity", hs(t, claims("housing-writers")), "POST", "/api/v1/properties", 403, "may not write properties"},
		{"entity override: domain writer reads overridden entity", hs(t, claims("housing-writers")), "GET", "/api/v1/properties", 403, ""},
		{"entity override: override writer writes", hs(t, claims("property-writers")), "DELETE", "/api/v1/properties/7", 200, ""},
		{"entity override: override writer reads (write implies read)", hs(t, claims("property-writers")), "GET", "/api/v1/properties", 200, ""},
		{"several groups, one fits", hs(t, claims("a", "b", "residents-readers")), "GET", "/api/v1/residents", 200, ""},
		{"reporter reads", hs(t, claims("residents-reporters")), "GET", "/api/v1/residents", 403, ""},
		{"reporter reports", hs(t, claims("residents-reporters")), "GET", "/api/v1/reports/residents", 200, ""},
		{"reporter reads the report schema", hs(t, claims("residents-reporters")), "GET", "/api/v1/reports/residents/schema", 200, ""},
		{"reader reports", hs(t, claims("residents-readers")), "GET", "/api/v1/reports/residents", 403, "may not report"},
		{"anyone lists reports", hs(t, claims("nobody")), "GET", "/api/v1/reports", 200, ""},
		{"no policy for the domain", hs(t, claims("residents-readers", adminGroup)), "GET", "/api/v1/contacts", 403, "no access policy for domain contacts in environment development"},
		{"other environment's group", hs(t, claims("production-readers")), "GET", "/api/v1/residents", 403, ""},

		{"admin lists tokens", hs(t, claims(adminGroup)), "GET", "/admin/v1/tokens", 200, ""},
		{"admin revokes", rs1(t, claims(adminGroup)), "PATCH", "/admin/v1/tokens/abc", 200, ""},
		{"admin on an unknown admin path", hs(t, claims(adminGroup)), "GET", "/admin/v1/nothing/here", 200, ""},
		{"reader on admin route", valid, "GET", "/admin/v1/tokens", 403, "admin API"},
		{"writer on admin route", hs(t, claims("residents-writers")), "PUT", "/admin/v1/access/residents/development", 403, "admin API"},
		{"reader on an unknown admin path", valid, "GET", "/admin/v1/nothing", 403, ""},
		{"no token on admin route", "", "GET", "/admin/v1/audit", 401, ""},
		{"garbage on admin route", "x.y.z", "GET", "/admin/v1/audit", 401, ""},
		{"admin group reads data", hs(t, claims(adminGroup)), "GET", "/api/v1/residents", 403, ""},

		{"ping without token", "", "GET", "/api/v1/healthcheck/ping", 200, ""},
		{"ready without token", "", "GET", "/api/v1/healthcheck/ready", 200, ""},
		{"openapi without token", "", "GET", "/api/v1/openapi.json", 200, ""},
		{"metrics without token", "", "GET", "/metrics", 200, ""},
		{"ping with a bad token", "garbage", "GET", "/api/v1/healthcheck/ping", 200, ""},
		{"POST ping without token", "", "POST", "/api/v1/healthcheck/ping", 401, ""},
		{"ping with a trailing slash", "", "GET", "/api/v1/healthcheck/ping/", 401, ""},

		{"unknown path without token", "", "GET", "/api/v1/nothing", 401, ""},
		{"unknown path with a bad token", "garbage", "GET", "/api/v1/nothing", 401, ""},
		{"unknown path with a token", hs(t, claims()), "GET", "/api/v1/nothing", 200, ""},
		{"lookalike plural without token", "", "GET", "/api/v1/residents-evil", 401, ""},
		{"lookalike plural with a token", hs(t, claims()), "GET", "/api/v1/residents-evil", 200, ""},
		{"trailing slash with a token", hs(t, claims()), "GET", "/api/v1/residents/", 200, ""},
		{"dot-dot segments with a token", hs(t, claims()), "GET", "/api/v1/contacts/../residents", 200, ""},
		{"dot-dot as the id is a read", hs(t, claims()), "GET", "/api/v1/residents/..", 403, ""},
		{"PUT (no such route) with a token", valid, "PUT", "/api/v1/residents/1", 200, ""},
	}
	runDecideCases(t, f, cases)

	t.Run("basic auth is no bearer token", func(t *testing.T) {
		d := f.a.Decide(context.Background(), plinth.AuthRequest{Authorization: "Basic dXNlcjpwYXNz", Method: "GET", Path: "/api/v1/residents"})
		if d.Status != 401 || d.Reason != plinth.ReasonMissingToken {
			t.Fatalf("got %d %q", d.Status, d.Reason)
		}
		d = f.a.Decide(context.Background(), plinth.AuthRequest{Authorization: "Bearer ", Method: "GET", Path: "/api/v1/residents"})
		if d.Status != 401 || d.Reason != plinth.ReasonMissingToken {
			t.Fatalf("empty bearer: got %d %q", d.Status, d.Reason)
		}
		d = f.a.Decide(context.Background(), plinth.AuthRequest{Authorization: "bearer " + valid, Method: "GET", Path: "/api/v1/residents"})
		if d.Status != 200 {
			t.Fatalf("lower-case scheme: got %d %q", d.Status, d.Reason)
		}
	})

	t.Run("principal", func(t *testing.T) {
		d := f.decide(valid, "GET", "/api/v1/residents/42")
		want := plinth.Principal{Subject: "user-123", Email: "ada.lovelace@example.gov.uk", Name: "Ada Lovelace", Groups: []string{"residents-readers"}}
		if !equalPrincipal(d.Principal, want) || d.Principal.IsService() {
			t.Fatalf("principal %+v, want %+v", d.Principal, want)
		}
		if d.Route != (plinth.Route{Template: "/api/v1/residents/{id}", Domain: "residents", Entity: "residents", Operation: plinth.OpRead}) {
			t.Fatalf("route %+v", d.Route)
		}
		// A denied decision still names the principal and route, for audit.
		d = f.decide(valid, "DELETE", "/api/v1/residents/42")
		if d.Principal.Subject != "user-123" || d.Route.Operation != plinth.OpWrite {
			t.Fatalf("denied decision: %+v", d)
		}
		// A token without sub is known by its e-mail address.
		d = f.decide(hs(t, with(readers, "sub", nil)), "GET", "/api/v1/residents")
		if d.Status != 200 || d.Principal.Subject != "ada.lovelace@example.gov.uk" {
			t.Fatalf("subject from email: %+v", d)
		}
	})

	t.Run("reasons never detail signatures", func(t *testing.T) {
		for _, c := range cases {
			d := f.decide(c.token, c.method, c.path)
			for _, bad := range []string{"crypto", "rsa", "verification error", "hmac", "keyfunc"} {
				if strings.Contains(strings.ToLower(d.Reason), bad) {
					t.Errorf("%s: reason %q mentions %q", c.name, d.Reason, bad)
				}
			}
		}
	})
}

func equalPrincipal(a, b plinth.Principal) bool {
	if a.Subject != b.Subject || a.Email != b.Email || a.Name != b.Name || a.TokenID != b.TokenID || a.Consumer != b.Consumer || len(a.Groups) != len(b.Groups) {
		return false
	}
	for i := range a.Groups {
		if a.Groups[i] != b.Groups[i] {
			return false
		}
	}
	return true
}

// With only a JWKS configured, HS256 is not accepted at all: a token signed
// with the RSA public key (or with a symmetric key served in the JWKS) as an
// HMAC secret is refused.
func TestAlgorithmConfusionJWKSOnly(t *testing.T) {
	symmetric := []byte("a-symmetric-key-in-the-jwks-0123456789")
	oct, err := jwk.Import(symmetric)
	if err != nil {
		t.Fatal(err)
	}
	if err := oct.Set(jwk.KeyIDKey, "sym"); err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, func(c *Config) { c.UserSecret = nil })
	f.jwks.set(t, publicJWK(t, rsaKey1(), "1", "RS256"), oct)
	f.a.keys.(*urlKeys).minGap = 0 // let an unknown kid refresh at once

	readers := claims("residents-readers")
	pubDER, err := x509.MarshalPKIXPublicKey(&rsaKey1().PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	pkcs1 := pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&rsaKey1().PublicKey)})
	runDecideCases(t, f, []decideCase{
		{"RS256 accepted", rs1(t, readers), "GET", "/api/v1/residents", 200, ""},
		{"HS256 with the public key PEM", sign(t, jwt.SigningMethodHS256, pubPEM, "1", readers), "GET", "/api/v1/residents", 401, "algorithm"},
		{"HS256 with the public key PKCS#1 PEM", sign(t, jwt.SigningMethodHS256, pkcs1, "1", readers), "GET", "/api/v1/residents", 401, "algorithm"},
		{"HS256 with the public key DER", sign(t, jwt.SigningMethodHS256, pubDER, "1", readers), "GET", "/api/v1/residents", 401, "algorithm"},
		{"HS256 with the public key PEM, no kid", sign(t, jwt.SigningMethodHS256, pubPEM, "", readers), "GET", "/api/v1/residents", 401, "algorithm"},
		{"HS256 with a symmetric JWKS key", sign(t, jwt.SigningMethodHS256, symmetric, "sym", readers), "GET", "/api/v1/residents", 401, "algorithm"},
		{"HS256 with the user secret of another setup", hs(t, readers), "GET", "/api/v1/residents", 401, "algorithm"},
	})
	if _, err := f.a.IssueUserToken(plinth.Principal{Subject: "x"}, time.Minute); err != ErrUserTokensDisabled {
		t.Fatalf("IssueUserToken without a user secret: %v", err)
	}
}

// Without a JWKS, RS256 tokens are refused whatever their kid.
func TestHS256Only(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.JWKSURL = "" })
	readers := claims("residents-readers")
	runDecideCases(t, f, []decideCase{
		{"HS256 accepted", hs(t, readers), "GET", "/api/v1/residents", 200, ""},
		{"RS256 refused", rs1(t, readers), "GET", "/api/v1/residents", 401, "algorithm"},
		{"ES256 refused", sign(t, jwt.SigningMethodES256, ecKey1(), "ec1", readers), "GET", "/api/v1/residents", 401, "algorithm"},
	})
}

func TestProductionPolicies(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.Environment = plinth.EnvProduction })
	runDecideCases(t, f, []decideCase{
		{"production reader", hs(t, claims("production-readers")), "GET", "/api/v1/residents", 200, ""},
		{"development reader", hs(t, claims("residents-readers")), "GET", "/api/v1/residents", 403, ""},
		{"no housing policy in production", hs(t, claims("housing-readers")), "GET", "/api/v1/tenancies", 403, "no access policy for domain housing in environment production"},
	})
}

func TestPolicyChangesWithinCacheTTL(t *testing.T) {
	ttl := 50 * time.Millisecond
	f := newFixture(t, func(c *Config) { c.CacheTTL = ttl })
	tok := hs(t, claims("newcomers"))
	if d := f.decide(tok, "GET", "/api/v1/residents"); d.Status != 403 {
		t.Fatalf("before: %d", d.Status)
	}
	p := testPolicies()[0]
	p.ReadGroups = append(p.ReadGroups, "newcomers")
	if err := f.store.PutPolicy(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	// Not a wait for a condition: the test is that a policy change shows
	// within CacheTTL, so the TTL passes and then one decision must see it.
	time.Sleep(ttl + 20*time.Millisecond)
	if d := f.decide(tok, "GET", "/api/v1/residents"); d.Status != 200 {
		t.Fatalf("after the TTL: %d %q", d.Status, d.Reason)
	}
	if err := f.store.DeletePolicy(context.Background(), "residents", plinth.EnvDevelopment); err != nil {
		t.Fatal(err)
	}
	time.Sleep(ttl + 20*time.Millisecond) // the TTL passes, as above
	if d := f.decide(tok, "GET", "/api/v1/residents"); d.Status != 403 || !strings.Contains(d.Reason, "no access policy") {
		t.Fatalf("after deleting the policy: %d %q", d.Status, d.Reason)
	}
}

// When the store cannot be asked, the authorizer fails closed with 503.
func TestStoreFailureFailsClosed(t *testing.T) {
	f := newFixture(t)
	tok, _, err := f.a.IssueServiceToken(context.Background(), grantFor("/api/v1/residents/{id}", "GET"))
	if err != nil {
		t.Fatal(err)
	}
	user := hs(t, claims("residents-readers"))
	f.store.Close()
	runDecideCases(t, f, []decideCase{
		{"user token, policies unavailable", user, "GET", "/api/v1/residents", 503, plinth.ReasonUnavailable},
		{"service token, grant unavailable", tok, "GET", "/api/v1/residents/1", 503, plinth.ReasonUnavailable},
		{"public route still answers", "", "GET", "/api/v1/healthcheck/ping", 200, ""},
		{"invalid token is still 401", "garbage", "GET", "/api/v1/residents", 401, ""},
		{"admin needs no store", hs(t, claims(adminGroup)), "GET", "/admin/v1/tokens", 200, ""},
	})
}

func TestWWWAuthenticate(t *testing.T) {
	f := newFixture(t)
	cases := []struct {
		token, want string
	}{
		{"", `Bearer realm="plinth"`},
		{"garbage", `Bearer realm="plinth", error="invalid_token", error_description="token is malformed"`},
		{hs(t, with(claims(), "exp", time.Now().Add(-time.Hour).Unix())), `Bearer realm="plinth", error="invalid_token", error_description="token expired"`},
		{hs(t, claims()), ``}, // 403: no challenge
	}
	for _, c := range cases {
		d := f.decide(c.token, "GET", "/api/v1/residents")
		if got := d.WWWAuthenticate(); got != c.want {
			t.Errorf("status %d: got %q, want %q", d.Status, got, c.want)
		}
	}
	d := plinth.Decision{Status: 401, Reason: `bad "quoted" \ reason` + "\n"}
	if got := d.WWWAuthenticate(); got != `Bearer realm="plinth", error="invalid_token", error_description="bad quoted  reason"` {
		t.Errorf("quoting: %q", got)
	}
}

func TestIssueUserToken(t *testing.T) {
	f := newFixture(t)
	p := plinth.Principal{Subject: "dev", Email: "dev@example.gov.uk", Name: "Developer", Groups: []string{"residents-readers", "residents-writers"}}
	tok, err := f.a.IssueUserToken(p, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	d := f.decide(tok, "PATCH", "/api/v1/residents/1")
	if d.Status != 200 || !equalPrincipal(d.Principal, p) {
		t.Fatalf("%d %q %+v", d.Status, d.Reason, d.Principal)
	}
	if _, err := f.a.IssueUserToken(p, 0); err == nil {
		t.Fatal("no error for a zero lifetime")
	}
	if _, err := f.a.IssueUserToken(plinth.Principal{}, time.Minute); err == nil {
		t.Fatal("no error for a principal without subject")
	}
}

func TestNewConfigErrors(t *testing.T) {
	f := newFixture(t)
	ds := testDomains(t)
	cases := map[string]Config{
		"unknown environment":  {Environment: "prod"},
		"both JWKS sources":    {Environment: "development", JWKSURL: f.jwks.URL, JWKSFile: "x.json"},
		"equal secrets":        {Environment: "development", UserSecret: userSecret, ServiceSecret: userSecret},
		"empty service secret": {Environment: "development", ServiceSecret: []byte{}},
		"JWKS URL not http":    {Environment: "development", JWKSURL: "file:///etc/passwd"},
		"JWKS URL unreachable": {Environment: "development", JWKSURL: "http://127.0.0.1:1/jwks.json"},
		"JWKS file missing":    {Environment: "development", JWKSFile: "/nonexistent/jwks.json"},
		"JWKS URL unparsable":  {Environment: "development", JWKSURL: f.jwks.URL + "/%zz"},
	}
	for name, cfg := range cases {
		a, err := New(context.Background(), cfg, f.store, ds)
		if err == nil {
			a.Close()
			t.Errorf("%s: no error", name)
		}
	}
	// Two entities with one plural.
	dup := append(testDomains(t), testDomains(t)[0])
	if _, err := New(context.Background(), Config{Environment: "development"}, f.store, dup); err == nil {
		t.Error("duplicate domain: no error")
	}
	if _, err := New(context.Background(), Config{Environment: "development"}, nil, ds); err == nil {
		t.Error("no store: no error")
	}
}

func TestCacheTTLCapped(t *testing.T) {
	for in, want := range map[time.Duration]time.Duration{0: 5 * time.Second, time.Minute: 5 * time.Second, time.Second: time.Second, -1: 5 * time.Second} {
		f := newFixture(t, func(c *Config) { c.CacheTTL = in; c.JWKSURL = "" })
		if f.a.cfg.CacheTTL != want {
			t.Errorf("CacheTTL %v became %v, want %v", in, f.a.cfg.CacheTTL, want)
		}
	}
}

func TestTokenCacheBounded(t *testing.T) {
	c := newTokenCache(100)
	now := time.Now()
	for i := range 1000 {
		var k [32]byte
		k[0], k[1] = byte(i), byte(i>>8)
		c.put(k, &verified{expires: now.Add(time.Minute)}, now)
	}
	if n := len(c.m); n > 100 {
		t.Fatalf("cache holds %d entries, bound 100", n)
	}
	var k [32]byte
	c.put(k, &verified{expires: now.Add(time.Second)}, now)
	if c.get(k, now.Add(2*time.Second)) != nil {
		t.Fatal("an expired entry was returned")
	}
}

// A token cached while valid is refused once it expires.
func TestCachedTokenExpires(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.ClockSkew = time.Millisecond })
	tok := hs(t, with(claims("residents-readers"), "exp", time.Now().Add(1500*time.Millisecond).Unix()))
	if d := f.decide(tok, "GET", "/api/v1/residents"); d.Status != 200 {
		t.Fatalf("fresh: %d %q", d.Status, d.Reason)
	}
	// Not a wait for a condition: the token's exp (whole seconds) has to
	// pass while its verification is still cached, so that only the cached
	// entry's own expiry can refuse it.
	time.Sleep(2100 * time.Millisecond)
	if d := f.decide(tok, "GET", "/api/v1/residents"); d.Status != 401 || d.Reason != "token expired" {
		t.Fatalf("after exp: %d %q", d.Status, d.Reason)
	}
}
