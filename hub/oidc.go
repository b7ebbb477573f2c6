package hub

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/plinth-data/plinth"
)

// OIDC signs users in with the organisation's OpenID Connect provider:
// the authorization-code flow with PKCE (S256), a state and a nonce.
type OIDC struct {
	// Issuer is the provider's issuer URL; its discovery document is read
	// at the first sign-in.
	Issuer   string
	ClientID string
	// ClientSecret is empty for a public client (PKCE alone).
	ClientSecret string
	// RedirectURL is where the provider sends the user back: the public
	// URL of {Base}/signin/callback, registered with the provider.
	RedirectURL string
	// Scopes beyond openid, profile and email (e.g. "groups").
	Scopes []string
	// GroupsClaim names the claim that lists the user's groups; "groups"
	// when empty.
	GroupsClaim string
	// HTTPClient reaches the provider; http.DefaultClient when nil.
	HTTPClient *http.Client
}

// oidcCookie carries a sign-in's state, nonce and PKCE verifier from its
// start to the callback, sealed like the session. It is SameSite=Lax: the
// provider's redirect back is a top-level navigation from another site.
const oidcCookie = "plinth_hub_oidc"

// oidcFlow is what the oidc cookie holds.
type oidcFlow struct {
	State    string `json:"state"`
	Nonce    string `json:"nonce"`
	Verifier string `json:"verifier"`
	Next     string `json:"next"`
}

// oidcClient is the configured provider, discovered once.
type oidcClient struct {
	cfg      OIDC
	mu       sync.Mutex
	provider *oidc.Provider
}

func (c *oidcClient) ctx(ctx context.Context) context.Context {
	if c.cfg.HTTPClient != nil {
		return oidc.ClientContext(ctx, c.cfg.HTTPClient)
	}
	return ctx
}

// discover reads the provider's discovery document the first time it
// succeeds (a provider down at start does not stop the Hub).
func (c *oidcClient) discover(ctx context.Context) (*oidc.Provider, oauth2.Config, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.provider == nil {
		p, err := oidc.NewProvider(c.ctx(ctx), c.cfg.Issuer)
		if err != nil {
			return nil, oauth2.Config{}, fmt.Errorf("the sign-in provider %s cannot be reached: %w", c.cfg.Issuer, err)
		}
		c.provider = p
	}
	return c.provider, oauth2.Config{ClientID: c.cfg.ClientID, ClientSecret: c.cfg.ClientSecret, RedirectURL: c.cfg.RedirectURL,
		Endpoint: c.provider.Endpoint(), Scopes: append([]string{oidc.ScopeOpenID, "profile", "email"}, c.cfg.Scopes...)}, nil
}

// oidcStart sends the user to the provider, keeping the flow's secrets
// in the sealed oidc cookie.
func (s *Server) oidcStart(w http.ResponseWriter, r *http.Request) {
	_, conf, err := s.oidc.discover(r.Context())
	if err != nil {
		s.logger.Error("hub: OpenID Connect discovery", "error", err)
		s.render(w, r, http.StatusServiceUnavailable, "error", map[string]any{"Title": "Unavailable", "Message": "Single sign-on cannot be reached just now; try again shortly."})
		return
	}
	f := oidcFlow{State: randomToken(), Nonce: randomToken(), Verifier: oauth2.GenerateVerifier(), Next: safeNext(r.URL.Query().Get("next"))}
	sealed, err := s.sessions.seal(oidcCookie, f)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	c := s.cookie(oidcCookie, sealed, 10*time.Minute)
	c.Path, c.SameSite = Base+"/signin", http.SameSiteLaxMode
	http.SetCookie(w, c)
	http.Redirect(w, r, conf.AuthCodeURL(f.State, oidc.Nonce(f.Nonce), oauth2.S256ChallengeOption(f.Verifier)), http.StatusSeeOther)
}

