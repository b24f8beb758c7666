package xfs

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cairn-backup/cairn/guest/internal/fstest"
	"github.com/cairn-backup/cairn/guest/vfs"
)

var (
	srcOnce sync.Once
	srcDir  string
	srcWalk map[string]*node
)

// source builds the shared source tree once per test binary.
func source(t *testing.T) string {
	srcOnce.Do(func() {
		d, err := os.MkdirTemp("", "cairn-xfs-src-")
		if err != nil {
			t.Fatal(err)
		}
		buildSource(t, d)
		srcDir = d
	})
	if srcDir == "" {
		t.Fatal("source tree could not be built")
	}
	return srcDir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if srcDir != "" {
		os.RemoveAll(srcDir)
	}
	if benchImg != "" {
		os.RemoveAll(filepath.Dir(benchImg))
	}
	os.Exit(code)
}

// TestMountedImages builds XFS images with mkfs.xfs, fills them through a
// kernel loop mount, and checks that the reader reports exactly what the
// kernel reported for every path: inode numbers, modes, owners, sizes,
// allocated blocks, all four timestamps, device numbers, link targets,
// directory listings and content.
func TestMountedImages(t *testing.T) {
	requireTools(t)
	for _, v := range []struct{ name, opts string }{
		{"v5", ""},
		{"v5-1k-blocks", "-b size=1024"},
		{"v5-nrext64-dirblk16k", "-i nrext64=1 -n size=16384"},
	} {
		t.Run(v.name, func(t *testing.T) { testMounted(t, strings.Fields(v.opts)) })
	}
}

func testMounted(t *testing.T, mkfsOpts []string) {
	src := source(t)
	dir := t.TempDir()
	img := filepath.Join(dir, "xfs.img")
	mnt := filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 700<<20); err != nil {
		t.Fatal(err)
	}
	fstest.Run(t, "mkfs.xfs", append([]string{"-q", "-f", "-L", "cairn-test"}, append(mkfsOpts, img)...)...)
	fstest.Run(t, "mount", "-o", "loop,noatime", img, mnt)
	mounted := true
	defer func() {
		if mounted {
			exec.Command("umount", mnt).Run()
		}
	}()
	t0 := time.Now()
	fstest.Run(t, "cp", "-a", src+"/.", mnt+"/")
	t.Logf("cp -a: %v", time.Since(t0))
	writeDenseFragmented(t, filepath.Join(mnt, "dense-fragmented"))
	fstest.Run(t, "sync")
	t0 = time.Now()
	want := walkKernel(t, mnt)
	t.Logf("kernel walk: %v", time.Since(t0))
	compareSource(t, src, want)
	fstest.Run(t, "umount", mnt)
	mounted = false

	fh, size := fstest.OpenImage(t, img)
	if !Probe(fh, size) {
		t.Fatal("Probe does not recognise the image")
	}
	fsys, err := OpenXFS(fh, size)
	if err != nil {
		t.Fatal(err)
	}
	if fsys.Type() != "xfs" || fsys.Label() != "cairn-test" {
		t.Errorf("Type %q Label %q", fsys.Type(), fsys.Label())
	}
	if clean, err := fsys.LogClean(); err != nil || !clean {
		t.Errorf("LogClean after umount = %v, %v; want true", clean, err)
	}
	t0 = time.Now()
	compareTree(t, fsys, want, true)
	t.Logf("reader walk: %v", time.Since(t0))

	formats := map[string]string{
		"dir10": "local", "dir50000": "btree", "fragmented-sparse": "btree",
		"dense-fragmented": "btree", "fast-link": "local", "remote-link-1023": "extents", "fifo": "dev",
	}
	for p, f := range formats {
		ino := want[p].st.Ino
		out := fstest.Run(t, "xfs_db", "-r", "-c", "inode "+strconv.FormatUint(ino, 10), "-c", "print core.format", img)
		if !strings.Contains(out, "("+f+")") {
			t.Errorf("%s: test image does not exercise the %s format: %s", p, f, out)
		}
	}
}

