package qcow2

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"slices"
)

const (
	layoutHeaderLength = 112
	layoutRefcountBits = 16
	oflagCopied        = uint64(1) << 63
	maxHostOffset      = int64(1) << 56 // L1/L2 entries hold offsets in bits 9..55
	layoutChunk        = 1 << 20        // WriteMetadata buffers this much per WriteAt
)

// Layout is a planned qcow2 v3 image: all metadata is written by
// WriteMetadata; data clusters go at DataOffset.
//
// The host file is laid out as: header cluster, refcount table, refcount
// blocks, L1 table, L2 tables (one per L1 entry that maps any allocated
// cluster, in guest order), then one host cluster per allocated guest
// cluster, in guest order. Every cluster has refcount 1. All metadata
// precedes the data, and its size depends only on the virtual size, the
// cluster size and which clusters are allocated.
type Layout struct {
	size        int64
	clusterBits uint
	clusterSize int64
	l2Bits      uint     // log2 of the entries per L2 table
	allocated   []uint64 // guest clusters holding data, ascending
	l2Index     []uint64 // L1 indexes that get an L2 table, ascending

	l1Size int64 // L1 entries

	// First host cluster and cluster count of each region.
	rtStart, rtClusters int64
	rbStart, rbClusters int64
	l1Start, l1Clusters int64
	l2Start             int64
	dataStart           int64
	total               int64 // host clusters in the file
}

// PlanLayout plans an image of virtual size size (a multiple of 512, as
// QEMU requires) with 1<<clusterBits clusters (9..21), where exactly the guest clusters listed in allocated
// (sorted ascending, unique, each < ceil(size/clusterSize)) hold data; all
// other clusters are unallocated and read as zeros. Refcounts are 16 bits
// wide (refcount_order 4). allocated is copied.
func PlanLayout(size int64, clusterBits int, allocated []uint64) (*Layout, error) {
	if clusterBits < minClusterBits || clusterBits > maxClusterBits {
		return nil, fmt.Errorf("qcow2: plan layout: cluster bits %d out of range %d..%d", clusterBits, minClusterBits, maxClusterBits)
	}
	if size < 0 {
		return nil, fmt.Errorf("qcow2: plan layout: negative virtual size %d", size)
	}
	if size%512 != 0 {
		// QEMU refuses to create such images and reads them as if the
		// size were rounded down.
		return nil, fmt.Errorf("qcow2: plan layout: virtual size %d is not a multiple of 512 bytes", size)
	}
	l := &Layout{
		size:        size,
		clusterBits: uint(clusterBits),
		clusterSize: int64(1) << clusterBits,
		l2Bits:      uint(clusterBits) - 3,
	}
	C := l.clusterSize
	guestClusters := ceilDiv(size, C)
	for i, g := range allocated {
		if g >= uint64(guestClusters) {
			return nil, fmt.Errorf("qcow2: plan layout: allocated cluster %d is beyond the last cluster %d of a %d-byte disk", g, guestClusters-1, size)
		}
		if i > 0 && g <= allocated[i-1] {
			return nil, fmt.Errorf("qcow2: plan layout: allocated clusters not sorted and unique at index %d (%d after %d)", i, g, allocated[i-1])
		}
	}
	l.allocated = slices.Clone(allocated)
	l.l1Size = ceilDiv(guestClusters, int64(1)<<l.l2Bits)
	if l.l1Size*8 > maxL1Bytes {
		return nil, fmt.Errorf("qcow2: plan layout: virtual size %d needs %d L1 entries, more than QEMU's limit of %d; use larger clusters", size, l.l1Size, maxL1Bytes/8)
	}
	for _, g := range l.allocated {
		if i := g >> l.l2Bits; len(l.l2Index) == 0 || l.l2Index[len(l.l2Index)-1] != i {
			l.l2Index = append(l.l2Index, i)
		}
	}
	l.l1Clusters = ceilDiv(l.l1Size*8, C)

	// The refcount structures must also count themselves: iterate to the
	// fixed point (the counts only grow, so this terminates quickly).
	fixed := 1 + l.l1Clusters + int64(len(l.l2Index)) + int64(len(l.allocated))
	perBlock := C * 8 / layoutRefcountBits
	for {
		total := fixed + l.rtClusters + l.rbClusters
		rb := ceilDiv(total, perBlock)
		rt := ceilDiv(rb*8, C)
		if rb == l.rbClusters && rt == l.rtClusters {
			l.total = total
			break
		}
		l.rbClusters, l.rtClusters = rb, rt
	}
	if l.total > maxHostOffset>>l.clusterBits || l.total > math.MaxInt64>>l.clusterBits {
		return nil, fmt.Errorf("qcow2: plan layout: image would need %d host clusters, too many", l.total)
	}
	l.rtStart = 1
	l.rbStart = l.rtStart + l.rtClusters
	l.l1Start = l.rbStart + l.rbClusters
	l.l2Start = l.l1Start + l.l1Clusters
	l.dataStart = l.l2Start + int64(len(l.l2Index))
	return l, nil
}

// DataOffset returns the host offset where the data of guest cluster
// guestCluster goes, or -1 if that cluster is not allocated.
func (l *Layout) DataOffset(guestCluster uint64) int64 {
	i, ok := slices.BinarySearch(l.allocated, guestCluster)
	if !ok {
		return -1
	}
	return (l.dataStart + int64(i)) << l.clusterBits
}

