package tree

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cairn-backup/cairn/repo"
)

// Copying files out of a restore point (`cairn restore files`) walks the
// same tree the mount serves, so what is copied is exactly what the mount
// shows.

// ResolveGuest finds the node named by spec in restore point p. spec is
// VOLUME:PATH, where VOLUME is a path below the restore point's directory
// naming a guest file system ("vda/p2", "vda/lvm/vg0/root"), or a bare
// disk name ("vda") for a file system on a disk without a partition
// table; PATH is a path inside that file system ("/etc/nginx", "/" for
// all of it). Symlinks on the way are not followed.
func (t *Tree) ResolveGuest(p *repo.RestorePoint, spec string) (Node, error) {
	vol, path, ok := strings.Cut(spec, ":")
	if !ok || vol == "" {
		return nil, fmt.Errorf("%q: want VOLUME:PATH, like vda/p2:/etc/nginx, vda:/home or vda/lvm/vg0/root:/var", spec)
	}
	vol = strings.Trim(vol, "/")
	if !strings.Contains(vol, "/") {
		vol += "/" + WholeDiskFS
	}
	var n Node = &pointDir{t: t, p: p}
	names := strings.Split(vol, "/")
	nvol := len(names)
	names = append(names, strings.Split(path, "/")...)
	walked := ""
	for i, name := range names {
		if name == "" || name == "." {
			continue
		}
		if name == ".." {
			return nil, fmt.Errorf("%q: .. is not allowed", spec)
		}
		d, ok := n.(Dir)
		if !ok {
			return nil, fmt.Errorf("%s: not a directory", walked)
		}
		c, err := d.Lookup(name)
		switch {
		case errors.Is(err, ErrNoEntry) && i < nvol:
			return nil, fmt.Errorf("restore point %s has no file system at %s (`cairn mount` shows what it holds): %w", p.ID[:min(8, len(p.ID))], vol, ErrNoEntry)
		case errors.Is(err, ErrNoEntry):
			return nil, fmt.Errorf("%s:%s/%s: %w", vol, walked, name, ErrNoEntry)
		case err != nil:
			return nil, err
		}
		if i >= nvol {
			walked += "/" + name
		}
		n = c
	}
	return n, nil
}

// CopyOptions tune CopyOut.
type CopyOptions struct {
	// Owners sets the guest's owners on what is copied (needs root).
	Owners bool
	// Progress, when set, is updated as files are copied.
	Progress *CopyProgress
	// OnError is called for each file or directory that could not be
	// copied (nil: ignore); copying goes on with the rest.
	OnError func(path string, err error)
}

// CopyProgress counts what CopyOut has done so far; safe to read while
// it runs.
type CopyProgress struct {
	Files, Bytes, Errors atomic.Int64
}

// CopySummary is what CopyOut copied.
type CopySummary struct {
	Files     int64 `json:"files"` // regular files, including hard links
	Dirs      int64 `json:"dirs"`
	Symlinks  int64 `json:"symlinks"`
	HardLinks int64 `json:"hard_links"` // files made as links to an earlier copy
	Specials  int64 `json:"specials"`   // device nodes, fifos, sockets
	Bytes     int64 `json:"bytes"`      // file content copied
	Errors    int64 `json:"errors"`
}

// maxCopyDepth bounds how deep CopyOut descends: guest directory trees
// come from the guest and may be crafted.
const maxCopyDepth = 4096

// CopyOut copies node n (a guest directory, file, symlink or special
// file), named name, into the directory dst, which is created if it does
// not exist: a directory is copied with everything below it. Modes,
// times (access and modification), symlinks, hard links (as hard links),
// sparse files (holes stay holes) and, with Owners, owners are kept, as
// `cp -a` does. Nothing existing is overwritten. A file that fails is
// reported to OnError and counted, and the rest is copied; the returned
// error is only for a dst that cannot be made or a cancelled ctx.
func CopyOut(ctx context.Context, n Node, name, dst string, o CopyOptions) (CopySummary, error) {
	if o.Progress == nil {
		o.Progress = &CopyProgress{}
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return CopySummary{}, err
	}
	c := &copier{ctx: ctx, o: o, links: make(map[uint64]string), onPath: make(map[uint64]bool), buf: make([]byte, 1<<20)}
	target := filepath.Join(dst, name)
	if name == "" || name == "/" {
		target = dst // the root of a file system: its content goes into dst
	}
	c.copy(n, target, 0)
	if err := ctx.Err(); err != nil {
		return c.sum, err
	}
	return c.sum, nil
}

