package fat

import (
	"container/list"
	"fmt"
	"sync"

	"github.com/cairn-backup/cairn/guest/vfs"
)

// dirListing is a parsed directory.
type dirListing struct {
	ents    []dirent
	byName  map[string]int // exact name → first index in ents
	subdirs uint32
	bytes   int64  // size of the directory's region
	label   string // root only: the volume label entry
}

func (l *dirListing) nlink() uint32 { return 2 + l.subdirs }

// listing returns the parsed directory ino, from the cache when it is there.
func (s *fsys) listing(ino uint64) (*dirListing, error) {
	if l := s.dirs.get(ino); l != nil {
		return l, nil
	}
	buf, posOf, err := s.readDirRegion(ino)
	if err != nil {
		return nil, err
	}
	l, err := s.parseDir(ino, buf, posOf)
	if err != nil {
		return nil, err
	}
	s.dirs.put(ino, l)
	return l, nil
}

// readDirRegion reads the whole directory ino and returns a function
// mapping an offset in it to the byte position on the volume.
func (s *fsys) readDirRegion(ino uint64) ([]byte, func(int64) int64, error) {
	g := s.g
	if ino == rootIno && g.kind != fat32 {
		buf := make([]byte, g.rootBytes)
		if _, err := s.r.ReadAt(buf, g.rootOffset); err != nil {
			return nil, nil, fmt.Errorf("vfat: reading root directory: %w", err)
		}
		return buf, func(off int64) int64 { return g.rootOffset + off }, nil
	}
	start := g.rootCluster
	what := "root directory"
	if ino != rootIno {
		d, err := s.entry(ino)
		if err != nil {
			return nil, nil, err
		}
		if !d.isDir() {
			return nil, nil, fmt.Errorf("vfat: inode %d: %w", ino, vfs.ErrNotDir)
		}
		start = d.cluster
		what = fmt.Sprintf("directory %q (inode %d)", d.short, ino)
	}
	runs, n, err := s.fat.chain(start, 0, s.dirClusterLimit(), what)
	if err != nil {
		return nil, nil, err
	}
	cs := g.clusterSize
	buf := make([]byte, int64(n)*cs)
	for _, r := range runs {
		if _, err := s.r.ReadAt(buf[int64(r.first)*cs:int64(r.first+r.n)*cs], g.clusterOffset(r.phys)); err != nil {
			return nil, nil, fmt.Errorf("vfat: reading %s: %w", what, err)
		}
	}
	posOf := func(off int64) int64 {
		r := runs[findRun(runs, uint32(off/cs))]
		return g.clusterOffset(r.phys) + (off/cs-int64(r.first))*cs + off%cs
	}
	return buf, posOf, nil
}

// parseDir decodes the entries of one directory.
func (s *fsys) parseDir(ino uint64, buf []byte, posOf func(int64) int64) (*dirListing, error) {
	l := &dirListing{bytes: int64(len(buf)), byName: map[string]int{}}
	var lfn lfnState
	for off := 0; off+direntSize <= len(buf); off += direntSize {
		b := buf[off : off+direntSize]
		switch {
		case b[0] == 0:
			return l, nil // end of directory
		case b[0] == 0xE5:
			lfn.reset()
			continue
		case b[11]&attrLFN == attrLFN:
			lfn.add(b)
			continue
		case b[11]&attrVolume != 0:
			if ino == rootIno && l.label == "" {
				var raw [11]byte
				copy(raw[:], b[:11])
				if raw[0] == 0x05 {
					raw[0] = 0xE5
				}
				l.label = trimSpaces(decodeOEM(raw[:]))
			}
			lfn.reset()
			continue
		case b[0] == '.':
			lfn.reset()
			continue // "." and ".."; no valid 8.3 name starts with a dot
		}
		d := parseRaw(b, posOf(int64(off)), s.g.kind == fat32)
		d.name = lfn.name(b)
		lfn.reset()
		if d.name == "" {
			d.name = d.short
		}
		if !validName(d.name) {
			return nil, malformed("directory inode %d: entry at %d has name %q", ino, d.pos, d.name)
		}
		if d.isDir() {
			l.subdirs++
		}
		if _, dup := l.byName[d.name]; !dup {
			l.byName[d.name] = len(l.ents)
		}
		l.ents = append(l.ents, d)
	}
	return l, nil
}

func trimSpaces(s string) string {
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == 0) {
		s = s[:len(s)-1]
	}
	return s
}

// dirCache keeps recently parsed directories, bounded by their total
// number of entries.
type dirCache struct {
	mu      sync.Mutex
	m       map[uint64]*list.Element
	lru     list.List // of *cachedDir
	entries int
}

type cachedDir struct {
	ino uint64
	l   *dirListing
}

const dirCacheEntries = 1 << 18

func newDirCache() *dirCache { return &dirCache{m: map[uint64]*list.Element{}} }

func (c *dirCache) get(ino uint64) *dirListing {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.m[ino]; ok {
		c.lru.MoveToFront(e)
		return e.Value.(*cachedDir).l
	}
	return nil
}

func (c *dirCache) put(ino uint64, l *dirListing) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[ino]; ok {
		return
	}
	c.m[ino] = c.lru.PushFront(&cachedDir{ino: ino, l: l})
	c.entries += len(l.ents) + 1
	for c.entries > dirCacheEntries && c.lru.Len() > 1 {
		e := c.lru.Back()
		cd := c.lru.Remove(e).(*cachedDir)
		delete(c.m, cd.ino)
		c.entries -= len(cd.l.ents) + 1
	}
}
