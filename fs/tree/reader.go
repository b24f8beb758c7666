package tree

import (
	"container/list"
	"io"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/cairn-backup/cairn/repo"
)

// How reads work
//
// Each (restore point, disk) being read has a source: one repo.DiskReader
// (with its cache of decoded blocks) and the set of blocks being loaded
// right now. Sources live in a small LRU pool, so that the memory of the
// daemon is bounded by the cache budget however many files are open: a
// handle looks its source up on every read rather than holding it.
//
// A handle that reads sequentially (each read starting near where the
// previous one ended) prefetches the blocks after the read into the
// DiskReader cache with a pool of workers, in a window that doubles up to
// a limit, so that decoding (hash check, decompression, decryption) runs
// in parallel and ahead of the reader. Blocks a read needs that are queued
// but not started are loaded by the reader itself; blocks a worker is
// loading are waited for, so no block is decoded twice.

type sourceKey struct{ point, disk string }

type source struct {
	key  sourceKey
	dr   *repo.DiskReader
	bs   int64
	size int64
	elem *list.Element

	mu       sync.Mutex
	inflight map[int64]*fetch
}

// fetch is a block queued for or being loaded.
type fetch struct {
	claimed atomic.Bool // set by whoever loads it
	done    chan struct{}
}

type sourcePool struct {
	r          *repo.Repository
	maxOpen    int
	cacheBytes int64 // per source

	mu   sync.Mutex
	m    map[sourceKey]*source
	lru  *list.List
	jobs chan job
	quit chan struct{}
	wg   sync.WaitGroup
}

type job struct {
	src *source
	b   int64
	f   *fetch
}

const (
	// perSourceCache is the cache each open disk gets; the budget decides
	// how many disks stay open.
	perSourceCache = 64 << 20
	minOpen        = 4
	// maxWindow bounds the readahead of one handle, in bytes.
	maxWindow = 32 << 20
	// minWindow is the first readahead of a sequential handle, in bytes.
	minWindow = 1 << 20
	// seqSlack is how far from the end of the previous read a read may
	// start and still count as sequential: the kernel sends readahead
	// requests concurrently, so they arrive slightly out of order.
	seqSlack = 8 << 20
	// seqSmallHop is how far ahead a small read may start and still count
	// as sequential.
	seqSmallHop = 1 << 20
	// dropLag is how much of what a sequential reader read last stays
	// cached; dropStep is the least it drops at once.
	dropLag  = 64 << 20
	dropStep = 16 << 20
)

func newSourcePool(r *repo.Repository, budget int64, workers int) *sourcePool {
	maxOpen := max(minOpen, int(budget/perSourceCache))
	p := &sourcePool{
		r: r, maxOpen: maxOpen, cacheBytes: max(budget/int64(maxOpen), 4<<20),
		m: make(map[sourceKey]*source), lru: list.New(), quit: make(chan struct{}),
	}
	if workers == 0 {
		workers = min(max(4, 4*runtime.NumCPU()), 32)
	}
	if workers > 0 {
		p.jobs = make(chan job, 4096)
		for i := 0; i < workers; i++ {
			p.wg.Add(1)
			go p.work()
		}
	}
	return p
}

func (p *sourcePool) close() {
	p.mu.Lock()
	select {
	case <-p.quit:
	default:
		close(p.quit)
	}
	p.m = make(map[sourceKey]*source)
	p.lru.Init()
	p.mu.Unlock()
	p.wg.Wait()
}

// get returns the source of disk d of restore point pt, opening it (and
// closing the least recently used one) if needed.
func (p *sourcePool) get(pt *repo.RestorePoint, d *repo.Disk) (*source, error) {
	k := sourceKey{point: pt.ID, disk: d.Name}
	p.mu.Lock()
	defer p.mu.Unlock()
	if s := p.m[k]; s != nil {
		p.lru.MoveToFront(s.elem)
		return s, nil
	}
	dr, err := p.r.OpenDisk(pt, d.Name, p.cacheBytes)
	if err != nil {
		return nil, err
	}
	s := &source{key: k, dr: dr, bs: int64(d.BlockSize), size: d.Size, inflight: make(map[int64]*fetch)}
	s.elem = p.lru.PushFront(s)
	p.m[k] = s
	for p.lru.Len() > p.maxOpen {
		old := p.lru.Remove(p.lru.Back()).(*source)
		delete(p.m, old.key) // in-flight users finish with it; then it is garbage
	}
	return s, nil
}

