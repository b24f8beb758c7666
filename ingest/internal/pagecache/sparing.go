package pagecache

import (
	"errors"
	"os"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Sparing reads a disk image (regular file or block device) without
// leaving behind in the page cache what the backup alone brought in.
//
// A backup reads each byte of a disk once. Left in the page cache, a
// multi-TiB image would evict what the host's other users keep there; and
// on a virtual machine whose free memory goes back to the hypervisor, every
// fresh page-cache page costs a host fault (a cold first backup of the
// bench image spent 11-16 s of system time in page-cache fills). Pages
// dropped right after reading are reused for the next reads instead.
//
// What was cached before stays cached: each read first asks for cached
// pages only (RWF_NOWAIT); only the remainder, read from the device, is
// dropped (POSIX_FADV_DONTNEED) once copied out. Kernel readahead must be
// off for the file handle from its first read on (Open does that): pages
// it brought in ahead would look like someone else's and never be
// dropped, and a readahead mark left by one early read keeps asynchronous
// readahead going through the whole file even after POSIX_FADV_RANDOM.
// The workers' large, parallel reads keep the device busy without it.
type Sparing struct {
	f       *os.File
	fd      int
	noProbe atomic.Bool // RWF_NOWAIT is refused: read plainly, drop nothing
}

// Open opens a disk image for reading with kernel readahead off
// (POSIX_FADV_RANDOM, which affects this handle only), as NewSparing needs.
func Open(path string) (*os.File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	_ = unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_RANDOM) // NewSparing checks
	return f, nil
}

// NewSparing reads f, which Open opened and which stays owned by the
// caller. A file opened otherwise is read plainly, through the cache.
func NewSparing(f *os.File) *Sparing {
	c := &Sparing{f: f, fd: int(f.Fd())}
	// Setting it again is harmless; failing means no readahead control.
	if unix.Fadvise(c.fd, 0, 0, unix.FADV_RANDOM) != nil {
		c.noProbe.Store(true)
	}
	return c
}

// ReadAt reads like os.File.ReadAt, including io.EOF at the end.
func (c *Sparing) ReadAt(p []byte, off int64) (int, error) {
	if len(p) == 0 || c.noProbe.Load() {
		return c.f.ReadAt(p, off)
	}
	n, err := unix.Preadv2(c.fd, [][]byte{p}, off, unix.RWF_NOWAIT)
	switch {
	case err == nil && (n == len(p) || n == 0):
		if n == 0 { // at or past the end; let ReadAt say so
			return c.f.ReadAt(p, off)
		}
		return n, nil
	case err == nil: // a cached prefix; the rest is not cached (or is past the end)
	case errors.Is(err, unix.EAGAIN):
		n = 0
	case errors.Is(err, unix.EOPNOTSUPP), errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOSYS):
		c.noProbe.Store(true) // kernel or file system without RWF_NOWAIT
		return c.f.ReadAt(p, off)
	default:
		n = 0 // a real error: the plain read below reports it
	}
	m, err := c.f.ReadAt(p[n:], off+int64(n))
	if m > 0 {
		_ = unix.Fadvise(c.fd, off+int64(n), int64(m), unix.FADV_DONTNEED)
	}
	return n + m, err
}
