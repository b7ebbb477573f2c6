package hub_test

import (
	"context"
	"crypto/ed25519"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/audit"
	"github.com/plinth-data/plinth/auth"
	"github.com/plinth-data/plinth/domains"
	plinthhttp "github.com/plinth-data/plinth/http"
	"github.com/plinth-data/plinth/hub"
	"github.com/plinth-data/plinth/plinthtest"
	"github.com/plinth-data/plinth/spec"
	"github.com/plinth-data/plinth/sqlite"
)

// env is a Hub and the API it grants access to, on one store (SQLite,
// or PostgreSQL for the concurrency tests), with the real authorizer and
// auditor.
type env struct {
	t       *testing.T
	url     string
	authz   *auth.Authorizer
	store   hubStore
	hub     *hub.Server
	cfg     hub.Config
	auditor *audit.Auditor
}

// hubStore is what the tests need of a store.
type hubStore interface {
	plinth.Store
	plinth.AccessStore
	plinth.AuditStore
	Prepare(ctx context.Context, ds []*plinth.Domain) error
}

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newEnv(t *testing.T) *env {
	t.Helper()
	st, err := sqlite.Open(context.Background(), t.TempDir()+"/plinth.db")
	if err != nil {
		t.Fatal(err)
	}
	return newEnvOn(t, st)
}

// newEnvOn serves the API and the Hub on st, which it closes at the end.
func newEnvOn(t *testing.T, st hubStore, opts ...func(*hub.Config)) *env {
	t.Helper()
	ctx := context.Background()
	ds, err := spec.LoadFS(domains.FS, ".")
	if err != nil {
		t.Fatal(err)
	}
	// residents names its owners; contacts falls back to the admin groups.
	ds[slicesIndex(ds, "residents")].Owner.Groups = []string{"social-care-owners"}
	if err := st.Prepare(ctx, ds); err != nil {
		t.Fatal(err)
	}
	authz, err := auth.New(ctx, auth.Config{Environment: "development",
		UserSecret:    []byte("user-secret-user-secret-user-secret!"),
		ServiceSecret: []byte("service-secret-service-secret-service!"),
		AdminGroups:   []string{"admins"}, CacheTTL: 50 * time.Millisecond}, st, ds)
	if err != nil {
		t.Fatal(err)
	}
	chainer := audit.NewChainer(st, audit.ChainerConfig{Logger: discard()})
	auditor := audit.New(st, audit.Config{Environment: "development", Logger: discard(), Appended: chainer.Notify})
	chainCtx, stopChainer := context.WithCancel(ctx)
	chained := make(chan struct{})
	go func() { defer close(chained); _ = chainer.Run(chainCtx) }()
	doc, err := spec.OpenAPI(ds, spec.OpenAPIInfo{ServerURL: "http://example.test", Environment: "development"})
	if err != nil {
		t.Fatal(err)
	}
	api, err := plinthhttp.NewServer(ctx, plinthhttp.Config{Store: st, Domains: ds, OpenAPI: doc, Logger: discard(),
		Authorizer: authz, Access: st, Environment: "development", Auditor: auditor, Audit: st, Events: true})
	if err != nil {
		t.Fatal(err)
	}
	cfg := hub.Config{Domains: ds, OpenAPI: doc, Environment: "development", BaseURL: "http://example.test",
		Store: st, Authorizer: authz, Auditor: auditor, AdminGroups: []string{"admins"}, Lake: "/srv/lake", Logger: discard(),
		SessionKeys: [][]byte{[]byte("session-key-session-key-session-key!")},
		AuditSearch: func(ctx context.Context, q plinth.AuditQuery, fn func(plinth.AuditRecord) error) error {
			return audit.SearchAll(ctx, st, q, fn)
		},
		Compliance: hub.Compliance{Authorizer: true, Audit: true, Outbox: true,
			DataClass: plinth.Provenance{Class: plinth.ClassDummy, Source: plinth.SourceSeed, Detail: "seed 1"}}}
	for _, o := range opts {
		o(&cfg)
	}
	e := &env{t: t, authz: authz, store: st, cfg: cfg, auditor: auditor}
	var h http.Handler
	e.hub, h = e.replica(api)
	srv := httptest.NewServer(h)
	e.url = srv.URL
	t.Cleanup(func() {
		srv.Close()
		api.Close()
		auditor.Close()
		stopChainer()
		<-chained
		authz.Close()
		st.Close()
	})
	return e
}

