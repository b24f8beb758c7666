package repo

import (
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// DiskReader reads one disk of a restore point. Any offset maps to its
// block by arithmetic: block b is entry b%TableSize of table b/TableSize,
// and the table's location is in the restore point. Block tables and
// blocks are cached; every block is verified against its hash.
// Safe for concurrent use.
type DiskReader struct {
	r      *Repository
	point  *RestorePoint
	disk   *Disk
	tables map[uint32]TableRef
	tcache *lru[uint32, []BlockEntry]
	bcache *lru[int64, *Block]
	bufs   *blockBufs
}

// Block is a decoded, verified block, shared by the DiskReader's cache
// and its readers. Its buffer is recycled for another block once the
// cache has dropped it and every reader that acquired it has released
// it, so that reading a disk does not allocate (and the kernel does not
// clear) fresh memory for every block.
type Block struct {
	// Data is the block's bytes. Read only, and only until Release.
	Data []byte
	refs atomic.Int32
	bufs *blockBufs
}

// Release gives up the caller's hold on b; b.Data must not be used after.
func (b *Block) Release() {
	switch n := b.refs.Add(-1); {
	case n == 0:
		b.bufs.put(b.Data)
		b.Data = nil
	case n < 0:
		panic("repo: Block released more often than acquired")
	}
}

// blockBufs keeps decode buffers of one block size for reuse; what does
// not fit is left to the garbage collector.
type blockBufs struct {
	size int
	mu   sync.Mutex
	free [][]byte
	slab []byte // the unused rest of the newest slab
}

// blockSlab is how much memory blockBufs maps at once.
const blockSlab = 4 << 20

var blockBufPools sync.Map // block size -> *blockBufs

func blockBufsFor(size int) *blockBufs {
	if p, ok := blockBufPools.Load(size); ok {
		return p.(*blockBufs)
	}
	p, _ := blockBufPools.LoadOrStore(size, &blockBufs{size: size})
	return p.(*blockBufs)
}

// get returns an empty buffer of capacity size. Buffers come from slabs
// mapped outside the Go heap with their pages populated in one system call:
// on a virtual machine a page fault on fresh memory costs tens of
// microseconds (5 ms per MiB here), against 0.2 ms per MiB populated, and
// decoding into fresh heap memory dominated the first listing of a guest
// directory through the mount. Buffers are recycled by put, never unmapped:
// their number is bounded by the largest number in use at once (the block
// caches plus reads in flight).
func (p *blockBufs) get() []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	if n := len(p.free); n > 0 {
		b := p.free[n-1]
		p.free = p.free[:n-1]
		return b
	}
	if len(p.slab) < p.size {
		slab, err := unix.Mmap(-1, 0, max(blockSlab, p.size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_POPULATE)
		if err != nil {
			return make([]byte, 0, p.size) // out of address space: the Go heap still works
		}
		p.slab = slab
	}
	b := p.slab[:0:p.size]
	p.slab = p.slab[p.size:]
	return b
}

// WarmDecodeBuffers prepares n bytes of buffers for decoding blocks of
// the repository's block size, touching every page now. On a virtual
// machine the first write to a page of fresh memory costs 10-20 µs even
// when the kernel populated it (3.5 ms per MiB here), and a mount daemon's
// first listing of a big guest directory decodes megabytes of inode
// tables: paying for those pages before serving keeps that cost out of
// the first requests. The buffers join the free list and are reused first.
func (r *Repository) WarmDecodeBuffers(n int64) {
	p := blockBufsFor(r.cfg.BlockSize)
	var bufs [][]byte
	for got := int64(0); got < n; got += int64(p.size) {
		b := p.get()[:p.size]
		for i := 0; i < len(b); i += 4096 {
			b[i] = 0
		}
		bufs = append(bufs, b)
	}
	for _, b := range bufs {
		p.put(b)
	}
}

func (p *blockBufs) put(b []byte) {
	if cap(b) < p.size {
		return
	}
	p.mu.Lock()
	p.free = append(p.free, b[:0:p.size])
	p.mu.Unlock()
}

// OpenDisk opens disk name of restore point p. cacheBytes bounds the cache
// of decoded blocks (0: 32 MiB).
func (r *Repository) OpenDisk(p *RestorePoint, name string, cacheBytes int64) (*DiskReader, error) {
	d, err := p.Disk(name)
	if err != nil {
		return nil, err
	}
	if cacheBytes <= 0 {
		cacheBytes = 32 << 20
	}
	dr := &DiskReader{
		r: r, point: p, disk: d,
		tables: make(map[uint32]TableRef, len(d.Tables)),
		tcache: newLRU[uint32](8<<20, func(t []BlockEntry) int64 { return int64(len(t)) * 64 }),
		bcache: newLRU[int64](cacheBytes, func(b *Block) int64 { return int64(cap(b.Data)) }),
		bufs:   blockBufsFor(d.BlockSize),
	}
	// The cache holds one reference to each block it keeps; a hit is a
	// new reference, taken under the cache's lock so that an eviction
	// cannot recycle the block in between.
	dr.bcache.onHit = func(b *Block) { b.refs.Add(1) }
	dr.bcache.onEvict = (*Block).Release
	for _, t := range d.Tables {
		dr.tables[t.Index] = t
	}
	return dr, nil
}

// Disk describes the disk.
func (dr *DiskReader) Disk() *Disk { return dr.disk }

// Size is the disk size in bytes.
func (dr *DiskReader) Size() int64 { return dr.disk.Size }

// Table returns the entries of block table i, or nil when the table is
// absent (all its blocks are zeros).
func (dr *DiskReader) Table(i uint32) ([]BlockEntry, error) {
	ref, ok := dr.tables[i]
	if !ok {
		return nil, nil
	}
	if t, ok := dr.tcache.get(i); ok {
		return t, nil
	}
	raw, err := dr.r.LoadBlob(BlobTable, ref.ID, ref.location())
	if err != nil {
		return nil, fmt.Errorf("restore point %s disk %s block table %d: %w", dr.point.ID, dr.disk.Name, i, err)
	}
	t, err := decodeTable(raw, dr.disk.TableSize)
	if err != nil {
		return nil, fmt.Errorf("restore point %s disk %s block table %d: %w", dr.point.ID, dr.disk.Name, i, err)
	}
	dr.tcache.add(i, t)
	return t, nil
}

// Entry returns the entry of block b.
func (dr *DiskReader) Entry(b int64) (BlockEntry, error) {
	ts := int64(dr.disk.TableSize)
	t, err := dr.Table(uint32(b / ts))
	if err != nil || t == nil {
		return BlockEntry{}, err
	}
	return t[b%ts], nil
}

// blockLen is the length of block b (the last block may be short).
func (dr *DiskReader) blockLen(b int64) int {
	bs := int64(dr.disk.BlockSize)
	return int(min(bs, dr.disk.Size-b*bs))
}

// AcquireBlock returns block b, verified, through the cache, or nil for a
// zero block. The caller must Release it when done with its Data.
func (dr *DiskReader) AcquireBlock(b int64) (*Block, error) {
	if blk, ok := dr.bcache.get(b); ok {
		return blk, nil
	}
	e, err := dr.Entry(b)
	if err != nil || e.IsZero() {
		return nil, err
	}
	buf := dr.bufs.get()
	data, err := dr.r.LoadBlobInto(buf, BlobData, e.ID, e.Location)
	if err != nil {
		dr.bufs.put(buf)
		return nil, fmt.Errorf("restore point %s disk %s offset %d: %w", dr.point.ID, dr.disk.Name, b*int64(dr.disk.BlockSize), err)
	}
	if len(data) != dr.blockLen(b) {
		dr.bufs.put(data)
		return nil, fmt.Errorf("%w: restore point %s disk %s block %d has %d bytes, want %d", ErrCorrupt, dr.point.ID, dr.disk.Name, b, len(data), dr.blockLen(b))
	}
	blk := &Block{Data: data, bufs: dr.bufs}
	blk.refs.Store(2) // the caller's and the cache's
	if !dr.bcache.add(b, blk) {
		blk.refs.Add(-1) // cached meanwhile by another reader: only ours
	}
	return blk, nil
}

// Prefetch loads block b into the cache.
func (dr *DiskReader) Prefetch(b int64) error {
	blk, err := dr.AcquireBlock(b)
	if blk != nil {
		blk.Release()
	}
	return err
}

// ReadBlock returns a copy of the verified bytes of block b, or nil for a
// zero block.
func (dr *DiskReader) ReadBlock(b int64) ([]byte, error) {
	blk, err := dr.AcquireBlock(b)
	if err != nil || blk == nil {
		return nil, err
	}
	defer blk.Release()
	return slices.Clone(blk.Data), nil
}

// ReadBlockInto reads block b into dst (grown if needed), bypassing the
// cache, for callers that stream a whole disk. It returns nil for a zero block.
func (dr *DiskReader) ReadBlockInto(b int64, dst []byte) ([]byte, error) {
	e, err := dr.Entry(b)
	if err != nil || e.IsZero() {
		return nil, err
	}
	data, err := dr.r.LoadBlobInto(dst, BlobData, e.ID, e.Location)
	if err != nil {
		return nil, fmt.Errorf("restore point %s disk %s offset %d: %w", dr.point.ID, dr.disk.Name, b*int64(dr.disk.BlockSize), err)
	}
	if len(data) != dr.blockLen(b) {
		return nil, fmt.Errorf("%w: restore point %s disk %s block %d has %d bytes, want %d", ErrCorrupt, dr.point.ID, dr.disk.Name, b, len(data), dr.blockLen(b))
	}
	return data, nil
}

// ReadAt implements io.ReaderAt over the disk's bytes.
func (dr *DiskReader) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("negative offset %d", off)
	}
	if off >= dr.disk.Size {
		return 0, io.EOF
	}
	n := 0
	bs := int64(dr.disk.BlockSize)
	for n < len(p) && off < dr.disk.Size {
		b := off / bs
		within := int(off - b*bs)
		blk, err := dr.AcquireBlock(b)
		if err != nil {
			return n, err
		}
		want := min(len(p)-n, dr.blockLen(b)-within)
		if blk == nil {
			clear(p[n : n+want])
		} else {
			copy(p[n:n+want], blk.Data[within:])
			blk.Release()
		}
		n += want
		off += int64(want)
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}
