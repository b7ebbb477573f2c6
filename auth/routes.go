package auth

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/plinth-data/plinth"
)

// templateRoutes are the precomputed routes of one route template, by
// method, so that matching a request allocates nothing.
type templateRoutes struct {
	template string
	routes   []methodRoute
}

type methodRoute struct {
	method string
	route  plinth.Route
}

// endpoint is one route template a grant may name, with its methods.
type endpoint struct {
	template string
	methods  []string
}

// routeTable classifies requests by the route templates of package plinth,
// the ones the router serves.
type routeTable struct {
	// public are the platform routes and the metrics route.
	public []templateRoutes
	// admin are the admin route templates; any method on any path under
	// /admin/v1 is an admin request.
	admin []string
	// entities holds each entity's collection and item routes, by plural.
	entities map[string][]templateRoutes
	// reports holds each entity's Reporting API routes, by plural, and
	// reportIndex the route that lists them.
	reports     map[string][]templateRoutes
	reportIndex []templateRoutes
	// endpoints lists each domain's route templates, by domain name, in
	// spec order.
	endpoints map[string][]endpoint
	domains   []string // loaded domain names, in order
}

func newRouteTable(domains []*plinth.Domain) (*routeTable, error) {
	t := &routeTable{entities: map[string][]templateRoutes{}, reports: map[string][]templateRoutes{},
		endpoints: map[string][]endpoint{}}
	t.reportIndex = group([]plinth.Endpoint{plinth.ReportIndexEndpoint()}, plinth.Route{})
	metrics := plinth.Endpoint{Method: http.MethodGet, Template: plinth.RouteMetrics, Operation: plinth.OpPublic}
	t.public = group(append(plinth.PlatformEndpoints(), metrics), plinth.Route{})
	for _, ep := range plinth.AdminEndpoints() {
		if len(t.admin) == 0 || t.admin[len(t.admin)-1] != ep.Template {
			t.admin = append(t.admin, ep.Template)
		}
	}
	owner := map[string]string{} // domain name by entity plural
	for _, d := range domains {
		if err := t.addDomain(d, owner); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// addDomain adds the routes of a domain's entities.
func (t *routeTable) addDomain(d *plinth.Domain, owner map[string]string) error {
	if d == nil || d.Name == "" {
		return fmt.Errorf("auth: a domain without a name")
	}
	if _, dup := t.endpoints[d.Name]; dup {
		return fmt.Errorf("auth: domain %q is loaded twice", d.Name)
	}
	t.domains = append(t.domains, d.Name)
	eps := []endpoint{}
	for _, e := range d.Entities {
		p := e.Plural
		switch {
		case p == "" || strings.ContainsRune(p, '/'):
			return fmt.Errorf("auth: domain %q: entity %q has an unusable plural %q", d.Name, e.Name, p)
		case plinth.ReservedPlural(p):
			return fmt.Errorf("auth: domain %q: entity plural %q is reserved", d.Name, p)
		case owner[p] != "":
			return fmt.Errorf("auth: entity plural %q is used by domains %q and %q", p, owner[p], d.Name)
		}
		owner[p] = d.Name
		routes := group(plinth.EntityEndpoints(p), plinth.Route{Domain: d.Name, Entity: p})
		t.entities[p] = routes
		t.reports[p] = group(plinth.ReportEndpoints(p), plinth.Route{Domain: d.Name, Entity: p})
		for _, tr := range append(routes, t.reports[p]...) {
			ep := endpoint{template: tr.template}
			for _, mr := range tr.routes {
				ep.methods = append(ep.methods, mr.method)
			}
			eps = append(eps, ep)
		}
	}
	t.endpoints[d.Name] = eps
	return nil
}

// group gathers endpoints by template, in order, each method with the
// route base completed by the endpoint's template and operation.
func group(eps []plinth.Endpoint, base plinth.Route) []templateRoutes {
	var out []templateRoutes
	for _, ep := range eps {
		if len(out) == 0 || out[len(out)-1].template != ep.Template {
			out = append(out, templateRoutes{template: ep.Template})
		}
		r := base
		r.Template, r.Operation = ep.Template, ep.Operation
		last := &out[len(out)-1]
		last.routes = append(last.routes, methodRoute{ep.Method, r})
	}
	return out
}

// match classifies method and path by exact segment matching: nothing is
// cleaned, so a trailing slash, an empty segment or a ".." segment makes a
// path that matches no template (or, for {id}, is the id itself, as the
// router sees it).
func (t *routeTable) match(method, path string) (plinth.Route, bool) {
	if method == http.MethodHead {
		method = http.MethodGet // HEAD is served with GET
	}
	if r, ok := matchAny(t.public, method, path); ok {
		return r, true
	}
	if rest, ok := strings.CutPrefix(path, plinth.APIBase+"/"); ok {
		plural, rest, _ := strings.Cut(rest, "/")
		if plural == "reports" {
			if r, ok := matchAny(t.reportIndex, method, path); ok {
				return r, true
			}
			plural, _, _ = strings.Cut(rest, "/")
			return matchAny(t.reports[plural], method, path)
		}
		return matchAny(t.entities[plural], method, path)
	}
	if rest, ok := strings.CutPrefix(path, plinth.AdminBase); ok && (rest == "" || rest[0] == '/') {
		return plinth.Route{Template: t.adminTemplate(path), Operation: plinth.OpAdmin}, true
	}
	return plinth.Route{}, false
}

// matchAny returns the route of the first template path fits, if it is
// served with method.
func matchAny(trs []templateRoutes, method, path string) (plinth.Route, bool) {
	for i := range trs {
		if !matchTemplate(trs[i].template, path) {
			continue
		}
		for _, mr := range trs[i].routes {
			if mr.method == method {
				return mr.route, true
			}
		}
		return plinth.Route{}, false
	}
	return plinth.Route{}, false
}

// adminTemplate returns the known admin route template path fits, or "".
func (t *routeTable) adminTemplate(path string) string {
	for _, tpl := range t.admin {
		if matchTemplate(tpl, path) {
			return tpl
		}
	}
	return ""
}

// matchTemplate reports whether path fits template segment by segment, as
// the router matches it: a "{name}" segment stands for one non-empty
// segment, any other must be equal.
func matchTemplate(template, path string) bool {
	for {
		ts, trest, tmore := strings.Cut(template, "/")
		ps, prest, pmore := strings.Cut(path, "/")
		param := strings.HasPrefix(ts, "{") && strings.HasSuffix(ts, "}")
		switch {
		case tmore != pmore:
			return false
		case param && ps == "":
			return false
		case !param && ts != ps:
			return false
		case !tmore:
			return true
		}
		template, path = trest, prest
	}
}
