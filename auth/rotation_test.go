package auth

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// reauthorize builds another authorizer on the fixture's store, as a
// restart with changed keys would.
func (f *fixture) reauthorize(t *testing.T, edit func(*Config)) *fixture {
	t.Helper()
	cfg := f.cfg
	edit(&cfg)
	a, err := New(context.Background(), cfg, f.store, testDomains(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	return &fixture{t: t, a: a, store: f.store, jwks: f.jwks, cfg: cfg}
}

var (
	newServiceSecret = []byte("the-new-service-secret-after-rotation!!")
	newUserSecret    = []byte("the-new-user-secret-after-the-rotation!!")
)

// TestServiceKeyRotation: tokens signed with the old service key and the
// new one both verify during the window; after the old key is removed, the
// old token is refused, and a token naming an unknown kid is refused with
// a reason saying so.
func TestServiceKeyRotation(t *testing.T) {
	old := newFixture(t)
	ctx := context.Background()
	path := "/api/v1/residents/42"
	oldTok, g, err := old.a.IssueServiceToken(ctx, grantFor("/api/v1/residents/{id}", "GET"))
	if err != nil {
		t.Fatal(err)
	}
	tok, _, _ := jwt.NewParser().ParseUnverified(oldTok, jwt.MapClaims{})
	if tok.Header["kid"] != ServiceKeyID(serviceSecret) {
		t.Fatalf("service token kid %v, want %s", tok.Header["kid"], ServiceKeyID(serviceSecret))
	}
	// A token from before key ids: no kid.
	legacy := serviceJWT(t, serviceSecret, g.ID, g.Consumer, time.Now().Add(time.Hour))

	window := old.reauthorize(t, func(c *Config) {
		c.ServiceSecret, c.PreviousServiceSecrets = newServiceSecret, [][]byte{serviceSecret}
	})
	newTok, _, err := window.a.IssueServiceToken(ctx, grantFor("/api/v1/residents/{id}", "GET"))
	if err != nil {
		t.Fatal(err)
	}
	tok, _, _ = jwt.NewParser().ParseUnverified(newTok, jwt.MapClaims{})
	if tok.Header["kid"] != ServiceKeyID(newServiceSecret) || ServiceKeyID(newServiceSecret) == ServiceKeyID(serviceSecret) {
		t.Fatalf("new token kid %v", tok.Header["kid"])
	}
	unknownKid := sign(t, jwt.SigningMethodHS256, serviceSecret, "0123456789abcdef", jwt.MapClaims{
		"iss": ServiceIssuer, "sub": g.Consumer, "jti": g.ID, "consumer": g.Consumer,
		"iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix(),
	})
	runDecideCases(t, window, []decideCase{
		{"old key during the window", oldTok, "GET", path, 200, ""},
		{"old key without kid during the window", legacy, "GET", path, 200, ""},
		{"new key", newTok, "GET", path, 200, ""},
		{"unknown kid", unknownKid, "GET", path, 401, "signing key (kid) is not known"},
	})
	// The old instance does not know the new key: it refuses new tokens
	// with the same clear reason (deploy the new key to every instance
	// before issuing with it).
	runDecideCases(t, old, []decideCase{{"new token on an old instance", newTok, "GET", path, 401, "kid"}})

	after := window.reauthorize(t, func(c *Config) { c.PreviousServiceSecrets = nil })
	runDecideCases(t, after, []decideCase{
		{"old key after the window", oldTok, "GET", path, 401, "signing key (kid) is not known"},
		{"old key without kid after the window", legacy, "GET", path, 401, "signature"},
		{"new key after the window", newTok, "GET", path, 200, ""},
	})
}

// TestUserSecretRotation: HS256 user tokens signed with the previous
// secret verify during the window and are refused after it.
func TestUserSecretRotation(t *testing.T) {
	f := newFixture(t)
	path := "/api/v1/residents/42"
	oldTok := hs(t, claims("residents-readers"))
	newTok := sign(t, jwt.SigningMethodHS256, newUserSecret, "", claims("residents-readers"))
	window := f.reauthorize(t, func(c *Config) {
		c.UserSecret, c.PreviousUserSecrets = newUserSecret, [][]byte{userSecret}
	})
	runDecideCases(t, window, []decideCase{
		{"old secret during the window", oldTok, "GET", path, 200, ""},
		{"new secret", newTok, "GET", path, 200, ""},
		{"neither", sign(t, jwt.SigningMethodHS256, []byte("some-other-secret-some-other-secret!!"), "", claims("residents-readers")), "GET", path, 401, "signature"},
	})
	after := window.reauthorize(t, func(c *Config) { c.PreviousUserSecrets = nil })
	runDecideCases(t, after, []decideCase{
		{"old secret after the window", oldTok, "GET", path, 401, "signature is not valid"},
		{"new secret after the window", newTok, "GET", path, 200, ""},
	})
}

// TestRotationConfigErrors: previous keys that are empty, that equal a key
// of the other kind, or that come without a current key are refused.
func TestRotationConfigErrors(t *testing.T) {
	f := newFixture(t)
	for name, edit := range map[string]func(*Config){
		"empty previous user secret":    func(c *Config) { c.PreviousUserSecrets = [][]byte{{}} },
		"previous user = service":       func(c *Config) { c.PreviousUserSecrets = [][]byte{serviceSecret} },
		"previous service = user":       func(c *Config) { c.PreviousServiceSecrets = [][]byte{userSecret} },
		"previous service, no current":  func(c *Config) { c.ServiceSecret, c.PreviousServiceSecrets = nil, [][]byte{newServiceSecret} },
		"previous user, no current":     func(c *Config) { c.UserSecret, c.PreviousUserSecrets = nil, [][]byte{newUserSecret} },
		"empty previous service secret": func(c *Config) { c.PreviousServiceSecrets = [][]byte{{}} },
	} {
		cfg := f.cfg
		edit(&cfg)
		if _, err := New(context.Background(), cfg, f.store, testDomains(t)); err == nil || !strings.Contains(err.Error(), "previous") {
			t.Errorf("%s: %v", name, err)
		}
	}
}
