package hub

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/plinth-data/plinth"
)

// Cookie names. The session cookie is HttpOnly and SameSite=Strict; the
// pre-sign-in cookie carries the sign-in form's CSRF token.
const (
	sessionCookie = "plinth_hub_session"
	preCookie     = "plinth_hub_signin"
)

type session struct {
	principal plinth.Principal
	csrf      string
	expires   time.Time
}

// sessions are kept in memory: a restart signs everyone out. (Several
// replicas need sticky sessions; see README.)
type sessions struct {
	mu       sync.Mutex
	byID     map[string]*session
	lifetime time.Duration
}

func newSessions(lifetime time.Duration) *sessions {
	return &sessions{byID: map[string]*session{}, lifetime: lifetime}
}

func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func (ss *sessions) start(p plinth.Principal) (string, *session) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	now := time.Now()
	for id, s := range ss.byID {
		if now.After(s.expires) {
			delete(ss.byID, id)
		}
	}
	id := randomToken()
	s := &session{principal: p, csrf: randomToken(), expires: now.Add(ss.lifetime)}
	ss.byID[id] = s
	return id, s
}

func (ss *sessions) get(id string) *session {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	s := ss.byID[id]
	if s == nil || time.Now().After(s.expires) {
		delete(ss.byID, id)
		return nil
	}
	return s
}

func (ss *sessions) end(id string) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	delete(ss.byID, id)
}

type sessionKey struct{}

func sessionFrom(r *http.Request) *session {
	s, _ := r.Context().Value(sessionKey{}).(*session)
	return s
}

// signedIn serves h to signed-in users, sending others to sign in; every
// POST must carry the session's CSRF token (form field csrf).
func (s *Server) signedIn(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, err := r.Cookie(sessionCookie)
		var sess *session
		if err == nil {
			sess = s.sessions.get(c.Value)
		}
		if sess == nil {
			if r.Method != http.MethodGet {
				s.refuse(w, r, plinth.Principal{}, http.StatusUnauthorized, "not signed in")
				return
			}
			http.Redirect(w, r, Base+"/signin?next="+urlQueryEscape(r.URL.Path), http.StatusSeeOther)
			return
		}
		if r.Method == http.MethodPost {
			r.Body = http.MaxBytesReader(w, r.Body, 256<<10)
			if !sameToken(r.PostFormValue("csrf"), sess.csrf) {
				s.refuse(w, r, sess.principal, http.StatusForbidden, "the form's CSRF token is missing or wrong")
				return
			}
		}
		h(w, r.WithContext(context.WithValue(r.Context(), sessionKey{}, sess)))
	}
}

