package auth

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"slices"
	"sync"
	"time"
	"unsafe"

	"github.com/golang-jwt/jwt/v5"

	"github.com/plinth-data/plinth"
)

// maxTokenBytes bounds the size of a token worth parsing.
const maxTokenBytes = 16 << 10

// tokenClaims are the claims Plinth reads from user and service tokens.
type tokenClaims struct {
	jwt.RegisteredClaims
	Email    string    `json:"email,omitempty"`
	Name     string    `json:"name,omitempty"`
	Groups   groupList `json:"groups,omitempty"`
	Consumer string    `json:"consumer,omitempty"`
}

// groupList is the groups claim: an array of strings (a single string is
// taken as one group).
type groupList []string

func (g *groupList) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*g = groupList{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return errors.New("groups must be an array of strings")
	}
	*g = many
	return nil
}

// verified is a token that passed verification, as cached.
type verified struct {
	principal plinth.Principal
	service   bool
	// expires is when the entry stops being usable: the token's expiry
	// (plus skew), and at most CacheTTL after verification.
	expires time.Time
	// jwks is set for tokens verified with a JWKS key; gen is the key set
	// generation they were verified against.
	jwks bool
	gen  uint64
}

// verify returns the verified token, or the reason it is not valid.
func (a *Authorizer) verify(ctx context.Context, raw string, now time.Time) (*verified, string) {
	if len(raw) > maxTokenBytes {
		return nil, "token is malformed"
	}
	key := sha256.Sum256(unsafe.Slice(unsafe.StringData(raw), len(raw)))
	if v := a.tokens.get(key, now); v != nil && (!v.jwks || v.gen == a.keys.generation()) {
		return v, ""
	}
	v, err := a.verifyFull(ctx, raw, now)
	if err != nil {
		return nil, err.Error()
	}
	a.tokens.put(key, v, now)
	return v, ""
}

// verifyError carries a reason that is safe to show to the caller;
// signature is set when the token's signature (or its algorithm) did not
// verify.
type verifyError struct {
	reason    string
	signature bool
}

func (e *verifyError) Error() string { return e.reason }

func reasonError(reason string) error { return &verifyError{reason: reason} }

func (a *Authorizer) verifyFull(ctx context.Context, raw string, now time.Time) (*verified, error) {
	if a.cfg.ServiceSecret != nil && peekIssuer(raw) == ServiceIssuer {
		v, err := a.verifyService(raw, now)
		if err == nil {
			return v, nil
		}
		// Only a token that verifies with a service key is a service
		// token; any other with iss "plinth" is judged as a user token.
		if ve := (*verifyError)(nil); !errors.As(err, &ve) || !ve.signature {
			return nil, err
		}
		v, uerr := a.verifyUser(ctx, raw, now)
		if uerr != nil && err.Error() == unknownServiceKeyReason {
			return nil, err // the clearer reason
		}
		return v, uerr
	}
	return a.verifyUser(ctx, raw, now)
}

// peekIssuer returns the unverified iss of a token, to tell service tokens
// apart; nothing else is trusted before verification.
func peekIssuer(raw string) string {
	var c jwt.RegisteredClaims
	if _, _, err := jwt.NewParser().ParseUnverified(raw, &c); err != nil {
		return ""
	}
	return c.Issuer
}

func (a *Authorizer) parserOptions(methods []string) []jwt.ParserOption {
	return []jwt.ParserOption{
		jwt.WithValidMethods(methods),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(a.cfg.ClockSkew),
		jwt.WithTimeFunc(func() time.Time { return a.now() }),
	}
}

var serviceMethods = []string{"HS256"}

func (a *Authorizer) verifyService(raw string, now time.Time) (*verified, error) {
	var c tokenClaims
	p := jwt.NewParser(append(a.parserOptions(serviceMethods), jwt.WithIssuer(ServiceIssuer))...)
	tok, err := p.ParseWithClaims(raw, &c, a.serviceKey)
	if errors.Is(err, errUnknownServiceKID) {
		return nil, &verifyError{reason: unknownServiceKeyReason, signature: true}
	}
	if err != nil {
		return nil, tokenError(err, tok, &c, serviceMethods)
	}
	if c.ID == "" || c.Consumer == "" {
		return nil, reasonError("service token is malformed")
	}
	return &verified{
		principal: plinth.Principal{Subject: c.Consumer, TokenID: c.ID, Consumer: c.Consumer},
		service:   true,
		expires:   a.entryExpiry(c.ExpiresAt, now),
	}, nil
}

