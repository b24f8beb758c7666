package fs

import (
	"context"
	"errors"
	"io"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/cairn-backup/cairn/fs/tree"
)

// handle reads a file of the mount: disk and partition images, guest
// files, vm.json. Bytes come from the tree handle; it only translates.
// Each file node keeps one (node.reader): the kernel opens files without
// asking the daemon (see node.Open).
type handle struct {
	h tree.Handle
	n *node
}

func (h *handle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if sr, ok := h.h.(tree.SliceReader); ok {
		// Disk images: the kernel copies straight from the block cache.
		s, err := sr.ReadSlices(off, len(dest))
		if err != nil {
			return nil, h.readError(err, off)
		}
		if s.DropLen > 0 {
			h.n.dropCached(s.DropOff, s.DropLen)
		}
		return &slicesResult{s}, 0
	}
	n, err := h.h.ReadAt(dest, off)
	if err != nil && err != io.EOF {
		return nil, h.readError(err, off)
	}
	return fuse.ReadResultData(dest[:n]), 0
}

// readError logs a failed read and returns its errno.
func (h *handle) readError(err error, off int64) syscall.Errno {
	var re *tree.ReadError
	var ge *tree.GuestError
	if errors.As(err, &ge) {
		// The tree logged it, naming the guest file (and, for a block
		// that failed its hash check, the restore point and offset).
	} else if errors.As(err, &re) {
		h.n.log.Printf("read error: VM %s restore point %s disk %s offset %d: %v", re.VM, re.Point, re.Disk, re.Offset, re.Err)
	} else {
		h.n.log.Printf("read error at offset %d: %v", off, err)
	}
	return toErrno(err)
}

// Lseek answers SEEK_DATA and SEEK_HOLE from the block tables, so that
// qemu-img, cp --sparse and friends skip the holes of a disk without
// reading them.
func (h *handle) Lseek(ctx context.Context, off uint64, whence uint32) (uint64, syscall.Errno) {
	const seekData, seekHole = 3, 4
	s, ok := h.h.(tree.Seeker)
	if !ok {
		return 0, syscall.ENOSYS // the kernel then treats the file as all data
	}
	var (
		got int64
		err error
	)
	switch whence {
	case seekData:
		got, err = s.SeekData(int64(off))
	case seekHole:
		got, err = s.SeekHole(int64(off))
	default:
		return 0, syscall.EINVAL
	}
	if err != nil {
		if !errors.Is(err, syscall.ENXIO) {
			h.n.log.Printf("seek error: %v", err)
		}
		return 0, toErrno(err)
	}
	return uint64(got), 0
}

// slicesResult is a read reply of cached blocks. go-fuse writes the slices
// to the kernel as they are (Slices, writev) and calls Done once the reply
// is sent, or when it is dropped: the blocks are released then, and only
// then may their buffers be recycled. A reply go-fuse drops without Done
// (an interrupted request) only leaves its blocks to the garbage collector.
type slicesResult struct{ s *tree.Slices }

var _ fuse.ReadResult = (*slicesResult)(nil)

func (r *slicesResult) Size() int { return r.s.N }

func (r *slicesResult) Slices() ([][]byte, fuse.Status) { return r.s.Vec, fuse.OK }

// Bytes concatenates the slices into buf (go-fuse's fallback path).
func (r *slicesResult) Bytes(buf []byte) ([]byte, fuse.Status) {
	if cap(buf) < r.s.N {
		buf = make([]byte, r.s.N)
	}
	buf = buf[:0]
	for _, v := range r.s.Vec {
		buf = append(buf, v...)
	}
	return buf, fuse.OK
}

func (r *slicesResult) Done() { r.s.Release() }
