package ext

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/guest/internal/fstest"
	"github.com/cairn-backup/cairn/guest/vfs"
	"golang.org/x/sys/unix"
)

var (
	treeOnce sync.Once
	treeDir  string
	treeErr  error
)

// sourceTree builds, once per test binary, the source tree every image
// variant is made from.
func sourceTree(tb testing.TB) string {
	tb.Helper()
	fstest.RequireRoot(tb, "chown, mknod or loop mounts")
	treeOnce.Do(func() {
		treeDir, treeErr = os.MkdirTemp("", "cairn-ext-src-")
		if treeErr == nil {
			treeErr = buildTree(treeDir)
		}
	})
	if treeErr != nil {
		tb.Fatal(treeErr)
	}
	return treeDir
}

// buildTree makes every kind of object the readers must reproduce.
func buildTree(root string) error {
	rng := rand.New(rand.NewSource(1))
	random := func(n int) []byte {
		b := make([]byte, n)
		rng.Read(b)
		return b
	}
	var errs []error
	check := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	p := func(rel string) string { return filepath.Join(root, rel) }
	write := func(rel string, data []byte) { check(os.WriteFile(p(rel), data, 0o644)) }

	write("empty", nil)
	write("small.txt", []byte("hello, ext\n"))
	write("block1k", random(1024))
	write("block4k", random(4096))
	write("random-3M", random(3<<20+123))
	write("random-20M", random(20<<20+7)) // double indirect with 1 KiB blocks

	// A sparse file with several holes, and one past 1 GiB that reaches
	// the triple indirect range (> 4 GiB with 4 KiB blocks).
	sparse := func(rel string, size int64, at []int64) {
		fh, err := os.Create(p(rel))
		if err != nil {
			check(err)
			return
		}
		check(fh.Truncate(size))
		for i, off := range at {
			_, err := fh.WriteAt(random(5000+i*3000), off)
			check(err)
		}
		check(fh.Close())
	}
	sparse("sparse", 10<<20, []int64{0, 100000, 3 << 20, 7<<20 + 17, 10<<20 - 5000})
	sparse("sparse-6G", 6<<30, []int64{1 << 20, 1<<30 + 4096, 5<<30 + 12345})
	sparse("holes-only", 1<<20, nil)

	check(os.MkdirAll(p("big"), 0o755))
	for i := 0; i < 5000; i++ {
		write(fmt.Sprintf("big/file-%05d-%s", i, strings.Repeat("x", i%40)), []byte(fmt.Sprint(i)))
	}
	long := strings.Repeat("L", 250) + "-name" // 255 bytes
	write(long, []byte("long name"))
	write("ünïcødé-名前-🙂", []byte("utf-8"))
	deep := "deep"
	for i := 0; i < 40; i++ {
		deep = filepath.Join(deep, fmt.Sprintf("level%02d", i))
	}
	check(os.MkdirAll(p(deep), 0o755))
	write(filepath.Join(deep, "bottom"), []byte("bottom"))

	check(os.Symlink("small.txt", p("fast-link")))
	check(os.Symlink(strings.Repeat("slow/", 40)+"target", p("slow-link")))
	check(os.Symlink(strings.Repeat("x", 59), p("link59")))
	check(os.Symlink(strings.Repeat("y", 60), p("link60")))
	check(os.Link(p("small.txt"), p("hardlink")))
	check(os.MkdirAll(p("sub"), 0o700))
	check(os.Link(p("random-3M"), p("sub/hardlink-3M")))

	write("owned", []byte("owned"))
	check(os.Lchown(p("owned"), 1234, 5678))
	write("owned-big", []byte("owned by a 32-bit uid"))
	check(os.Lchown(p("owned-big"), 100000, 200000))
	check(os.Lchown(p("fast-link"), 42, 43))
	write("setuid", []byte("#!/bin/sh\n"))
	check(os.Chmod(p("setuid"), 0o4755|0))
	check(syscall.Chmod(p("setuid"), syscall.S_ISUID|0o755))
	write("setgid", nil)
	check(syscall.Chmod(p("setgid"), syscall.S_ISGID|0o2750&0o777))
	check(os.MkdirAll(p("sticky"), 0o755))
	check(syscall.Chmod(p("sticky"), syscall.S_ISVTX|0o1777&0o777))

	check(syscall.Mkfifo(p("fifo"), 0o640))
	check(syscall.Mknod(p("null"), syscall.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
	check(syscall.Mknod(p("blockdev"), syscall.S_IFBLK|0o600, int(unix.Mkdev(8, 17))))
	check(syscall.Mknod(p("bigdev"), syscall.S_IFCHR|0o600, int(unix.Mkdev(300, 70000))))
	if l, err := net.ListenUnix("unix", &net.UnixAddr{Name: p("socket"), Net: "unix"}); err != nil {
		check(err)
	} else {
		l.SetUnlinkOnClose(false)
		check(l.Close())
	}

	// Times: nanoseconds, before 1970, after 2038 (needs the epoch bits).
	times := map[string]time.Time{
		"small.txt":  time.Date(2021, 3, 4, 5, 6, 7, 123456789, time.UTC),
		"block1k":    time.Date(1969, 7, 20, 20, 17, 40, 0, time.UTC),
		"block4k":    time.Date(2100, 1, 2, 3, 4, 5, 600000000, time.UTC),
		"sub":        time.Date(2010, 10, 10, 10, 10, 10, 0, time.UTC),
		"fifo":       time.Date(2005, 5, 5, 5, 5, 5, 5, time.UTC),
		"sparse-6G":  time.Date(2038, 1, 19, 3, 14, 8, 0, time.UTC),
		"random-20M": time.Date(2000, 1, 1, 0, 0, 0, 1, time.UTC),
	}
	for rel, t := range times {
		check(os.Chtimes(p(rel), t, t))
	}
	check(exec.Command("touch", "-h", "-d", "2015-06-30 23:59:59.5", p("fast-link")).Run())
	return errors.Join(errs...)
}

// compareTree walks fsys from its root alongside the directory src and
// checks everything the reader returns. With sameFS, src is the same file
// system mounted by the kernel, and inode numbers and block counts must
// match too.
type treeCheck struct {
	t        *testing.T
	fs       vfs.FS
	nanos    bool // the image keeps nanoseconds and post-2038 times
	sameFS   bool
	links    map[uint64]uint64 // source inode -> image inode
	files    int
	checkRev bool
}

func compareTree(t *testing.T, fsys vfs.FS, src string, nanos, sameFS bool) int {
	c := &treeCheck{t: t, fs: fsys, nanos: nanos, sameFS: sameFS, links: map[uint64]uint64{}}
	c.dir(fsys.Root(), src, "/")
	return c.files
}

func (c *treeCheck) dir(ino uint64, src, rel string) {
	t := c.t
	entries, err := c.fs.ReadDir(ino)
	if err != nil {
		t.Fatalf("ReadDir %s: %v", rel, err)
	}
	want, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]vfs.DirEntry{}
	for _, e := range entries {
		if _, dup := got[e.Name]; dup {
			t.Errorf("%s: name %q listed twice", rel, e.Name)
		}
		got[e.Name] = e
	}
	wantNames := map[string]bool{}
	for _, w := range want {
		if rel == "/" && w.Name() == "lost+found" {
			continue
		}
		wantNames[w.Name()] = true
	}
	delete(got, "lost+found")
	if len(got) != len(wantNames) {
		t.Errorf("%s: %d entries, want %d", rel, len(got), len(wantNames))
	}
	subdirs := 0
	for name := range wantNames {
		e, ok := got[name]
		if !ok {
			t.Errorf("%s: %q missing", rel, name)
			continue
		}
		le, err := c.fs.Lookup(ino, name)
		if err != nil || le.Ino != e.Ino {
			t.Errorf("%s: Lookup(%q) = %v, %v; ReadDir says inode %d", rel, name, le, err, e.Ino)
		}
		if c.entry(e, filepath.Join(src, name), filepath.Join(rel, name)) {
			subdirs++
		}
	}
	if _, err := c.fs.Lookup(ino, "no such name"); !errors.Is(err, vfs.ErrNotFound) {
		t.Errorf("%s: Lookup of a missing name: %v", rel, err)
	}
	fi, err := c.fs.Stat(ino)
	if err != nil {
		t.Fatal(err)
	}
	if rel == "/" {
		subdirs++ // lost+found
	}
	if fi.Nlink != uint32(2+subdirs) {
		t.Errorf("%s: nlink %d, want %d", rel, fi.Nlink, 2+subdirs)
	}
}

// entry compares one name; it reports whether it is a directory.
func (c *treeCheck) entry(e vfs.DirEntry, src, rel string) bool {
	t := c.t
	var st syscall.Stat_t
	if err := syscall.Lstat(src, &st); err != nil {
		t.Fatal(err)
	}
	fi, err := c.fs.Stat(e.Ino)
	if err != nil {
		t.Errorf("Stat %s: %v", rel, err)
		return false
	}
	if fi.Ino != e.Ino {
		t.Errorf("%s: Stat ino %d, entry %d", rel, fi.Ino, e.Ino)
	}
	if fi.Mode != st.Mode {
		t.Errorf("%s: mode %o, want %o", rel, fi.Mode, st.Mode)
	}
	if e.Type != 0 && e.Type != st.Mode&vfs.ModeType {
		t.Errorf("%s: entry type %o, want %o", rel, e.Type, st.Mode&vfs.ModeType)
	}
	if fi.UID != st.Uid || fi.GID != st.Gid {
		t.Errorf("%s: owner %d:%d, want %d:%d", rel, fi.UID, fi.GID, st.Uid, st.Gid)
	}
	if c.sameFS {
		if fi.Ino != st.Ino || fi.Blocks != st.Blocks {
			t.Errorf("%s: ino %d blocks %d, kernel says %d, %d", rel, fi.Ino, fi.Blocks, st.Ino, st.Blocks)
		}
		if got, want := fi.Ctime, time.Unix(st.Ctim.Unix()); c.nanos && !got.Equal(want) {
			t.Errorf("%s: ctime %v, want %v", rel, got, want)
		}
	}
	mtime := time.Unix(st.Mtim.Unix())
	if c.nanos {
		if !fi.Mtime.Equal(mtime) {
			t.Errorf("%s: mtime %v, want %v", rel, fi.Mtime, mtime)
		}
	} else if mtime.Unix() == int64(int32(mtime.Unix())) && fi.Mtime.Unix() != mtime.Unix() {
		t.Errorf("%s: mtime %v, want %v (seconds)", rel, fi.Mtime, mtime)
	}
	if st.Mode&vfs.ModeType == vfs.ModeDir {
		c.dir(e.Ino, src, rel)
		return true
	}
	if fi.Nlink != uint32(st.Nlink) {
		t.Errorf("%s: nlink %d, want %d", rel, fi.Nlink, st.Nlink)
	}
	if st.Nlink > 1 {
		if prev, ok := c.links[st.Ino]; ok && prev != e.Ino {
			t.Errorf("%s: hard link to inode %d, its other name has %d", rel, e.Ino, prev)
		}
		c.links[st.Ino] = e.Ino
	}
	if fi.Size != st.Size {
		t.Errorf("%s: size %d, want %d", rel, fi.Size, st.Size)
	}
	switch st.Mode & vfs.ModeType {
	case vfs.ModeLink:
		want, _ := os.Readlink(src)
		if got, err := c.fs.Readlink(e.Ino); err != nil || got != want {
			t.Errorf("%s: Readlink %q, %v; want %q", rel, got, err, want)
		}
	case vfs.ModeChar, vfs.ModeBlock:
		if fi.Rdev != st.Rdev {
			t.Errorf("%s: rdev %#x, want %#x", rel, fi.Rdev, st.Rdev)
		}
	case vfs.ModeFile:
		c.files++
		c.content(e.Ino, fi, src, rel, st.Blocks)
	}
	return false
}

func (c *treeCheck) content(ino uint64, fi vfs.FileInfo, src, rel string, srcBlocks int64) {
	t := c.t
	fl, err := c.fs.Open(ino)
	if err != nil {
		t.Errorf("Open %s: %v", rel, err)
		return
	}
	if fl.Size() != fi.Size {
		t.Errorf("%s: File.Size %d, Stat %d", rel, fl.Size(), fi.Size)
	}
	if srcBlocks*512 < fi.Size && fi.Blocks*512 >= fi.Size {
		t.Errorf("%s: sparse file of %d bytes has %d blocks allocated", rel, fi.Size, fi.Blocks)
	}
	sf, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer sf.Close()
	if err := sameContent(fl, sf, fi.Size); err != nil {
		t.Errorf("%s: %v", rel, err)
		return
	}
	if _, err := fl.ReadAt(make([]byte, 1), fi.Size); err != io.EOF {
		t.Errorf("%s: read at the end: %v, want io.EOF", rel, err)
	}
	if fi.Size > 1 {
		// Unaligned reads across block and hole boundaries.
		rng := rand.New(rand.NewSource(fi.Size))
		for i := 0; i < 20; i++ {
			off := rng.Int63n(fi.Size)
			n := min(int64(rng.Intn(70000)+1), fi.Size-off)
			a, b := make([]byte, n), make([]byte, n)
			if _, err := fl.ReadAt(a, off); err != nil && err != io.EOF {
				t.Errorf("%s: ReadAt(%d, %d): %v", rel, n, off, err)
				return
			}
			if _, err := sf.ReadAt(b, off); err != nil && err != io.EOF {
				t.Fatal(err)
			}
			if !bytes.Equal(a, b) {
				t.Errorf("%s: ReadAt(%d, %d) differs from the source", rel, n, off)
				return
			}
		}
	}
}

// sameContent compares size bytes of got with the file want, reading
// want's holes (found with SEEK_DATA) as zeros without reading them, so a
// 6 GiB sparse file costs little more than its data.
func sameContent(got io.ReaderAt, want *os.File, size int64) error {
	var segs [][2]int64
	fd := int(want.Fd())
	for off := int64(0); off < size; {
		d, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if err != nil {
			break // ENXIO: no data past off
		}
		h, err := unix.Seek(fd, d, unix.SEEK_HOLE)
		if err != nil {
			return err
		}
		segs = append(segs, [2]int64{d, min(h, size)})
		off = h
	}
	chunk := min(int64(4<<20), max(size, 1))
	a, b := make([]byte, chunk), make([]byte, chunk)
	for off := int64(0); off < size; off += chunk {
		n := min(chunk, size-off)
		if m, err := got.ReadAt(a[:n], off); int64(m) != n {
			return fmt.Errorf("read %d bytes at %d: %d, %v", n, off, m, err)
		}
		clear(b[:n])
		for _, s := range segs {
			lo, hi := max(s[0], off), min(s[1], off+n)
			if lo < hi {
				if _, err := want.ReadAt(b[lo-off:hi-off], lo); err != nil {
					return err
				}
			}
		}
		if !bytes.Equal(a[:n], b[:n]) {
			i := 0
			for a[i] == b[i] {
				i++
			}
			return fmt.Errorf("content differs at byte %d", off+int64(i))
		}
	}
	return nil
}
