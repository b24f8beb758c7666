package source

import (
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"

	"github.com/cairn-backup/cairn/ingest/internal/pagecache"
)

// rawFile is a raw image in a regular file. Holes are found with
// SEEK_DATA/SEEK_HOLE where the file system supports them.
type rawFile struct {
	f    *os.File
	rd   *pagecache.Sparing
	size int64
}

func (r *rawFile) ReadAt(p []byte, off int64) (int, error) {
	n, err := r.rd.ReadAt(p, off)
	if err != nil && !errors.Is(err, io.EOF) {
		return n, fmt.Errorf("read %s at %d: %w", r.f.Name(), off, err)
	}
	return n, err
}

func (r *rawFile) Size() int64    { return r.size }
func (r *rawFile) Format() string { return "raw" }
func (r *rawFile) Close() error   { r.rd.Close(); return r.f.Close() }

func (r *rawFile) Extents(fn func(off, length int64) error) error {
	fd := int(r.f.Fd())
	off := int64(0)
	for off < r.size {
		data, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			return nil // only a hole remains
		}
		if err != nil {
			// No SEEK_DATA support: everything may hold data.
			return fn(off, r.size-off)
		}
		if data >= r.size {
			return nil
		}
		hole, err := unix.Seek(fd, data, unix.SEEK_HOLE)
		if err != nil || hole > r.size {
			hole = r.size
		}
		if err := fn(data, hole-data); err != nil {
			return err
		}
		off = hole
	}
	return nil
}

// blockDevice is a raw image on a block device: no hole information.
type blockDevice struct {
	f    *os.File
	rd   *pagecache.Sparing
	size int64
}

func openBlockDevice(f *os.File) (Source, error) {
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("block device %s: size: %w", f.Name(), err)
	}
	return &blockDevice{f: f, rd: pagecache.NewSparing(f, size), size: size}, nil
}

func (b *blockDevice) ReadAt(p []byte, off int64) (int, error) { return b.rd.ReadAt(p, off) }
func (b *blockDevice) Size() int64                             { return b.size }
func (b *blockDevice) Format() string                          { return "block device" }
func (b *blockDevice) Close() error                            { b.rd.Close(); return b.f.Close() }
func (b *blockDevice) Extents(fn func(off, length int64) error) error {
	if b.size == 0 {
		return nil
	}
	return fn(0, b.size)
}
