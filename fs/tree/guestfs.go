package tree

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"syscall"

	"github.com/cairn-backup/cairn/guest"
	"github.com/cairn-backup/cairn/guest/vfs"
	"github.com/cairn-backup/cairn/repo"
)

// Guest file systems in the tree
//
// A volume with a file system gets a directory (p2/, fs/, lvm/vg/lv/)
// whose tree is the guest's: directories, regular files, symlinks, device
// nodes, fifos and sockets, with the guest's modes, owners, times, link
// counts and sizes. A guest node is identified by (restore point, disk,
// volume, guest inode number); its tree inode number is a hash of that, so
// hard links (one guest inode, several names) have one inode number and
// every number is the same in every mount. Nodes do not hold the file
// system: they find it through the Tree's machine cache on every call.

// GuestError is a failure inside a guest file system: which restore
// point, disk, volume and path, and why. Its Err wraps vfs.ErrMalformed
// for a damaged or crafted structure, or a *ReadError when the disk could
// not be read (a block failing its hash check).
type GuestError struct {
	VM, Point, Disk, Volume, Path string
	Err                           error
}

func (e *GuestError) Error() string {
	return fmt.Sprintf("VM %s restore point %s disk %s volume %s path %s: %v", e.VM, e.Point, e.Disk, e.Volume, e.Path, e.Err)
}

func (e *GuestError) Unwrap() error { return e.Err }

// fsVol is one guest file system of the tree.
type fsVol struct {
	t         *Tree
	p         *repo.RestorePoint
	disk, key string // key: volKey of the volume
	seed      uint64 // inode("guest", point, disk, key): see ino
}

func (g *fsVol) fs() (vfs.FS, error) {
	v, err := g.t.volume(g.p, g.disk, g.key)
	if err != nil {
		return nil, err
	}
	return v.FS()
}

// ino is the tree inode number of guest inode n: the volume's seed and n
// mixed by a bijection of 64-bit numbers, so distinct guest inodes of one
// volume never share a number, and a listing of 5000 entries does not
// hash 5000 strings (it did, with SHA-256, on the first ls -l's path).
func (g *fsVol) ino(n uint64) uint64 {
	x := g.seed + n*0x9e3779b97f4a7c15 // splitmix64's step and finalizer
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	x ^= x >> 31
	if x <= RootIno || x == ^uint64(0) { // reserved by FUSE
		x = 2 + x%1000
	}
	return x
}

// fail wraps err with where it happened and logs it, unless it is a plain
// "no such name".
func (g *fsVol) fail(path string, err error) error {
	if errors.Is(err, vfs.ErrNotFound) || errors.Is(err, ErrNoEntry) {
		return ErrNoEntry
	}
	ge := &GuestError{VM: g.p.VM, Point: g.p.ID, Disk: g.disk, Volume: g.key, Path: path, Err: err}
	g.t.logOnce("%v", ge)
	return ge
}

// fsDir returns the root directory of volume v's file system, named name
// in its parent.
func (t *Tree) fsDir(p *repo.RestorePoint, disk string, v *guest.Volume, name string) Node {
	key := volKey(v)
	g := &fsVol{t: t, p: p, disk: disk, key: key, seed: inode("guest", p.ID, disk, key)}
	return &fsRoot{g: g, dirName: name}
}

// fsRoot is the root directory of a guest file system. Its attributes are
// the guest root's when the file system opens, a plain read-only directory
// otherwise; listing it then fails with the error.
type fsRoot struct {
	g       *fsVol
	dirName string
}

func (d *fsRoot) name() string { return d.dirName }

func (d *fsRoot) dir() (guestDir, error) {
	fs, err := d.g.fs()
	if err != nil {
		return guestDir{}, d.g.fail("/", err)
	}
	root := fs.Root()
	fi, err := fs.Stat(root)
	if err != nil {
		return guestDir{}, d.g.fail("/", err)
	}
	if !fi.IsDir() {
		return guestDir{}, d.g.fail("/", fmt.Errorf("%w: root inode %d is not a directory", vfs.ErrMalformed, root))
	}
	return guestDir{&guestNode{g: d.g, path: "/", fi: fi}}, nil
}

func (d *fsRoot) Attr() Attr {
	n, err := d.dir()
	if err != nil {
		return Attr{Ino: inode("fsroot", d.g.p.ID, d.g.disk, d.g.key), Mode: dirMode, Mtime: d.g.p.Time, Stable: true}
	}
	a := n.Attr()
	a.Ino = inode("fsroot", d.g.p.ID, d.g.disk, d.g.key)
	return a
}

func (d *fsRoot) Readdir() ([]DirEntry, error) {
	n, err := d.dir()
	if err != nil {
		return nil, err
	}
	return n.Readdir()
}

func (d *fsRoot) Lookup(name string) (Node, error) {
	n, err := d.dir()
	if err != nil {
		return nil, err
	}
	return n.Lookup(name)
}