// writeDenseFragmented writes a file backwards, one fsynced 4 KiB block at
// a time, so it has no holes but many extents.
func writeDenseFragmented(t *testing.T, p string) {
	fh, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	blk := make([]byte, 4096)
	for i := 767; i >= 0; i-- {
		for j := range blk {
			blk[j] = byte(i*7 + j)
		}
		if _, err := fh.WriteAt(blk, int64(i)*4096); err != nil {
			t.Fatal(err)
		}
		if err := fh.Sync(); err != nil {
			t.Fatal(err)
		}
	}
}

// compareSource checks that what the kernel shows is what cp -a was given.
func compareSource(t *testing.T, src string, got map[string]*node) {
	srcNodes := sourceWalk(t, src)
	for p, s := range srcNodes {
		k, ok := got[p]
		if !ok {
			t.Errorf("%s: missing from the mounted image", p)
			continue
		}
		if p == "." {
			continue
		}
		isDir := s.st.Mode&unix.S_IFMT == unix.S_IFDIR
		if s.st.Mode != k.st.Mode || s.st.Uid != k.st.Uid || s.st.Gid != k.st.Gid || (!isDir && s.st.Size != k.st.Size) ||
			s.sha != k.sha || s.target != k.target || s.st.Rdev != k.st.Rdev || s.st.Nlink != k.st.Nlink {
			t.Errorf("%s: source and mounted image differ: %+v, %+v", p, s.st, k.st)
		}
		if s.st.Mode&unix.S_IFMT != unix.S_IFDIR && s.st.Mtim != k.st.Mtim {
			t.Errorf("%s: mtime %v, source %v", p, k.st.Mtim, s.st.Mtim)
		}
	}
}

// sourceWalk returns a private copy of the source tree's record, walked
// (and its 1.5 GiB of sparse file hashed) once per test binary.
func sourceWalk(t *testing.T, src string) map[string]*node {
	if srcWalk == nil {
		t0 := time.Now()
		srcWalk = walkKernel(t, src)
		t.Logf("source walk: %v", time.Since(t0))
	}
	out := make(map[string]*node, len(srcWalk))
	for p, n := range srcWalk {
		c := *n
		c.names = append([]string(nil), n.names...)
		out[p] = &c
	}
	return out
}

func tsTime(ts unix.Timespec) time.Time { return time.Unix(ts.Sec, ts.Nsec) }

// compareTree walks the reader from its root and checks every path
// against the kernel's record of the same image.
func compareTree(t *testing.T, fsys vfs.FS, want map[string]*node, exact bool) {
	seen := map[string]bool{}
	var walk func(ino uint64, rel string)
	walk = func(ino uint64, rel string) {
		seen[rel] = true
		w := want[rel]
		fi, err := fsys.Stat(ino)
		if err != nil {
			t.Errorf("%s: Stat: %v", rel, err)
			return
		}
		if w == nil {
			t.Errorf("%s: the reader lists a path the kernel did not", rel)
			return
		}
		checkStat(t, rel, fi, w, exact)
		switch fi.Mode & vfs.ModeType {
		case vfs.ModeDir:
			ents, err := fsys.ReadDir(ino)
			if err != nil {
				t.Errorf("%s: ReadDir: %v", rel, err)
				return
			}
			var names []string
			for _, e := range ents {
				names = append(names, e.Name)
			}
			sort.Strings(names)
			if strings.Join(names, "/") != strings.Join(w.names, "/") {
				t.Errorf("%s: ReadDir gives %d names, kernel %d", rel, len(names), len(w.names))
			}
			for i, e := range ents {
				if i%97 == 0 || len(ents) < 300 {
					le, err := fsys.Lookup(ino, e.Name)
					if err != nil || le != e {
						t.Errorf("%s/%s: Lookup = %+v, %v; ReadDir said %+v", rel, e.Name, le, err, e)
					}
				}
				walk(e.Ino, filepath.Join(rel, e.Name))
				if e.Type != 0 && want[filepath.Join(rel, e.Name)] != nil &&
					e.Type != want[filepath.Join(rel, e.Name)].st.Mode&unix.S_IFMT {
					t.Errorf("%s/%s: entry type %o", rel, e.Name, e.Type)
				}
			}
			if _, err := fsys.Lookup(ino, "no such name"); !errors.Is(err, vfs.ErrNotFound) {
				t.Errorf("%s: Lookup of a missing name: %v", rel, err)
			}
		case vfs.ModeFile:
			if sum := readAll(t, fsys, ino, rel); sum != w.sha {
				t.Errorf("%s: content differs", rel)
			}
		case vfs.ModeLink:
			if tg, err := fsys.Readlink(ino); err != nil || tg != w.target {
				t.Errorf("%s: Readlink = %d bytes, %v; want %d bytes", rel, len(tg), err, len(w.target))
			}
		}
	}
	walk(fsys.Root(), ".")
	for p := range want {
		if !seen[p] {
			t.Errorf("%s: the reader does not list it", p)
		}
	}
}

