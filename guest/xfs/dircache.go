package xfs

import "github.com/cairn-backup/cairn/guest/vfs"

// dirListing is one parsed directory, with a name index for Lookup.
type dirListing struct {
	entries []vfs.DirEntry
	byName  map[string]int
}

// dirCache keeps the most recently parsed directories, bounded in number
// and in total entries, so Lookup after ReadDir costs no I/O.
type dirCache struct {
	order   []uint64
	m       map[uint64]*dirListing
	entries int
}

const (
	dirCacheDirs    = 32
	dirCacheEntries = 1 << 20
)

func (c *dirCache) get(ino uint64) *dirListing { return c.m[ino] }

func (c *dirCache) put(ino uint64, d *dirListing) {
	if c.m == nil {
		c.m = map[uint64]*dirListing{}
	}
	if _, ok := c.m[ino]; ok {
		return
	}
	for len(c.order) > 0 && (len(c.order) >= dirCacheDirs || c.entries+len(d.entries) > dirCacheEntries) {
		old := c.order[0]
		c.order = c.order[1:]
		c.entries -= len(c.m[old].entries)
		delete(c.m, old)
	}
	c.m[ino] = d
	c.order = append(c.order, ino)
	c.entries += len(d.entries)
}
