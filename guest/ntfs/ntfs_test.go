package ntfs

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode/utf16"

	"github.com/cairn-backup/cairn/guest/internal/fstest"
	"github.com/cairn-backup/cairn/guest/vfs"
)

// oracle is what ntfs-3g, mounted through FUSE, shows for one path.
type oracle struct {
	mode   fs.FileMode
	size   int64
	blocks int64
	nlink  uint32
	ino    uint64
	mtime  time.Time
	target string
	sum    string
	rdev   uint64
}

func requireNTFS3G(t *testing.T) {
	fstest.RequireTools(t, "ntfs-3g attr", "mkntfs", "ntfs-3g", "setfattr")
	if _, err := os.Stat("/dev/fuse"); err != nil || os.Geteuid() != 0 {
		fstest.Unavailable(t, fmt.Sprintf("ntfs-3g needs root and /dev/fuse (euid %d, %v)", os.Geteuid(), err))
	}
}

// buildSource writes the tree copied onto the volume with cp -a.
func buildSource(t *testing.T, src string) {
	put := func(rel string, data []byte) { fstest.WriteFile(t, filepath.Join(src, rel), data) }
	put("hello.txt", []byte("hello, world\n"))
	put("MixedCase.Txt", []byte("mixed\n"))
	put("a very long file name with spaces and several.dots.tar.gz", []byte("long\n"))
	put("ünïcödé ☃ 日本語.txt", []byte("utf-8 name\n"))
	put("empty", nil)
	put("small-resident.bin", fstest.RandBytes(1, 300))
	put("big.bin", fstest.RandBytes(2, 9<<20+123))
	put("deep/a/b/c/d/e/f/g/h/leaf.txt", []byte("deep leaf\n"))
	put("links/original.txt", []byte("linked content\n"))
	put("readonly.txt", []byte("read only\n"))
	for i := range 400 { // enough names for a multi-level $I30 B-tree
		put(fmt.Sprintf("many/file-%03d with a rather long name to fill index blocks.txt", i), []byte(strings.Repeat("x", i)))
	}
	fstest.Must(t, os.MkdirAll(filepath.Join(src, "emptydir"), 0o755))
	fstest.Must(t, os.MkdirAll(filepath.Join(src, "links/other"), 0o755))
	fstest.Must(t, os.Link(filepath.Join(src, "links/original.txt"), filepath.Join(src, "links/other/hardlink.txt")))
	fstest.Must(t, os.Link(filepath.Join(src, "links/original.txt"), filepath.Join(src, "hardlink-at-root.txt")))
	// Enough names that the $FILE_NAME attributes overflow the MFT record
	// into extension records named by an $ATTRIBUTE_LIST.
	put("links/many/original", []byte("many names\n"))
	for i := range 60 {
		fstest.Must(t, os.Link(filepath.Join(src, "links/many/original"),
			filepath.Join(src, fmt.Sprintf("links/many/hard link number %02d with a long name to fill the record", i))))
	}
	fstest.Must(t, os.Symlink("../hello.txt", filepath.Join(src, "links/rel-symlink")))
	fstest.Must(t, os.Symlink("other", filepath.Join(src, "links/dir-symlink")))
	fstest.Must(t, os.Symlink("/etc/passwd", filepath.Join(src, "links/abs-posix-symlink")))
	base := time.Date(2022, 5, 6, 7, 8, 9, 123456700, time.UTC)
	n := 0
	filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type()&fs.ModeSymlink == 0 {
			n++
			ts := base.Add(time.Duration(n) * 1001 * time.Millisecond)
			os.Chtimes(p, ts, ts)
		}
		return nil
	})
}

