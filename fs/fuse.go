package fs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/cairn-backup/cairn/fs/tree"
	"github.com/cairn-backup/cairn/guest/vfs"
	"github.com/cairn-backup/cairn/repo"
)

// Options configure a mount.
type Options struct {
	// AllowOther lets users other than the one mounting read the file
	// system (mount option allow_other; for root, e.g. to let qemu running
	// as another user open the images). Every such user can then read the
	// backed-up disks.
	AllowOther bool
	// CacheBytes bounds the decoded-block caches (0: tree.DefaultCacheBytes).
	CacheBytes int64
	// Logger receives read errors and other problems (nil: log.Default()).
	Logger *log.Logger
	// Debug logs every FUSE request.
	Debug bool
	// Refresh is how old the restore point listing may get (0: 2 s).
	Refresh time.Duration
	// Readahead is the kernel readahead of the mount, in bytes (0:
	// DefaultReadahead, <0: the kernel default of 128 KiB). FUSE cannot
	// ask for more than 128 KiB at mount time; root raises it afterwards
	// through /sys/class/bdi, so that sequential reads reach the daemon as
	// 1 MiB requests instead of 128 KiB ones.
	Readahead int64
}

// DefaultReadahead is the kernel readahead set on the mount.
const DefaultReadahead = 4 << 20

const (
	// stableTimeout is how long the kernel may cache names and attributes
	// inside a restore point, which never change.
	stableTimeout = time.Hour
	// listingTimeout is how long it may cache the VM and restore point
	// listing, which changes as backups finish and are forgotten.
	listingTimeout = time.Second
	// maxRead is the largest read the kernel sends.
	maxRead = 1 << 20
)

// Server is a mounted restore browser.
type Server struct {
	srv        *fuse.Server
	tree       *tree.Tree
	mountpoint string
	done       chan struct{}
	once       sync.Once
}

// Mount mounts the restore browser of repository r on mountpoint, read
// only, and serves it in the background until Unmount, or until it is
// unmounted from outside (fusermount3 -u): Done is closed then. The caller
// keeps r open and holds a shared repository lock until Done is closed.
//
// Do not read the mount from the process that serves it with anything
// that can block the serving goroutines (see go-fuse's notes on
// deadlocks); tests read it from child processes.
func Mount(mountpoint string, r *repo.Repository, o Options) (*Server, error) {
	abs, err := filepath.Abs(mountpoint)
	if err != nil {
		return nil, err
	}
	st, err := os.Stat(abs)
	if err != nil {
		return nil, fmt.Errorf("mount point: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("mount point %s is not a directory", abs)
	}
	logger := o.Logger
	if logger == nil {
		logger = log.Default()
	}
	t := tree.New(r, tree.Options{CacheBytes: o.CacheBytes, Logger: logger, Refresh: o.Refresh})
	root := &node{n: t.Root(), log: logger}
	short := listingTimeout
	opts := &gofs.Options{
		// Timeouts set per entry in Lookup and Getattr; these are for
		// the root and for replies that set none.
		EntryTimeout: &short,
		AttrTimeout:  &short,
		Logger:       logger,
		// Owners and modes are all set by fillAttr: go-fuse must not
		// turn a guest's root-owned (UID 0) or mode-0000 files into the
		// mounting user's or 0644 ones.
		NullPermissions: true,
		MountOptions: fuse.MountOptions{
			FsName:        "cairn",
			Name:          "cairn",
			Options:       []string{"ro", "default_permissions", "nodev", "nosuid"},
			AllowOther:    o.AllowOther,
			MaxWrite:      maxRead, // also sets max_read and the request size (max_pages)
			MaxReadAhead:  maxRead,
			MaxBackground: 64, // concurrent readahead requests
			DisableXAttrs: true,
			// Symlink targets never change: guest links are immutable and
			// `latest` is a new inode for each target (tree.latestLink).
			// Without this, every path through `latest` costs a READLINK.
			EnableSymlinkCaching: true,
			DisableSplice:        true, // replies come from memory; splicing them only adds a copy
			Debug:                o.Debug,
			Logger:               logger,
		},
	}
	srv, err := gofs.Mount(abs, root, opts)
	if err != nil {
		t.Close()
		return nil, fmt.Errorf("mount %s: %w", abs, err)
	}
	if o.Readahead >= 0 {
		ra := o.Readahead
		if ra == 0 {
			ra = DefaultReadahead
		}
		if err := setReadahead(abs, ra); err != nil && o.Debug {
			logger.Printf("could not raise the readahead of %s (reads stay 128 KiB requests): %v", abs, err)
		}
	}
	s := &Server{srv: srv, tree: t, mountpoint: abs, done: make(chan struct{})}
	go func() {
		srv.Wait()
		s.finish()
	}()
	return s, nil
}

// setReadahead sets the readahead of the file system mounted on dir
// through its backing device info in sysfs (root only).
func setReadahead(dir string, bytes int64) error {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return err
	}
	path := fmt.Sprintf("/sys/class/bdi/%d:%d/read_ahead_kb", unix.Major(st.Dev), unix.Minor(st.Dev))
	return os.WriteFile(path, []byte(strconv.FormatInt(bytes>>10, 10)), 0)
}

