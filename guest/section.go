package guest

import (
	"io"

	"github.com/cairn-backup/cairn/guest/vfs"
)

// section reads bytes [off, off+size) of a disk, like io.SectionReader,
// and passes prefetch hints on to the disk's reader.
type section struct {
	*io.SectionReader
	r   io.ReaderAt
	off int64
}

func newSection(r io.ReaderAt, off, size int64) *section {
	return &section{SectionReader: io.NewSectionReader(r, off, size), r: r, off: off}
}

// Prefetch implements vfs.Prefetcher.
func (s *section) Prefetch(off, n int64) {
	if off < 0 || off >= s.Size() {
		return
	}
	vfs.Prefetch(s.r, s.off+off, min(n, s.Size()-off))
}
