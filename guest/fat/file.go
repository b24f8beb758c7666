package fat

import (
	"fmt"
	"io"
)

// file serves a regular file's content from its cluster runs.
type file struct {
	s    *fsys
	size int64
	runs []run
}

func (f *file) Size() int64 { return f.size }

// ReadAt reads with one ReadAt of the image per run of contiguous clusters.
func (f *file) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("vfat: negative offset %d", off)
	}
	if off >= f.size {
		return 0, io.EOF
	}
	var eof error
	if rem := f.size - off; int64(len(p)) > rem {
		p = p[:rem]
		eof = io.EOF
	}
	cs := f.s.g.clusterSize
	n := 0
	for n < len(p) {
		pos := off + int64(n)
		lc := uint32(pos / cs)
		r := f.runs[findRun(f.runs, lc)]
		within := pos - int64(r.first)*cs
		chunk := min(int64(len(p)-n), int64(r.n)*cs-within)
		m, err := f.s.r.ReadAt(p[n:n+int(chunk)], f.s.g.clusterOffset(r.phys)+within)
		n += m
		if err != nil && m < int(chunk) {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return n, fmt.Errorf("vfat: reading cluster %d: %w", r.phys, err)
		}
	}
	return n, eof
}
