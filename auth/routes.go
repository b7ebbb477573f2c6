package auth

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/plinth-data/plinth"
)

// Route templates outside the domains.
const (
	apiPrefix   = "/api/v1/"
	adminPrefix = "/admin/v1"

	templatePing    = "/api/v1/healthcheck/ping"
	templateReady   = "/api/v1/healthcheck/ready"
	templateOpenAPI = "/api/v1/openapi.json"
	templateMetrics = "/metrics"

	templateTokens       = "/admin/v1/tokens"
	templateToken        = "/admin/v1/tokens/{id}"
	templateAccess       = "/admin/v1/access"
	templateAccessPolicy = "/admin/v1/access/{domain}/{environment}"
	templateAudit        = "/admin/v1/audit"
)

// reservedPlurals are path segments under /api/v1/ that are not entities
// ("reports" is kept for the Reporting API, which is not served yet: until
// its handler exists no reporting route is authorised or grantable).
var reservedPlurals = []string{"healthcheck", "openapi.json", "reports"}

// entityRoutes are the precomputed routes of one entity, so that matching
// a request allocates nothing.
type entityRoutes struct {
	domain, plural string
	collection     Route // /api/v1/{plural}
	item           Route // /api/v1/{plural}/{id}
}

// endpoint is one route template a grant may name, with its methods.
type endpoint struct {
	template string
	methods  []string
}

type routeTable struct {
	entities map[string]*entityRoutes // by plural
	// endpoints lists each domain's route templates, by domain name, in
	// spec order.
	endpoints map[string][]endpoint
	domains   []string // loaded domain names, in order
}

func newRouteTable(domains []*plinth.Domain) (*routeTable, error) {
	t := &routeTable{entities: map[string]*entityRoutes{}, endpoints: map[string][]endpoint{}}
	for _, d := range domains {
		if d == nil || d.Name == "" {
			return nil, fmt.Errorf("auth: a domain without a name")
		}
		if _, dup := t.endpoints[d.Name]; dup {
			return nil, fmt.Errorf("auth: domain %q is loaded twice", d.Name)
		}
		t.domains = append(t.domains, d.Name)
		eps := []endpoint{}
		for _, e := range d.Entities {
			p := e.Plural
			if p == "" || strings.ContainsRune(p, '/') {
				return nil, fmt.Errorf("auth: domain %q: entity %q has an unusable plural %q", d.Name, e.Name, p)
			}
			for _, r := range reservedPlurals {
				if p == r {
					return nil, fmt.Errorf("auth: domain %q: entity plural %q is reserved", d.Name, p)
				}
			}
			if prev, dup := t.entities[p]; dup {
				return nil, fmt.Errorf("auth: entity plural %q is used by domains %q and %q", p, prev.domain, d.Name)
			}
			er := &entityRoutes{
				domain:     d.Name,
				plural:     p,
				collection: Route{Template: apiPrefix + p, Domain: d.Name, Entity: p},
				item:       Route{Template: apiPrefix + p + "/{id}", Domain: d.Name, Entity: p},
			}
			t.entities[p] = er
			eps = append(eps,
				endpoint{er.collection.Template, []string{http.MethodGet, http.MethodPost}},
				endpoint{er.item.Template, []string{http.MethodGet, http.MethodPatch, http.MethodDelete}},
			)
		}
		t.endpoints[d.Name] = eps
	}
	return t, nil
}

// match classifies method and path by exact segment matching: nothing is
// cleaned, so a trailing slash, an empty segment or a ".." segment makes a
// path that matches no template (or, for {id}, is the id itself, as the
// router sees it).
func (t *routeTable) match(method, path string) (Route, bool) {
	read := method == http.MethodGet || method == http.MethodHead
	if path == templateMetrics {
		return publicRoute(templateMetrics, read)
	}
	if rest, ok := strings.CutPrefix(path, apiPrefix); ok {
		return t.matchAPI(method, read, rest)
	}
	if rest, ok := strings.CutPrefix(path, adminPrefix); ok && (rest == "" || rest[0] == '/') {
		return Route{Template: adminTemplate(rest), Operation: OpAdmin}, true
	}
	return Route{}, false
}

func publicRoute(template string, read bool) (Route, bool) {
	if !read {
		return Route{}, false
	}
	return Route{Template: template, Operation: OpPublic}, true
}

// matchAPI matches the part of a path after "/api/v1/".
func (t *routeTable) matchAPI(method string, read bool, rest string) (Route, bool) {
	first, rest, more := strings.Cut(rest, "/")
	switch first {
	case "healthcheck":
		switch {
		case !more:
		case rest == "ping":
			return publicRoute(templatePing, read)
		case rest == "ready":
			return publicRoute(templateReady, read)
		}
		return Route{}, false
	case "openapi.json":
		if more {
			return Route{}, false
		}
		return publicRoute(templateOpenAPI, read)
	}
	e := t.entities[first]
	if e == nil {
		return Route{}, false
	}
	var r Route
	if !more {
		r = e.collection
		switch {
		case read:
			r.Operation = OpRead
		case method == http.MethodPost:
			r.Operation = OpWrite
		default:
			return Route{}, false
		}
		return r, true
	}
	if rest == "" || strings.IndexByte(rest, '/') >= 0 {
		return Route{}, false
	}
	r = e.item
	switch {
	case read:
		r.Operation = OpRead
	case method == http.MethodPatch || method == http.MethodDelete:
		r.Operation = OpWrite
	default:
		return Route{}, false
	}
	return r, true
}

// adminTemplate returns the known admin route template of the path after
// "/admin/v1", or "".
func adminTemplate(rest string) string {
	rest, ok := strings.CutPrefix(rest, "/")
	if !ok {
		return ""
	}
	first, rest, more := strings.Cut(rest, "/")
	switch first {
	case "tokens":
		if !more {
			return templateTokens
		}
		if isSegment(rest) {
			return templateToken
		}
	case "access":
		if !more {
			return templateAccess
		}
		if domain, env, ok := strings.Cut(rest, "/"); ok && isSegment(domain) && isSegment(env) {
			return templateAccessPolicy
		}
	case "audit":
		if !more {
			return templateAudit
		}
	}
	return ""
}

// isSegment reports whether s is one non-empty path segment.
func isSegment(s string) bool { return s != "" && strings.IndexByte(s, '/') < 0 }