func checkStat(t *testing.T, rel string, fi vfs.FileInfo, w *node, exact bool) {
	st := &w.st
	mode, size := st.Mode, st.Size
	if !exact && mode&unix.S_IFMT == unix.S_IFDIR {
		// A prototype cannot set the sticky bit, and directory sizes are
		// the source file system's own.
		mode &^= unix.S_ISVTX
		size = fi.Size
	}
	if fi.Mode != mode || fi.UID != st.Uid || fi.GID != st.Gid || fi.Size != size {
		t.Errorf("%s: mode %o uid %d gid %d size %d; kernel %o %d %d %d", rel, fi.Mode, fi.UID, fi.GID, fi.Size, st.Mode, st.Uid, st.Gid, st.Size)
	}
	if st.Mode&unix.S_IFMT == unix.S_IFCHR || st.Mode&unix.S_IFMT == unix.S_IFBLK {
		if fi.Rdev != st.Rdev {
			t.Errorf("%s: rdev %#x, kernel %#x", rel, fi.Rdev, st.Rdev)
		}
	}
	if !exact {
		return
	}
	if fi.Ino != st.Ino || fi.Nlink != uint32(st.Nlink) || fi.Blocks != st.Blocks {
		t.Errorf("%s: ino %d nlink %d blocks %d; kernel %d %d %d", rel, fi.Ino, fi.Nlink, fi.Blocks, st.Ino, st.Nlink, st.Blocks)
	}
	if !fi.Mtime.Equal(tsTime(st.Mtim)) || !fi.Atime.Equal(tsTime(st.Atim)) || !fi.Ctime.Equal(tsTime(st.Ctim)) {
		t.Errorf("%s: times %v %v %v; kernel %v %v %v", rel, fi.Atime, fi.Mtime, fi.Ctime, tsTime(st.Atim), tsTime(st.Mtim), tsTime(st.Ctim))
	}
	if !w.btime.IsZero() && !fi.Btime.Equal(w.btime) {
		t.Errorf("%s: btime %v, kernel %v", rel, fi.Btime, w.btime)
	}
}

// readAll hashes a file read through odd-sized, unaligned ReadAt calls.
func readAll(t *testing.T, fsys vfs.FS, ino uint64, rel string) string {
	f, err := fsys.Open(ino)
	if err != nil {
		t.Errorf("%s: Open: %v", rel, err)
		return ""
	}
	h := sha256.New()
	buf := make([]byte, min(f.Size()+1, 1<<20+4097))
	var off int64
	for off < f.Size() {
		n, err := f.ReadAt(buf, off)
		if n == 0 || (err != nil && off+int64(n) < f.Size()) {
			t.Errorf("%s: ReadAt(%d) = %d, %v", rel, off, n, err)
			return ""
		}
		h.Write(buf[:n])
		off += int64(n)
	}
	if n, err := f.ReadAt(buf[:1], f.Size()); n != 0 || err == nil {
		t.Errorf("%s: read at size = %d, %v; want io.EOF", rel, n, err)
	}
	return hex.EncodeToString(h.Sum(nil))
}