// reparseSymlink is a Windows symlink or junction reparse buffer.
func reparseBuffer(tag uint32, sub, print string, flags uint32) string {
	enc := func(s string) []byte {
		u := utf16.Encode([]rune(s))
		b := make([]byte, 2*len(u))
		for i, c := range u {
			binary.LittleEndian.PutUint16(b[2*i:], c)
		}
		return b
	}
	sb, pb := enc(sub), enc(print)
	term := 0 // Windows ends junction names with NUL, not symlink names
	if tag == tagMountPoint {
		term = 2
	}
	var d bytes.Buffer
	binary.Write(&d, binary.LittleEndian, []uint16{0, uint16(len(sb)), uint16(len(sb) + term), uint16(len(pb))})
	if tag == tagSymlink {
		binary.Write(&d, binary.LittleEndian, flags)
	}
	d.Write(sb)
	d.Write(make([]byte, term))
	d.Write(pb)
	d.Write(make([]byte, term))
	var out bytes.Buffer
	binary.Write(&out, binary.LittleEndian, tag)
	binary.Write(&out, binary.LittleEndian, uint16(d.Len()))
	binary.Write(&out, binary.LittleEndian, uint16(0))
	out.Write(d.Bytes())
	return "0x" + hex.EncodeToString(out.Bytes())
}

// makeVolume builds an NTFS image from src through ntfs-3g and returns
// the image and what the mounted ntfs-3g showed for every path.
func makeVolume(t *testing.T, src string, clusterSize, sectorSize int) (string, map[string]oracle) {
	tmp := t.TempDir()
	img := filepath.Join(tmp, "ntfs.img")
	fstest.Must(t, os.WriteFile(img, nil, 0o644))
	fstest.Must(t, os.Truncate(img, 96<<20))
	fstest.Run(t, "mkntfs", "-F", "-f", "-Q", "-c", fmt.Sprint(clusterSize), "-s", fmt.Sprint(sectorSize), "-L", "CAIRNNT", img)
	mnt := filepath.Join(tmp, "mnt")
	fstest.Must(t, os.Mkdir(mnt, 0o755))
	fstest.Run(t, "ntfs-3g", "-o", "compression", img, mnt)
	mounted := true
	unmount := func() {
		if mounted {
			fstest.Run(t, "umount", mnt)
			mounted = false
		}
	}
	defer unmount()
	fstest.Run(t, "cp", "-a", src+"/.", mnt)

	// A sparse file: data at three places, holes between.
	sp, err := os.Create(filepath.Join(mnt, "sparse.bin"))
	fstest.Must(t, err)
	for _, off := range []int64{0, 5 << 20, 20<<20 + 77} {
		_, err := sp.WriteAt(fstest.RandBytes(uint64(off), 70000), off)
		fstest.Must(t, err)
	}
	fstest.Must(t, sp.Truncate(24<<20))
	fstest.Must(t, sp.Close())
	// A compressed directory: files created in it are LZNT1-compressed
	// (NTFS compresses only with clusters of 4 KiB or less).
	fstest.Must(t, os.Mkdir(filepath.Join(mnt, "compressed"), 0o755))
	if clusterSize <= 4096 {
		fstest.Run(t, "setfattr", "-n", "system.ntfs_attrib_be", "-v", "0x00000810", filepath.Join(mnt, "compressed"))
	}
	text := bytes.Repeat([]byte("compressible text, compressible text, and more of it. "), 40000)
	mixed := append(append(append([]byte(nil), text[:100000]...), fstest.RandBytes(7, 200000)...), make([]byte, 300000)...)
	fstest.Must(t, os.WriteFile(filepath.Join(mnt, "compressed/text.txt"), text, 0o644))
	fstest.Must(t, os.WriteFile(filepath.Join(mnt, "compressed/mixed.bin"), mixed, 0o644))
	// Special files, stored by ntfs-3g as Interix system files.
	fstest.Must(t, syscall.Mkfifo(filepath.Join(mnt, "fifo"), 0o644))
	fstest.Must(t, syscall.Mknod(filepath.Join(mnt, "chardev"), syscall.S_IFCHR|0o644, int(1<<8|3)))
	fstest.Must(t, syscall.Mknod(filepath.Join(mnt, "blockdev"), syscall.S_IFBLK|0o644, int(259<<20|0x1234)))
	// Read-only attribute.
	fstest.Run(t, "setfattr", "-n", "system.ntfs_attrib_be", "-v", "0x00000021", filepath.Join(mnt, "readonly.txt"))
	// Windows links: ntfs-3g shows absolute ones as paths under its mount
	// point and fails lstat on these, so they are left out of its walk and
	// checked against this package's documented translation.
	fstest.Must(t, os.WriteFile(filepath.Join(mnt, "links/other/win-abs-symlink"), nil, 0o644))
	fstest.Run(t, "setfattr", "-n", "system.ntfs_reparse_data", "-v",
		reparseBuffer(tagSymlink, `\??\C:\deep\a\b`, `C:\deep\a\b`, 0), filepath.Join(mnt, "links/other/win-abs-symlink"))
	fstest.Must(t, os.Mkdir(filepath.Join(mnt, "junction"), 0o755))
	fstest.Run(t, "setfattr", "-n", "system.ntfs_reparse_data", "-v",
		reparseBuffer(tagMountPoint, `\??\C:\deep\a`, `C:\deep\a`, 0), filepath.Join(mnt, "junction"))

	fstest.Must(t, os.WriteFile(filepath.Join(mnt, "links/win-rel-symlink"), nil, 0o644))
	fstest.Run(t, "setfattr", "-n", "system.ntfs_reparse_data", "-v",
		reparseBuffer(tagSymlink, `..\hello.txt`, `..\hello.txt`, 1), filepath.Join(mnt, "links/win-rel-symlink"))

	// Remount so that ntfs-3g's view comes from the image, not its caches.
	unmount()
	fstest.Run(t, "ntfs-3g", "-o", "ro", img, mnt)
	mounted = true
	want := map[string]oracle{}
	err = filepath.WalkDir(mnt, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(mnt, p)
		fi, err := os.Lstat(p)
		if err != nil && (strings.HasPrefix(d.Name(), "win-") || d.Name() == "junction") {
			return nil
		}
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		o := oracle{mode: fi.Mode(), size: fi.Size(), blocks: st.Blocks, nlink: uint32(st.Nlink), ino: st.Ino, mtime: fi.ModTime().UTC(), rdev: st.Rdev}
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			o.target, err = os.Readlink(p)
		case fi.Mode().IsRegular():
			var b []byte
			b, err = os.ReadFile(p)
			o.sum = fstest.SHA(b)
		}
		want[filepath.ToSlash(rel)] = o
		return err
	})
	fstest.Must(t, err)
	unmount()
	return img, want
}

