package fs

import (
	"context"
	"errors"
	"log"
	"os"
	"sync"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/cairn-backup/cairn/fs/tree"
	"github.com/cairn-backup/cairn/guest/vfs"
)

// node adapts a tree.Node. It only translates: names, attributes and
// bytes come from the tree.
type node struct {
	gofs.Inode
	n   tree.Node
	log *log.Logger

	hmu sync.Mutex
	h   *handle // a file's reader, opened on first read (see Open)

	dmu              sync.Mutex
	dropOff, dropLen int64 // a range for dropCached to send
	dropping         bool  // its goroutine runs
}

var (
	_ gofs.NodeLookuper       = (*node)(nil)
	_ gofs.NodeReaddirer      = (*node)(nil)
	_ gofs.NodeOpendirHandler = (*node)(nil)
	_ gofs.NodeGetattrer      = (*node)(nil)
	_ gofs.NodeOpener         = (*node)(nil)
	_ gofs.NodeReader         = (*node)(nil)
	_ gofs.NodeLseeker        = (*node)(nil)
	_ gofs.NodeFlusher        = (*node)(nil)
	_ gofs.NodeReadlinker     = (*node)(nil)
	_ gofs.NodeSetattrer      = (*node)(nil)
	_ gofs.NodeCreater        = (*node)(nil)
	_ gofs.NodeMkdirer        = (*node)(nil)
	_ gofs.NodeMknoder        = (*node)(nil)
	_ gofs.NodeUnlinker       = (*node)(nil)
	_ gofs.NodeRmdirer        = (*node)(nil)
	_ gofs.NodeRenamer        = (*node)(nil)
	_ gofs.NodeSymlinker      = (*node)(nil)
	_ gofs.NodeLinker         = (*node)(nil)
	_ gofs.NodeStatfser       = (*node)(nil)
)

// toErrno is the one place tree and repository errors become errnos.
func toErrno(err error) syscall.Errno {
	var errno syscall.Errno
	switch {
	case err == nil:
		return 0
	case errors.Is(err, tree.ErrNoEntry), errors.Is(err, vfs.ErrNotFound):
		return syscall.ENOENT
	case errors.Is(err, vfs.ErrMalformed):
		return syscall.EIO // before errno: a reader may wrap one
	case errors.Is(err, vfs.ErrNotDir):
		return syscall.ENOTDIR
	case errors.As(err, &errno):
		return errno
	case errors.Is(err, context.Canceled):
		return syscall.EINTR
	}
	// Corrupt or missing data (repo.ErrCorrupt, repo.ErrNotFound for a
	// pack), malformed partition tables, failed reads of the repository:
	// the file system cannot produce the bytes.
	return syscall.EIO
}

func timeout(stable bool) time.Duration {
	if stable {
		return stableTimeout
	}
	return listingTimeout
}

func fillAttr(a tree.Attr, out *fuse.Attr) {
	out.Ino = a.Ino
	out.Mode = a.Mode
	out.Size = uint64(a.Size)
	out.Blocks = uint64(a.Blocks)
	out.Blksize = 4096
	if a.Mode&syscall.S_IFMT == syscall.S_IFREG {
		out.Blksize = maxRead // cp, cat and friends read in 1 MiB pieces
	}
	if g := a.Guest; g != nil {
		// A file inside a guest file system: the guest's owner, link
		// count and times.
		out.Nlink = max(g.Nlink, 1)
		out.Owner = fuse.Owner{Uid: g.UID, Gid: g.GID}
		out.Rdev = uint32(g.Rdev)
		out.SetTimes(timeOrNil(g.Atime), timeOrNil(a.Mtime), timeOrNil(g.Ctime))
		return
	}
	out.Nlink = 1 // directories too: tells find not to count subdirectories
	out.Owner = fuse.Owner{Uid: uint32(os.Geteuid()), Gid: uint32(os.Getegid())}
	if !a.Mtime.IsZero() {
		out.SetTimes(&a.Mtime, &a.Mtime, &a.Mtime)
	}
}

