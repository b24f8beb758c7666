package cli

import (
	"os"
	"runtime"
	"sync"

	"golang.org/x/sys/unix"
)

// Process-wide tuning of the Go runtime for what a command does. Measured
// on the 2-CPU test VM, where a page fault on fresh memory costs about
// 20 µs (5 ms per MiB touched) while populating the same memory in one
// system call costs 0.2 ms per MiB.

// procForBlockingIO gives the Go runtime one more P than CPUs, for commands
// that write with direct I/O and fsync: a goroutine blocked in such a
// syscall keeps its P until the runtime's monitor takes it back, up to
// milliseconds later. With two CPUs that left a quarter of the machine idle
// during a backup. An explicit GOMAXPROCS wins.
func procForBlockingIO() {
	extraProc.Do(func() {
		if os.Getenv("GOMAXPROCS") == "" {
			runtime.GOMAXPROCS(runtime.GOMAXPROCS(0) + 1)
		}
	})
}

var extraProc sync.Once

// Heap warming for the mount daemon, whose first answers (the first ls -l
// of a big guest directory) allocate tens of MiB of small objects: file
// system nodes, inodes, listings. Faulting that memory in page by page
// took half the time of a first ls -l of 5000 entries.
const (
	heapReserve = 64 << 20 // raises the GC goal; never touched, costs no memory
	heapWarm    = 32 << 20 // populated up front, then freed for reuse
	// decodeWarm is how much memory for decoded blocks the mount daemon
	// touches before serving: a first ls -l of 5000 guest files decodes
	// about 8 MiB of inode tables. Touching it up front took the first
	// listing from 140-170 ms to 100-130 ms; it costs 60 ms at start.
	decodeWarm = 16 << 20
)

var heapBallast []byte

// warmHeap populates heapWarm bytes of Go heap in one system call and
// frees them: the runtime reuses the pages for later allocations. The
// untouched heapReserve keeps the GC goal above the warmed memory, so the
// scavenger does not hand it back to the kernel. Kernels without
// MADV_POPULATE_WRITE (before 5.14) skip the warming.
func warmHeap() {
	heapBallast = make([]byte, heapReserve)
	warm := make([]byte, heapWarm)
	_ = unix.Madvise(warm, unix.MADV_POPULATE_WRITE)
	runtime.KeepAlive(warm)
	warm = nil
	runtime.GC() // free the warmed pages now, for the first requests
}
