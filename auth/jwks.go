package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"errors"
	"fmt"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lestrrat-go/httprc/v3"
	"github.com/lestrrat-go/jwx/v3/jwk"
)

// asymmetricAlgs are the algorithms user tokens may be signed with through a
// JWKS. Each key accepts only those of its own type (and its alg, when the
// JWK names one); HS* never verifies against a JWKS key.
var asymmetricAlgs = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"}

var (
	rsaAlgs = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
	p256    = []string{"ES256"}
	p384    = []string{"ES384"}
	p521    = []string{"ES512"}
)

// minRSABits is the smallest RSA modulus a JWKS key may have.
const minRSABits = 2048

// JWKS refresh pacing.
const (
	jwksMinInterval   = 5 * time.Minute // periodic refresh, unless Cache-Control says longer
	jwksMaxInterval   = time.Hour
	jwksFetchTimeout  = 15 * time.Second // the first fetch, in New
	kidRefreshTimeout = 5 * time.Second  // a refresh for an unknown kid, while a request waits
	urlUnknownKIDWait = 10 * time.Second // at most one unknown-kid refresh this often
	fileUnknownKIDGap = time.Second
)

var (
	errUnknownKID  = errors.New("unknown key id")
	errAlgMismatch = errors.New("algorithm does not fit the key")
)

// pubKey is one usable verification key of a JWKS.
type pubKey struct {
	key  any // *rsa.PublicKey or *ecdsa.PublicKey
	algs []string
}

func (k *pubKey) allows(alg string) bool {
	for _, a := range k.algs {
		if a == alg {
			return true
		}
	}
	return false
}

// keySet is an immutable snapshot of a JWKS.
type keySet struct {
	gen   uint64
	byKID map[string]*pubKey
	only  *pubKey // the single key, used for tokens without a kid
}

// lookup returns the key for a token's kid.
func (s *keySet) lookup(kid string) *pubKey {
	if kid == "" {
		return s.only
	}
	return s.byKID[kid]
}

// keySource provides the current JWKS keys.
type keySource interface {
	// snapshot returns the current keys, picking up a changed source.
	snapshot() *keySet
	// generation is the gen of the latest snapshot, cheaply.
	generation() uint64
	// refresh reloads the source now, unless that was done very recently.
	refresh(ctx context.Context)
	close()
}

// buildKeySet converts a JWKS into verification keys. Keys that are not
// for signatures, symmetric keys, unsupported types and short RSA keys are
// left out. (The sets are parsed with jwk.WithIgnoreParseError, so one key
// jwx cannot read — a short RSA key, an unknown kty — leaves out that key
// rather than every key; only usable keys are taken here.)
func buildKeySet(set jwk.Set, gen uint64) *keySet {
	ks := &keySet{gen: gen, byKID: map[string]*pubKey{}}
	var all []*pubKey
	for i := range set.Len() {
		k, ok := set.Key(i)
		if !ok {
			continue
		}
		if use, ok := k.KeyUsage(); ok && use != "sig" {
			continue
		}
		pk, err := jwk.PublicKeyOf(k)
		if err != nil {
			continue
		}
		var raw any
		if err := jwk.Export(pk, &raw); err != nil {
			continue
		}
		var algs []string
		switch key := raw.(type) {
		case *rsa.PublicKey:
			if key.N.BitLen() < minRSABits {
				continue
			}
			algs = rsaAlgs
		case *ecdsa.PublicKey:
			switch key.Curve {
			case elliptic.P256():
				algs = p256
			case elliptic.P384():
				algs = p384
			case elliptic.P521():
				algs = p521
			default:
				continue
			}
		default:
			continue
		}
		if a, ok := k.Algorithm(); ok && a.String() != "" {
			named := a.String()
			fits := false
			for _, x := range algs {
				fits = fits || x == named
			}
			if !fits {
				continue
			}
			algs = []string{named}
		}
		p := &pubKey{key: raw, algs: algs}
		all = append(all, p)
		if kid, ok := k.KeyID(); ok && kid != "" {
			if _, dup := ks.byKID[kid]; !dup {
				ks.byKID[kid] = p
			}
		}
	}
	if len(all) == 1 {
		ks.only = all[0]
	}
	return ks
}

// urlKeys is a JWKS at a URL, kept by a jwk.Cache (httprc) that refreshes
// it in the background.
type urlKeys struct {
	url    string
	cache  *jwk.Cache
	res    *httprc.ResourceBase[jwk.Set]
	cancel context.CancelFunc

	mu      sync.Mutex // guards lastSet and the building of cur
	lastSet jwk.Set
	cur     atomic.Pointer[keySet]
	gen     atomic.Uint64

	refreshMu   sync.Mutex
	lastRefresh time.Time
	minGap      time.Duration
	closed      atomic.Bool
}