func TestRealVolume(t *testing.T) {
	requireNTFS3G(t)
	src := filepath.Join(t.TempDir(), "src")
	buildSource(t, src)
	// 4 KiB is mkntfs's default; 512 B makes index blocks span clusters;
	// 64 KiB makes a cluster hold several index blocks and MFT records.
	// 4 KiB sectors make 4 KiB MFT records (fixups still every 512 bytes).
	for _, g := range []struct{ cs, ss int }{{4096, 512}, {512, 512}, {65536, 512}, {4096, 4096}} {
		t.Run(fmt.Sprintf("cluster%d-sector%d", g.cs, g.ss), func(t *testing.T) { checkVolume(t, src, g.cs, g.ss) })
	}
}

func checkVolume(t *testing.T, src string, clusterSize, sectorSize int) {
	img, want := makeVolume(t, src, clusterSize, sectorSize)
	f, size := fstest.OpenImage(t, img)
	if !Probe(f, size) {
		t.Fatal("Probe = false")
	}
	vol, err := Open(f, size)
	fstest.Must(t, err)
	if g := vol.(*fsys).v; g.clusterSize != int64(clusterSize) || g.recordSize != int64(max(1024, sectorSize)) {
		t.Errorf("cluster size %d, record size %d", g.clusterSize, g.recordSize)
	}
	if vol.Type() != "ntfs" || vol.Label() != "CAIRNNT" {
		t.Errorf("Type %q Label %q", vol.Type(), vol.Label())
	}
	got := walk(t, vol)
	for p, w := range want {
		g, ok := got[p]
		if !ok {
			t.Errorf("%s: missing from the reader's tree", p)
			continue
		}
		if p == "junction" || p == "links/other/win-abs-symlink" {
			continue // ntfs-3g names its mount point: checked below
		}
		compareOne(t, p, w, g)
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			t.Errorf("%s: listed by the reader, not by ntfs-3g", p)
		}
	}
	checkSpecial(t, vol, got, clusterSize)
	for p, target := range map[string]string{"links/other/win-abs-symlink": "../../deep/a/b", "junction": "deep/a", "links/win-rel-symlink": "../hello.txt"} {
		if g := got[p]; g.fi.Mode&vfs.ModeType != vfs.ModeLink || g.target != target {
			t.Errorf("%s: mode %o target %q, want a link to %q", p, g.fi.Mode, g.target, target)
		}
	}
}

