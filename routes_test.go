package plinth_test

import (
	"strings"
	"testing"

	"github.com/plinth-data/plinth"
)

// No entity can take the path of a platform route.
func TestPlatformRoutesAreReservedPlurals(t *testing.T) {
	for _, ep := range plinth.PlatformEndpoints() {
		rest, ok := strings.CutPrefix(ep.Template, plinth.APIBase+"/")
		if !ok {
			t.Fatalf("%s is not under %s", ep.Template, plinth.APIBase)
		}
		first, _, _ := strings.Cut(rest, "/")
		if !plinth.ReservedPlural(first) {
			t.Errorf("%s: %q is not a reserved plural", ep.Template, first)
		}
	}
	if !plinth.ReservedPlural("reports") || plinth.ReservedPlural("residents") {
		t.Error("reports must be reserved for the Reporting API, residents not")
	}
}

// Each list of endpoints names each endpoint once and serves each method
// on a template once, with endpoints of one template together (the
// router, the authorizer and the OpenAPI document rely on both).
func TestEndpointsAreWellFormed(t *testing.T) {
	for name, eps := range map[string][]plinth.Endpoint{
		"platform": plinth.PlatformEndpoints(), "admin": plinth.AdminEndpoints(), "entity": plinth.EntityEndpoints("residents"),
	} {
		names, methods, done := map[string]bool{}, map[string]bool{}, map[string]bool{}
		for i, ep := range eps {
			if names[ep.Name] || methods[ep.Method+" "+ep.Template] {
				t.Errorf("%s: %+v is there twice", name, ep)
			}
			if i > 0 && eps[i-1].Template != ep.Template {
				done[eps[i-1].Template] = true
			}
			if done[ep.Template] {
				t.Errorf("%s: the endpoints of %s are not together", name, ep.Template)
			}
			names[ep.Name], methods[ep.Method+" "+ep.Template] = true, true
		}
	}
	eps := plinth.EntityEndpoints("residents")
	if eps[0].Template != "/api/v1/residents" || eps[len(eps)-1].Template != "/api/v1/residents/{id}" {
		t.Errorf("entity templates: %+v", eps)
	}
}
