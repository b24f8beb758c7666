// Package vfs is the contract between cairn's guest file system readers
// (guest/ext, guest/xfs, guest/fat, guest/ntfs) and their consumers (the
// restore browser in fs/tree, `cairn restore files`).
//
// A file system is addressed by inode number, as the guest numbers them, so
// that hard links are visible (two names, one Ino) and a consumer can cache
// by number. Every method is safe for concurrent use and reads the image
// through the io.ReaderAt the reader was opened on; nothing is written.
package vfs

import (
	"errors"
	"io"
	"time"
)

// ErrMalformed is wrapped by every error that reports a damaged or crafted
// structure in the guest image. Consumers map it to EIO.
var ErrMalformed = errors.New("malformed guest file system")

// ErrNotDir and ErrNotLink report a call on the wrong kind of inode; ErrNotFound a name or inode that does not exist.
var (
	ErrNotDir   = errors.New("not a directory")
	ErrNotLink  = errors.New("not a symbolic link")
	ErrNotFound = errors.New("no such file or directory")
	ErrNotFile  = errors.New("not a regular file")
)

// Unix file type bits of Mode, as in stat(2).
const (
	ModeType   = 0o170000
	ModeSocket = 0o140000
	ModeLink   = 0o120000
	ModeFile   = 0o100000
	ModeBlock  = 0o060000
	ModeDir    = 0o040000
	ModeChar   = 0o020000
	ModeFIFO   = 0o010000
)

// FileInfo is what stat(2) would report for a guest inode. File systems
// without Unix owners or modes (FAT, NTFS) synthesise them: UID/GID 0,
// directories 0755 and files 0644 (read-only files 0444).
type FileInfo struct {
	Ino    uint64
	Mode   uint32 // type bits (ModeDir, ...) | permission bits incl. setuid/setgid/sticky
	Nlink  uint32
	UID    uint32
	GID    uint32
	Size   int64  // bytes; for a symlink the target's length
	Blocks int64  // 512-byte units actually allocated (less than Size/512 for sparse files)
	Rdev   uint64 // device number for block and character devices (Linux encoding)
	Atime  time.Time
	Mtime  time.Time
	Ctime  time.Time
	Btime  time.Time // creation time, zero if the file system has none
}

// IsDir reports whether the inode is a directory.
func (fi FileInfo) IsDir() bool { return fi.Mode&ModeType == ModeDir }

// DirEntry is one name in a directory. Type is the ModeType bits of the
// target when the directory records them, 0 when it does not (then Stat
// tells). "." and ".." are never returned.
type DirEntry struct {
	Name string
	Ino  uint64
	Type uint32
}

// Prefetcher is implemented by volume readers that can load byte ranges in
// the background. A file system hints the ranges it is about to read one
// by one (the inode table blocks of a directory's entries), so that the
// reads behind them proceed in parallel instead of each waiting for the
// previous one. Prefetch returns at once; it is only a hint.
type Prefetcher interface {
	Prefetch(off, n int64)
}

// Prefetch hints r, if it is a Prefetcher, that [off, off+n) will be read.
func Prefetch(r io.ReaderAt, off, n int64) {
	if p, ok := r.(Prefetcher); ok && n > 0 {
		p.Prefetch(off, n)
	}
}

// FS is a read-only guest file system.
type FS interface {
	// Type names the file system: "ext2", "ext3", "ext4", "xfs", "vfat", "ntfs".
	Type() string
	// Label is the volume label, "" when there is none.
	Label() string
	// Root is the inode number of the root directory.
	Root() uint64
	// Stat describes an inode.
	Stat(ino uint64) (FileInfo, error)
	// ReadDir lists a directory (without "." and ".."), in the file
	// system's own order. A directory with more entries than a reader
	// allows (at least 1 << 20) is an error wrapping ErrMalformed.
	ReadDir(ino uint64) ([]DirEntry, error)
	// Lookup finds one name in a directory; ErrNotFound when absent.
	Lookup(dir uint64, name string) (DirEntry, error)
	// Readlink returns a symbolic link's target.
	Readlink(ino uint64) (string, error)
	// Open returns the content of a regular file. Holes read as zeros;
	// reading at or past the file's size returns io.EOF.
	Open(ino uint64) (File, error)
}

// File is the content of one regular file.
type File interface {
	io.ReaderAt
	// Size is the file's length in bytes.
	Size() int64
}
