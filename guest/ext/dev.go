package ext

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sort"

	"github.com/cairn-backup/cairn/guest/vfs"
)

// metaCacheBytes bounds the cache of metadata blocks (inode tables, group
// descriptors, indirect and extent index blocks).
const metaCacheBytes = 16 << 20

// device reads the volume as the file system sees it: the image, with the
// blocks a journal replay rewrote taken from the journal instead.
type device struct {
	r    io.ReaderAt
	size int64
	bs   uint64

	overlay map[uint64]overlayBlock // fs block -> its newest copy in the journal
	keys    []uint64                // overlay's keys, sorted
	cache   *lru[uint64, []byte]
}

// overlayBlock is a block replayed from the journal: where the journal
// holds it, and whether jbd2 escaped its first four bytes.
type overlayBlock struct {
	phys    uint64
	escaped bool
}

func newDevice(r io.ReaderAt, size int64, bs uint64) *device {
	return &device{r: r, size: size, bs: bs, cache: newLRU[uint64, []byte](metaCacheBytes)}
}

// setOverlay installs the result of a journal replay and drops every
// block cached before it.
func (d *device) setOverlay(m map[uint64]overlayBlock) {
	d.overlay = m
	d.keys = make([]uint64, 0, len(m))
	for k := range m {
		d.keys = append(d.keys, k)
	}
	sort.Slice(d.keys, func(i, j int) bool { return d.keys[i] < d.keys[j] })
	d.cache = newLRU[uint64, []byte](metaCacheBytes)
}

// rawReadAt fills p from the image at off, or fails naming the range.
func (d *device) rawReadAt(p []byte, off int64) error {
	if off < 0 || off > d.size || int64(len(p)) > d.size-off {
		return fmt.Errorf("ext: read of %d bytes at %d beyond the end of the %d-byte volume: %w", len(p), off, d.size, vfs.ErrMalformed)
	}
	n, err := d.r.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("ext: read at %d: %w", off, err)
}

// readAt fills p from the volume at byte offset off, through the replay
// overlay.
func (d *device) readAt(p []byte, off int64) error {
	if len(d.keys) == 0 || len(p) == 0 {
		return d.rawReadAt(p, off)
	}
	first := uint64(off) / d.bs
	last := (uint64(off) + uint64(len(p)) - 1) / d.bs
	i := sort.Search(len(d.keys), func(i int) bool { return d.keys[i] >= first })
	for ; i < len(d.keys) && d.keys[i] <= last; i++ {
		blk := d.keys[i]
		start := int64(blk * d.bs)
		if start > off {
			n := start - off
			if err := d.rawReadAt(p[:n], off); err != nil {
				return err
			}
			p, off = p[n:], start
		}
		buf := make([]byte, d.bs)
		if err := d.readOverlay(buf, d.overlay[blk]); err != nil {
			return err
		}
		n := copy(p, buf[off-start:])
		p, off = p[n:], off+int64(n)
	}
	if len(p) == 0 {
		return nil
	}
	return d.rawReadAt(p, off)
}

func (d *device) readOverlay(buf []byte, o overlayBlock) error {
	if err := d.rawReadAt(buf, int64(o.phys*d.bs)); err != nil {
		return fmt.Errorf("ext: journal block %d: %w", o.phys, err)
	}
	if o.escaped {
		binary.BigEndian.PutUint32(buf, jbdMagic)
	}
	return nil
}

// block returns file system block n through the metadata cache. The
// caller must not modify the returned slice.
func (d *device) block(n uint64) ([]byte, error) {
	if b, ok := d.cache.get(n); ok {
		return b, nil
	}
	if n > uint64(d.size)/d.bs {
		return nil, fmt.Errorf("ext: block %d beyond the end of the volume: %w", n, vfs.ErrMalformed)
	}
	b := make([]byte, d.bs)
	if err := d.readAt(b, int64(n*d.bs)); err != nil {
		return nil, err
	}
	d.cache.add(n, b, int64(len(b)))
	return b, nil
}
