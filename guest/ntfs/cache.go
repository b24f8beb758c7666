package ntfs

import (
	"container/list"
	"sync"
)

// lru is a small cache keyed by inode number whose capacity is a total
// weight (extents, directory entries), so that its memory is bounded
// whatever the image says.
type lru[V any] struct {
	mu     sync.Mutex
	m      map[uint64]*list.Element
	l      list.List
	weight int
	limit  int
}

type lruItem[V any] struct {
	key    uint64
	val    V
	weight int
}

func newLRU[V any](limit int) *lru[V] { return &lru[V]{m: map[uint64]*list.Element{}, limit: limit} }

func (c *lru[V]) get(k uint64) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.m[k]; ok {
		c.l.MoveToFront(e)
		return e.Value.(*lruItem[V]).val, true
	}
	var zero V
	return zero, false
}

func (c *lru[V]) put(k uint64, v V, weight int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[k]; ok {
		return
	}
	c.m[k] = c.l.PushFront(&lruItem[V]{k, v, weight + 1})
	c.weight += weight + 1
	for c.weight > c.limit && c.l.Len() > 1 {
		it := c.l.Remove(c.l.Back()).(*lruItem[V])
		delete(c.m, it.key)
		c.weight -= it.weight
	}
}