// timeOrNil leaves a time the guest does not record at the epoch.
func timeOrNil(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func (n *node) Getattr(ctx context.Context, f gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	a := n.n.Attr()
	fillAttr(a, &out.Attr)
	out.SetTimeout(timeout(a.Stable))
	return 0
}

func (n *node) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	d, ok := n.n.(tree.Dir)
	if !ok {
		return nil, syscall.ENOTDIR
	}
	c, err := d.Lookup(name)
	if err != nil {
		return nil, toErrno(err)
	}
	a := c.Attr()
	fillAttr(a, &out.Attr)
	out.SetEntryTimeout(timeout(n.n.Attr().Stable))
	out.SetAttrTimeout(timeout(a.Stable))
	child := &node{n: c, log: n.log}
	return n.NewInode(ctx, child, gofs.StableAttr{Mode: a.Mode & syscall.S_IFMT, Ino: a.Ino}), 0
}

// OpendirHandle opens a directory. Restore point content never changes,
// so the kernel may keep its listing (FOPEN_CACHE_DIR): listing a big
// guest directory again costs no request. The VM and restore point
// listings change and are read afresh.
func (n *node) OpendirHandle(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if _, ok := n.n.(tree.Dir); !ok {
		return nil, 0, syscall.ENOTDIR
	}
	var fuseFlags uint32
	if n.n.Attr().Stable {
		fuseFlags = fuse.FOPEN_CACHE_DIR | fuse.FOPEN_KEEP_CACHE
	}
	return &dirHandle{n: n}, fuseFlags, 0
}

// dirHandle lists a directory, reading it from the tree on first use.
type dirHandle struct {
	n  *node
	ds gofs.DirStream
}

var (
	_ gofs.FileReaddirenter = (*dirHandle)(nil)
	_ gofs.FileSeekdirer    = (*dirHandle)(nil)
)

func (d *dirHandle) open(ctx context.Context) syscall.Errno {
	if d.ds != nil {
		return 0
	}
	ds, errno := d.n.Readdir(ctx)
	if errno != 0 {
		return errno
	}
	d.ds = ds
	return 0
}

func (d *dirHandle) Readdirent(ctx context.Context) (*fuse.DirEntry, syscall.Errno) {
	if errno := d.open(ctx); errno != 0 {
		return nil, errno
	}
	if !d.ds.HasNext() {
		return nil, 0
	}
	e, errno := d.ds.Next()
	return &e, errno
}

func (d *dirHandle) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	d.ds = nil // listings are cheap to redo from the tree's caches
	if errno := d.open(ctx); errno != 0 {
		return errno
	}
	for i := uint64(0); i < off && d.ds.HasNext(); i++ {
		if _, errno := d.ds.Next(); errno != 0 {
			return errno
		}
	}
	return 0
}

func (n *node) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	d, ok := n.n.(tree.Dir)
	if !ok {
		return nil, syscall.ENOTDIR
	}
	es, err := d.Readdir()
	if err != nil {
		return nil, toErrno(err)
	}
	out := make([]fuse.DirEntry, 0, len(es))
	for _, e := range es {
		out = append(out, fuse.DirEntry{Name: e.Name, Ino: e.Ino, Mode: e.Mode})
	}
	return gofs.NewListDirStream(out), 0
}

func (n *node) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	l, ok := n.n.(tree.Symlink)
	if !ok {
		return nil, syscall.EINVAL
	}
	target, err := l.Readlink()
	if err != nil {
		return nil, toErrno(err)
	}
	return []byte(target), 0
}

// Open answers ENOSYS. The kernel then opens every file of the mount
// without asking (FUSE's "no open support"), keeps each file's page cache
// across opens, and sends no RELEASE: copying a file costs its READ
// requests alone, where OPEN, READ and RELEASE cost three round trips,
// each waking a thread on both sides. Reads then carry no file handle;
// each file node keeps one reader, opened on first use. The mount is
// read-only, so the kernel refuses opens for writing itself.
func (n *node) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if _, ok := n.n.(tree.File); !ok {
		return nil, 0, syscall.EISDIR
	}
	return nil, 0, syscall.ENOSYS
}

