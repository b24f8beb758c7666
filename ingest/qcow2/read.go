package qcow2

import (
	"fmt"
	"io"
)

// ReadAt reads len(p) bytes of the virtual disk starting at off, with
// io.ReaderAt semantics: it returns io.EOF when the read reaches past Size.
// It is safe to call concurrently.
func (im *Image) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("qcow2: %s: read at negative offset %d", im.path, off)
	}
	if off >= im.size {
		if len(p) == 0 && off == im.size {
			return 0, nil
		}
		return 0, io.EOF
	}
	var eof error
	if int64(len(p)) > im.size-off {
		p = p[:im.size-off]
		eof = io.EOF
	}
	if err := im.readAt(p, off); err != nil {
		return 0, fmt.Errorf("qcow2: %s: read %d bytes at %d: %w", im.path, len(p), off, err)
	}
	return len(p), eof
}

// readAt fills p from guest offset off; off+len(p) <= im.size.
func (im *Image) readAt(p []byte, off int64) error {
	for len(p) > 0 {
		r, err := im.mapRun(off, int64(len(p)))
		if err != nil {
			return err
		}
		dst := p[:r.length]
		switch r.kind {
		case runZero:
			clear(dst)
		case runUnalloc:
			if im.backing == nil {
				clear(dst)
			} else if err := readBacking(im.backing, dst, off); err != nil {
				return err
			}
		case runData:
			n, err := readFullAt(im.data, dst, r.host)
			if err != nil {
				return fmt.Errorf("read data at host offset %#x: %w", r.host, err)
			}
			clear(dst[n:]) // cluster tail past the end of the file reads as zeros
		case runCompressed:
			if err := im.readCompressed(dst, r.desc, r.within); err != nil {
				return fmt.Errorf("guest offset %d: %w", off, err)
			}
		}
		p = p[r.length:]
		off += r.length
	}
	return nil
}