// replica is another Hub on the env's store, as a second replica behind
// a load balancer would be, with the API behind it.
func (e *env) replica(api http.Handler) (*hub.Server, http.Handler) {
	e.t.Helper()
	h, err := hub.New(context.Background(), e.cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	return h, withAPI(h, api)
}

// replicaWith serves a Hub with cfg on the env's store, and returns its URL.
func (e *env) replicaWith(cfg hub.Config) (*hub.Server, string) {
	e.t.Helper()
	h, err := hub.New(context.Background(), cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	srv := httptest.NewServer(withAPI(h, nil))
	e.t.Cleanup(srv.Close)
	return h, srv.URL
}

func withAPI(h *hub.Server, api http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/hub", h)
	mux.Handle("/hub/", h)
	if api != nil {
		mux.Handle("/", api)
	}
	return mux
}

func slicesIndex(ds []*plinth.Domain, name string) int {
	for i, d := range ds {
		if d.Name == name {
			return i
		}
	}
	panic(name)
}

// user is a browser: a cookie jar that follows redirects.
type user struct {
	e      *env
	base   string // the Hub replica it talks to
	c      *http.Client
	csrf   string
	sub    string
	priv   ed25519.PrivateKey
	pubB64 string
}

type page struct {
	status int
	body   string
	url    string
}

func (e *env) user(subject string, groups ...string) *user {
	jar, _ := cookiejar.New(nil)
	return &user{e: e, base: e.url, c: &http.Client{Jar: jar}, sub: subject}
}

func (e *env) userToken(subject string, groups ...string) string {
	tok, err := e.authz.IssueUserToken(plinth.Principal{Subject: subject, Email: subject + "@example.gov.uk", Name: subject, Groups: groups}, time.Hour)
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func (u *user) get(path string) page {
	u.e.t.Helper()
	res, err := u.c.Get(u.base + path)
	if err != nil {
		u.e.t.Fatal(err)
	}
	return u.read(res)
}

func (u *user) read(res *http.Response) page {
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if m := csrfRE.FindStringSubmatch(string(b)); m != nil {
		u.csrf = m[1]
	}
	return page{res.StatusCode, string(b), res.Request.URL.Path}
}

// post sends a form with the CSRF token the last page carried.
func (u *user) post(path string, form url.Values) page {
	u.e.t.Helper()
	if form == nil {
		form = url.Values{}
	}
	if _, ok := form["csrf"]; !ok {
		form.Set("csrf", u.csrf)
	}
	res, err := u.c.PostForm(u.base+path, form)
	if err != nil {
		u.e.t.Fatal(err)
	}
	return u.read(res)
}

// signIn signs in with a user token as the sign-in page asks.
func (e *env) signIn(subject string, groups ...string) *user {
	e.t.Helper()
	u := e.user(subject)
	u.get("/hub/signin")
	p := u.post("/hub/signin", url.Values{"token": {e.userToken(subject, groups...)}})
	if p.status != 200 || p.url != "/hub" {
		e.t.Fatalf("sign-in of %s: %d at %s\n%s", subject, p.status, p.url, p.body)
	}
	return u
}

// addKey makes a key pair and registers its public half.
func (u *user) addKey() {
	u.e.t.Helper()
	pemB, pub, err := hub.NewKey()
	if err != nil {
		u.e.t.Fatal(err)
	}
	u.priv, _ = hub.ParsePrivateKey(pemB)
	u.pubB64 = pub
	u.get("/hub/keys")
	if p := u.post("/hub/keys", url.Values{"publicKey": {pub}}); p.status != 200 || !strings.Contains(p.body, "current") {
		u.e.t.Fatalf("adding a key: %d\n%s", p.status, p.body)
	}
}

func mustContain(t *testing.T, p page, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(p.body, w) {
			t.Errorf("page %s (status %d) lacks %q", p.url, p.status, w)
		}
	}
}

// hubAudit returns the Hub's audit records (operation hub), oldest first.
func (e *env) hubAudit() []plinth.AuditRecord {
	e.t.Helper()
	// Every record the requests made is durable by now (appended before
	// their answers); wait until the chainer has linked them all, however
	// long it takes on a loaded machine, then read the chain.
	plinthtest.Eventually(e.t, 10*time.Second, func() bool {
		n, err := e.store.CountUnchainedAudit(context.Background())
		if err != nil {
			e.t.Fatal(err)
		}
		return n == 0
	}, "every audit record chained")
	var out []plinth.AuditRecord
	recs, _, err := e.store.AuditRecords(context.Background(), plinth.AuditQuery{Limit: 500})
	if err != nil {
		e.t.Fatal(err)
	}
	for _, r := range recs {
		if r.Operation == "hub" {
			out = append(out, r)
		}
	}
	return out
}

func io_Copy(w io.Writer, res *http.Response) (int64, error) { return io.Copy(w, res.Body) }
