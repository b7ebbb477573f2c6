package hub

import (
	"context"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/gorilla/securecookie"

	"github.com/plinth-data/plinth"
)

// Cookie names. The session cookie is HttpOnly and SameSite=Strict (Secure
// behind https); the pre-sign-in cookie carries the sign-in form's CSRF
// token.
const (
	sessionCookie = "plinth_hub_session"
	preCookie     = "plinth_hub_signin"
)

// session is a sign-in. It lives in the session cookie, sealed
// (AES-256 encrypted and HMAC-SHA256 authenticated, by gorilla's
// securecookie) with keys every replica shares, so that any replica serves
// any request; signing out records the session's ID in the store, so the
// cookie is refused by every replica from then on.
type session struct {
	ID        string           `json:"id"`
	Principal plinth.Principal `json:"principal"`
	CSRF      string           `json:"csrf"`
	Expires   time.Time        `json:"expires"`
}

// signedOutCheckpoint keeps the IDs of sessions signed out before their
// expiry, with that expiry (then they are dropped).
const signedOutCheckpoint = "plinth.hub.signed-out"

type sessions struct {
	codecs   []securecookie.Codec
	lifetime time.Duration
	store    plinth.Store
}

// newSessions seals cookies with the first key and opens them with any
// (the others are earlier keys, during a rotation). Each key gives an
// authentication and an encryption key (HKDF-SHA256). With no keys it
// makes one: sessions then last until a restart and work on one replica
// only.
func newSessions(keys [][]byte, lifetime time.Duration, store plinth.Store) (*sessions, error) {
	if len(keys) == 0 {
		k := make([]byte, 32)
		_, _ = rand.Read(k)
		keys = [][]byte{k}
	}
	var pairs [][]byte
	for i, k := range keys {
		if len(k) < 32 {
			return nil, fmt.Errorf("hub: session key %d is %d bytes; at least 32 are needed", i+1, len(k))
		}
		auth, err := hkdf.Key(sha256.New, k, nil, "plinth hub session: authentication", 32)
		if err != nil {
			return nil, err
		}
		enc, err := hkdf.Key(sha256.New, k, nil, "plinth hub session: encryption", 32)
		if err != nil {
			return nil, err
		}
		pairs = append(pairs, auth, enc)
	}
	codecs := securecookie.CodecsFromPairs(pairs...)
	for _, c := range codecs {
		c.(*securecookie.SecureCookie).MaxAge(int(lifetime.Seconds())).SetSerializer(securecookie.JSONEncoder{})
	}
	return &sessions{codecs: codecs, lifetime: lifetime, store: store}, nil
}

func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// seal encodes v as the value of the named cookie.
func (ss *sessions) seal(name string, v any) (string, error) {
	return securecookie.EncodeMulti(name, v, ss.codecs...)
}

// open decodes the named cookie's value into v; false when it was not
// sealed by one of the keys (or has outlived the session lifetime).
func (ss *sessions) open(name, value string, v any) bool {
	return securecookie.DecodeMulti(name, value, v, ss.codecs...) == nil
}

// start makes a session for p and its cookie value.
func (ss *sessions) start(p plinth.Principal) (string, *session, error) {
	s := &session{ID: randomToken(), Principal: p, CSRF: randomToken(), Expires: time.Now().Add(ss.lifetime).UTC().Truncate(time.Second)}
	v, err := ss.seal(sessionCookie, s)
	if err != nil {
		return "", nil, fmt.Errorf("sealing the session (a principal with very many groups does not fit a cookie): %w", err)
	}
	return v, s, nil
}

// get opens a session cookie: nil when it is not a session, has expired
// or was signed out.
func (ss *sessions) get(ctx context.Context, value string) (*session, error) {
	var s session
	if !ss.open(sessionCookie, value, &s) || !time.Now().Before(s.Expires) {
		return nil, nil
	}
	out, _, _, err := ss.signedOut(ctx)
	if err != nil || out[s.ID] != 0 {
		return nil, err
	}
	return &s, nil
}

