package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/lestrrat-go/jwx/v3/jwk"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/domains"
	"github.com/plinth-data/plinth/spec"
	"github.com/plinth-data/plinth/sqlite"
)

const (
	testIssuer   = "https://sso.example.gov.uk"
	testAudience = "plinth-api"
	adminGroup   = "plinth-admins"
)

var (
	userSecret    = []byte("user-secret-of-the-organisation-sso-0123456789")
	serviceSecret = []byte("plinth-service-token-secret-abcdefghijklmnopqrs")
)

// Keys are generated once per test binary: RSA generation is slow.
var (
	rsaKey1 = sync.OnceValue(func() *rsa.PrivateKey { return mustRSA() })
	rsaKey2 = sync.OnceValue(func() *rsa.PrivateKey { return mustRSA() })
	rsaKey3 = sync.OnceValue(func() *rsa.PrivateKey { return mustRSA() })
	ecKey1  = sync.OnceValue(func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			panic(err)
		}
		return k
	})
)

func mustRSA() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
}

// housingSpec is a test domain with two entities, for entity overrides.
const housingSpec = `
domain: housing
description: Tenancies and the properties they are of.
owner:
  serviceArea: Housing
  productOwner: housing-data@example.gov.uk
  cloudAccount: housing-test
sourceSystem: Test
entities:
  - name: tenancy
    plural: tenancies
    description: A tenancy.
    key:
      name: id
      type: uuid
      generated: true
      pii: none
    fields:
      - name: reference
        type: string
        required: true
        pii: none
  - name: property
    plural: properties
    description: A property.
    key:
      name: id
      type: uuid
      generated: true
      pii: none
    fields:
      - name: address
        type: string
        pii: personal
`

func testDomains(t testing.TB) []*plinth.Domain {
	t.Helper()
	ds, err := spec.LoadFS(domains.FS, ".")
	if err != nil {
		t.Fatal(err)
	}
	h, err := spec.Parse("housing.yaml", []byte(housingSpec))
	if err != nil {
		t.Fatal(err)
	}
	return append(ds, h)
}

// jwksServer serves a JWKS that a test can rotate.
type jwksServer struct {
	*httptest.Server
	body    atomic.Pointer[[]byte]
	fetches atomic.Int64
}

func newJWKSServer(t testing.TB, keys ...jwk.Key) *jwksServer {
	t.Helper()
	s := &jwksServer{}
	s.set(t, keys...)
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.fetches.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(*s.body.Load())
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) set(t testing.TB, keys ...jwk.Key) {
	t.Helper()
	b := jwksJSON(t, keys...)
	s.body.Store(&b)
}

