package tree

import (
	"container/list"
	"sync"

	"github.com/cairn-backup/cairn/guest/vfs"
)

// The listings of guest directories are cached, so that looking up each
// name of a big directory (ls -l, cp -a) reads the directory once rather
// than once per name. The cache is an LRU bounded by the number of entries
// it holds; a directory larger than a quarter of the budget is not kept,
// and its names are looked up through the reader's own Lookup instead.

// DefaultDirCacheEntries is the default budget of the listing cache.
const DefaultDirCacheEntries = 1 << 18

type dirKey struct {
	point, disk, vol string
	ino              uint64
}

// listing is one directory's valid names, in the file system's order.
type listing struct {
	entries []vfs.DirEntry
	byName  map[string]int32 // nil when the listing is small: find scans
}

func (l *listing) find(name string) (vfs.DirEntry, bool) {
	if l.byName == nil {
		for _, e := range l.entries {
			if e.Name == name {
				return e, true
			}
		}
		return vfs.DirEntry{}, false
	}
	i, ok := l.byName[name]
	if !ok {
		return vfs.DirEntry{}, false
	}
	return l.entries[i], true
}

// smallListing is the size up to which a listing is scanned rather than indexed.
const smallListing = 16

type dirCache struct {
	max int

	mu    sync.Mutex
	m     map[dirKey]*list.Element
	lru   *list.List
	total int
	big   map[dirKey]bool // directories too big to keep (bounded: reset when full)
}

type dirCacheItem struct {
	key dirKey
	l   *listing
}

func (c *dirCache) init(max int) {
	if max <= 0 {
		max = DefaultDirCacheEntries
	}
	c.max, c.m, c.lru, c.big = max, make(map[dirKey]*list.Element), list.New(), make(map[dirKey]bool)
}

// isBig reports whether k was found too big to keep: look names up in it
// with the reader's Lookup.
func (c *dirCache) isBig(k dirKey) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.big[k]
}

// get returns the listing of k, reading it with load when it is not
// cached. Names that cannot be a path component ("", ".", "..", with '/'
// or NUL) and repeated names are dropped, each reported to bad.
func (c *dirCache) get(k dirKey, load func() ([]vfs.DirEntry, error), bad func(name string)) (*listing, error) {
	c.mu.Lock()
	if e := c.m[k]; e != nil {
		c.lru.MoveToFront(e)
		l := e.Value.(*dirCacheItem).l
		c.mu.Unlock()
		return l, nil
	}
	c.mu.Unlock()
	raw, err := load()
	if err != nil {
		return nil, err
	}
	l := &listing{entries: raw[:0:0]}
	seen := make(map[string]int32, len(raw))
	for _, e := range raw {
		if !validName(e.Name) {
			bad(e.Name)
			continue
		}
		if _, dup := seen[e.Name]; dup {
			bad(e.Name)
			continue
		}
		seen[e.Name] = int32(len(l.entries))
		l.entries = append(l.entries, e)
	}
	if len(l.entries) > smallListing {
		l.byName = seen
	}
	n := len(l.entries) + 1
	c.mu.Lock()
	defer c.mu.Unlock()
	if n > c.max/4 {
		if len(c.big) >= 4096 {
			clear(c.big)
		}
		c.big[k] = true
		return l, nil // too big to keep
	}
	if e := c.m[k]; e != nil { // loaded meanwhile by someone else
		return e.Value.(*dirCacheItem).l, nil
	}
	c.m[k] = c.lru.PushFront(&dirCacheItem{key: k, l: l})
	c.total += n
	for c.total > c.max {
		old := c.lru.Remove(c.lru.Back()).(*dirCacheItem)
		delete(c.m, old.key)
		c.total -= len(old.l.entries) + 1
	}
	return l, nil
}