// signedOut reads the sessions signed out and not yet expired, and the
// checkpoint they were read from.
func (ss *sessions) signedOut(ctx context.Context) (map[string]int64, []byte, bool, error) {
	c, found, err := ss.store.Checkpoint(ctx, signedOutCheckpoint)
	if err != nil {
		return nil, nil, false, err
	}
	out := map[string]int64{}
	if found {
		if err := json.Unmarshal(c.Value, &out); err != nil {
			return nil, nil, false, fmt.Errorf("the Hub's signed-out sessions do not decode: %w", err)
		}
	}
	return out, c.Value, found, nil
}

// end records that s was signed out, in tx, dropping the sessions that
// have expired since they were.
func (ss *sessions) end(ctx context.Context, tx plinth.StateTx, s *session) error {
	out, old, found, err := ss.signedOut(ctx)
	if err != nil {
		return err
	}
	now := time.Now().Unix()
	for id, exp := range out {
		if exp < now {
			delete(out, id)
		}
	}
	out[s.ID] = s.Expires.Unix()
	b, err := json.Marshal(out)
	if err != nil {
		return err
	}
	return tx.SwapCheckpoint(ctx, signedOutCheckpoint, old, found, b)
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
		var sess *session
		if c, err := r.Cookie(sessionCookie); err == nil {
			if sess, err = s.sessions.get(r.Context(), c.Value); err != nil {
				s.fail(w, r, err)
				return
			}
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
			if !sameToken(r.PostFormValue("csrf"), sess.CSRF) {
				s.refuse(w, r, sess.Principal, http.StatusForbidden, "the form's CSRF token is missing or wrong")
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
	s.render(w, r, http.StatusOK, "signin", s.signInData(w, safeNext(r.URL.Query().Get("next")), ""))
}

// signInData is the sign-in page's: a fresh CSRF token for the token form
// (in the pre-sign-in cookie), and single sign-on when configured.
func (s *Server) signInData(w http.ResponseWriter, next, problem string) map[string]any {
	return map[string]any{"Title": "Sign in", "CSRF": s.preSignIn(w), "Next": next, "Error": problem, "OIDC": s.oidc != nil}
}

func (s *Server) preSignIn(w http.ResponseWriter) string {
	pre := randomToken()
	http.SetCookie(w, s.cookie(preCookie, pre, 10*time.Minute))
	return pre
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
	next := safeNext(r.PostFormValue("next"))
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
		s.render(w, r, http.StatusUnauthorized, "signin", s.signInData(w, next, reason))
		return
	}
	s.startSession(w, r, d.Principal, next, "signed in with a user token")
}

// startSession audits a sign-in and starts its session.
func (s *Server) startSession(w http.ResponseWriter, r *http.Request, p plinth.Principal, next, how string) {
	if !s.audit(r, p, "signin", http.StatusSeeOther, plinth.DecisionAllow, how, "") {
		s.render(w, r, http.StatusServiceUnavailable, "error", map[string]any{"Title": "Unavailable", "Message": "The audit trail cannot be written just now; try again shortly."})
		return
	}
	// The session keeps only the groups the Hub decides by (owners' and
	// admins'): a user of hundreds of groups still fits in the cookie.
	p.Groups = slices.DeleteFunc(slices.Clone(p.Groups), func(g string) bool { return !s.hubGroups[g] })
	value, _, err := s.sessions.start(p)
	if err != nil {
		s.render(w, r, http.StatusUnprocessableEntity, "signin", s.signInData(w, next, err.Error()))
		return
	}
	http.SetCookie(w, s.cookie(sessionCookie, value, s.cfg.SessionLifetime))
	http.SetCookie(w, s.cookie(preCookie, "", -1))
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// signOut ends the session on every replica: its ID is recorded as
// signed out, with the step's audit record.
func (s *Server) signOut(w http.ResponseWriter, r *http.Request) {
	sess := sessionFrom(r)
	o := plinth.Origin{Principal: sess.Principal, CorrelationID: correlationFrom(r.Context()), Audit: func([]string) plinth.AuditRecord {
		return s.auditRecord(r, sess.Principal, http.StatusSeeOther, plinth.DecisionAllow, "signed out", "")
	}}
	err := retrySwaps(r.Context(), func() error {
		_, err := s.writer.State(r.Context(), "hub", o, func(tx plinth.StateTx) ([]string, error) {
			return nil, s.sessions.end(r.Context(), tx, sess)
		})
		return err
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
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
