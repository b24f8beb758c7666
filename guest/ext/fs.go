package ext

import (
	"fmt"
	"io"

	"github.com/cairn-backup/cairn/guest/vfs"
)

const rootIno = 2

// FS is an open ext2, ext3 or ext4 file system. It is safe for
// concurrent use.
type FS struct {
	dev      *device
	sb       *superblock
	recovery Recovery
	dirs     *lru[uint64, *dirIndex]
}

var _ vfs.FS = (*FS)(nil)

// Open reads the superblock of the volume r (size bytes) and, when the
// file system needs recovery and its journal is internal, replays the
// journal in memory so that every later read sees the file system as the
// kernel would after mounting it. Nothing is written to r.
func Open(r io.ReaderAt, size int64) (vfs.FS, error) {
	f, err := open(r, size, true)
	if err != nil {
		return nil, err
	}
	return f, nil
}

// open opens the file system; replay false (for tests) reads it as it is
// on disk even when it needs recovery.
func open(r io.ReaderAt, size int64, replay bool) (*FS, error) {
	b := make([]byte, superSize)
	dev := newDevice(r, size, 1024)
	if err := dev.rawReadAt(b, superOffset); err != nil {
		return nil, fmt.Errorf("ext: superblock: %w", err)
	}
	sb, err := parseSuper(b, size)
	if err != nil {
		return nil, err
	}
	f := &FS{dev: newDevice(r, size, sb.blockSize), sb: sb, dirs: newLRU[uint64, *dirIndex](dirCacheEntries)}
	if sb.incompat&incompatRecover == 0 {
		return f, nil
	}
	f.recovery.NeedsRecovery = true
	if !replay {
		return f, nil
	}
	if sb.compat&compatHasJournal == 0 {
		return f, nil // a stale flag without a journal: nothing to replay
	}
	if sb.journalInum == 0 {
		f.recovery.External = true
		return f, nil
	}
	overlay, rec, err := f.replayJournal(uint64(sb.journalInum))
	if err != nil {
		return nil, err
	}
	f.recovery = rec
	if len(overlay) == 0 {
		return f, nil
	}
	f.dev.setOverlay(overlay)
	// The superblock itself may have been replayed.
	if err := f.dev.readAt(b, superOffset); err != nil {
		return nil, fmt.Errorf("ext: superblock after journal replay: %w", err)
	}
	sb2, err := parseSuper(b, size)
	if err != nil {
		return nil, fmt.Errorf("after journal replay: %w", err)
	}
	if sb2.blockSize != sb.blockSize {
		return nil, fmt.Errorf("ext: journal replay changed the block size: %w", vfs.ErrMalformed)
	}
	f.sb = sb2
	return f, nil
}

// Recovery reports what Open did with the journal.
func (f *FS) Recovery() Recovery { return f.recovery }

// JournalWarning returns ErrExternalJournal when the file system needed
// recovery from an external journal, which this reader cannot replay;
// the caller should log it. It returns nil otherwise.
func (f *FS) JournalWarning() error {
	if f.recovery.External {
		return ErrExternalJournal
	}
	return nil
}

func (f *FS) Type() string  { return f.sb.fsType() }
func (f *FS) Label() string { return f.sb.label }
func (f *FS) Root() uint64  { return rootIno }

func (f *FS) Stat(ino uint64) (vfs.FileInfo, error) {
	in, err := f.readInode(ino)
	if err != nil {
		return vfs.FileInfo{}, err
	}
	return f.info(in), nil
}

func (f *FS) ReadDir(ino uint64) ([]vfs.DirEntry, error) {
	d, err := f.dirIndexOf(ino)
	if err != nil {
		return nil, err
	}
	f.prefetchInodes(d.entries)
	return append([]vfs.DirEntry(nil), d.entries...), nil
}

func (f *FS) Lookup(dir uint64, name string) (vfs.DirEntry, error) {
	d, err := f.dirIndexOf(dir)
	if err != nil {
		return vfs.DirEntry{}, err
	}
	i, ok := d.byName[name]
	if !ok {
		return vfs.DirEntry{}, fmt.Errorf("ext: %q in directory %d: %w", name, dir, vfs.ErrNotFound)
	}
	return d.entries[i], nil
}

// maxSymlink bounds a symbolic link's target (PATH_MAX is 4096; ext4
// allows a target up to a block).
const maxSymlink = 65536

func (f *FS) Readlink(ino uint64) (string, error) {
	in, err := f.readInode(ino)
	if err != nil {
		return "", err
	}
	if !in.isLink() {
		return "", fmt.Errorf("ext: inode %d: %w", ino, vfs.ErrNotLink)
	}
	if in.size > maxSymlink {
		return "", fmt.Errorf("ext: symlink %d of %d bytes: %w", ino, in.size, vfs.ErrMalformed)
	}
	if in.flags&flagInlineData == 0 && in.dataBlocks(f.sb.blockSize) == 0 {
		// A fast symlink: the target is in i_block (as the kernel decides).
		if in.size >= 60 {
			return "", fmt.Errorf("ext: fast symlink %d of %d bytes: %w", ino, in.size, vfs.ErrMalformed)
		}
		return string(in.iblock[:in.size]), nil
	}
	fl, err := f.openInode(in)
	if err != nil {
		return "", err
	}
	buf := make([]byte, in.size)
	if _, err := fl.ReadAt(buf, 0); err != nil && err != io.EOF {
		return "", err
	}
	return string(buf), nil
}

// dataBlocks is i_blocks less the extended attribute block, in 512-byte units.
func (in *inode) dataBlocks(bs uint64) uint64 {
	b := in.blocks
	if in.fileACL != 0 && b >= bs/512 {
		b -= bs / 512
	}
	return b
}

func (f *FS) Open(ino uint64) (vfs.File, error) {
	in, err := f.readInode(ino)
	if err != nil {
		return nil, err
	}
	if !in.isReg() {
		return nil, fmt.Errorf("ext: inode %d: %w", ino, vfs.ErrNotFile)
	}
	return f.openInode(in)
}
