package http

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/plinth-data/plinth"
)

// routedMethods are the methods the API routes; HEAD and OPTIONS are
// answered for every route (RFC 9110: HEAD like GET without a body,
// OPTIONS with the Allow header).
var routedMethods = []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete}

// mountRoutes registers the routes of package plinth's route source, the
// one the authorizer and the OpenAPI document use too. The admin API is
// served only when what it needs is configured.
func (s *Server) mountRoutes(r chi.Router, domains []*plinth.Domain) error {
	platform := map[string]http.HandlerFunc{"ping": s.ping, "getReadiness": s.ready, "getOpenApiDocument": s.serveOpenAPI}
	if err := mount(r, plinth.PlatformEndpoints(), platform, nil); err != nil {
		return err
	}
	r.Method(http.MethodGet, plinth.RouteMetrics, promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{}))
	admin := map[string]http.HandlerFunc{
		"listTokens": s.listTokens, "issueToken": s.issueToken, "getToken": s.getToken, "updateToken": s.updateToken,
		"listAccessPolicies": s.listPolicies, "putAccessPolicy": s.putPolicy, "deleteAccessPolicy": s.deletePolicy,
		"searchAudit": s.searchAudit,
	}
	if err := mount(r, plinth.AdminEndpoints(), admin, s.servesAdmin); err != nil {
		return err
	}
	index := map[string]http.HandlerFunc{plinth.ActionListReports: s.listReports}
	if err := mount(r, []plinth.Endpoint{plinth.ReportIndexEndpoint()}, index, nil); err != nil {
		return err
	}
	for _, d := range domains {
		for _, e := range d.Entities {
			h := &entityHandler{s: s, e: e, listPrefix: fmt.Appendf(nil, `{%q:[`, e.Plural)}
			handlers := map[string]http.HandlerFunc{plinth.ActionList: h.list, plinth.ActionCreate: h.create,
				plinth.ActionView: h.get, plinth.ActionUpdate: h.update, plinth.ActionDelete: h.delete}
			if err := mount(r, plinth.EntityEndpoints(e.Plural), handlers, nil); err != nil {
				return err
			}
			rh := &reportHandler{s: s, e: e}
			reports := map[string]http.HandlerFunc{plinth.ActionReport: rh.report,
				plinth.ActionReportDeletions: rh.deletions, plinth.ActionReportSchema: rh.schema}
			if err := mount(r, plinth.ReportEndpoints(e.Plural), reports, nil); err != nil {
				return err
			}
		}
	}
	return nil
}

// servesAdmin says whether an admin endpoint is served: token and access
// routes need the access store, the audit search the audit store, and all
// of them an authorizer to keep them for admins.
func (s *Server) servesAdmin(ep plinth.Endpoint) bool {
	if s.authz == nil {
		return false
	}
	if ep.Template == plinth.RouteAudit {
		return s.auditSearch != nil
	}
	return s.access != nil
}

// mount registers each endpoint that serve allows (all when serve is nil)
// with the handler of its name. Every endpoint must have a handler, so the
// route source cannot grow a route this package does not know.
func mount(r chi.Router, eps []plinth.Endpoint, handlers map[string]http.HandlerFunc, serve func(plinth.Endpoint) bool) error {
	for _, ep := range eps {
		h, ok := handlers[ep.Name]
		if !ok {
			return fmt.Errorf("http: no handler for %s %s (%s)", ep.Method, ep.Template, ep.Name)
		}
		if serve == nil || serve(ep) {
			r.Method(ep.Method, ep.Template, h)
		}
	}
	return nil
}

// routePath is the path the router routes on: chi uses the raw (still
// escaped) path when there is one, so "a%2Fb" stays one id.
func routePath(r *http.Request) string {
	if r.URL.RawPath != "" {
		return r.URL.RawPath
	}
	return r.URL.Path
}

// allowedMethods lists the methods a path's route serves, for the Allow
// header; nil when no route serves the path.
func (s *Server) allowedMethods(path string) []string {
	var allow []string
	for _, m := range routedMethods {
		if s.router.Find(chi.NewRouteContext(), m, path) != "" {
			allow = append(allow, m)
		}
	}
	if len(allow) == 0 {
		return nil
	}
	if slices.Contains(allow, http.MethodGet) {
		allow = append(allow, http.MethodHead)
	}
	return append(allow, http.MethodOptions)
}

// routeTemplate returns the template of the route serving path with any
// method, or "": it labels requests whose method the route does not allow.
func (s *Server) routeTemplate(path string) string {
	for _, m := range routedMethods {
		if t := s.router.Find(chi.NewRouteContext(), m, path); t != "" {
			return t
		}
	}
	return ""
}

// answerOptions answers OPTIONS on any route with its Allow header. It
// needs no token: it tells no more than the public OpenAPI document.
func (s *Server) answerOptions(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodOptions {
			next.ServeHTTP(w, r)
			return
		}
		allow := s.allowedMethods(routePath(r))
		if allow == nil {
			writeProblem(w, r, http.StatusNotFound, "There is no route "+r.URL.Path+"; see "+plinth.RouteOpenAPI+" for the routes this API serves.")
			return
		}
		infoFrom(r.Context()).route = s.routeTemplate(routePath(r))
		w.Header().Set("Allow", strings.Join(allow, ", "))
		w.WriteHeader(http.StatusNoContent)
	})
}

// strictQuery refuses a query string that does not parse exactly (a ";"
// separator, a bad escape): parsing it leniently would silently drop a
// filter and answer with more rows than asked for.
func strictQuery(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := url.ParseQuery(r.URL.RawQuery); err != nil {
			writeProblem(w, r, http.StatusBadRequest, "The query string is not valid: separate parameters with & and percent-encode reserved characters.",
				plinth.FieldError{Parameter: "query", Detail: "does not parse: " + err.Error()})
			return
		}
		next.ServeHTTP(w, r)
	})
}
