package http

import (
	"net/http"

	"github.com/plinth-data/plinth"
)

// authenticate runs the authorizer's decision for every request and puts
// the principal in the request context. The same decision function runs in
// the Lambda authorizer, so the rules hold on a server and behind API
// Gateway alike.
func (s *Server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Decide on the path the router will route, so "a%2Fb" stays one id.
		path := routePath(r)
		d := s.authz.Decide(r.Context(), plinth.AuthRequest{
			Authorization: r.Header.Get("Authorization"),
			Method:        r.Method,
			Path:          path,
		})
		info := infoFrom(r.Context())
		info.route, info.mayRead = d.Route.Template, d.MayRead
		if info.route == "" {
			info.route = s.routeTemplate(path)
		}
		if !d.Allow {
			if err := s.auditDenied(r, d); err != nil && r.Context().Err() == nil {
				// The auditor fails closed: without a record, answer as
				// for any request that cannot be audited.
				s.log(r).Error("audit record of a denied request could not be written", "error", err)
				w.Header().Set("Retry-After", "5")
				writeProblem(w, r, http.StatusServiceUnavailable, "The request could not be audited, so it was refused; try again shortly.")
				return
			}
			switch d.Status {
			case http.StatusUnauthorized:
				w.Header().Set("WWW-Authenticate", d.WWWAuthenticate())
				writeProblem(w, r, http.StatusUnauthorized, "Authentication required: "+d.Reason+".")
			case http.StatusServiceUnavailable:
				w.Header().Set("Retry-After", "5")
				writeProblem(w, r, http.StatusServiceUnavailable, "Access could not be checked; try again shortly.")
			default:
				writeProblem(w, r, http.StatusForbidden, "Permission denied: "+d.Reason+".")
			}
			return
		}
		if d.Route.Operation != plinth.OpPublic {
			r = r.WithContext(plinth.WithPrincipal(r.Context(), d.Principal))
		}
		r, w, done := s.audited(r, w, d)
		defer done()
		next.ServeHTTP(w, r)
	})
}