type seen struct {
	fi     vfs.FileInfo
	sum    string
	target string
	units  int64
}

func walk(t *testing.T, vol vfs.FS) map[string]seen {
	out := map[string]seen{}
	var rec func(ino uint64, p string, depth int)
	rec = func(ino uint64, p string, depth int) {
		if depth > 40 {
			t.Fatalf("%s: too deep", p)
		}
		fi, err := vol.Stat(ino)
		if err != nil {
			t.Fatalf("Stat(%s): %v", p, err)
		}
		s := seen{fi: fi}
		switch fi.Mode & vfs.ModeType {
		case vfs.ModeDir:
			ents, err := vol.ReadDir(ino)
			if err != nil {
				t.Fatalf("ReadDir(%s): %v", p, err)
			}
			for _, e := range ents {
				cp := path.Join(p, e.Name)
				if g, err := vol.Lookup(ino, e.Name); err != nil || g != e {
					t.Fatalf("Lookup(%s) = %+v, %v; ReadDir said %+v", cp, g, err, e)
				}
				rec(e.Ino, cp, depth+1)
				if e.Type != 0 && e.Type != out[cp].fi.Mode&vfs.ModeType {
					t.Errorf("%s: DirEntry type %o, Stat mode %o", cp, e.Type, out[cp].fi.Mode)
				}
			}
		case vfs.ModeLink:
			s.target, err = vol.Readlink(ino)
			if err != nil {
				t.Fatalf("Readlink(%s): %v", p, err)
			}
		case vfs.ModeFile:
			f, err := vol.Open(ino)
			if err != nil {
				t.Fatalf("Open(%s): %v", p, err)
			}
			b := make([]byte, f.Size())
			if n, err := f.ReadAt(b, 0); n != len(b) || (err != nil && err != io.EOF) {
				t.Fatalf("ReadAt(%s): %d, %v", p, n, err)
			}
			if len(b) > 5 { // unaligned partial reads agree
				off := int64(len(b) / 3)
				part := make([]byte, len(b)/2)
				n, _ := f.ReadAt(part, off)
				if n != len(part) || !bytes.Equal(part, b[off:off+int64(n)]) {
					t.Errorf("%s: partial read at %d differs", p, off)
				}
			}
			if n, err := f.ReadAt(make([]byte, 1), f.Size()); n != 0 || err != io.EOF {
				t.Errorf("%s: read at size: %d, %v", p, n, err)
			}
			s.sum = fstest.SHA(b)
			s.units = f.(*file).st.unit
		}
		out[p] = s
	}
	rec(vol.Root(), ".", 0)
	return out
}

func compareOne(t *testing.T, p string, w oracle, g seen) {
	t.Helper()
	wantType := map[bool]uint32{true: vfs.ModeDir}[w.mode.IsDir()]
	switch {
	case w.mode&fs.ModeNamedPipe != 0:
		wantType = vfs.ModeFIFO
	case w.mode&fs.ModeSocket != 0:
		wantType = vfs.ModeSocket
	case w.mode&fs.ModeCharDevice != 0:
		wantType = vfs.ModeChar
	case w.mode&fs.ModeDevice != 0:
		wantType = vfs.ModeBlock
	case w.mode&fs.ModeSymlink != 0:
		wantType = vfs.ModeLink
	case w.mode.IsRegular():
		wantType = vfs.ModeFile
	}
	if g.fi.Mode&vfs.ModeType != wantType {
		t.Errorf("%s: type %o, ntfs-3g %v", p, g.fi.Mode&vfs.ModeType, w.mode)
		return
	}
	if g.fi.Ino != w.ino && p != "." {
		t.Errorf("%s: ino %d, ntfs-3g %d", p, g.fi.Ino, w.ino)
	}
	if g.fi.Nlink != w.nlink {
		t.Errorf("%s: nlink %d, ntfs-3g %d", p, g.fi.Nlink, w.nlink)
	}
	if !g.fi.Mtime.Equal(w.mtime) {
		t.Errorf("%s: mtime %v, ntfs-3g %v", p, g.fi.Mtime, w.mtime)
	}
	if wantType == vfs.ModeChar || wantType == vfs.ModeBlock {
		if g.fi.Rdev != w.rdev {
			t.Errorf("%s: rdev %#x, ntfs-3g %#x", p, g.fi.Rdev, w.rdev)
		}
		return
	}
	if g.fi.Size != w.size {
		t.Errorf("%s: size %d, ntfs-3g %d", p, g.fi.Size, w.size)
	}
	switch wantType {
	case vfs.ModeFile:
		if g.sum != w.sum {
			t.Errorf("%s: content differs from ntfs-3g's", p)
		}
		wantPerm := uint32(0o644)
		if p == "readonly.txt" {
			wantPerm = 0o444
		}
		if g.fi.Mode&0o7777 != wantPerm {
			t.Errorf("%s: mode %o", p, g.fi.Mode)
		}
	case vfs.ModeLink:
		if g.target != w.target {
			t.Errorf("%s: Readlink %q, ntfs-3g %q", p, g.target, w.target)
		}
	}
}

