package http_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/audit"
	"github.com/plinth-data/plinth/auth"
	"github.com/plinth-data/plinth/domains"
	plinthhttp "github.com/plinth-data/plinth/http"
	"github.com/plinth-data/plinth/plinthtest"
	"github.com/plinth-data/plinth/spec"
)

// securedAPI is a Platform API behind a real authorizer: readers may read
// residents, writers may write them, admins run the admin API; contacts
// have no policy.
type securedAPI struct {
	*api
	authz   *auth.Authorizer
	full    fullStore
	dbPath  string
	auditor *audit.Auditor
	server  *plinthhttp.Server
}

// newSecuredAPIWith is newSecuredAPI with changes to the server's config.
func newSecuredAPIWith(t *testing.T, mods ...func(*plinthhttp.Config)) *securedAPI {
	return newAuditedAPI(t, false, mods...)
}

func newSecuredAPI(t *testing.T) *securedAPI { return newAuditedAPI(t, false) }

// newAuditedAPI serves with auditing (failing closed when asked, as in
// production) and change events.
func newAuditedAPI(t *testing.T, failClosed bool, mods ...func(*plinthhttp.Config)) *securedAPI {
	t.Helper()
	ctx := context.Background()
	ds, err := spec.LoadFS(domains.FS, ".")
	if err != nil {
		t.Fatal(err)
	}
	st, dbPath := storeFor(t, ds)
	if err := st.PutPolicy(ctx, plinth.AccessPolicy{Domain: "residents", Environment: "development",
		ReadGroups: []string{"readers"}, WriteGroups: []string{"writers"}}); err != nil {
		t.Fatal(err)
	}
	authz, err := auth.New(ctx, auth.Config{
		Environment:   "development",
		UserSecret:    []byte("user-secret-user-secret-user-secret!"),
		ServiceSecret: []byte("service-secret-service-secret-service!"),
		AdminGroups:   []string{"admins"},
		AuditorGroups: []string{"auditors"},
		CacheTTL:      50 * time.Millisecond,
	}, st, ds)
	if err != nil {
		t.Fatal(err)
	}
	auditor := audit.New(st, audit.Config{Environment: "development", FailClosed: failClosed, Logger: discardLogger()})
	cfg := plinthhttp.Config{
		Store: st, Domains: ds, OpenAPI: []byte(`{"openapi":"3.1.0"}`), Logger: discardLogger(),
		Authorizer: authz, Access: st, Environment: "development",
		Auditor: auditor, Audit: st, AuditTrail: audit.Trail(audit.Chains(st)), Events: true,
	}
	for _, mod := range mods {
		mod(&cfg)
	}
	server := mustServer(t, cfg)
	srv := httptest.NewServer(server)
	t.Cleanup(func() {
		srv.Close()
		auditor.Close()
		authz.Close()
		st.Close()
	})
	return &securedAPI{api: &api{t: t, url: srv.URL, store: st, domains: ds}, authz: authz, full: st, dbPath: dbPath, auditor: auditor, server: server}
}

func (s *securedAPI) token(groups ...string) string {
	s.t.Helper()
	tok, err := s.authz.IssueUserToken(plinth.Principal{Subject: "u-" + strings.Join(groups, "-"), Email: "u@example.org", Groups: groups}, time.Hour)
	if err != nil {
		s.t.Fatal(err)
	}
	return "Bearer " + tok
}

func TestAuthenticationIsRequired(t *testing.T) {
	s := newSecuredAPI(t)
	res := s.do("GET", "/api/v1/residents", "")
	problemOf(t, res, 401)
	if !strings.HasPrefix(res.header.Get("WWW-Authenticate"), "Bearer") {
		t.Fatalf("WWW-Authenticate: %q", res.header.Get("WWW-Authenticate"))
	}
	res = s.do("GET", "/api/v1/residents", "", "Authorization", "Bearer not.a.token")
	problemOf(t, res, 401)
	if !strings.Contains(res.header.Get("WWW-Authenticate"), `error="invalid_token"`) {
		t.Fatalf("WWW-Authenticate for a bad token: %q", res.header.Get("WWW-Authenticate"))
	}
	for _, public := range []string{"/api/v1/healthcheck/ping", "/api/v1/openapi.json"} {
		if res := s.do("GET", public, ""); res.status != 200 {
			t.Errorf("%s without a token: %d", public, res.status)
		}
	}
}