// oidcCallback finishes the sign-in: the state must be the cookie's, the
// code is exchanged with the PKCE verifier, the ID token must verify (the
// provider's key, issuer, audience, expiry) and carry the cookie's nonce.
func (s *Server) oidcCallback(w http.ResponseWriter, r *http.Request) {
	clear := s.cookie(oidcCookie, "", -1)
	clear.Path = Base + "/signin"
	http.SetCookie(w, clear)
	q := r.URL.Query()
	var f oidcFlow
	c, err := r.Cookie(oidcCookie)
	switch {
	case q.Get("error") != "":
		s.oidcRefuse(w, r, plinth.Principal{}, "the sign-in provider refused: "+q.Get("error")+" "+q.Get("error_description"))
		return
	case err != nil || !s.sessions.open(oidcCookie, c.Value, &f):
		s.oidcRefuse(w, r, plinth.Principal{}, "the sign-in was not started here, or took longer than 10 minutes; start again")
		return
	case subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(f.State)) != 1:
		s.oidcRefuse(w, r, plinth.Principal{}, "the sign-in's state does not match the one this browser started; start again")
		return
	}
	p, err := s.oidcPrincipal(r.Context(), q.Get("code"), f)
	if err != nil {
		s.oidcRefuse(w, r, p, err.Error())
		return
	}
	s.startSession(w, r, p, f.Next, "signed in with single sign-on ("+s.oidc.cfg.Issuer+")")
}

// oidcPrincipal exchanges the code and reads the user from the verified
// ID token, and from the userinfo endpoint for what the token lacks.
func (s *Server) oidcPrincipal(ctx context.Context, code string, f oidcFlow) (plinth.Principal, error) {
	provider, conf, err := s.oidc.discover(ctx)
	if err != nil {
		return plinth.Principal{}, err
	}
	ctx = s.oidc.ctx(ctx)
	tok, err := conf.Exchange(ctx, code, oauth2.VerifierOption(f.Verifier))
	if err != nil {
		return plinth.Principal{}, fmt.Errorf("the sign-in provider did not accept the code: %w", err)
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return plinth.Principal{}, errors.New("the sign-in provider returned no ID token")
	}
	idt, err := provider.Verifier(&oidc.Config{ClientID: s.oidc.cfg.ClientID}).Verify(ctx, raw)
	if err != nil {
		return plinth.Principal{}, fmt.Errorf("the ID token does not verify: %w", err)
	}
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(f.Nonce)) != 1 {
		return plinth.Principal{Subject: idt.Subject}, errors.New("the ID token's nonce is not the one this sign-in sent")
	}
	claims := map[string]any{}
	if err := idt.Claims(&claims); err != nil {
		return plinth.Principal{}, err
	}
	if ui, err := provider.UserInfo(ctx, oauth2.StaticTokenSource(tok)); err == nil && ui.Subject == idt.Subject {
		extra := map[string]any{}
		if ui.Claims(&extra) == nil {
			for k, v := range extra {
				if _, ok := claims[k]; !ok {
					claims[k] = v
				}
			}
		}
	}
	return principalOf(idt.Subject, claims, s.oidc.cfg.GroupsClaim), nil
}

// principalOf reads a user from OpenID Connect claims.
func principalOf(subject string, claims map[string]any, groupsClaim string) plinth.Principal {
	if groupsClaim == "" {
		groupsClaim = "groups"
	}
	str := func(k string) string { v, _ := claims[k].(string); return v }
	p := plinth.Principal{Subject: subject, Email: str("email"), Name: str("name")}
	switch g := claims[groupsClaim].(type) {
	case []any:
		for _, x := range g {
			if s, ok := x.(string); ok && !slices.Contains(p.Groups, s) {
				p.Groups = append(p.Groups, s)
			}
		}
	case string:
		p.Groups = []string{g}
	}
	return p
}

func (s *Server) oidcRefuse(w http.ResponseWriter, r *http.Request, p plinth.Principal, reason string) {
	s.audit(r, p, "signin", http.StatusUnauthorized, plinth.DecisionDeny, "single sign-on: "+reason, "")
	s.render(w, r, http.StatusUnauthorized, "signin", s.signInData(w, Base, reason))
}
