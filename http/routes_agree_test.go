package http_test

import (
	"encoding/json"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"

	"github.com/plinth-data/plinth"
	"github.com/plinth-data/plinth/spec"
)

// The router, the authorizer's route table and the OpenAPI document are
// built from one route source (package plinth), so they agree: every route
// the router serves is classified as itself by the authorizer and is an
// operation of the OpenAPI document, and every operation of the document
// and every route the authorizer knows is served.
func TestRouterAuthorizerAndOpenAPIAgree(t *testing.T) {
	s := newSecuredAPI(t)
	served := map[string]bool{} // "METHOD template"
	err := chi.Walk(s.server.Routes(), func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		served[method+" "+route] = true
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	documented := openAPIOperations(t, s.domains)

	for key := range served {
		method, tpl, _ := strings.Cut(key, " ")
		if r, ok := s.authz.Route(method, samplePath(tpl)); !ok || r.Template != tpl {
			t.Errorf("served %s: the authorizer says %+v, known=%v", key, r, ok)
		}
		if !documented[key] && tpl != plinth.RouteMetrics {
			t.Errorf("served %s is not in the OpenAPI document", key)
		}
	}
	for key := range documented {
		if !served[key] {
			t.Errorf("the OpenAPI document has %s, which is not served", key)
		}
	}
	// Whatever the authorizer classifies as a known route is served. It
	// classifies every method on an admin path as admin (so that only
	// admins learn which methods exist), so there the template must be
	// served with some method.
	methods := []string{"GET", "POST", "PUT", "PATCH", "DELETE"}
	servedAny := func(tpl string) bool {
		return slices.ContainsFunc(methods, func(m string) bool { return served[m+" "+tpl] })
	}
	for key := range served {
		_, tpl, _ := strings.Cut(key, " ")
		path := samplePath(tpl)
		for _, p := range []string{path, path + "/x", strings.TrimSuffix(path, "/x")} {
			for _, m := range methods {
				r, ok := s.authz.Route(m, p)
				if !ok || r.Template == "" || served[m+" "+r.Template] || (r.Operation == plinth.OpAdmin && servedAny(r.Template)) {
					continue
				}
				t.Errorf("the authorizer knows %s %s as %s, which is not served", m, p, r.Template)
			}
		}
	}
	if len(served) < 20 || len(documented) != len(served)-1 {
		t.Errorf("%d routes served, %d documented", len(served), len(documented))
	}
}

// openAPIOperations lists the operations of the OpenAPI document of ds as
// "METHOD template".
func openAPIOperations(t *testing.T, ds []*plinth.Domain) map[string]bool {
	t.Helper()
	raw, err := spec.OpenAPI(ds, spec.OpenAPIInfo{})
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	ops := map[string]bool{}
	for path, item := range doc.Paths {
		for method := range item {
			ops[strings.ToUpper(method)+" "+path] = true
		}
	}
	return ops
}

// samplePath is a path the template matches: each {param} becomes "x".
func samplePath(template string) string {
	return regexp.MustCompile(`\{[^}/]+\}`).ReplaceAllString(template, "x")
}
