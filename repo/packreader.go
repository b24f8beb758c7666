package repo

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"sync"
)

// packFiles caches open pack file descriptors for positional reads.
// Reads hold the read lock; closing descriptors takes the write lock, so a
// descriptor is never closed under a concurrent pread.
type packFiles struct {
	dir   string
	mu    sync.RWMutex
	files map[PackID]*os.File
	limit int
}

func newPackFiles(dir string) *packFiles {
	return &packFiles{dir: dir, files: make(map[PackID]*os.File), limit: 256}
}

// readAt reads len(buf) bytes of pack id at off.
func (c *packFiles) readAt(id PackID, buf []byte, off int64) error {
	c.mu.RLock()
	f := c.files[id]
	for f == nil { // open, and retry if evicted meanwhile
		c.mu.RUnlock()
		if err := c.open(id); err != nil {
			return err
		}
		c.mu.RLock()
		f = c.files[id]
	}
	_, err := f.ReadAt(buf, off)
	c.mu.RUnlock()
	if err != nil {
		return fmt.Errorf("%w: read pack %s at %d+%d: %v", ErrCorrupt, id, off, len(buf), err)
	}
	return nil
}

func (c *packFiles) open(id PackID) error {
	f, err := os.Open(packPath(c.dir, id))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%w (%w): pack %s is missing (run `cairn check`; `cairn repair index` if the index is stale)", ErrNotFound, ErrCorrupt, id)
		}
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.files[id] != nil {
		f.Close()
		return nil
	}
	if len(c.files) >= c.limit {
		for k, old := range c.files { // evict an arbitrary descriptor
			old.Close()
			delete(c.files, k)
			break
		}
	}
	c.files[id] = f
	return nil
}

func (c *packFiles) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, f := range c.files {
		f.Close()
		delete(c.files, k)
	}
}

// LoadBlob reads the blob at loc and returns its plaintext after verifying
// that it hashes to id. A mismatch is ErrCorrupt; the bytes are never returned.
func (r *Repository) LoadBlob(t BlobType, id ID, loc Location) ([]byte, error) {
	return r.LoadBlobInto(nil, t, id, loc)
}

// LoadBlobInto is LoadBlob decoding into dst (grown if too small).
func (r *Repository) LoadBlobInto(dst []byte, t BlobType, id ID, loc Location) ([]byte, error) {
	// No stored blob is longer than decodeTrailer allows; a longer length
	// comes from a damaged manifest and must not drive the allocation.
	if loc.Length == 0 || loc.Length > maxBlobSize+1024 {
		return nil, fmt.Errorf("%w: blob %s in pack %s at offset %d has implausible length %d", ErrCorrupt, id.Short(), loc.Pack, loc.Offset, loc.Length)
	}
	bp := plainPool.Get().(*[]byte)
	defer plainPool.Put(bp)
	buf := slices.Grow((*bp)[:0], int(loc.Length))[:loc.Length]
	*bp = buf
	if err := r.packs.readAt(loc.Pack, buf, int64(loc.Offset)); err != nil {
		return nil, err
	}
	data, err := r.codec.decodeInto(dst, t, id, buf)
	if err != nil {
		return nil, fmt.Errorf("blob %s in pack %s at offset %d: %w", id.Short(), loc.Pack, loc.Offset, err)
	}
	return data, nil
}