func (a *Authorizer) verifyUser(ctx context.Context, raw string, now time.Time) (*verified, error) {
	if len(a.userMethods) == 0 {
		return nil, reasonError("user tokens are not accepted")
	}
	opts := a.parserOptions(a.userMethods)
	if a.cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(a.cfg.Issuer))
	}
	if a.cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(a.cfg.Audience))
	}
	p := jwt.NewParser(opts...)
	var ks *keySet
	if a.keys != nil {
		ks = a.keys.snapshot()
	}
	parse := func() (*tokenClaims, *jwt.Token, error) {
		var c tokenClaims
		tok, err := p.ParseWithClaims(raw, &c, func(t *jwt.Token) (any, error) {
			alg := t.Method.Alg()
			if alg == "HS256" {
				if a.cfg.UserSecret == nil {
					return nil, errAlgMismatch
				}
				return a.userSecretKeys(), nil
			}
			if ks == nil {
				return nil, errAlgMismatch
			}
			kid, _ := t.Header["kid"].(string)
			k := ks.lookup(kid)
			if k == nil {
				return nil, errUnknownKID
			}
			if !k.allows(alg) {
				return nil, errAlgMismatch
			}
			return k.key, nil
		})
		return &c, tok, err
	}
	c, tok, err := parse()
	if errors.Is(err, errUnknownKID) {
		// The keys may have rotated: refresh (rate-limited) and try once more.
		a.keys.refresh(ctx)
		if next := a.keys.snapshot(); next.gen != ks.gen {
			ks = next
			c, tok, err = parse()
		}
	}
	if err != nil {
		return nil, tokenError(err, tok, c, a.userMethods)
	}
	subject := c.Subject
	if subject == "" {
		subject = c.Email
	}
	if subject == "" {
		return nil, reasonError("token names no subject (sub or email)")
	}
	v := &verified{
		principal: plinth.Principal{Subject: subject, Email: c.Email, Name: c.Name, Groups: []string(c.Groups)},
		expires:   a.entryExpiry(c.ExpiresAt, now),
	}
	if tok.Method.Alg() != "HS256" {
		v.jwks, v.gen = true, ks.gen
	}
	return v, nil
}

// entryExpiry is when a token verified now stops being cached.
func (a *Authorizer) entryExpiry(exp *jwt.NumericDate, now time.Time) time.Time {
	limit := now.Add(a.cfg.CacheTTL)
	if exp != nil {
		if e := exp.Add(a.cfg.ClockSkew); e.Before(limit) {
			return e
		}
	}
	return limit
}

// tokenError turns a verification error into a reason safe to show: it
// says which check failed, never how a signature failed.
func tokenError(err error, tok *jwt.Token, c *tokenClaims, methods []string) error {
	switch {
	case errors.Is(err, errUnknownKID):
		return reasonError("token signing key is not known")
	case errors.Is(err, errAlgMismatch):
		return reasonError("token signing algorithm is not accepted")
	case errors.Is(err, jwt.ErrTokenMalformed):
		return reasonError("token is malformed")
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		return reasonError("token signing algorithm is not accepted")
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		if tok != nil && tok.Method != nil && !slices.Contains(methods, tok.Method.Alg()) {
			return &verifyError{reason: "token signing algorithm is not accepted", signature: true}
		}
		return &verifyError{reason: "token signature is not valid", signature: true}
	case errors.Is(err, jwt.ErrTokenExpired):
		return reasonError("token expired")
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return reasonError("token is not valid yet")
	case errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return reasonError("token is issued in the future")
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return reasonError("token issuer is not accepted")
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return reasonError("token audience is not accepted")
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		// The claims were decoded and the signature verified: say which
		// required claim is missing.
		switch {
		case c.ExpiresAt == nil:
			return reasonError("token has no expiry (exp)")
		case c.Issuer == "":
			return reasonError("token names no issuer (iss)")
		case len(c.Audience) == 0:
			return reasonError("token names no audience (aud)")
		}
		return reasonError("token lacks a required claim")
	}
	return reasonError("token is not valid")
}

// tokenCache remembers verified tokens by the SHA-256 of the raw token.
type tokenCache struct {
	mu  sync.RWMutex
	m   map[[sha256.Size]byte]*verified
	max int
}

const defaultTokenCacheSize = 10000

func newTokenCache(max int) *tokenCache {
	return &tokenCache{m: make(map[[sha256.Size]byte]*verified), max: max}
}

func (c *tokenCache) get(key [sha256.Size]byte, now time.Time) *verified {
	c.mu.RLock()
	v := c.m[key]
	c.mu.RUnlock()
	if v == nil || !now.Before(v.expires) {
		return nil
	}
	return v
}

func (c *tokenCache) put(key [sha256.Size]byte, v *verified, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= c.max {
		for k, e := range c.m {
			if !now.Before(e.expires) {
				delete(c.m, k)
			}
		}
		// Still full: drop arbitrary entries (map order is random) down to
		// nine tenths, so the sweep is not repeated on every insert.
		for k := range c.m {
			if len(c.m) < c.max*9/10 {
				break
			}
			delete(c.m, k)
		}
	}
	c.m[key] = v
}
