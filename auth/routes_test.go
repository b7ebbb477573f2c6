package auth

import (
	"net/http"
	"testing"

	"github.com/go-chi/chi/v5"

	"github.com/plinth-data/plinth"
)

func TestRoute(t *testing.T) {
	rt, err := newRouteTable(testDomains(t))
	if err != nil {
		t.Fatal(err)
	}
	type want struct {
		template, domain, entity string
		op                       plinth.Operation
	}
	none := want{}
	res := func(tpl string, op plinth.Operation) want { return want{tpl, "residents", "residents", op} }
	admin := func(tpl string) want { return want{tpl, "", "", plinth.OpAdmin} }
	public := func(tpl string) want { return want{tpl, "", "", plinth.OpPublic} }
	cases := []struct {
		method, path string
		want         want
	}{
		{"GET", "/api/v1/residents", res("/api/v1/residents", plinth.OpRead)},
		{"HEAD", "/api/v1/residents", res("/api/v1/residents", plinth.OpRead)},
		{"POST", "/api/v1/residents", res("/api/v1/residents", plinth.OpWrite)},
		{"PATCH", "/api/v1/residents", none},
		{"DELETE", "/api/v1/residents", none},
		{"PUT", "/api/v1/residents", none},
		{"GET", "/api/v1/residents/42", res("/api/v1/residents/{id}", plinth.OpRead)},
		{"PATCH", "/api/v1/residents/42", res("/api/v1/residents/{id}", plinth.OpWrite)},
		{"DELETE", "/api/v1/residents/42", res("/api/v1/residents/{id}", plinth.OpWrite)},
		{"POST", "/api/v1/residents/42", none},
		{"PUT", "/api/v1/residents/42", none},
		{"GET", "/api/v1/residents/%7Bid%7D", res("/api/v1/residents/{id}", plinth.OpRead)},
		{"GET", "/api/v1/residents/..", res("/api/v1/residents/{id}", plinth.OpRead)}, // ".." is the id, as the router sees it
		{"GET", "/api/v1/tenancies/1", want{"/api/v1/tenancies/{id}", "housing", "tenancies", plinth.OpRead}},
		{"GET", "/api/v1/reports/residents", res("/api/v1/reports/residents", plinth.OpReport)},
		{"HEAD", "/api/v1/reports/residents", res("/api/v1/reports/residents", plinth.OpReport)},
		{"GET", "/api/v1/reports/residents/deletions", res("/api/v1/reports/residents/deletions", plinth.OpReport)},
		{"GET", "/api/v1/reports/residents/schema", res("/api/v1/reports/residents/schema", plinth.OpReport)},
		{"POST", "/api/v1/reports/residents", none},
		{"GET", "/api/v1/reports/residents/1", none},
		{"GET", "/api/v1/reports/residents/", none},
		{"GET", "/api/v1/reports/nothing", none},
		{"GET", "/api/v1/reports", want{"/api/v1/reports", "", "", plinth.OpReport}},
		{"POST", "/api/v1/reports", none},
		{"GET", "/api/v1/reports/", none},

		// Exact segments only.
		{"GET", "/api/v1/residents/", none},
		{"GET", "/api/v1/residents//", none},
		{"GET", "/api/v1/residents/1/", none},
		{"GET", "/api/v1/residents/1/2", none},
		{"GET", "/api/v1/residents/../contacts", none},
		{"GET", "/api/v1/contacts/../residents", none},
		{"GET", "/api/v1/residents/./1", none},
		{"GET", "/api/v1/./residents", none},
		{"GET", "/api/v1/../v1/residents", none},
		{"GET", "/api/v1/residents-evil", none},
		{"GET", "/api/v1/residents-evil/1", none},
		{"GET", "/api/v1/residentsx", none},
		{"GET", "/api/v1/resident", none},
		{"GET", "/api/v1/Residents", none},
		{"GET", "/API/v1/residents", none},
		{"GET", "/api/v2/residents", none},
		{"GET", "/api/v1//residents", none},
		{"GET", "//api/v1/residents", none},
		{"GET", "/x/api/v1/residents", none},
		{"GET", "api/v1/residents", none},
		{"GET", "/api/v1/residents?x=1", none},
		{"GET", "/api/v1/", none},
		{"GET", "/api/v1", none},
		{"GET", "", none},
		{"GET", "/", none},

		{"GET", "/api/v1/healthcheck/ping", public("/api/v1/healthcheck/ping")},
		{"HEAD", "/api/v1/healthcheck/ping", public("/api/v1/healthcheck/ping")},
		{"GET", "/api/v1/healthcheck/ready", public("/api/v1/healthcheck/ready")},
		{"GET", "/api/v1/openapi.json", public("/api/v1/openapi.json")},
		{"GET", "/metrics", public("/metrics")},
		{"POST", "/api/v1/healthcheck/ping", none},
		{"DELETE", "/metrics", none},
		{"GET", "/api/v1/healthcheck/ping/", none},
		{"GET", "/api/v1/healthcheck/pingx", none},
		{"GET", "/api/v1/healthcheck/ping/../../residents", none},
		{"GET", "/api/v1/healthcheck", none},
		{"GET", "/api/v1/healthcheck/", none},
		{"GET", "/api/v1/openapi.json/", none},
		{"GET", "/api/v1/openapi.jsonx", none},
		{"GET", "/metrics/", none},
		{"GET", "/metricsx", none},
		{"GET", "/metrics/../api/v1/residents", none},

		{"GET", "/admin/v1/tokens", admin("/admin/v1/tokens")},
		{"POST", "/admin/v1/tokens", admin("/admin/v1/tokens")},
		{"GET", "/admin/v1/tokens/abc", admin("/admin/v1/tokens/{id}")},
		{"PATCH", "/admin/v1/tokens/abc", admin("/admin/v1/tokens/{id}")},
		{"GET", "/admin/v1/tokens/", admin("")},
		{"GET", "/admin/v1/tokens/abc/def", admin("")},
		{"GET", "/admin/v1/access", admin("/admin/v1/access")},
		{"PUT", "/admin/v1/access/residents/production", admin("/admin/v1/access/{domain}/{environment}")},
		{"DELETE", "/admin/v1/access/residents/production", admin("/admin/v1/access/{domain}/{environment}")},
		{"GET", "/admin/v1/access/residents", admin("")},
		{"GET", "/admin/v1/access/residents/", admin("")},
		{"GET", "/admin/v1/access//production", admin("")},
		{"GET", "/admin/v1/access/a/b/c", admin("")},
		{"GET", "/admin/v1/audit", admin("/admin/v1/audit")},
		{"GET", "/admin/v1/audit/", admin("")},
		{"GET", "/admin/v1", admin("")},
		{"GET", "/admin/v1/", admin("")},
		{"GET", "/admin/v1/anything/at/all", admin("")},
		{"GET", "/admin/v1/../../api/v1/residents", admin("")},
		{"GET", "/admin/v1x", none},
		{"GET", "/admin/v10/tokens", none},
		{"GET", "/admin", none},
		{"GET", "/admin/v2/tokens", none},
	}
	for _, c := range cases {
		r, ok := rt.match(c.method, c.path)
		got := want{r.Template, r.Domain, r.Entity, r.Operation}
		if ok != (c.want != none) || got != c.want {
			t.Errorf("%s %q: got %+v ok=%v, want %+v", c.method, c.path, got, ok, c.want)
		}
	}
}

