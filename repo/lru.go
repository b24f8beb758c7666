package repo

import (
	"container/list"
	"sync"
)

// lru is a small size-bounded cache, safe for concurrent use.
type lru[K comparable, V any] struct {
	mu    sync.Mutex
	max   int64
	used  int64
	ll    *list.List
	items map[K]*list.Element
	size  func(V) int64
	// onHit and onEvict, when set, run under the cache's lock: on a
	// value get returns, and on a value leaving the cache.
	onHit, onEvict func(V)
}

type lruItem[K comparable, V any] struct {
	key K
	val V
}

func newLRU[K comparable, V any](max int64, size func(V) int64) *lru[K, V] {
	return &lru[K, V]{max: max, ll: list.New(), items: make(map[K]*list.Element), size: size}
}

func (c *lru[K, V]) get(k K) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.items[k]; ok {
		c.ll.MoveToFront(e)
		v := e.Value.(*lruItem[K, V]).val
		if c.onHit != nil {
			c.onHit(v)
		}
		return v, true
	}
	var zero V
	return zero, false
}

// add caches v under k, evicting the least recently used values beyond
// the size bound. It reports false, keeping the cached value, when k is
// cached already.
func (c *lru[K, V]) add(k K, v V) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.items[k]; ok {
		c.ll.MoveToFront(e)
		return false
	}
	c.items[k] = c.ll.PushFront(&lruItem[K, V]{k, v})
	c.used += c.size(v)
	for c.used > c.max && c.ll.Len() > 1 {
		e := c.ll.Back()
		it := e.Value.(*lruItem[K, V])
		c.ll.Remove(e)
		delete(c.items, it.key)
		c.used -= c.size(it.val)
		if c.onEvict != nil {
			c.onEvict(it.val)
		}
	}
	return true
}