func (s *Server) finish() {
	s.once.Do(func() {
		s.tree.Close()
		close(s.done)
	})
}

// Mountpoint is the absolute path the file system is mounted on.
func (s *Server) Mountpoint() string { return s.mountpoint }

// Done is closed when the file system is no longer mounted and served.
func (s *Server) Done() <-chan struct{} { return s.done }

// Unmount unmounts the file system (fusermount3 -u, retried briefly) and
// waits until serving stops. It fails with EBUSY-like errors while files
// are open or a process has its working directory inside.
func (s *Server) Unmount() error {
	if err := s.srv.Unmount(); err != nil {
		select {
		case <-s.done:
			return nil // unmounted from outside meanwhile
		default:
		}
		return err
	}
	<-s.done
	return nil
}

// ---------------------------------------------------------------- nodes

// node adapts a tree.Node. It only translates: names, attributes and
// bytes come from the tree.
type node struct {
	gofs.Inode
	n   tree.Node
	log *log.Logger
}

var (
	_ gofs.NodeLookuper       = (*node)(nil)
	_ gofs.NodeReaddirer      = (*node)(nil)
	_ gofs.NodeOpendirHandler = (*node)(nil)
	_ gofs.NodeGetattrer      = (*node)(nil)
	_ gofs.NodeOpener         = (*node)(nil)
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

func (n *node) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	f, ok := n.n.(tree.File)
	if !ok {
		return nil, 0, syscall.EISDIR
	}
	if flags&(syscall.O_WRONLY|syscall.O_RDWR|syscall.O_TRUNC|syscall.O_APPEND) != 0 {
		return nil, 0, syscall.EROFS
	}
	h, err := f.Open()
	if err != nil {
		return nil, 0, toErrno(err)
	}
	// The content never changes: let the kernel keep its page cache
	// across opens.
	return &handle{h: h, n: n}, fuse.FOPEN_KEEP_CACHE, 0
}

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

// ---------------------------------------------------------------- files

type handle struct {
	h tree.Handle
	n *node
}

var (
	_ gofs.FileReader   = (*handle)(nil)
	_ gofs.FileReleaser = (*handle)(nil)
	_ gofs.FileLseeker  = (*handle)(nil)
	_ gofs.FileWriter   = (*handle)(nil)
)

func (h *handle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if sr, ok := h.h.(tree.SliceReader); ok {
		// Disk images: the kernel copies straight from the block cache.
		vec, _, err := sr.ReadSlices(off, len(dest))
		if err != nil {
			return nil, h.readError(err, off)
		}
		return fuse.ReadResultVector(vec), 0
	}
	n, err := h.h.ReadAt(dest, off)
	if err != nil && err != io.EOF {
		return nil, h.readError(err, off)
	}
	return fuse.ReadResultData(dest[:n]), 0
}

// readError logs a failed read and returns its errno.
func (h *handle) readError(err error, off int64) syscall.Errno {
	var re *tree.ReadError
	var ge *tree.GuestError
	if errors.As(err, &ge) {
		// The tree logged it, naming the guest file (and, for a block
		// that failed its hash check, the restore point and offset).
	} else if errors.As(err, &re) {
		h.n.log.Printf("read error: VM %s restore point %s disk %s offset %d: %v", re.VM, re.Point, re.Disk, re.Offset, re.Err)
	} else {
		h.n.log.Printf("read error at offset %d: %v", off, err)
	}
	return toErrno(err)
}

func (h *handle) Write(context.Context, []byte, int64) (uint32, syscall.Errno) {
	return 0, syscall.EROFS
}

func (h *handle) Release(ctx context.Context) syscall.Errno { return toErrno(h.h.Close()) }

// Lseek answers SEEK_DATA and SEEK_HOLE from the block tables, so that
// qemu-img, cp --sparse and friends skip the holes of a disk without
// reading them.
func (h *handle) Lseek(ctx context.Context, off uint64, whence uint32) (uint64, syscall.Errno) {
	const seekData, seekHole = 3, 4
	s, ok := h.h.(tree.Seeker)
	if !ok {
		return 0, syscall.ENOSYS // the kernel then treats the file as all data
	}
	var (
		got int64
		err error
	)
	switch whence {
	case seekData:
		got, err = s.SeekData(int64(off))
	case seekHole:
		got, err = s.SeekHole(int64(off))
	default:
		return 0, syscall.EINVAL
	}
	if err != nil {
		if !errors.Is(err, syscall.ENXIO) {
			h.n.log.Printf("seek error: %v", err)
		}
		return 0, toErrno(err)
	}
	return uint64(got), 0
}