// checkSpecial checks what the generic comparison cannot: holes,
// compression, hard links and hidden metafiles.
func checkSpecial(t *testing.T, vol vfs.FS, got map[string]seen, clusterSize int) {
	sp := got["sparse.bin"]
	if sp.fi.Size != 24<<20 || sp.fi.Blocks*512 >= sp.fi.Size/2 {
		t.Errorf("sparse.bin: size %d blocks %d: not sparse", sp.fi.Size, sp.fi.Blocks)
	}
	if clusterSize <= 4096 {
		for _, p := range []string{"compressed/text.txt", "compressed/mixed.bin"} {
			if got[p].units == 0 {
				t.Errorf("%s: not read as a compressed stream; the test did not compress it", p)
			}
		}
		if c := got["compressed/text.txt"]; c.fi.Blocks*512 >= c.fi.Size/4 {
			t.Errorf("compressed/text.txt: %d blocks for %d bytes", c.fi.Blocks, c.fi.Size)
		}
	}
	a, b, c := got["links/original.txt"], got["links/other/hardlink.txt"], got["hardlink-at-root.txt"]
	if a.fi.Ino != b.fi.Ino || a.fi.Ino != c.fi.Ino || a.fi.Nlink != 3 {
		t.Errorf("hard links: inos %d %d %d nlink %d", a.fi.Ino, b.fi.Ino, c.fi.Ino, a.fi.Nlink)
	}
	m := got["links/many/original"]
	if m.fi.Nlink != 61 || got["links/many/hard link number 59 with a long name to fill the record"].fi.Ino != m.fi.Ino {
		t.Errorf("links/many: nlink %d", m.fi.Nlink)
	}
	if in, err := vol.(*fsys).loadInode(m.fi.Ino); err != nil || len(in.names) != 61 {
		t.Errorf("links/many: %v", err)
	}
	rec, err := vol.(*fsys).readRecord(m.fi.Ino)
	fstest.Must(t, err)
	_, attrs, err := parseRecord(rec, vol.(*fsys).v, "test")
	fstest.Must(t, err)
	hasList := false
	for _, a := range attrs {
		hasList = hasList || a.typ == atAttrList
	}
	if !hasList {
		t.Error("links/many/original has no $ATTRIBUTE_LIST: the test did not overflow its record")
	}
	for _, name := range []string{"$MFT", "$Bitmap", "$Extend", "$Volume", "$UpCase"} {
		if _, err := vol.Lookup(vol.Root(), name); !errors.Is(err, vfs.ErrNotFound) {
			t.Errorf("metafile %s visible: %v", name, err)
		}
	}
	if _, err := vol.Open(vol.Root()); !errors.Is(err, vfs.ErrNotFile) {
		t.Errorf("Open(root): %v", err)
	}
	if _, err := vol.Readlink(got["hello.txt"].fi.Ino); !errors.Is(err, vfs.ErrNotLink) {
		t.Errorf("Readlink(file): %v", err)
	}
	if _, err := vol.ReadDir(got["hello.txt"].fi.Ino); !errors.Is(err, vfs.ErrNotDir) {
		t.Errorf("ReadDir(file): %v", err)
	}
	if _, err := vol.Stat(1 << 40); !errors.Is(err, vfs.ErrNotFound) {
		t.Errorf("Stat(huge): %v", err)
	}
}
