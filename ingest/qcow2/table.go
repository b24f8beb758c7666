package qcow2

import (
	"container/list"
	"encoding/binary"
	"fmt"
	"sync"
)

const (
	// tableOffsetMask selects the host offset in L1 and standard L2 entries
	// (bits 9..55).
	tableOffsetMask = 0x00fffffffffffe00
	// l2Compressed marks a compressed cluster descriptor.
	l2Compressed = uint64(1) << 62
	// l2Zero is the "reads as zeros" flag of a standard L2 entry.
	l2Zero = uint64(1)

	// L2 cache limits: at most maxCachedL2 tables and at most l2CacheBytes
	// of table data, but always room for minCachedL2 tables.
	maxCachedL2  = 64
	minCachedL2  = 2
	l2CacheBytes = 16 << 20
)

// loadL1 validates the L1 table geometry against the virtual size and the
// file size and reads the entries that cover the virtual disk.
func (im *Image) loadL1() error {
	h := im.hdr
	coverBits := im.clusterBits + im.l2Bits // guest bytes covered by one L1 entry
	need := uint64(0)
	if h.size > 0 {
		need = (h.size-1)>>coverBits + 1
	}
	if uint64(h.l1Size)*8 > maxL1Bytes {
		return fmt.Errorf("L1 table: %w: l1_size %d exceeds the limit of %d entries", ErrCorrupt, h.l1Size, maxL1Bytes/8)
	}
	if uint64(h.l1Size) < need {
		return fmt.Errorf("L1 table: %w: l1_size %d is too small for virtual size %d (need %d entries)", ErrCorrupt, h.l1Size, h.size, need)
	}
	if need == 0 {
		return nil
	}
	if h.l1TableOffset&uint64(im.clusterSize-1) != 0 {
		return fmt.Errorf("L1 table: %w: offset %#x is not cluster aligned", ErrCorrupt, h.l1TableOffset)
	}
	end := h.l1TableOffset + need*8 // cannot overflow: both terms are < 2^64/4
	if h.l1TableOffset >= 1<<62 || end > uint64(im.fileSize) {
		return fmt.Errorf("L1 table: %w: %d entries at offset %#x extend past the end of the file (%d bytes)", ErrTruncated, need, h.l1TableOffset, im.fileSize)
	}
	buf := make([]byte, need*8)
	n, err := readFullAt(im.f, buf, int64(h.l1TableOffset))
	if err != nil {
		return fmt.Errorf("L1 table: read: %w", err)
	}
	if n < len(buf) {
		return fmt.Errorf("L1 table: %w: short read at offset %#x", ErrTruncated, h.l1TableOffset)
	}
	im.l1 = make([]uint64, need)
	for i := range im.l1 {
		off := binary.BigEndian.Uint64(buf[i*8:]) & tableOffsetMask
		if off == 0 {
			continue
		}
		if off&uint64(im.clusterSize-1) != 0 {
			return fmt.Errorf("L1 entry %d: %w: L2 table offset %#x is not cluster aligned", i, ErrCorrupt, off)
		}
		if off+uint64(im.clusterSize) > uint64(im.fileSize) {
			return fmt.Errorf("L1 entry %d: %w: L2 table at offset %#x extends past the end of the file (%d bytes)", i, ErrTruncated, off, im.fileSize)
		}
		im.l1[i] = off
	}
	return nil
}

// l2Table returns the decoded L2 table at host offset off, from the cache
// when possible. The returned slice must not be modified.
func (im *Image) l2Table(off uint64) ([]uint64, error) {
	if t := im.l2.get(off); t != nil {
		return t, nil
	}
	buf := make([]byte, im.clusterSize)
	n, err := readFullAt(im.f, buf, int64(off))
	if err != nil {
		return nil, fmt.Errorf("L2 table at %#x: read: %w", off, err)
	}
	if n < len(buf) {
		return nil, fmt.Errorf("L2 table at %#x: %w: short read", off, ErrTruncated)
	}
	t := make([]uint64, len(buf)/8)
	for i := range t {
		t[i] = binary.BigEndian.Uint64(buf[i*8:])
	}
	im.l2.put(off, t)
	return t, nil
}

// l2Cache is a small LRU cache of decoded L2 tables keyed by host offset.
type l2Cache struct {
	mu     sync.Mutex
	max    int
	lru    *list.List // of *l2Item, most recently used first
	tables map[uint64]*list.Element
}

type l2Item struct {
	off   uint64
	table []uint64
}

func newL2Cache(clusterSize int64) *l2Cache {
	n := int(l2CacheBytes / clusterSize)
	n = max(minCachedL2, min(n, maxCachedL2))
	return &l2Cache{max: n, lru: list.New(), tables: make(map[uint64]*list.Element)}
}

func (c *l2Cache) get(off uint64) []uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.tables[off]; ok {
		c.lru.MoveToFront(e)
		return e.Value.(*l2Item).table
	}
	return nil
}

func (c *l2Cache) put(off uint64, t []uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.tables[off]; ok {
		c.lru.MoveToFront(e)
		return
	}
	c.tables[off] = c.lru.PushFront(&l2Item{off: off, table: t})
	for c.lru.Len() > c.max {
		e := c.lru.Back()
		c.lru.Remove(e)
		delete(c.tables, e.Value.(*l2Item).off)
	}
}