// Whenever the router (chi, with the routes http/server.go registers)
// would dispatch a request to a handler, the authorizer classifies it as
// that same route, so an "unknown" path never reaches an entity handler.
func TestRouteAgreesWithChi(t *testing.T) {
	ds := testDomains(t)
	rt, err := newRouteTable(ds)
	if err != nil {
		t.Fatal(err)
	}
	mux := chi.NewRouter()
	h := http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
	eps := append(plinth.PlatformEndpoints(), plinth.Endpoint{Method: "GET", Template: plinth.RouteMetrics})
	eps = append(eps, plinth.AdminEndpoints()...)
	for _, d := range ds {
		for _, e := range d.Entities {
			eps = append(eps, plinth.EntityEndpoints(e.Plural)...)
		}
	}
	for _, ep := range eps {
		mux.Method(ep.Method, ep.Template, h)
	}
	paths := []string{
		"/api/v1/residents", "/api/v1/residents/", "/api/v1/residents/1", "/api/v1/residents/1/",
		"/api/v1/residents//", "/api/v1/residents/..", "/api/v1/residents/.", "/api/v1/residents/../contacts",
		"/api/v1/residents-evil", "/api/v1//residents", "//api/v1/residents", "/api/v1/residents/a%2Fb",
		"/api/v1/healthcheck/ping", "/api/v1/healthcheck/ping/", "/api/v1/healthcheck/ready",
		"/api/v1/openapi.json", "/metrics", "/metrics/", "/api/v1/contacts/1", "/api/v1/properties/x",
		"/api/v1/reports/residents", "/api/v1/reports", "/api/v1/reports/residents/schema",
		"/api/v1/reports/residents/deletions", "/api/v1/reports/residents/x", "/admin/v1/tokens", "/api/v1/tenancies",
		"/admin/v1/tokens/x", "/admin/v1/tokens/", "/admin/v1/access/a/b", "/admin/v1/access/a/b/c", "/admin/v1/audit",
	}
	methods := []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}
	for _, p := range paths {
		for _, m := range methods {
			pattern := mux.Find(chi.NewRouteContext(), m, p)
			if pattern == "" {
				continue
			}
			r, ok := rt.match(m, p)
			if !ok || r.Template != pattern {
				t.Errorf("%s %s: chi routes to %s, the authorizer says %+v ok=%v", m, p, pattern, r, ok)
			}
		}
	}
}

func TestRouteDoesNotAllocate(t *testing.T) {
	rt, err := newRouteTable(testDomains(t))
	if err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(100, func() {
		rt.match("GET", "/api/v1/residents/42")
		rt.match("POST", "/api/v1/tenancies")
		rt.match("GET", "/admin/v1/access/residents/production")
		rt.match("GET", "/api/v1/residents-evil/1")
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per match", allocs)
	}
}