// guestNode is a guest inode reached by path. It is one of guestDir,
// guestFile, guestLink or (device, fifo, socket) guestNode itself.
type guestNode struct {
	g    *fsVol
	path string // how it was reached, for error messages
	fi   vfs.FileInfo
}

type (
	guestDir  struct{ *guestNode }
	guestFile struct{ *guestNode }
	guestLink struct{ *guestNode }
)

func (n *guestNode) Attr() Attr {
	fi := n.fi
	return Attr{
		Ino: n.g.ino(fi.Ino), Mode: fi.Mode, Size: fi.Size, Blocks: fi.Blocks, Mtime: fi.Mtime,
		Stable: true,
		Guest:  &GuestAttr{Nlink: fi.Nlink, UID: fi.UID, GID: fi.GID, Rdev: fi.Rdev, Atime: fi.Atime, Ctime: fi.Ctime},
	}
}

// node makes the tree node for a guest inode.
func (n *guestNode) node(path string, fi vfs.FileInfo) Node {
	c := &guestNode{g: n.g, path: path, fi: fi}
	switch fi.Mode & vfs.ModeType {
	case vfs.ModeDir:
		return guestDir{c}
	case vfs.ModeFile:
		return guestFile{c}
	case vfs.ModeLink:
		return guestLink{c}
	}
	return c
}

func (n *guestNode) child(name string) string {
	if n.path == "/" {
		return "/" + name
	}
	return n.path + "/" + name
}

func (d guestDir) key() dirKey { return dirKey{d.g.p.ID, d.g.disk, d.g.key, d.fi.Ino} }

func (d guestDir) listing() (*listing, error) {
	fs, err := d.g.fs()
	if err != nil {
		return nil, d.g.fail(d.path, err)
	}
	l, err := d.g.t.dirs.get(d.key(), func() ([]vfs.DirEntry, error) {
		return fs.ReadDir(d.fi.Ino)
	}, func(name string) {
		d.g.t.logOnce("VM %s restore point %s disk %s volume %s: directory %s holds the name %q, which is not shown", d.g.p.VM, d.g.p.ID, d.g.disk, d.g.key, d.path, name)
	})
	if err != nil {
		return nil, d.g.fail(d.path, err)
	}
	return l, nil
}

// Readdir lists the directory in the file system's own order.
func (d guestDir) Readdir() ([]DirEntry, error) {
	l, err := d.listing()
	if err != nil {
		return nil, err
	}
	out := make([]DirEntry, len(l.entries))
	for i, e := range l.entries {
		out[i] = DirEntry{Name: e.Name, Ino: d.g.ino(e.Ino), Mode: e.Type & vfs.ModeType}
	}
	return out, nil
}

func (d guestDir) Lookup(name string) (Node, error) {
	fs, err := d.g.fs()
	if err != nil {
		return nil, d.g.fail(d.path, err)
	}
	var e vfs.DirEntry
	if d.g.t.dirs.isBig(d.key()) {
		if !validName(name) {
			return nil, ErrNoEntry
		}
		if e, err = fs.Lookup(d.fi.Ino, name); err != nil {
			return nil, d.g.fail(d.child(name), err)
		}
	} else {
		l, err := d.listing()
		if err != nil {
			return nil, err
		}
		var ok bool
		if e, ok = l.find(name); !ok {
			return nil, ErrNoEntry
		}
	}
	path := d.child(name)
	fi, err := fs.Stat(e.Ino)
	if err != nil {
		if errors.Is(err, vfs.ErrNotFound) { // an entry naming a free inode
			err = fmt.Errorf("%w: entry names inode %d, which does not exist", vfs.ErrMalformed, e.Ino)
		}
		return nil, d.g.fail(path, err)
	}
	return d.node(path, fi), nil
}

func (l guestLink) Readlink() (string, error) {
	fs, err := l.g.fs()
	if err != nil {
		return "", l.g.fail(l.path, err)
	}
	target, err := fs.Readlink(l.fi.Ino)
	if err != nil {
		return "", l.g.fail(l.path, err)
	}
	return target, nil
}

func (f guestFile) Open() (Handle, error) {
	fs, err := f.g.fs()
	if err != nil {
		return nil, f.g.fail(f.path, err)
	}
	file, err := fs.Open(f.fi.Ino)
	if err != nil {
		return nil, f.g.fail(f.path, err)
	}
	return &guestHandle{n: f.guestNode, f: file}, nil
}

// guestHandle reads a guest file. A read that fails returns no data and
// a *GuestError, logged.
type guestHandle struct {
	n *guestNode
	f vfs.File
}

func (h *guestHandle) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, syscall.EINVAL
	}
	n, err := h.f.ReadAt(p, off)
	if err != nil && err != io.EOF {
		return 0, h.n.g.fail(fmt.Sprintf("%s (offset %d)", h.n.path, off), err)
	}
	return n, err
}

func (h *guestHandle) Close() error { return nil }

// validName reports whether a guest name can be a path component.
func validName(s string) bool {
	return s != "" && s != "." && s != ".." && !strings.ContainsAny(s, "/\x00")
}
