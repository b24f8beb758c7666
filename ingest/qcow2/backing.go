package qcow2

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/cairn-backup/cairn/ingest/internal/pagecache"
)

// maxChainDepth is the maximum number of backing files below an image.
const maxChainDepth = 16

// backingFile is the read side of a backing image, raw or qcow2.
type backingFile interface {
	// virtualSize is the size of the backing image's disk; reads past it
	// return zeros.
	virtualSize() int64
	// readAt fills p from offset off; off+len(p) <= virtualSize().
	readAt(p []byte, off int64) error
	// extentsIn emits the extents that may hold data within [start, end),
	// end <= virtualSize(), in ascending order.
	extentsIn(start, end int64, emit func(off, n int64) error) error
	Close() error
}

// chain tracks the files opened for one backing chain, to cap its depth
// and reject loops.
type chain struct {
	files []os.FileInfo
}

// openFile opens path for reading after checking that it is a regular file
// or a block device and that it does not already appear in the chain. It
// returns the file and its size.
func (c *chain) openFile(path string) (*os.File, int64, error) {
	if len(c.files) > maxChainDepth {
		return nil, 0, fmt.Errorf("%s: %w: more than %d backing files", path, ErrBackingChain, maxChainDepth)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, 0, err
	}
	if err := checkFileType(path, fi); err != nil {
		return nil, 0, err
	}
	for _, prev := range c.files {
		if os.SameFile(prev, fi) {
			return nil, 0, fmt.Errorf("%s: %w: backing file loop (the file already appears in the chain)", path, ErrBackingChain)
		}
	}
	f, err := pagecache.Open(path) // readahead off before the header is read
	if err != nil {
		return nil, 0, err
	}
	fi, err = f.Stat()
	if err == nil {
		err = checkFileType(path, fi)
	}
	var size int64
	if err == nil {
		size = fi.Size()
		if fi.Mode()&os.ModeDevice != 0 {
			size, err = f.Seek(0, io.SeekEnd)
		}
	}
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	c.files = append(c.files, fi)
	return f, size, nil
}

func checkFileType(path string, fi os.FileInfo) error {
	m := fi.Mode()
	if m.IsRegular() || (m&os.ModeDevice != 0 && m&os.ModeCharDevice == 0) {
		return nil
	}
	return fmt.Errorf("%s: %w: not a regular file or block device (mode %s)", path, ErrUnsupported, m)
}

// openBacking opens the backing file called name, named by the image at
// parent, as format fmtName ("raw", "qcow2" or "" to probe).
func openBacking(parent, name, fmtName string, c *chain) (backingFile, error) {
	path, err := backingPath(parent, name)
	if err != nil {
		return nil, err
	}
	switch fmtName {
	case "", "raw", "qcow2":
	default:
		return nil, fmt.Errorf("backing file %q: %w: format %q is not supported (only raw and qcow2)", name, ErrBackingChain, fmtName)
	}
	f, size, err := c.openFile(path)
	if err != nil {
		return nil, fmt.Errorf("backing file %q: %w", name, err)
	}
	if fmtName == "" {
		fmtName, err = probeFormat(f)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("backing file %q: %w", name, err)
		}
	}
	if fmtName == "raw" {
		return &rawFile{f: f, data: pagecache.NewSparing(f, size), size: size}, nil
	}
	im, err := openQcow2(path, f, size, c)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("backing file %q: %w", name, err)
	}
	return im, nil
}

// backingPath resolves a backing file name the way QEMU does: absolute
// names are used as they are, relative ones are taken relative to the
// directory of the image that names them. Protocol names (nbd:, json:, ...)
// are rejected; a "file:" prefix is accepted.
func backingPath(parent, name string) (string, error) {
	if rest, ok := strings.CutPrefix(name, "file:"); ok {
		name = rest
	} else if i := strings.IndexAny(name, ":/"); i >= 0 && name[i] == ':' {
		return "", fmt.Errorf("backing file %q: %w: protocol-based backing files are not supported", name, ErrBackingChain)
	}
	if name == "" {
		return "", fmt.Errorf("backing file: %w: empty name", ErrBackingChain)
	}
	if filepath.IsAbs(name) {
		return name, nil
	}
	return filepath.Dir(parent) + string(filepath.Separator) + name, nil
}

// otherFormats are signatures of image formats that must not be mistaken
// for raw data when probing a backing file without a declared format.
var otherFormats = []struct {
	off  int
	sig  string
	name string
}{
	{0, "QFI\xfb", "qcow2"},
	{0, "QED\x00", "qed"},
	{0, "KDMV", "vmdk"},
	{0, "# Disk DescriptorFile", "vmdk"},
	{0, "vhdxfile", "vhdx"},
	{0, "conectix", "vpc"},
	{0, "LUKS\xba\xbe", "luks"},
	{64, "\x7f\x10\xda\xbe", "vdi"},
}

// probeFormat guesses the format of a backing file that declares none:
// qcow2 when it carries the qcow2 magic, raw unless it looks like another
// image format.
func probeFormat(f *os.File) (string, error) {
	buf := make([]byte, 512)
	n, err := readFullAt(f, buf, 0)
	if err != nil {
		return "", fmt.Errorf("probe format: %w", err)
	}
	buf = buf[:n]
	for _, o := range otherFormats {
		if len(buf) >= o.off+len(o.sig) && bytes.Equal(buf[o.off:o.off+len(o.sig)], []byte(o.sig)) {
			if o.name == "qcow2" {
				return "qcow2", nil
			}
			return "", fmt.Errorf("%w: probed format %s is not supported", ErrBackingChain, o.name)
		}
	}
	return "raw", nil
}

// rawFile is a raw backing file. Its virtual size is its file size.
type rawFile struct {
	f    *os.File
	data *pagecache.Sparing
	size int64
}

func (r *rawFile) virtualSize() int64 { return r.size }

func (r *rawFile) readAt(p []byte, off int64) error {
	n, err := readFullAt(r.data, p, off)
	if err != nil {
		return fmt.Errorf("raw backing file %s: read at %d: %w", r.f.Name(), off, err)
	}
	clear(p[n:]) // the file shrank: read as zeros, like QEMU
	return nil
}

func (r *rawFile) extentsIn(start, end int64, emit func(off, n int64) error) error {
	return dataExtents(r.f, start, end, emit)
}

func (r *rawFile) Close() error { r.data.Close(); return r.f.Close() }

// The qcow2 Image is itself a backing file.

func (im *Image) virtualSize() int64 { return im.size }

// readBacking fills p, at guest offset off of the image that owns b, from
// backing file b; bytes past b's size read as zeros.
func readBacking(b backingFile, p []byte, off int64) error {
	bs := b.virtualSize()
	if off >= bs {
		clear(p)
		return nil
	}
	n := int64(len(p))
	if n > bs-off {
		n = bs - off
		clear(p[n:])
	}
	if err := b.readAt(p[:n], off); err != nil {
		return err
	}
	return nil
}
