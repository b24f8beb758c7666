// Package source opens the disk images that cairn backs up: raw images
// (regular files and block devices) and qcow2 images, behind one interface
// that also reports which ranges may hold data, so holes cost nothing.
package source

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/cairn-backup/cairn/ingest/internal/pagecache"
	"github.com/cairn-backup/cairn/ingest/qcow2"
)

// Source is a disk image read as the raw bytes of the virtual disk.
type Source interface {
	io.ReaderAt
	// Size is the virtual disk size in bytes.
	Size() int64
	// Extents calls fn, in ascending order, for every range that may hold
	// non-zero data; everything else reads as zeros.
	Extents(fn func(off, length int64) error) error
	// Format names the image format ("raw", "qcow2", "block device").
	Format() string
	Close() error
}

// Open opens path, detecting qcow2 by its magic; anything else is raw.
func Open(path string) (Source, error) {
	f, err := pagecache.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("disk image %s does not exist", path)
		}
		return nil, fmt.Errorf("open disk image: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("disk image %s: %w", path, err)
	}
	switch mode := st.Mode(); {
	case mode&os.ModeDevice != 0 && mode&os.ModeCharDevice == 0:
		return openBlockDevice(f)
	case mode.IsRegular():
	default:
		f.Close()
		return nil, fmt.Errorf("disk image %s is neither a regular file nor a block device", path)
	}
	if qcow2.Sniff(f) {
		f.Close()
		img, err := qcow2.Open(path)
		if err != nil {
			return nil, fmt.Errorf("disk image %s: %w", path, err)
		}
		return qcowSource{img}, nil
	}
	return &rawFile{f: f, rd: pagecache.NewSparing(f, st.Size()), size: st.Size()}, nil
}

type qcowSource struct{ *qcow2.Image }

func (qcowSource) Format() string { return "qcow2" }