// forget drops the sources of a restore point that no longer exists.
func (p *sourcePool) forget(pointID string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for k, s := range p.m {
		if k.point == pointID {
			p.lru.Remove(s.elem)
			delete(p.m, k)
		}
	}
}

func (p *sourcePool) work() {
	defer p.wg.Done()
	for {
		select {
		case <-p.quit:
			return
		case j := <-p.jobs:
			if j.f.claimed.CompareAndSwap(false, true) {
				j.src.load(j.b, j.f)
			}
		}
	}
}

// load reads block b into the DiskReader cache. Errors are dropped: the
// read that needs the block reads it again and reports them.
func (s *source) load(b int64, f *fetch) {
	s.dr.Prefetch(b)
	s.mu.Lock()
	delete(s.inflight, b)
	s.mu.Unlock()
	close(f.done)
}

// prefetch queues blocks [from, to) that are not being loaded already.
// A full queue drops the rest: prefetching is only a hint.
func (p *sourcePool) prefetch(s *source, from, to int64) {
	if p.jobs == nil {
		return
	}
	for b := from; b < to; b++ {
		if e, err := s.dr.Entry(b); err == nil && e.IsZero() {
			continue // a hole: nothing to load
		}
		s.mu.Lock()
		if s.inflight[b] != nil {
			s.mu.Unlock()
			continue
		}
		f := &fetch{done: make(chan struct{})}
		s.inflight[b] = f
		s.mu.Unlock()
		select {
		case p.jobs <- job{s, b, f}:
		default:
			f.claimed.Store(true)
			s.mu.Lock()
			delete(s.inflight, b)
			s.mu.Unlock()
			close(f.done)
			return
		}
	}
}

// await makes sure block b is not being loaded: a queued block is loaded
// here, a block a worker is loading is waited for.
func (s *source) await(b int64) {
	s.mu.Lock()
	f := s.inflight[b]
	s.mu.Unlock()
	if f == nil {
		return
	}
	if f.claimed.CompareAndSwap(false, true) {
		s.load(b, f)
		return
	}
	<-f.done
}

// ---------------------------------------------------------------- handles

// diskHandle reads bytes [base, base+size) of a disk: the whole disk or
// one partition. The mount keeps one handle per file, shared by every
// process reading it, so the handle follows up to maxStreams sequential
// readers at once (two dd of different halves, a qemu-img convert while
// someone greps the image): each read belongs to the stream it continues,
// or starts a new one in place of the stream used least recently.
type diskHandle struct {
	t          *Tree
	p          *repo.RestorePoint
	d          *repo.Disk
	base, size int64

	mu      sync.Mutex
	streams [maxStreams]stream
	clock   uint64 // counts reads, to find the stream used least recently
}

// stream is what a handle knows of one sequential reader.
type stream struct {
	next   int64  // where a sequential read would start
	window int64  // readahead, in blocks (0: not sequential)
	hwm    int64  // blocks below this were queued for prefetch already
	run    int64  // bytes read by the current sequential run
	kept   int64  // the run's bytes from here on are still cached
	used   uint64 // the handle's clock at its last read; 0: never used
}

// maxStreams is how many sequential readers of one file keep their own
// readahead and drop-behind.
const maxStreams = 4

func (t *Tree) newHandle(p *repo.RestorePoint, d *repo.Disk, base, size int64) *diskHandle {
	return &diskHandle{t: t, p: p, d: d, base: base, size: size}
}

func (h *diskHandle) Close() error { return nil }

func (h *diskHandle) fail(off int64, err error) error {
	return &ReadError{VM: h.p.VM, Point: h.p.ID, Disk: h.d.Name, Offset: off, Err: err}
}

// zeros stands for holes in ReadSlices results. Nothing writes to it.
var zeros = make([]byte, 1<<20)