type copier struct {
	ctx    context.Context
	o      CopyOptions
	sum    CopySummary
	links  map[uint64]string // inode → first copy, for hard links
	onPath map[uint64]bool   // directories being copied, to catch loops
	buf    []byte
}

func (c *copier) fail(path string, err error) {
	c.sum.Errors++
	c.o.Progress.Errors.Add(1)
	if c.o.OnError != nil {
		c.o.OnError(path, err)
	}
}

func (c *copier) copy(n Node, path string, depth int) {
	if c.ctx.Err() != nil {
		return
	}
	a := n.Attr()
	var err error
	switch a.Mode & syscall.S_IFMT {
	case syscall.S_IFDIR:
		c.copyDir(n, path, a, depth)
		return
	case syscall.S_IFREG:
		err = c.copyFile(n, path, a)
	case syscall.S_IFLNK:
		err = c.copyLink(n, path, a)
	default:
		err = c.copySpecial(path, a)
	}
	if err != nil {
		c.fail(path, err)
	}
}

func (c *copier) copyDir(n Node, path string, a Attr, depth int) {
	d, ok := n.(Dir)
	if !ok {
		c.fail(path, errors.New("directory without entries"))
		return
	}
	if depth >= maxCopyDepth {
		c.fail(path, fmt.Errorf("directories nested deeper than %d: not copied", maxCopyDepth))
		return
	}
	if c.onPath[a.Ino] {
		c.fail(path, errors.New("directory contains itself (a loop in the guest file system): not copied again"))
		return
	}
	if err := os.Mkdir(path, 0o700); err != nil && !(errors.Is(err, os.ErrExist) && depth == 0 && isDir(path)) {
		c.fail(path, err)
		return
	}
	c.sum.Dirs++
	entries, err := d.Readdir()
	if err != nil {
		c.fail(path, err)
	}
	c.onPath[a.Ino] = true
	for _, e := range entries {
		if c.ctx.Err() != nil {
			break
		}
		child, err := d.Lookup(e.Name)
		if err != nil {
			c.fail(filepath.Join(path, e.Name), err)
			continue
		}
		c.copy(child, filepath.Join(path, e.Name), depth+1)
	}
	delete(c.onPath, a.Ino)
	// Owner and mode now; times last, after the entries are written.
	if err := c.setOwnerMode(path, a, false); err != nil {
		c.fail(path, err)
	}
	if err := setTimes(path, a, false); err != nil {
		c.fail(path, err)
	}
}

func isDir(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.IsDir()
}

func (c *copier) copyFile(n Node, path string, a Attr) error {
	if g := a.Guest; g != nil && g.Nlink > 1 {
		if first, ok := c.links[a.Ino]; ok {
			if err := os.Link(first, path); err != nil {
				return err
			}
			c.sum.Files++
			c.sum.HardLinks++
			c.o.Progress.Files.Add(1)
			return nil
		}
	}
	f, ok := n.(File)
	if !ok {
		return errors.New("not a readable file")
	}
	h, err := f.Open()
	if err != nil {
		return err
	}
	defer h.Close()
	out, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	err = c.copyData(h, out, a)
	if err == nil {
		err = c.setOwnerMode(path, a, false)
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = setTimes(path, a, false)
	}
	if err != nil {
		os.Remove(path) // never leave a partial copy that looks whole
		return err
	}
	if a.Guest != nil && a.Guest.Nlink > 1 && len(c.links) < 1<<20 {
		c.links[a.Ino] = path
	}
	c.sum.Files++
	c.o.Progress.Files.Add(1)
	return nil
}

