package tree

// How a handle follows its sequential readers: which stream a read
// continues, how far ahead it prefetches, and what it drops behind.

const (
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
