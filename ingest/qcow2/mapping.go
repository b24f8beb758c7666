package qcow2

import "fmt"

// runKind says where the bytes of a guest range come from.
type runKind uint8

const (
	runUnalloc    runKind = iota // not allocated here: backing file or zeros
	runZero                      // reads as zeros
	runData                      // stored uncompressed at a host offset
	runCompressed                // part of one compressed cluster
)

// run is a maximal guest range, starting at the offset passed to mapRun,
// whose bytes all come from the same kind of source.
type run struct {
	kind   runKind
	length int64
	host   int64  // runData: host offset of the run's first byte
	desc   uint64 // runCompressed: the compressed cluster descriptor
	within int64  // runCompressed: offset of the run's first byte in its cluster
}

// mapRun maps the guest range starting at off (0 <= off < size), of at most
// max bytes, to the longest run that stays within one L2 table. Standard
// runs extend across consecutive units while the host data stays
// contiguous; a compressed run never leaves its cluster.
func (im *Image) mapRun(off, max int64) (run, error) {
	coverBits := im.clusterBits + im.l2Bits
	l1i := off >> coverBits
	limit := off + max
	if tableEnd := (l1i + 1) << coverBits; limit > tableEnd {
		limit = tableEnd
	}
	l2off := im.l1[l1i]
	if l2off == 0 {
		return run{kind: runUnalloc, length: limit - off}, nil
	}
	tbl, err := im.l2Table(l2off)
	if err != nil {
		return run{}, fmt.Errorf("guest offset %d: %w", off, err)
	}
	u := off >> im.unitBits
	k, host, desc, err := im.classify(tbl, u)
	if err != nil {
		return run{}, fmt.Errorf("guest offset %d: L2 table at %#x: %w", off, l2off, err)
	}
	r := run{kind: k}
	if k == runCompressed {
		end := (off>>im.clusterBits + 1) << im.clusterBits
		r.length = min(end, limit) - off
		r.desc = desc
		r.within = off & (im.clusterSize - 1)
		return r, nil
	}
	unit := int64(1) << im.unitBits
	if k == runData {
		r.host = host + off&(unit-1)
	}
	pos := min((u+1)<<im.unitBits, limit)
	next := host + unit
	for pos < limit {
		u++
		k2, h2, _, err := im.classify(tbl, u)
		if err != nil {
			return run{}, fmt.Errorf("guest offset %d: L2 table at %#x: %w", u<<im.unitBits, l2off, err)
		}
		if k2 != k || (k == runData && h2 != next) {
			break
		}
		pos = min(pos+unit, limit)
		next += unit
	}
	r.length = pos - off
	return r, nil
}

// classify decodes the L2 entry for allocation unit u (a cluster, or a
// subcluster with extended L2 entries). For runData it returns the host
// offset of the unit; for runCompressed the descriptor.
func (im *Image) classify(tbl []uint64, u int64) (runKind, int64, uint64, error) {
	perCluster := im.clusterBits - im.unitBits
	ci := (u >> perCluster) & (int64(1)<<im.l2Bits - 1)
	var e, bitmap uint64
	if im.extL2 {
		e, bitmap = tbl[2*ci], tbl[2*ci+1]
	} else {
		e = tbl[ci]
	}
	if e&l2Compressed != 0 {
		return runCompressed, 0, e, nil
	}
	host := int64(e & tableOffsetMask)
	if host&(im.clusterSize-1) != 0 {
		return 0, 0, 0, fmt.Errorf("entry %d: %w: cluster offset %#x is not cluster aligned", ci, ErrCorrupt, host)
	}
	if !im.extL2 {
		switch {
		case e&l2Zero != 0:
			if im.hdr.version < 3 {
				// QEMU treats this as corruption too.
				return 0, 0, 0, fmt.Errorf("entry %d: %w: zero cluster flag in a version 2 image", ci, ErrCorrupt)
			}
			return runZero, 0, 0, nil
		case host == 0:
			return runUnalloc, 0, 0, nil
		}
		if host >= im.fileSize {
			return 0, 0, 0, fmt.Errorf("entry %d: %w: data cluster at %#x lies past the end of the file (%d bytes)", ci, ErrTruncated, host, im.fileSize)
		}
		return runData, host, 0, nil
	}
	sc := uint(u & (int64(1)<<perCluster - 1))
	alloc, zero := uint32(bitmap), uint32(bitmap>>32)
	if host == 0 {
		if alloc != 0 {
			return 0, 0, 0, fmt.Errorf("entry %d: %w: unallocated cluster has allocated subclusters (bitmap %#x)", ci, ErrCorrupt, bitmap)
		}
		if zero&(1<<sc) != 0 {
			return runZero, 0, 0, nil
		}
		return runUnalloc, 0, 0, nil
	}
	if alloc&zero != 0 {
		return 0, 0, 0, fmt.Errorf("entry %d: %w: subclusters both allocated and zero (bitmap %#x)", ci, ErrCorrupt, bitmap)
	}
	switch {
	case zero&(1<<sc) != 0:
		return runZero, 0, 0, nil
	case alloc&(1<<sc) == 0:
		return runUnalloc, 0, 0, nil
	}
	if host >= im.fileSize {
		return 0, 0, 0, fmt.Errorf("entry %d: %w: data cluster at %#x lies past the end of the file (%d bytes)", ci, ErrTruncated, host, im.fileSize)
	}
	return runData, host + int64(sc)<<im.unitBits, 0, nil
}
