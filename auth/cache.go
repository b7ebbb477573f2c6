package auth

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/plinth-data/plinth"
)

// storeTimeout bounds one store lookup made while deciding a request.
const storeTimeout = 2 * time.Second

// policyCache holds the access policies of the environment, by domain,
// for at most the cache TTL.
type policyCache struct {
	cur atomic.Pointer[policySnapshot]
	mu  sync.Mutex // one reload at a time
}

type policySnapshot struct {
	byDomain map[string]*plinth.AccessPolicy
	until    time.Time
}

func (c *policyCache) get(ctx context.Context, store plinth.AccessStore, env string, ttl time.Duration, clock func() time.Time) (map[string]*plinth.AccessPolicy, error) {
	if s := c.cur.Load(); s != nil && clock().Before(s.until) {
		return s.byDomain, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	now := clock()
	if s := c.cur.Load(); s != nil && now.Before(s.until) {
		return s.byDomain, nil
	}
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	list, err := store.Policies(ctx, env)
	if err != nil {
		return nil, err
	}
	m := make(map[string]*plinth.AccessPolicy, len(list))
	for i := range list {
		if list[i].Environment == env {
			m[list[i].Domain] = &list[i]
		}
	}
	c.cur.Store(&policySnapshot{byDomain: m, until: now.Add(ttl)})
	return m, nil
}

// grantCache holds grants by ID (and unknown IDs) for at most the cache
// TTL.
type grantCache struct {
	mu  sync.RWMutex
	m   map[string]*grantEntry
	max int
}

type grantEntry struct {
	g     plinth.Grant
	found bool
	until time.Time
}

const defaultGrantCacheSize = 10000

func newGrantCache(max int) *grantCache {
	return &grantCache{m: map[string]*grantEntry{}, max: max}
}

func (c *grantCache) get(ctx context.Context, store plinth.AccessStore, id string, ttl time.Duration, now time.Time) (plinth.Grant, bool, error) {
	c.mu.RLock()
	e := c.m[id]
	c.mu.RUnlock()
	if e != nil && now.Before(e.until) {
		return e.g, e.found, nil
	}
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	g, err := store.Grant(ctx, id)
	found := true
	if errors.Is(err, plinth.ErrNotFound) {
		found, err = false, nil
	}
	if err != nil {
		return plinth.Grant{}, false, err
	}
	e = &grantEntry{g: g, found: found, until: now.Add(ttl)}
	c.mu.Lock()
	if len(c.m) >= c.max {
		for k, old := range c.m {
			if !now.Before(old.until) || len(c.m) >= c.max*9/10 {
				delete(c.m, k)
			}
		}
	}
	c.m[id] = e
	c.mu.Unlock()
	return g, found, nil
}
