package hub_test

import (
	"context"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/zitadel/oidc/v3/example/server/exampleop"
	"github.com/zitadel/oidc/v3/example/server/storage"
	zoidc "github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"

	"github.com/plinth-data/plinth/hub"
)

// provider is an OpenID provider run in this process: zitadel's OP
// library with its example in-memory storage and login page, which adds
// the users' groups to their ID tokens and can be told to put another
// nonce in them.
type provider struct {
	*storage.Storage
	url         string
	otherNonce  atomic.Bool
	groupsClaim []string
}

// SetUserinfoFromRequest makes the ID token's user claims: the groups
// go there, as many providers put them.
func (p *provider) SetUserinfoFromRequest(ctx context.Context, ui *zoidc.UserInfo, req op.IDTokenRequest, scopes []string) error {
	if err := p.Storage.SetUserinfoFromRequest(ctx, ui, req, scopes); err != nil {
		return err
	}
	ui.AppendClaims("groups", p.groupsClaim)
	return nil
}

func (p *provider) CreateAuthRequest(ctx context.Context, req *zoidc.AuthRequest, userID string) (op.AuthRequest, error) {
	if p.otherNonce.Load() {
		req.Nonce = "a-nonce-the-hub-never-sent"
	}
	return p.Storage.CreateAuthRequest(ctx, req, userID)
}

// handlerVar serves the handler set last: a server's URL is needed
// before what it serves can be made.
type handlerVar struct {
	mu sync.Mutex
	h  http.Handler
}

func (v *handlerVar) set(h http.Handler) { v.mu.Lock(); v.h = h; v.mu.Unlock() }
func (v *handlerVar) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	v.mu.Lock()
	h := v.h
	v.mu.Unlock()
	h.ServeHTTP(w, r)
}

// newOIDCEnv is an env whose Hub signs users in with an in-process
// OpenID provider; it returns the provider and the Hub's URL.
func newOIDCEnv(t *testing.T) (*env, *provider, string) {
	e := newEnv(t)
	hubVar, opVar := &handlerVar{}, &handlerVar{}
	hubSrv, opSrv := httptest.NewServer(hubVar), httptest.NewServer(opVar)
	t.Cleanup(hubSrv.Close)
	t.Cleanup(opSrv.Close)
	redirect := hubSrv.URL + "/hub/signin/callback"
	p := &provider{url: opSrv.URL, groupsClaim: []string{"social-care-owners", "staff"}}
	p.Storage = storage.NewStorageWithClients(storage.NewUserStore(opSrv.URL),
		map[string]*storage.Client{"plinth-hub": storage.WebClient("plinth-hub", "hub-client-secret", redirect)})
	opVar.set(exampleop.SetupServer(opSrv.URL, p, nil, false))
	cfg := e.cfg
	cfg.OIDC = &hub.OIDC{Issuer: opSrv.URL, ClientID: "plinth-hub", ClientSecret: "hub-client-secret", RedirectURL: redirect}
	h, err := hub.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	hubVar.set(withAPI(h, nil))
	return e, p, hubSrv.URL
}

// toCallback starts a sign-in at the Hub as a browser would and logs in
// at the provider, stopping where the provider sends the browser back to
// the Hub; it returns the browser and that callback URL.
func toCallback(t *testing.T, p *provider, hubURL string) (*http.Client, *url.URL) {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, CheckRedirect: func(req *http.Request, _ []*http.Request) error {
		if req.URL.Path == "/hub/signin/callback" {
			return http.ErrUseLastResponse
		}
		return nil
	}}
	res, err := c.Get(hubURL + "/hub/signin/oidc?next=/hub/keys")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	id := res.Request.URL.Query().Get("authRequestID")
	if res.StatusCode != 200 || id == "" {
		t.Fatalf("the provider's login page: %d at %s", res.StatusCode, res.Request.URL)
	}
	// The provider's user test-user@127.0.0.1 logs in.
	res, err = c.PostForm(p.url+"/login/username", url.Values{"id": {id}, "username": {"test-user@127.0.0.1"}, "password": {"verysecure"}})
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	loc, err := res.Location()
	if err != nil || loc.Path != "/hub/signin/callback" || loc.Query().Get("code") == "" {
		t.Fatalf("the provider did not send the browser back with a code: %d, %v %v", res.StatusCode, loc, err)
	}
	return c, loc
}

