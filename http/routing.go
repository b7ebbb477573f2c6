package http

import (
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/plinth-data/plinth"
)

// routedMethods are the methods the API routes; HEAD and OPTIONS are
// answered for every route (RFC 9110: HEAD like GET without a body,
// OPTIONS with the Allow header).
var routedMethods = []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete}

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
			writeProblem(w, r, http.StatusNotFound, "There is no route "+r.URL.Path+"; see /api/v1/openapi.json for the routes this API serves.")
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