func TestGroupsDecideReadAndWrite(t *testing.T) {
	s := newSecuredAPI(t)
	reader, writer := s.token("readers"), s.token("writers")
	if res := s.do("POST", "/api/v1/residents", alice, "Authorization", reader); res.status != 403 {
		t.Fatalf("reader creating: %d %s", res.status, res.body)
	}
	if s.count("residents") != 0 {
		t.Fatal("a forbidden write was stored")
	}
	res := s.do("POST", "/api/v1/residents", alice, "Authorization", writer)
	if res.status != 201 {
		t.Fatalf("writer creating: %d %s", res.status, res.body)
	}
	if res := s.do("GET", "/api/v1/residents/1", "", "Authorization", reader); res.status != 200 {
		t.Fatalf("reader viewing: %d %s", res.status, res.body)
	}
	// Writing does not imply reading.
	problemOf(t, s.do("GET", "/api/v1/residents/1", "", "Authorization", writer), 403)
	// No policy for contacts in development.
	problemOf(t, s.do("GET", "/api/v1/contacts", "", "Authorization", reader), 403)
	// The admin API needs an admin group.
	problemOf(t, s.do("GET", "/admin/v1/tokens", "", "Authorization", reader), 403)
}

func TestServiceTokenLifecycleThroughTheAdminAPI(t *testing.T) {
	s := newSecuredAPI(t)
	admin, writer := s.token("admins"), s.token("writers")
	if res := s.do("POST", "/api/v1/residents", alice, "Authorization", writer); res.status != 201 {
		t.Fatalf("create: %d %s", res.status, res.body)
	}
	expires := time.Now().Add(24 * time.Hour).UTC().Format(time.RFC3339)
	body := fmt.Sprintf(`{"consumer":"housing-listener","consumerType":"listener","api":"residents",
		"endpoint":"/api/v1/residents/{id}","methods":["GET"],"environment":"development",
		"expiresAt":%q,"requestedBy":"jo@example.org","authorisedBy":"sam@example.org"}`, expires)
	res := s.do("POST", "/admin/v1/tokens", body, "Authorization", admin)
	if res.status != 201 {
		t.Fatalf("issue: %d %s", res.status, res.body)
	}
	var issued struct {
		Token string       `json:"token"`
		Grant plinth.Grant `json:"grant"`
	}
	if err := json.Unmarshal(res.body, &issued); err != nil || issued.Token == "" || !issued.Grant.Enabled {
		t.Fatalf("issue response: %v %s", err, res.body)
	}
	if res.header.Get("Location") != "/admin/v1/tokens/"+issued.Grant.ID {
		t.Fatalf("Location: %q", res.header.Get("Location"))
	}
	service := "Bearer " + issued.Token
	if res := s.do("GET", "/api/v1/residents/1", "", "Authorization", service); res.status != 200 {
		t.Fatalf("service token on its endpoint: %d %s", res.status, res.body)
	}
	problemOf(t, s.do("GET", "/api/v1/residents", "", "Authorization", service), 403)
	problemOf(t, s.do("PATCH", "/api/v1/residents/1", `{"firstName":"X"}`, "Authorization", service, "If-Match", `"1"`), 403)

	// The grant is listed and readable, never with the token.
	list := s.do("GET", "/admin/v1/tokens?limit=10", "", "Authorization", admin)
	if list.status != 200 || !strings.Contains(string(list.body), issued.Grant.ID) || strings.Contains(string(list.body), issued.Token) {
		t.Fatalf("list: %d %s", list.status, list.body)
	}
	if res := s.do("GET", "/admin/v1/tokens/"+issued.Grant.ID, "", "Authorization", admin); res.status != 200 {
		t.Fatalf("get grant: %d %s", res.status, res.body)
	}

	// Revocation takes effect within the cache bound.
	res = s.do("PATCH", "/admin/v1/tokens/"+issued.Grant.ID, `{"enabled":false}`, "Authorization", admin)
	if res.status != 200 || !strings.Contains(string(res.body), `"enabled":false`) {
		t.Fatalf("revoke: %d %s", res.status, res.body)
	}
	var status int
	plinthtest.Eventually(t, 0, func() bool {
		status = s.do("GET", "/api/v1/residents/1", "", "Authorization", service).status
		return status == 403 || status == 401
	}, "revoked token still works: %d", plinthtest.Last(&status))
}