// follow visits u with c, following redirects to the end.
func follow(t *testing.T, c *http.Client, u string) page {
	t.Helper()
	c.CheckRedirect = nil
	res, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	return (&user{}).read(res)
}

// OpenID Connect sign-in against a real provider: the authorization-code
// flow with PKCE signs the user in with the provider's groups; a changed
// state, a code used with another sign-in's PKCE verifier, another nonce
// in the ID token and a callback without its cookie are all refused and
// audited.
func TestOIDCSignInWithPKCE(t *testing.T) {
	e, p, hubURL := newOIDCEnv(t)

	// The sign-in page offers single sign-on.
	if pg := follow(t, &http.Client{}, hubURL+"/hub/signin"); !strings.Contains(pg.body, `href="/hub/signin/oidc?next=%2fhub"`) {
		t.Fatalf("the sign-in page offers no single sign-on:\n%.800s", pg.body)
	}

	// Someone else's code, with the attacker's own sign-in (state and
	// PKCE verifier): the provider refuses the code, the Hub signs nobody in.
	victim, code := toCallback(t, p, hubURL)
	attacker, own := toCallback(t, p, hubURL)
	forged := *own
	q := forged.Query()
	q.Set("code", code.Query().Get("code"))
	forged.RawQuery = q.Encode()
	if pg := follow(t, attacker, forged.String()); pg.status != http.StatusUnauthorized || !strings.Contains(pg.body, "did not accept the code") {
		t.Fatalf("a code redeemed with another sign-in's PKCE verifier: %d at %s\n%.600s", pg.status, pg.url, pg.body)
	}

	// A changed state is refused before the code is used.
	changed := *code
	q = changed.Query()
	q.Set("state", q.Get("state")+"x")
	changed.RawQuery = q.Encode()
	if pg := follow(t, victim, changed.String()); pg.status != http.StatusUnauthorized || !strings.Contains(pg.body, "state does not match") {
		t.Fatalf("a changed state: %d\n%.600s", pg.status, pg.body)
	}

	// The genuine flow signs in, with the provider's name and groups.
	victim, code = toCallback(t, p, hubURL)
	pg := follow(t, victim, code.String())
	if pg.status != http.StatusOK || pg.url != "/hub/keys" || !strings.Contains(pg.body, "Signed in as Test User") {
		t.Fatalf("signing in with single sign-on: %d at %s\n%.600s", pg.status, pg.url, pg.body)
	}
	u := &user{e: e, base: hubURL, c: victim}
	if rv := u.get("/hub/apis/residents/access"); rv.status != http.StatusOK {
		t.Fatalf("the provider's groups did not make the user an owner: %d", rv.status)
	}

	// A callback without the cookie of its start is refused.
	_, code = toCallback(t, p, hubURL)
	if pg := follow(t, &http.Client{}, code.String()); pg.status != http.StatusUnauthorized || !strings.Contains(pg.body, "not started here") {
		t.Fatalf("a callback in another browser: %d\n%.600s", pg.status, pg.body)
	}

	// An ID token with another nonce is refused.
	p.otherNonce.Store(true)
	b, code := toCallback(t, p, hubURL)
	if pg := follow(t, b, code.String()); pg.status != http.StatusUnauthorized || !strings.Contains(pg.body, "nonce") {
		t.Fatalf("an ID token with another nonce: %d\n%.600s", pg.status, pg.body)
	}

	var allowed, denied int
	for _, r := range e.hubAudit() {
		if r.Route != "/hub/signin/callback" {
			continue
		}
		if r.Decision == "allow" && r.Principal.Subject == "id1" && strings.Contains(r.Reason, "single sign-on") {
			allowed++
		} else if r.Decision == "deny" {
			denied++
		}
	}
	if allowed != 1 || denied != 4 {
		t.Errorf("audited sign-ins at the callback: %d allowed, %d denied; want 1 and 4", allowed, denied)
	}
}
