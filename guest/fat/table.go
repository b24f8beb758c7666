package fat

import (
	"container/list"
	"fmt"
	"io"
	"sync"
)

// table reads entries of the first FAT. FAT12/16 tables (at most 128 KiB)
// are read once; FAT32 tables go through an LRU of fixed-size blocks.
type table struct {
	g *geometry
	r io.ReaderAt

	whole []byte // FAT12/16

	mu     sync.Mutex
	blocks map[int64]*list.Element
	lru    list.List // of *fatBlock, most recent first
}

const (
	fatBlockSize = 64 << 10
	fatBlocks    = 32 // 2 MiB of FAT32 cached
)

type fatBlock struct {
	index int64
	data  []byte
}

func newTable(r io.ReaderAt, g *geometry) (*table, error) {
	t := &table{g: g, r: r, blocks: map[int64]*list.Element{}}
	if g.kind != fat32 {
		n := (int64(g.clusters+2)*int64(g.kind) + 7) / 8
		t.whole = make([]byte, n)
		if _, err := r.ReadAt(t.whole, g.fatOffset); err != nil {
			return nil, fmt.Errorf("vfat: reading FAT: %w", err)
		}
	}
	return t, nil
}

// Entry classes returned by next.
const (
	linkNext = iota // another data cluster follows
	linkEnd         // end of chain
	linkBad         // free, reserved, bad or out of range
)

// next returns the FAT entry of cluster c, which must be valid.
func (t *table) next(c uint32) (uint32, int, error) {
	var v uint32
	switch t.g.kind {
	case fat12:
		off := int(c) + int(c)/2
		v = uint32(t.whole[off]) | uint32(t.whole[off+1])<<8
		if c&1 == 1 {
			v >>= 4
		}
		v &= 0xFFF
		if v >= 0xFF8 {
			return v, linkEnd, nil
		}
	case fat16:
		v = uint32(t.whole[2*c]) | uint32(t.whole[2*c+1])<<8
		if v >= 0xFFF8 {
			return v, linkEnd, nil
		}
	default:
		raw, err := t.entry32(c)
		if err != nil {
			return 0, linkBad, err
		}
		v = raw & 0x0FFFFFFF
		if v >= 0x0FFFFFF8 {
			return v, linkEnd, nil
		}
	}
	if !t.g.validCluster(v) {
		return v, linkBad, nil
	}
	return v, linkNext, nil
}

func (t *table) entry32(c uint32) (uint32, error) {
	pos := int64(c) * 4
	idx := pos / fatBlockSize
	t.mu.Lock()
	defer t.mu.Unlock()
	if e, ok := t.blocks[idx]; ok {
		t.lru.MoveToFront(e)
		b := e.Value.(*fatBlock).data
		return le32(b[pos%fatBlockSize:]), nil
	}
	n := min(int64(fatBlockSize), t.g.fatBytes-idx*fatBlockSize)
	var blk *fatBlock
	if t.lru.Len() >= fatBlocks {
		e := t.lru.Back()
		blk = t.lru.Remove(e).(*fatBlock)
		delete(t.blocks, blk.index)
	} else {
		blk = &fatBlock{data: make([]byte, fatBlockSize)}
	}
	blk.index = idx
	if _, err := t.r.ReadAt(blk.data[:n], t.g.fatOffset+idx*fatBlockSize); err != nil {
		return 0, fmt.Errorf("vfat: reading FAT at %d: %w", t.g.fatOffset+idx*fatBlockSize, err)
	}
	t.blocks[idx] = t.lru.PushFront(blk)
	return le32(blk.data[pos%fatBlockSize:]), nil
}

func le32(b []byte) uint32 {
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}

// run is a stretch of contiguous clusters: logical cluster index first,
// physical cluster phys, n clusters.
type run struct {
	first uint32
	phys  uint32
	n     uint32
}

// chain follows the chain starting at start. With want > 0 it stops after
// want clusters (a file: clusters beyond its size are ignored) and fails if
// the chain ends before; with want == 0 it follows the chain to its end,
// failing past limit clusters (a directory). what names the owner in errors.
func (t *table) chain(start uint32, want, limit uint32, what string) ([]run, uint32, error) {
	if !t.g.validCluster(start) {
		return nil, 0, malformed("%s: first cluster %d outside 2..%d", what, start, t.g.clusters+1)
	}
	if want > 0 {
		limit = want
	}
	limit = min(limit, t.g.clusters)
	var runs []run
	cur := run{first: 0, phys: start, n: 1}
	c := start
	count := uint32(1)
	for want == 0 || count < want {
		v, kind, err := t.next(c)
		if err != nil {
			return nil, 0, err
		}
		if kind == linkEnd {
			if want > 0 {
				return nil, 0, malformed("%s: cluster chain ends after %d clusters, size needs %d", what, count, want)
			}
			break
		}
		if kind == linkBad {
			return nil, 0, malformed("%s: cluster %d links to 0x%x", what, c, v)
		}
		if count >= limit {
			return nil, 0, malformed("%s: cluster chain longer than %d clusters (loop?)", what, limit)
		}
		if v == cur.phys+cur.n {
			cur.n++
		} else {
			runs = append(runs, cur)
			cur = run{first: count, phys: v, n: 1}
		}
		c = v
		count++
	}
	runs = append(runs, cur)
	if err := checkOverlap(runs, what); err != nil {
		return nil, 0, err
	}
	return runs, count, nil
}
