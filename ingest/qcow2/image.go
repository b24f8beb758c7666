package qcow2

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/cairn-backup/cairn/ingest/internal/pagecache"
)

// Image is an opened qcow2 image (read-only). Safe for concurrent ReadAt.
type Image struct {
	path     string
	f        *os.File
	data     *pagecache.Sparing // f, for guest data: see pagecache
	fileSize int64              // size of the host file when it was opened
	hdr      *header

	size        int64 // virtual disk size
	clusterBits uint
	clusterSize int64
	extL2       bool // extended L2 entries (32 subclusters per cluster)
	l2Bits      uint // log2 of the number of entries per L2 table
	unitBits    uint // log2 of the allocation unit (cluster or subcluster)

	l1      []uint64 // L2 table host offsets for the L1 entries covering size
	l2      *l2Cache
	comp    *clusterCache
	backing backingFile // nil when the image has no backing file

	closeOnce sync.Once
	closeErr  error
}

// Open opens path; backing files are opened recursively (relative names
// resolved against the directory of the image that names them; backing
// format raw or qcow2 or probed when absent; chain depth capped at 16,
// cycles rejected). A raw backing file is read with plain ReadAt; reads past
// the backing file's end return zeros (as qemu does).
func Open(path string) (*Image, error) {
	im, err := openImage(path, &chain{})
	if err != nil {
		return nil, fmt.Errorf("qcow2: %w", err)
	}
	return im, nil
}

// Sniff reports whether the first bytes of r carry the qcow2 magic.
func Sniff(r io.ReaderAt) bool {
	var b [4]byte
	n, _ := r.ReadAt(b[:], 0)
	return n == len(b) && b == magic
}

// Size returns the virtual disk size in bytes.
func (im *Image) Size() int64 { return im.size }

// ClusterSize returns the image's cluster size in bytes.
func (im *Image) ClusterSize() int { return int(im.clusterSize) }

// Close closes the image and its backing chain. It is safe to call more
// than once.
func (im *Image) Close() error {
	im.closeOnce.Do(func() {
		im.data.Close()
		err := im.f.Close()
		if im.backing != nil {
			if berr := im.backing.Close(); err == nil {
				err = berr
			}
		}
		if err != nil {
			im.closeErr = fmt.Errorf("qcow2: close %s: %w", im.path, err)
		}
	})
	return im.closeErr
}

// openImage opens one qcow2 image of a chain and, recursively, its backing
// files. Errors name the file and are not prefixed with "qcow2:".
func openImage(path string, c *chain) (*Image, error) {
	f, size, err := c.openFile(path)
	if err != nil {
		return nil, err
	}
	im, err := openQcow2(path, f, size, c)
	if err != nil {
		f.Close()
		return nil, err
	}
	return im, nil
}

// openQcow2 reads the qcow2 image open as f (named path, size bytes long)
// and opens its backing chain. On error the caller closes f.
func openQcow2(path string, f *os.File, size int64, c *chain) (*Image, error) {
	im, err := newImage(path, f, size)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if name := im.hdr.backingFile; name != "" {
		b, err := openBacking(path, name, im.hdr.backingFormat, c)
		if err != nil {
			im.data.Close() // the caller closes f
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		im.backing = b
	}
	return im, nil
}

// newImage parses the header and L1 table of the qcow2 image in f.
func newImage(path string, f *os.File, fileSize int64) (*Image, error) {
	// Read enough to learn the cluster size, then the whole first cluster,
	// which holds the header, its extensions and the backing file name.
	first := make([]byte, 512)
	n, err := readFullAt(f, first, 0)
	if err != nil {
		return nil, fmt.Errorf("read header: %w", err)
	}
	if n >= 24 && bytes.Equal(first[:4], magic[:]) {
		if cb := binary.BigEndian.Uint32(first[20:]); cb >= minClusterBits && cb <= maxClusterBits {
			first = make([]byte, 1<<cb)
			if n, err = readFullAt(f, first, 0); err != nil {
				return nil, fmt.Errorf("read header: %w", err)
			}
		}
	}
	h, err := parseHeader(first, n)
	if err != nil {
		return nil, err
	}
	im := &Image{
		path:        path,
		f:           f,
		fileSize:    fileSize,
		hdr:         h,
		size:        int64(h.size) &^ 511, // QEMU ignores a partial last sector
		clusterBits: uint(h.clusterBits),
		clusterSize: int64(1) << h.clusterBits,
		extL2:       h.incompatible&incompatExtL2 != 0,
	}
	im.l2Bits = im.clusterBits - 3
	im.unitBits = im.clusterBits
	if im.extL2 {
		im.l2Bits = im.clusterBits - 4
		im.unitBits = im.clusterBits - 5
	}
	if err := im.loadL1(); err != nil {
		return nil, err
	}
	im.l2 = newL2Cache(im.clusterSize)
	im.comp = newClusterCache(h.compressionType, im.clusterSize)
	im.data = pagecache.NewSparing(f, fileSize) // last: nothing fails after it
	return im, nil
}

// readFullAt reads len(p) bytes at off, returning a short count without
// error at end of file.
func readFullAt(r io.ReaderAt, p []byte, off int64) (int, error) {
	n, err := r.ReadAt(p, off)
	if err == io.EOF || (err == nil && n < len(p)) {
		return n, nil
	}
	if err != nil && errors.Is(err, io.EOF) {
		return n, nil
	}
	return n, err
}
