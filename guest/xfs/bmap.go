package xfs

import (
	"encoding/binary"
	"sort"
)

// Block-map btree constants (xfs_format.h).
const (
	bmapMagic    = 0x424d4150 // "BMAP", v4 long-format bmbt block
	bmap3Magic   = 0x424d4133 // "BMA3", v5
	lblockHdrV4  = 24
	lblockHdrV5  = 72
	maxBtreeDeep = 10

	// maxExtents bounds the extent map kept for one inode (24 bytes each).
	maxExtents = 1 << 21
)

// extent maps count file blocks from logical block off to file system
// block fsb. An unwritten (preallocated) extent reads as zeros.
type extent struct {
	off       uint64
	fsb       uint64
	count     uint64
	unwritten bool
}

// decodeExtent unpacks a 128-bit bmbt record: 1 bit unwritten flag, 54
// bits logical offset, 52 bits start block, 21 bits length.
func decodeExtent(b []byte) extent {
	l0 := binary.BigEndian.Uint64(b)
	l1 := binary.BigEndian.Uint64(b[8:])
	return extent{
		unwritten: l0>>63 != 0,
		off:       (l0 & (1<<63 - 1)) >> 9,
		fsb:       (l0&0x1ff)<<43 | l1>>21,
		count:     l1 & (1<<21 - 1),
	}
}

// extents returns the data fork's extent map, sorted and checked.
func (f *FS) extents(ip *inode) ([]extent, error) {
	var xs []extent
	var err error
	switch ip.format {
	case fmtExtents:
		n := ip.nextents
		if n > uint64(len(ip.fork)/16) {
			return nil, malformed("inode %d: %d extents do not fit the data fork", ip.ino, n)
		}
		xs = make([]extent, 0, n)
		for i := uint64(0); i < n; i++ {
			xs = append(xs, decodeExtent(ip.fork[i*16:]))
		}
	case fmtBtree:
		xs, err = f.btreeExtents(ip)
		if err != nil {
			return nil, err
		}
	default:
		return nil, malformed("inode %d: data fork format %d has no extents", ip.ino, ip.format)
	}
	return xs, f.checkExtents(ip, xs)
}

func (f *FS) checkExtents(ip *inode, xs []extent) error {
	if !sort.SliceIsSorted(xs, func(i, j int) bool { return xs[i].off < xs[j].off }) {
		return malformed("inode %d: extents out of order", ip.ino)
	}
	var next uint64
	for i, x := range xs {
		if x.count == 0 || x.off < next || x.off+x.count > 1<<54 {
			return malformed("inode %d: extent %d (offset %d, %d blocks) overlaps or is empty", ip.ino, i, x.off, x.count)
		}
		next = x.off + x.count
		first, ok1 := f.sb.fsbOffset(x.fsb)
		last, ok2 := f.sb.fsbOffset(x.fsb + x.count - 1)
		if !ok1 || !ok2 || last-first != int64(x.count-1)<<f.sb.blockLog {
			return malformed("inode %d: extent %d at block %d+%d lies outside its AG", ip.ino, i, x.fsb, x.count)
		}
	}
	return nil
}

// btreeExtents walks the block-map btree whose root is in the data fork.
func (f *FS) btreeExtents(ip *inode) ([]extent, error) {
	be := binary.BigEndian
	if len(ip.fork) < 4 {
		return nil, malformed("inode %d: bmbt root too small", ip.ino)
	}
	level := int(be.Uint16(ip.fork))
	num := int(be.Uint16(ip.fork[2:]))
	maxr := (len(ip.fork) - 4) / 16
	if level == 0 || level > maxBtreeDeep || num == 0 || num > maxr {
		return nil, malformed("inode %d: bmbt root level %d with %d records", ip.ino, level, num)
	}
	w := &bmbtWalk{f: f, ip: ip, seen: map[uint64]bool{}}
	for i := 0; i < num; i++ {
		ptr := be.Uint64(ip.fork[4+maxr*8+i*8:])
		if err := w.walk(ptr, level-1, 1); err != nil {
			return nil, err
		}
	}
	if uint64(len(w.out)) != ip.nextents {
		return nil, malformed("inode %d: bmbt holds %d extents, inode says %d", ip.ino, len(w.out), ip.nextents)
	}
	return w.out, nil
}

type bmbtWalk struct {
	f    *FS
	ip   *inode
	seen map[uint64]bool
	out  []extent
}

func (w *bmbtWalk) walk(fsb uint64, level, depth int) error {
	f, ip := w.f, w.ip
	if depth > maxBtreeDeep {
		return malformed("inode %d: bmbt deeper than %d", ip.ino, maxBtreeDeep)
	}
	if w.seen[fsb] {
		return malformed("inode %d: bmbt block %d referenced twice", ip.ino, fsb)
	}
	w.seen[fsb] = true
	if len(w.seen) > maxExtents {
		return malformed("inode %d: bmbt has too many blocks", ip.ino)
	}
	off, ok := f.sb.fsbOffset(fsb)
	if !ok {
		return malformed("inode %d: bmbt block %d out of range", ip.ino, fsb)
	}
	b := make([]byte, f.sb.blockSize)
	if err := f.readAt(b, off); err != nil {
		return malformed("inode %d: bmbt block %d: %v", ip.ino, fsb, err)
	}
	be := binary.BigEndian
	hdr, magic := lblockHdrV4, uint32(bmapMagic)
	if f.sb.crc() {
		hdr, magic = lblockHdrV5, bmap3Magic
	}
	if be.Uint32(b) != magic {
		return malformed("inode %d: bmbt block %d magic %#08x", ip.ino, fsb, be.Uint32(b))
	}
	if f.sb.crc() {
		if !verifyCRC(b, 64) {
			return malformed("inode %d: bmbt block %d checksum mismatch", ip.ino, fsb)
		}
		if be.Uint64(b[56:]) != ip.ino {
			return malformed("inode %d: bmbt block %d belongs to inode %d", ip.ino, fsb, be.Uint64(b[56:]))
		}
	}
	lvl, num := int(be.Uint16(b[4:])), int(be.Uint16(b[6:]))
	maxr := (len(b) - hdr) / 16
	if lvl != level || num == 0 || num > maxr {
		return malformed("inode %d: bmbt block %d level %d (want %d) with %d records", ip.ino, fsb, lvl, level, num)
	}
	if level == 0 {
		if len(w.out)+num > maxExtents {
			return malformed("inode %d: more than %d extents", ip.ino, maxExtents)
		}
		for i := 0; i < num; i++ {
			w.out = append(w.out, decodeExtent(b[hdr+i*16:]))
		}
		return nil
	}
	for i := 0; i < num; i++ {
		if err := w.walk(be.Uint64(b[hdr+maxr*8+i*8:]), level-1, depth+1); err != nil {
			return err
		}
	}
	return nil
}

// findExtent returns the index of the first extent ending after block lb.
func findExtent(xs []extent, lb uint64) int {
	return sort.Search(len(xs), func(i int) bool { return xs[i].off+xs[i].count > lb })
}