// FileSize returns the total host file size once all data is written.
func (l *Layout) FileSize() int64 { return l.total << l.clusterBits }

// ClusterSize returns the planned cluster size in bytes.
func (l *Layout) ClusterSize() int { return int(l.clusterSize) }

// WriteMetadata writes the header, refcount table and blocks, L1 table and
// L2 tables: every byte of the host file before the first data cluster.
// It does not touch the data clusters, so it may run before, after or
// while they are written. If w has a Truncate(int64) error method (as
// *os.File does), the file is also sized to FileSize. Either way a partial
// last data cluster need not be padded by the caller: QEMU reads the
// missing tail as zeros and qemu-img check accepts a file that ends inside
// the last data cluster.
func (l *Layout) WriteMetadata(w io.WriterAt) error {
	cw := &chunkWriter{w: w, buf: make([]byte, 0, min(layoutChunk, l.dataStart<<l.clusterBits))}
	C := int(l.clusterSize)
	cluster := make([]byte, C)
	be := binary.BigEndian

	// Header.
	clear(cluster)
	l.encodeHeader(cluster)
	if err := cw.put(cluster); err != nil {
		return err
	}

	// Refcount table: one entry per refcount block.
	for c := int64(0); c < l.rtClusters; c++ {
		clear(cluster)
		for i := 0; i < C/8; i++ {
			b := c*int64(C/8) + int64(i)
			if b >= l.rbClusters {
				break
			}
			be.PutUint64(cluster[i*8:], uint64(l.rbStart+b)<<l.clusterBits)
		}
		if err := cw.put(cluster); err != nil {
			return err
		}
	}

	// Refcount blocks: refcount 1 for every cluster of the file.
	perBlock := int64(C * 8 / layoutRefcountBits)
	for b := int64(0); b < l.rbClusters; b++ {
		clear(cluster)
		n := min(perBlock, l.total-b*perBlock)
		for i := int64(0); i < n; i++ {
			be.PutUint16(cluster[i*2:], 1)
		}
		if err := cw.put(cluster); err != nil {
			return err
		}
	}

	// L1 table.
	k := 0 // next entry of l2Index
	for c := int64(0); c < l.l1Clusters; c++ {
		clear(cluster)
		first := c * int64(C/8)
		for k < len(l.l2Index) && int64(l.l2Index[k]) < first+int64(C/8) {
			off := uint64(l.l2Start+int64(k)) << l.clusterBits
			be.PutUint64(cluster[(int64(l.l2Index[k])-first)*8:], off|oflagCopied)
			k++
		}
		if err := cw.put(cluster); err != nil {
			return err
		}
	}

	// L2 tables.
	j := 0 // next entry of allocated
	mask := uint64(1)<<l.l2Bits - 1
	for _, li := range l.l2Index {
		clear(cluster)
		for j < len(l.allocated) && l.allocated[j]>>l.l2Bits == li {
			off := uint64(l.dataStart+int64(j)) << l.clusterBits
			be.PutUint64(cluster[(l.allocated[j]&mask)*8:], off|oflagCopied)
			j++
		}
		if err := cw.put(cluster); err != nil {
			return err
		}
	}
	if err := cw.flush(); err != nil {
		return err
	}
	if t, ok := w.(interface{ Truncate(int64) error }); ok {
		if err := t.Truncate(l.FileSize()); err != nil {
			return fmt.Errorf("qcow2: write metadata: size file to %d bytes: %w", l.FileSize(), err)
		}
	}
	return nil
}

// encodeHeader writes the version 3 header into b (one cluster, zeroed).
func (l *Layout) encodeHeader(b []byte) {
	be := binary.BigEndian
	copy(b, magic[:])
	be.PutUint32(b[4:], 3)
	be.PutUint32(b[20:], uint32(l.clusterBits))
	be.PutUint64(b[24:], uint64(l.size))
	be.PutUint32(b[36:], uint32(l.l1Size))
	be.PutUint64(b[40:], uint64(l.l1Start)<<l.clusterBits)
	be.PutUint64(b[48:], uint64(l.rtStart)<<l.clusterBits)
	be.PutUint32(b[56:], uint32(l.rtClusters))
	be.PutUint32(b[96:], 4) // refcount_order: 16-bit refcounts
	be.PutUint32(b[100:], layoutHeaderLength)
	// compression_type (byte 104) is 0, deflate; the header extension area
	// starting at 112 begins with the end marker (all zeros).
}

// chunkWriter writes consecutive bytes from offset 0 through a buffer.
type chunkWriter struct {
	w   io.WriterAt
	off int64
	buf []byte
}

func (c *chunkWriter) put(p []byte) error {
	if len(c.buf)+len(p) > cap(c.buf) {
		if err := c.flush(); err != nil {
			return err
		}
	}
	if len(p) > cap(c.buf) {
		return c.write(p)
	}
	c.buf = append(c.buf, p...)
	return nil
}

func (c *chunkWriter) flush() error {
	if len(c.buf) == 0 {
		return nil
	}
	err := c.write(c.buf)
	c.buf = c.buf[:0]
	return err
}

func (c *chunkWriter) write(p []byte) error {
	if _, err := c.w.WriteAt(p, c.off); err != nil {
		return fmt.Errorf("qcow2: write metadata at %d: %w", c.off, err)
	}
	c.off += int64(len(p))
	return nil
}

func ceilDiv(a, b int64) int64 {
	if a == 0 {
		return 0
	}
	return (a-1)/b + 1
}