func newURLKeys(ctx context.Context, u string) (*urlKeys, error) {
	pu, err := url.Parse(u)
	if err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
		return nil, fmt.Errorf("auth: JWKS URL %q is not an http(s) URL", u)
	}
	// The refresher lives until Close, not until ctx ends: a cache whose
	// controller has stopped would make refreshes wait for their timeout.
	cctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	cache, err := jwk.NewCache(cctx, httprc.NewClient())
	if err != nil {
		cancel()
		return nil, fmt.Errorf("auth: JWKS cache: %w", err)
	}
	k := &urlKeys{url: u, cache: cache, cancel: cancel, minGap: urlUnknownKIDWait}
	fail := func(err error) (*urlKeys, error) {
		k.close()
		return nil, err
	}
	err = cache.Register(cctx, u,
		jwk.WithWaitReady(false),
		jwk.WithIgnoreParseError(true),
		jwk.WithHttprcResourceOption(httprc.WithMinInterval(jwksMinInterval)),
		jwk.WithHttprcResourceOption(httprc.WithMaxInterval(jwksMaxInterval)),
	)
	if err != nil {
		return fail(fmt.Errorf("auth: JWKS %s: %w", u, err))
	}
	fctx, fcancel := context.WithTimeout(ctx, jwksFetchTimeout)
	defer fcancel()
	if _, err := cache.Refresh(fctx, u); err != nil {
		return fail(fmt.Errorf("auth: fetching the JWKS at %s: %w", u, err))
	}
	k.res, err = cache.LookupResource(fctx, u)
	if err != nil {
		return fail(fmt.Errorf("auth: JWKS %s: %w", u, err))
	}
	k.lastRefresh = time.Now()
	k.snapshot()
	return k, nil
}

func (k *urlKeys) snapshot() *keySet {
	set := k.res.Resource()
	k.mu.Lock()
	defer k.mu.Unlock()
	if cur := k.cur.Load(); cur != nil && (set == nil || set == k.lastSet) {
		return cur
	}
	if set == nil {
		set = jwk.NewSet()
	}
	ks := buildKeySet(set, k.gen.Add(1))
	k.lastSet = set
	k.cur.Store(ks)
	return ks
}

func (k *urlKeys) generation() uint64 { return k.gen.Load() }

func (k *urlKeys) refresh(ctx context.Context) {
	k.refreshMu.Lock()
	defer k.refreshMu.Unlock()
	if k.closed.Load() || time.Since(k.lastRefresh) < k.minGap {
		return
	}
	k.lastRefresh = time.Now()
	fctx, cancel := context.WithTimeout(ctx, kidRefreshTimeout)
	defer cancel()
	// A failed refresh keeps the keys the cache has.
	_, _ = k.cache.Refresh(fctx, k.url)
}

func (k *urlKeys) close() {
	k.closed.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = k.cache.Shutdown(ctx)
	k.cancel()
}

// fileKeys is a JWKS file, re-read when its size or modification time
// changes, or (rate-limited) when a token names an unknown kid.
type fileKeys struct {
	path string

	mu      sync.Mutex // guards the fields below and the building of cur
	modTime time.Time
	size    int64
	forced  time.Time
	minGap  time.Duration
	cur     atomic.Pointer[keySet]
	gen     atomic.Uint64
}

func newFileKeys(path string) (*fileKeys, error) {
	k := &fileKeys{path: path, minGap: fileUnknownKIDGap}
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.loadLocked(); err != nil {
		return nil, err
	}
	return k, nil
}

// loadLocked reads the file; on failure the current keys stay.
func (k *fileKeys) loadLocked() error {
	fi, err := os.Stat(k.path)
	if err != nil {
		return fmt.Errorf("auth: JWKS file: %w", err)
	}
	set, err := jwk.ReadFile(k.path, jwk.WithIgnoreParseError(true))
	if err != nil {
		return fmt.Errorf("auth: JWKS file %s: %w", k.path, err)
	}
	k.modTime, k.size = fi.ModTime(), fi.Size()
	k.cur.Store(buildKeySet(set, k.gen.Add(1)))
	return nil
}

func (k *fileKeys) snapshot() *keySet {
	k.mu.Lock()
	defer k.mu.Unlock()
	if fi, err := os.Stat(k.path); err == nil && (!fi.ModTime().Equal(k.modTime) || fi.Size() != k.size) {
		_ = k.loadLocked()
	}
	return k.cur.Load()
}

func (k *fileKeys) generation() uint64 { return k.gen.Load() }

func (k *fileKeys) refresh(context.Context) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if time.Since(k.forced) < k.minGap {
		return
	}
	k.forced = time.Now()
	_ = k.loadLocked()
}

func (k *fileKeys) close() {}