func jwksJSON(t testing.TB, keys ...jwk.Key) []byte {
	t.Helper()
	set := jwk.NewSet()
	for _, k := range keys {
		if err := set.AddKey(k); err != nil {
			t.Fatal(err)
		}
	}
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// publicJWK is the public JWK of a private key, with kid and alg.
func publicJWK(t testing.TB, priv any, kid, alg string) jwk.Key {
	t.Helper()
	var pub any
	switch k := priv.(type) {
	case *rsa.PrivateKey:
		pub = &k.PublicKey
	case *ecdsa.PrivateKey:
		pub = &k.PublicKey
	default:
		pub = priv
	}
	key, err := jwk.Import(pub)
	if err != nil {
		t.Fatal(err)
	}
	if err := key.Set(jwk.KeyIDKey, kid); err != nil {
		t.Fatal(err)
	}
	if alg != "" {
		if err := key.Set(jwk.AlgorithmKey, alg); err != nil {
			t.Fatal(err)
		}
	}
	return key
}

func writeJWKSFile(t testing.TB, path string, keys ...jwk.Key) {
	t.Helper()
	if err := os.WriteFile(path, jwksJSON(t, keys...), 0o600); err != nil {
		t.Fatal(err)
	}
}

// fixture is an authorizer on a real sqlite store with policies.
type fixture struct {
	t     testing.TB
	a     *Authorizer
	store *sqlite.Store
	jwks  *jwksServer
	cfg   Config
}

// baseConfig accepts HS256 user tokens, RS256/ES256 through the JWKS
// server, and service tokens.
func newFixture(t testing.TB, edit ...func(*Config)) *fixture {
	t.Helper()
	ctx := context.Background()
	ds := testDomains(t)
	store, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "plinth.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	if err := store.Prepare(ctx, ds); err != nil {
		t.Fatal(err)
	}
	for _, p := range testPolicies() {
		if err := store.PutPolicy(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	js := newJWKSServer(t, publicJWK(t, rsaKey1(), "1", "RS256"), publicJWK(t, ecKey1(), "ec1", "ES256"))
	cfg := Config{
		Environment:   plinth.EnvDevelopment,
		UserSecret:    userSecret,
		JWKSURL:       js.URL,
		Issuer:        testIssuer,
		Audience:      testAudience,
		ServiceSecret: serviceSecret,
		AdminGroups:   []string{adminGroup},
	}
	for _, e := range edit {
		e(&cfg)
	}
	a, err := New(ctx, cfg, store, ds)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	return &fixture{t: t, a: a, store: store, jwks: js, cfg: cfg}
}

func testPolicies() []plinth.AccessPolicy {
	return []plinth.AccessPolicy{
		{
			Domain: "residents", Environment: plinth.EnvDevelopment,
			ReadGroups:      []string{"residents-readers"},
			WriteGroups:     []string{"residents-writers"},
			ReportingGroups: []string{"residents-reporters"},
		},
		{
			// The same domain in production: other groups.
			Domain: "residents", Environment: plinth.EnvProduction,
			ReadGroups:  []string{"production-readers"},
			WriteGroups: []string{"production-writers"},
		},
		{
			Domain: "housing", Environment: plinth.EnvDevelopment,
			ReadGroups:       []string{"housing-readers"},
			WriteGroups:      []string{"housing-writers"},
			WriteImpliesRead: true,
			Entities: map[string]plinth.EntityPolicy{
				"properties": {ReadGroups: []string{"property-readers"}, WriteGroups: []string{"property-writers"}},
				"tenancies":  {ReadGroups: []string{}}, // nobody reads tenancies, but writers (write implies read)
			},
		},
		// contacts has no policy in development.
	}
}

func (f *fixture) decide(token, method, path string) plinth.Decision {
	f.t.Helper()
	r := plinth.AuthRequest{Method: method, Path: path}
	if token != "" {
		r.Authorization = "Bearer " + token
	}
	return f.a.Decide(context.Background(), r)
}

// claims are user-token claims valid for an hour, with the fixture's
// issuer and audience.
func claims(groups ...string) jwt.MapClaims {
	now := time.Now()
	g := make([]any, len(groups))
	for i, x := range groups {
		g[i] = x
	}
	return jwt.MapClaims{
		"sub":    "user-123",
		"email":  "ada.lovelace@example.gov.uk",
		"name":   "Ada Lovelace",
		"groups": g,
		"iss":    testIssuer,
		"aud":    testAudience,
		"iat":    now.Unix(),
		"exp":    now.Add(time.Hour).Unix(),
	}
}

func with(c jwt.MapClaims, kv ...any) jwt.MapClaims {
	out := jwt.MapClaims{}
	for k, v := range c {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(out, kv[i].(string))
			continue
		}
		out[kv[i].(string)] = kv[i+1]
	}
	return out
}

// sign signs claims with method and key, naming kid when set.
func sign(t testing.TB, method jwt.SigningMethod, key any, kid string, c jwt.Claims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, c)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func hs(t testing.TB, c jwt.Claims) string { return sign(t, jwt.SigningMethodHS256, userSecret, "", c) }
func rs1(t testing.TB, c jwt.Claims) string {
	return sign(t, jwt.SigningMethodRS256, rsaKey1(), "1", c)
}
