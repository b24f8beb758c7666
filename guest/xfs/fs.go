package xfs

import (
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/cairn-backup/cairn/guest/vfs"
)

// FS is a read-only XFS file system. It is safe for concurrent use.
type FS struct {
	r    io.ReaderAt
	size int64
	sb   *super

	mu   sync.Mutex
	dirs dirCache
}

var _ vfs.FS = (*FS)(nil)

// Open reads the superblock of the XFS volume r (exactly size bytes) and
// checks the root directory's inode. The log is not replayed; see LogClean.
func Open(r io.ReaderAt, size int64) (vfs.FS, error) {
	return OpenXFS(r, size)
}

// OpenXFS is Open returning the concrete type, for callers that want
// XFS-only facts such as LogClean.
func OpenXFS(r io.ReaderAt, size int64) (*FS, error) {
	var b [512]byte
	if size < int64(len(b)) {
		return nil, malformed("volume of %d bytes is too small", size)
	}
	if _, err := r.ReadAt(b[:], 0); err != nil {
		return nil, fmt.Errorf("xfs: reading superblock: %w", err)
	}
	sb, err := parseSuper(b[:], size)
	if err != nil {
		return nil, err
	}
	if sb.sectSize > 512 && sb.crc() {
		full := make([]byte, sb.sectSize)
		if _, err := r.ReadAt(full, 0); err != nil {
			return nil, fmt.Errorf("xfs: reading superblock: %w", err)
		}
		if sb, err = parseSuper(full, size); err != nil {
			return nil, err
		}
	}
	if sb.inProgress != 0 {
		return nil, malformed("mkfs did not finish on this volume (sb_inprogress set)")
	}
	f := &FS{r: r, size: size, sb: sb}
	root, err := f.readInode(sb.rootIno)
	if err != nil {
		return nil, fmt.Errorf("xfs: root directory: %w", err)
	}
	if root.fileType() != vfs.ModeDir {
		return nil, malformed("root inode %d is not a directory", sb.rootIno)
	}
	return f, nil
}

func (f *FS) readAt(b []byte, off int64) error {
	if off < 0 || off+int64(len(b)) > f.size {
		return errors.New("read past the end of the volume")
	}
	n, err := f.r.ReadAt(b, off)
	if n == len(b) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// Type returns "xfs".
func (f *FS) Type() string { return "xfs" }

// Label returns the file system label (sb_fname).
func (f *FS) Label() string { return f.sb.label }

// Root returns the root directory's inode number.
func (f *FS) Root() uint64 { return f.sb.rootIno }

// Version is the superblock version: 4, or 5 for CRC-protected metadata.
func (f *FS) Version() int { return f.sb.version }

// Stat describes inode ino.
func (f *FS) Stat(ino uint64) (vfs.FileInfo, error) {
	ip, err := f.readInode(ino)
	if err != nil {
		return vfs.FileInfo{}, err
	}
	if ip.mode == 0 {
		return vfs.FileInfo{}, fmt.Errorf("xfs: inode %d is free: %w", ino, vfs.ErrNotFound)
	}
	return f.fileInfo(ip), nil
}

// Readlink returns the target of symbolic link ino.
func (f *FS) Readlink(ino uint64) (string, error) {
	ip, err := f.readInode(ino)
	if err != nil {
		return "", err
	}
	if ip.fileType() != vfs.ModeLink {
		return "", fmt.Errorf("xfs: inode %d: %w", ino, vfs.ErrNotLink)
	}
	return f.readlink(ip)
}