func TestAdminAPIRejectsBadInput(t *testing.T) {
	s := newSecuredAPI(t)
	admin := s.token("admins")
	expires := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	good := func(override string) string {
		return fmt.Sprintf(`{"consumer":"c","consumerType":"service","api":"residents","endpoint":"/api/v1/residents",
			"methods":["GET"],"environment":"development","expiresAt":%q,"requestedBy":"a","authorisedBy":"b"%s}`, expires, override)
	}
	cases := []struct {
		name, method, path, body string
		status                   int
		names                    []string
	}{
		{"unknown field", "POST", "/admin/v1/tokens", good(`,"scope":"all"`), 422, []string{"scope"}},
		{"wrong type", "POST", "/admin/v1/tokens", strings.Replace(good(""), `["GET"]`, `"GET"`, 1), 422, []string{"methods"}},
		{"endpoint not served", "POST", "/admin/v1/tokens", strings.Replace(good(""), `"/api/v1/residents"`, `"/api/v1/resident"`, 1), 422, []string{"endpoint"}},
		{"bad expiry", "POST", "/admin/v1/tokens", strings.Replace(good(""), expires, "tomorrow", 1), 422, []string{"expiresAt"}},
		{"patch without enabled", "PATCH", "/admin/v1/tokens/x", `{}`, 422, []string{"enabled"}},
		{"patch unknown grant", "PATCH", "/admin/v1/tokens/nope", `{"enabled":false}`, 404, nil},
		{"bad list limit", "GET", "/admin/v1/tokens?limit=0", "", 400, []string{"limit"}},
		{"policy for unknown domain", "PUT", "/admin/v1/access/tenancies/development", `{"readGroups":["a"]}`, 404, []string{"domain"}},
		{"policy for unknown entity", "PUT", "/admin/v1/access/residents/development", `{"entities":{"people":{"readGroups":["a"]}}}`, 422, []string{"entities.people"}},
		{"policy environment", "GET", "/admin/v1/access?environment=test", "", 400, []string{"environment"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			errs := problemOf(t, s.do(c.method, c.path, c.body, "Authorization", admin), c.status)
			for _, name := range c.names {
				found := false
				for _, e := range errs {
					m := e.(map[string]any)
					found = found || m["field"] == name || m["parameter"] == name
				}
				if !found {
					t.Errorf("problem does not name %q: %v", name, errs)
				}
			}
		})
	}
	grants, _, err := s.store.(plinth.AccessStore).Grants(context.Background(), "", 10)
	if err != nil || len(grants) != 0 {
		t.Fatalf("rejected requests stored grants: %v %v", grants, err)
	}
}

func TestAccessPolicyThroughTheAdminAPI(t *testing.T) {
	s := newSecuredAPI(t)
	admin, analyst := s.token("admins"), s.token("analysts")
	problemOf(t, s.do("GET", "/api/v1/contacts", "", "Authorization", analyst), 403)
	res := s.do("PUT", "/admin/v1/access/contacts/development", `{"readGroups":["analysts"],"writeGroups":[]}`, "Authorization", admin)
	if res.status != 200 || !strings.Contains(string(res.body), `"domain":"contacts"`) {
		t.Fatalf("put policy: %d %s", res.status, res.body)
	}
	plinthtest.Eventually(t, 0, func() bool {
		return s.do("GET", "/api/v1/contacts", "", "Authorization", analyst).status == 200
	}, "new policy not applied")
	list := s.do("GET", "/admin/v1/access", "", "Authorization", admin)
	if list.status != 200 || !strings.Contains(string(list.body), `"domain":"contacts"`) || !strings.Contains(string(list.body), `"domain":"residents"`) {
		t.Fatalf("list policies: %d %s", list.status, list.body)
	}
	if res := s.do("DELETE", "/admin/v1/access/contacts/development", "", "Authorization", admin); res.status != 204 {
		t.Fatalf("delete policy: %d %s", res.status, res.body)
	}
	problemOf(t, s.do("DELETE", "/admin/v1/access/contacts/development", "", "Authorization", admin), 404)
}
