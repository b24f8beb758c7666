package tree

import (
	"io"
	"sync"
	"syscall"

	"github.com/cairn-backup/cairn/repo"
)

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
