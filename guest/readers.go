package guest

import (
	"io"

	"github.com/cairn-backup/cairn/guest/vfs"
)

// Reader is one guest file system reader: a cheap magic check and an
// opener, as every reader package exports them.
type Reader struct {
	// Name names the reader ("ext", "xfs", "ntfs", "fat"); the file
	// system's own Type() is more precise ("ext3", "vfat").
	Name  string
	Probe func(r io.ReaderAt, size int64) bool
	Open  func(r io.ReaderAt, size int64) (vfs.FS, error)
}

// Readers lists the built-in readers in the order Inspect probes them:
// the most specific magic first, FAT last (its boot sector check is the
// weakest).
func Readers() []Reader { return append([]Reader(nil), builtin...) }
