package datasafety

import (
	"maps"
	"sync"
	"sync/atomic"
)

// cache holds what was worked out once for each of a few keys (fields,
// field lists, kinds): a read is a plain map lookup without locking, where
// sync.Map would box the key and walk its trie; a new key copies the map,
// which is cheap because keys are few.
type cache[K comparable, V any] struct {
	m  atomic.Pointer[map[K]V]
	mu sync.Mutex
}

func (c *cache[K, V]) load(k K) (V, bool) {
	if m := c.m.Load(); m != nil {
		v, ok := (*m)[k]
		return v, ok
	}
	var zero V
	return zero, false
}

func (c *cache[K, V]) store(k K, v V) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var next map[K]V
	if old := c.m.Load(); old != nil {
		next = make(map[K]V, len(*old)+1)
		maps.Copy(next, *old)
	} else {
		next = map[K]V{}
	}
	next[k] = v
	c.m.Store(&next)
}