// reader returns the file's reader, opening it on first use. A failed
// open is not remembered: the next read tries again.
func (n *node) reader() (*handle, syscall.Errno) {
	n.hmu.Lock()
	defer n.hmu.Unlock()
	if n.h != nil {
		return n.h, 0
	}
	f, ok := n.n.(tree.File)
	if !ok {
		return nil, syscall.EISDIR
	}
	h, err := f.Open()
	if err != nil {
		n.log.Printf("open error: %v", err)
		return nil, toErrno(err)
	}
	n.h = &handle{h: h, n: n}
	return n.h, 0
}

func (n *node) Read(ctx context.Context, _ gofs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	h, errno := n.reader()
	if errno != 0 {
		return nil, errno
	}
	return h.Read(ctx, dest, off)
}

func (n *node) Lseek(ctx context.Context, _ gofs.FileHandle, off uint64, whence uint32) (uint64, syscall.Errno) {
	h, errno := n.reader()
	if errno != 0 {
		return 0, errno
	}
	return h.Lseek(ctx, off, whence)
}

// dropCached asks the kernel to drop its cached pages of [off, off+n) of
// this file. The notification is sent from its own goroutine, never from
// the READ that asked for it: the kernel may wait for pages that read is
// filling. One goroutine per file at a time; ranges asked for meanwhile
// are merged and sent next.
func (n *node) dropCached(off, size int64) {
	n.dmu.Lock()
	defer n.dmu.Unlock()
	if n.dropLen > 0 {
		end := max(n.dropOff+n.dropLen, off+size)
		n.dropOff = min(n.dropOff, off)
		n.dropLen = end - n.dropOff
	} else {
		n.dropOff, n.dropLen = off, size
	}
	if n.dropping {
		return
	}
	n.dropping = true
	go func() {
		for {
			n.dmu.Lock()
			off, size := n.dropOff, n.dropLen
			n.dropLen = 0
			if size == 0 {
				n.dropping = false
				n.dmu.Unlock()
				return
			}
			n.dmu.Unlock()
			if errno := n.NotifyContent(off, size); errno != 0 && errno != syscall.ENOENT {
				n.log.Printf("dropping cached pages at %d+%d: %v", off, size, errno)
			}
		}
	}()
}

// Flush answers ENOSYS: nothing is ever written, and the kernel stops
// sending FLUSH on close.
func (n *node) Flush(context.Context, gofs.FileHandle) syscall.Errno { return syscall.ENOSYS }

func (n *node) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	out.Bsize = 4096
	out.Frsize = 4096
	out.NameLen = 255
	return 0
}

// Everything that would change the tree fails: the mount is read-only
// (the kernel already refuses most of these for an "ro" mount).

func (n *node) Setattr(context.Context, gofs.FileHandle, *fuse.SetAttrIn, *fuse.AttrOut) syscall.Errno {
	return syscall.EROFS
}

func (n *node) Create(context.Context, string, uint32, uint32, *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	return nil, nil, 0, syscall.EROFS
}

func (n *node) Mkdir(context.Context, string, uint32, *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, syscall.EROFS
}

func (n *node) Mknod(context.Context, string, uint32, uint32, *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, syscall.EROFS
}

func (n *node) Unlink(context.Context, string) syscall.Errno { return syscall.EROFS }
func (n *node) Rmdir(context.Context, string) syscall.Errno  { return syscall.EROFS }

func (n *node) Rename(context.Context, string, gofs.InodeEmbedder, string, uint32) syscall.Errno {
	return syscall.EROFS
}

func (n *node) Symlink(context.Context, string, string, *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, syscall.EROFS
}

func (n *node) Link(context.Context, gofs.InodeEmbedder, string, *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, syscall.EROFS
}