func sameToken(a, b string) bool {
	return a != "" && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

func (s *Server) signInPage(w http.ResponseWriter, r *http.Request) {
	pre := randomToken()
	http.SetCookie(w, s.cookie(preCookie, pre, 10*time.Minute))
	s.render(w, r, http.StatusOK, "signin", map[string]any{"Title": "Sign in", "CSRF": pre, "Next": safeNext(r.URL.Query().Get("next"))})
}

// signIn exchanges a user token (from single sign-on; in development the
// printed token) for a session. The token is checked by the same
// authorizer as the API's; service tokens cannot sign in.
func (s *Server) signIn(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	c, err := r.Cookie(preCookie)
	if err != nil || !sameToken(r.PostFormValue("csrf"), c.Value) {
		s.refuse(w, r, plinth.Principal{}, http.StatusForbidden, "the sign-in form's CSRF token is missing or wrong; reload the page")
		return
	}
	tok := strings.TrimSpace(r.PostFormValue("token"))
	d := s.cfg.Authorizer.Decide(r.Context(), plinth.AuthRequest{Authorization: "Bearer " + tok, Method: http.MethodGet, Path: Base})
	if !d.Allow || d.Principal.IsService() || d.Principal.Subject == "" {
		reason := d.Reason
		if d.Principal.IsService() {
			reason = "a service token cannot sign in to the Hub; use a user token"
		}
		if reason == "" {
			reason = "the token was refused"
		}
		s.audit(r, d.Principal, "signin", http.StatusUnauthorized, plinth.DecisionDeny, reason, "")
		s.render(w, r, http.StatusUnauthorized, "signin", map[string]any{"Title": "Sign in", "CSRF": c.Value, "Error": reason, "Next": safeNext(r.PostFormValue("next"))})
		return
	}
	if !s.audit(r, d.Principal, "signin", http.StatusSeeOther, plinth.DecisionAllow, "signed in", "") {
		s.render(w, r, http.StatusServiceUnavailable, "error", map[string]any{"Title": "Unavailable", "Message": "The audit trail cannot be written just now; try again shortly."})
		return
	}
	id, _ := s.sessions.start(d.Principal)
	http.SetCookie(w, s.cookie(sessionCookie, id, s.cfg.SessionLifetime))
	http.SetCookie(w, s.cookie(preCookie, "", -1))
	http.Redirect(w, r, safeNext(r.PostFormValue("next")), http.StatusSeeOther)
}

func (s *Server) signOut(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie(sessionCookie); err == nil {
		s.sessions.end(c.Value)
	}
	s.audit(r, sessionFrom(r).principal, "signout", http.StatusSeeOther, plinth.DecisionAllow, "signed out", "")
	http.SetCookie(w, s.cookie(sessionCookie, "", -1))
	http.Redirect(w, r, Base+"/signin", http.StatusSeeOther)
}

// safeNext keeps a redirect target inside the Hub.
func safeNext(next string) string {
	if next == Base || (strings.HasPrefix(next, Base+"/") && !strings.Contains(next, "//") && !strings.Contains(next, "\\")) {
		return next
	}
	return Base
}

func (s *Server) cookie(name, value string, maxAge time.Duration) *http.Cookie {
	c := &http.Cookie{Name: name, Value: value, Path: Base, HttpOnly: true, Secure: s.cfg.SecureCookies, SameSite: http.SameSiteStrictMode}
	if maxAge < 0 {
		c.MaxAge = -1
	} else {
		c.MaxAge = int(maxAge.Seconds())
	}
	return c
}

// refuse answers a refused step and audits it.
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, p plinth.Principal, status int, reason string) {
	s.audit(r, p, "refused", status, plinth.DecisionDeny, reason, "")
	s.render(w, r, status, "error", map[string]any{"Title": http.StatusText(status), "Message": reason})
}

// auditRecord is the record of one Hub step.
func (s *Server) auditRecord(r *http.Request, p plinth.Principal, status int, decision, reason, domain string) plinth.AuditRecord {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	return plinth.AuditRecord{Time: plinth.Now(), CorrelationID: correlationFrom(r.Context()), Environment: s.cfg.Environment,
		Domain: domain, Operation: "hub", Method: r.Method, Route: routeOf(r), Principal: p, Decision: decision,
		Reason: reason, Status: status, ClientAddress: host, UserAgent: r.UserAgent()}
}

// audit records a step that changes nothing stored; false when the record
// could not be made durable (the step must then fail).
func (s *Server) audit(r *http.Request, p plinth.Principal, _ string, status int, decision, reason, domain string) bool {
	if s.auditor == nil {
		return true
	}
	if _, err := s.auditor.Record(r.Context(), s.auditRecord(r, p, status, decision, reason, domain)); err != nil {
		s.logger.Error("hub: writing an audit record", "error", err)
		return false
	}
	return true
}

// routeOf is the route pattern that served r, for the audit trail.
func routeOf(r *http.Request) string {
	if r.Pattern != "" {
		if _, path, ok := strings.Cut(r.Pattern, " "); ok {
			return path
		}
		return r.Pattern
	}
	return r.URL.Path
}