// copyData copies a file's content. A sparse file (fewer blocks than its
// size needs) keeps its holes: zero runs of 64 KiB are skipped, not
// written, and the file is extended to its size at the end.
func (c *copier) copyData(h Handle, out *os.File, a Attr) error {
	sparse := a.Blocks*512 < a.Size
	var off int64
	for off < a.Size {
		if err := c.ctx.Err(); err != nil {
			return err
		}
		n, err := h.ReadAt(c.buf[:min(int64(len(c.buf)), a.Size-off)], off)
		if err != nil && err != io.EOF {
			return err
		}
		if n == 0 {
			return fmt.Errorf("file ends at %d of %d bytes", off, a.Size)
		}
		if err := writeChunk(out, c.buf[:n], off, sparse); err != nil {
			return err
		}
		off += int64(n)
		c.sum.Bytes += int64(n)
		c.o.Progress.Bytes.Add(int64(n))
	}
	return out.Truncate(a.Size)
}

const holeChunk = 64 << 10

var zeroChunk = make([]byte, holeChunk)

func writeChunk(out *os.File, b []byte, off int64, sparse bool) error {
	if !sparse {
		_, err := out.WriteAt(b, off)
		return err
	}
	for len(b) > 0 {
		k := min(len(b), holeChunk)
		if !bytes.Equal(b[:k], zeroChunk[:k]) {
			if _, err := out.WriteAt(b[:k], off); err != nil {
				return err
			}
		}
		b, off = b[k:], off+int64(k)
	}
	return nil
}

func (c *copier) copyLink(n Node, path string, a Attr) error {
	l, ok := n.(Symlink)
	if !ok {
		return errors.New("symlink without a target")
	}
	target, err := l.Readlink()
	if err != nil {
		return err
	}
	if err := os.Symlink(target, path); err != nil {
		return err
	}
	c.sum.Symlinks++
	if err := c.setOwnerMode(path, a, true); err != nil {
		return err
	}
	return setTimes(path, a, true)
}

func (c *copier) copySpecial(path string, a Attr) error {
	var dev uint64
	if a.Guest != nil {
		dev = a.Guest.Rdev
	}
	t := a.Mode & syscall.S_IFMT
	if (t == syscall.S_IFCHR || t == syscall.S_IFBLK) && os.Geteuid() != 0 {
		return errors.New("a device node: only root can make one; not copied")
	}
	if err := unix.Mknod(path, a.Mode&(syscall.S_IFMT|0o777), int(dev)); err != nil {
		return err
	}
	c.sum.Specials++
	if err := c.setOwnerMode(path, a, false); err != nil {
		return err
	}
	return setTimes(path, a, false)
}

// setOwnerMode sets the guest owner (with Owners) and then the mode (an
// owner change clears setuid bits, so the mode comes second).
func (c *copier) setOwnerMode(path string, a Attr, link bool) error {
	if c.o.Owners && a.Guest != nil {
		if err := os.Lchown(path, int(a.Guest.UID), int(a.Guest.GID)); err != nil {
			return err
		}
	}
	if link {
		return nil // Linux symlinks have no mode of their own
	}
	return os.Chmod(path, os.FileMode(a.Mode&0o777)|modeBits(a.Mode))
}

func modeBits(m uint32) os.FileMode {
	var f os.FileMode
	if m&syscall.S_ISUID != 0 {
		f |= os.ModeSetuid
	}
	if m&syscall.S_ISGID != 0 {
		f |= os.ModeSetgid
	}
	if m&syscall.S_ISVTX != 0 {
		f |= os.ModeSticky
	}
	return f
}

// setTimes sets the access and modification times (the change time
// cannot be set).
func setTimes(path string, a Attr, link bool) error {
	atime := a.Mtime
	if a.Guest != nil && !a.Guest.Atime.IsZero() {
		atime = a.Guest.Atime
	}
	flags := 0
	if link {
		flags = unix.AT_SYMLINK_NOFOLLOW
	}
	ts := []unix.Timespec{timespec(atime), timespec(a.Mtime)}
	return unix.UtimesNanoAt(unix.AT_FDCWD, path, ts, flags)
}

func timespec(t time.Time) unix.Timespec {
	if t.IsZero() {
		return unix.Timespec{}
	}
	return unix.Timespec{Sec: t.Unix(), Nsec: int64(t.Nanosecond())}
}
