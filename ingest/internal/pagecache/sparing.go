package pagecache

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Sparing reads a disk image (regular file or block device) without
// leaving behind in the page cache what the backup alone brought in.
//
// A backup reads each byte of a disk once. Left in the page cache, a
// multi-TiB image would evict what the host's other users keep there; and
// on a virtual machine whose free memory goes back to the hypervisor, every
// fresh page-cache page costs a host fault (a cold first backup of the
// bench image spent 11-16 s of system time in page-cache fills).
//
// What was cached before stays cached and is read from the cache: mincore
// on a read-only mapping of the file tells, page by page and without any
// I/O, what is resident. The rest is read with O_DIRECT, past the cache;
// where that is impossible (unaligned pieces, file systems without direct
// I/O) it is read through the cache and dropped (POSIX_FADV_DONTNEED) once
// copied out. Kernel readahead is off for the buffered handle from its
// first read on (Open does that): pages it brought in ahead would look like
// someone else's. The workers' large, parallel reads keep the device busy
// without it.
//
// mincore reports page-cache residency only to the file's owner, root, or
// whoever may write the file; to anyone else every page looks resident,
// and Sparing reads everything through the cache, as a plain reader would.
//
// Not covered: a cached page that carries the readahead mark of another
// reader starts asynchronous readahead when read, whatever the handle's
// advice; the pages it brings in look cached to the next reads, are left
// in the cache, and may carry the mark further.
type Sparing struct {
	f        *os.File
	fd       int
	size     int64
	m        []byte   // read-only shared mapping, for mincore; nil: read plainly
	direct   *os.File // O_DIRECT handle of the same file, or nil
	noDirect atomic.Bool
}

// page is the unit of residency and of direct I/O alignment (a multiple
// of every logical block size).
var page = int64(os.Getpagesize())

// Open opens a disk image for reading with kernel readahead off
// (POSIX_FADV_RANDOM, which affects this handle only), as NewSparing needs.
func Open(path string) (*os.File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	_ = unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_RANDOM) // best effort
	return f, nil
}

// NewSparing reads the size bytes of f, which Open opened and which stays
// owned by the caller; Close releases what NewSparing set up. Where the
// file cannot be mapped, it is read plainly, through the cache.
func NewSparing(f *os.File, size int64) *Sparing {
	c := &Sparing{f: f, fd: int(f.Fd()), size: size}
	if size <= 0 || int64(int(size)) != size {
		return c
	}
	m, err := unix.Mmap(c.fd, 0, int(size), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return c
	}
	c.m = m
	// The same open file, not the same name: a rename meanwhile cannot
	// swap the data under the backup.
	if d, err := os.OpenFile(fmt.Sprintf("/proc/self/fd/%d", c.fd), os.O_RDONLY|unix.O_DIRECT, 0); err == nil {
		c.direct = d
	}
	return c
}

// Close unmaps the file and closes the direct handle; not f.
func (c *Sparing) Close() error {
	if c.m != nil {
		unix.Munmap(c.m)
		c.m = nil
	}
	if c.direct != nil {
		c.direct.Close()
		c.direct = nil
	}
	return nil
}

// ReadAt reads like os.File.ReadAt, including io.EOF at the end.
func (c *Sparing) ReadAt(p []byte, off int64) (int, error) {
	end := min(off+int64(len(p)), c.size)
	if c.m == nil || off < 0 || end <= off {
		return c.f.ReadAt(p, off)
	}
	first := off &^ (page - 1)
	vec := make([]byte, (end-first+page-1)/page)
	if err := mincore(c.m[first:end], vec); err != nil {
		return c.f.ReadAt(p, off)
	}
	done := 0
	for i := 0; i < len(vec); {
		j := i + 1
		for j < len(vec) && vec[j]&1 == vec[i]&1 {
			j++
		}
		a, b := max(first+int64(i)*page, off), min(first+int64(j)*page, end)
		piece := p[a-off : b-off]
		var n int
		var err error
		if vec[i]&1 != 0 {
			n, err = c.f.ReadAt(piece, a)
		} else {
			n, err = c.readUncached(piece, a)
		}
		done += n
		if err != nil {
			return done, err
		}
		i = j
	}
	if end < off+int64(len(p)) {
		return done, io.EOF
	}
	return done, nil
}

// readUncached reads a run of pages that are not in the page cache: the
// aligned middle with O_DIRECT, the rest through the cache, dropped after.
func (c *Sparing) readUncached(p []byte, off int64) (int, error) {
	done := 0
	if c.direct != nil && !c.noDirect.Load() {
		lead := int((page - off%page) % page)
		addr := int64(uintptr(unsafe.Pointer(unsafe.SliceData(p))) + uintptr(lead))
		if n := (len(p) - lead) &^ int(page-1); lead < len(p) && n > 0 && addr%page == 0 {
			if n, err := c.readCached(p[:lead], off); err != nil || n < lead {
				return n, eofIfNil(err)
			}
			m, err := c.direct.ReadAt(p[lead:lead+n], off+int64(lead))
			switch {
			case err == nil || errors.Is(err, io.EOF) && m > 0:
				done = lead + m
				if m < n { // the file ended (or shrank) within the run
					return done, io.EOF
				}
			case errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP):
				c.noDirect.Store(true) // no direct I/O here after all
				done = lead
			default:
				return lead + m, err
			}
		}
	}
	m, err := c.readCached(p[done:], off+int64(done))
	return done + m, err
}

// readCached reads pages that were not cached through the page cache and
// drops them, whole: POSIX_FADV_DONTNEED leaves partly covered pages.
func (c *Sparing) readCached(p []byte, off int64) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n, err := c.f.ReadAt(p, off)
	if n > 0 {
		first, end := off&^(page-1), (off+int64(n)+page-1)&^(page-1)
		_ = unix.Fadvise(c.fd, first, end-first, unix.FADV_DONTNEED)
	}
	return n, err
}

// Resident reports, page by page, which of the first size bytes of f are
// in the page cache (as mincore shows them to the caller).
func Resident(f *os.File, size int64) ([]bool, error) {
	if size <= 0 {
		return nil, nil
	}
	m, err := unix.Mmap(int(f.Fd()), 0, int(size), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, err
	}
	defer unix.Munmap(m)
	vec := make([]byte, (size+page-1)/page)
	if err := mincore(m, vec); err != nil {
		return nil, err
	}
	out := make([]bool, len(vec))
	for i, v := range vec {
		out[i] = v&1 != 0
	}
	return out, nil
}

func eofIfNil(err error) error {
	if err == nil {
		return io.EOF
	}
	return err
}

func mincore(b []byte, vec []byte) error {
	_, _, e := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)), uintptr(unsafe.Pointer(unsafe.SliceData(vec))))
	if e != 0 {
		return e
	}
	return nil
}