// ReadAt reads len(p) bytes at off (from the start of the handle's range).
// On error it returns 0 and a *ReadError: a partly read range is never
// passed on.
func (h *diskHandle) ReadAt(p []byte, off int64) (int, error) {
	s, err := h.ReadSlices(off, len(p))
	if err != nil {
		return 0, err
	}
	k := 0
	for _, v := range s.Vec {
		k += copy(p[k:], v)
	}
	n := s.N
	s.Release()
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// ReadSlices returns the n bytes at off as read-only slices: blocks from
// the DiskReader cache, held until the result's Release, and a shared
// zero buffer for holes. Nothing is copied, so the FUSE layer hands them
// to the kernel as they are. At the end of the range it returns fewer
// bytes (N = 0 past the end).
func (h *diskHandle) ReadSlices(off int64, n int) (*Slices, error) {
	if off < 0 {
		return nil, syscall.EINVAL
	}
	if off >= h.size || n <= 0 {
		return &Slices{}, nil
	}
	n = int(min(int64(n), h.size-off))
	abs := h.base + off
	src, err := h.t.disks.get(h.p, h.d)
	if err != nil {
		return nil, h.fail(abs, err)
	}
	first, last := abs/src.bs, (abs+int64(n)-1)/src.bs
	st := h.readahead(src, off, n, first, last)
	s := &Slices{Vec: make([][]byte, 0, last-first+1), N: n}
	s.DropOff, s.DropLen = h.dropBehind(src, st)
	zeroRun := 0 // bytes of zeros not yet in s.Vec
	flushZeros := func() {
		for zeroRun > 0 {
			k := min(zeroRun, len(zeros))
			s.Vec = append(s.Vec, zeros[:k])
			zeroRun -= k
		}
	}
	for b, pos := first, abs; b <= last; b++ {
		src.await(b)
		blk, err := src.dr.AcquireBlock(b)
		if err != nil {
			s.Release()
			return nil, h.fail(pos, err)
		}
		within := pos - b*src.bs
		want := min(abs+int64(n), (b+1)*src.bs) - pos
		if blk == nil {
			zeroRun += int(want)
		} else {
			s.blocks = append(s.blocks, blk)
			data := blk.Data
			if int64(len(data)) < within+want {
				s.Release()
				return nil, h.fail(pos, io.ErrUnexpectedEOF)
			}
			flushZeros()
			s.Vec = append(s.Vec, data[within:within+want:within+want])
		}
		pos += want
	}
	flushZeros()
	return s, nil
}

// streamFor returns the stream a read at off of n bytes continues, or, for
// a read that continues none, a new stream in place of the one used least
// recently (fresh says which). Called with h.mu held.
func (h *diskHandle) streamFor(off int64, n int) (st *stream, fresh bool) {
	h.clock++
	// How far ahead of the expected offset a read may start and still be
	// sequential scales with its size: the kernel's 1 MiB readahead
	// requests arrive a little out of order; a guest file system reader
	// going through the small files of a directory, laid out one after
	// the other with gaps, gains from prefetching the region (cp -a); but
	// hops of several MiB between small reads are not sequential.
	ahead := min(seqSlack, max(8*int64(n), seqSmallHop))
	var lru *stream
	var gap int64
	for i := range h.streams {
		c := &h.streams[i]
		if c.used != 0 && off >= c.next-seqSlack && off <= c.next+ahead {
			if d := max(off-c.next, c.next-off); st == nil || d < gap {
				st, gap = c, d
			}
		}
		if lru == nil || c.used < lru.used {
			lru = c
		}
	}
	if st == nil {
		st, fresh = lru, true
	}
	st.used = h.clock
	return st, fresh
}

// readahead decides what to prefetch for a read of n bytes at off
// covering blocks first..last, queues it, and returns the read's stream.
func (h *diskHandle) readahead(src *source, off int64, n int, first, last int64) *stream {
	endBlock := (h.base + h.size + src.bs - 1) / src.bs // past the handle's last block
	h.mu.Lock()
	st, fresh := h.streamFor(off, n)
	if fresh { // a jump: no readahead, but the read's own blocks in parallel
		*st = stream{next: off + int64(n), hwm: first + 1, run: int64(n), kept: off, used: st.used}
	} else {
		st.next = max(st.next, off+int64(n))
		st.run += int64(n)
		// Grow the window and queue more only once the reader has used
		// half of what is queued ahead of it (the kernel's readahead does
		// the same): many small reads within a few blocks, such as a guest
		// file system walking its inode table, must not blow the window up
		// to its maximum and decode megabytes nobody reads.
		if st.window > 0 && last+1 < st.hwm-st.window/2 {
			h.mu.Unlock()
			return st
		}
		// The window never exceeds twice what the run has read: a run of
		// small reads (a guest file system reading its inode table, 256
		// bytes per file of a directory) reads far less than a run of the
		// kernel's 1 MiB requests and must not prefetch as much.
		grow := min(max(2*st.window, minWindow/src.bs), h.maxWindow(src))
		st.window = max(1, min(grow, 2*st.run/src.bs))
	}
	from := max(st.hwm, first+1) // the reader loads the first block itself
	to := min(last+1+st.window, endBlock)
	st.hwm = max(st.hwm, to)
	h.mu.Unlock()
	if from < to && h.t.disks.jobs != nil {
		h.t.disks.prefetch(src, from, to)
	}
	return st
}

// dropBehind returns the range a long sequential run has left more than
// dropLag behind, in steps of at least dropStep, and drops the pack pages
// of its blocks. Streaming a disk image (dd, cat, qemu-img convert) reads
// every byte once: keeping all of it in the page cache, the image's pages
// and the packs' pages, gains nothing, evicts what the host had cached,
// and makes each next read take fresh memory. On a virtual machine whose
// host reclaims the guest's free memory, fresh memory costs a host fault
// per page: reading an 8 GiB image with the pages 64 MiB behind dropped
// ran at 6.7-7.2 GB/s, keeping them at 0.26-0.35 GB/s. Random reads and
// short runs keep everything.
func (h *diskHandle) dropBehind(src *source, st *stream) (off, n int64) {
	h.mu.Lock()
	if st.window == 0 || st.next-st.kept < dropLag+dropStep {
		h.mu.Unlock()
		return 0, 0
	}
	off, n = st.kept, st.next-dropLag-st.kept
	st.kept += n
	h.mu.Unlock()
	// Pack pages of the blocks wholly inside the range.
	first := (h.base + off + src.bs - 1) / src.bs
	last := (h.base + off + n) / src.bs
	if last > first {
		src.dr.DropCached(first, last-first)
	}
	return off, n
}

// Prefetch queues the blocks of [off, off+n) for loading in the
// background, up to the readahead limit; it does not change the handle's
// sequential readahead.
func (h *diskHandle) Prefetch(off, n int64) {
	if h.t.disks.jobs == nil || off < 0 || off >= h.size || n <= 0 {
		return
	}
	src, err := h.t.disks.get(h.p, h.d)
	if err != nil {
		return
	}
	abs := h.base + off
	end := h.base + min(h.size, off+n)
	first, last := abs/src.bs, (end-1)/src.bs
	h.t.disks.prefetch(src, first, min(last+1, first+h.maxWindow(src)))
}

// maxWindow keeps the readahead well inside the DiskReader cache, so that
// prefetched blocks are not evicted before they are read.
func (h *diskHandle) maxWindow(src *source) int64 {
	return max(1, min(maxWindow, h.t.disks.cacheBytes/4)/src.bs)
}

// SeekData returns the first offset at or after off that is in a stored
// (non-zero) block, or ENXIO.
func (h *diskHandle) SeekData(off int64) (int64, error) { return h.seek(off, true) }

// SeekHole returns the first offset at or after off that is in a zero
// block, or the end of the range (which counts as a hole), or ENXIO when
// off is past the end.
func (h *diskHandle) SeekHole(off int64) (int64, error) { return h.seek(off, false) }

func (h *diskHandle) seek(off int64, data bool) (int64, error) {
	if off < 0 {
		return 0, syscall.EINVAL
	}
	if off >= h.size {
		return 0, syscall.ENXIO
	}
	src, err := h.t.disks.get(h.p, h.d)
	if err != nil {
		return 0, h.fail(h.base+off, err)
	}
	bs, ts := src.bs, int64(h.d.TableSize)
	end := h.base + h.size
	for b := (h.base + off) / bs; b*bs < end; {
		ti := b / ts
		t, err := src.dr.Table(uint32(ti))
		if err != nil {
			return 0, h.fail(b*bs, err)
		}
		for ; b < (ti+1)*ts && b*bs < end; b++ {
			zero := t == nil || b-ti*ts >= int64(len(t)) || t[b-ti*ts].IsZero() // absent table: zeros
			if zero != data {
				return max(b*bs, h.base+off) - h.base, nil
			}
			if t == nil && data {
				b = (ti + 1) * ts // skip the rest of the absent table
				break
			}
		}
	}
	if data {
		return 0, syscall.ENXIO
	}
	return h.size, nil
}
