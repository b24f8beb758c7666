package fat

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/guest/internal/fstest"
	"github.com/cairn-backup/cairn/guest/vfs"
)

// mtoolsEnv makes mtools skip its geometry check, read and write UTF-8
// names and store times as UTC.
var mtoolsEnv = []string{"MTOOLS_SKIP_CHECK=1", "LC_ALL=C.UTF-8", "TZ=UTC"}

var baseTime = time.Date(2021, 3, 4, 5, 6, 8, 0, time.UTC)

// buildSource writes the tree every FAT test copies in. clusterSize sizes
// the one-cluster file; big is the size of the many-cluster file.
func buildSource(t *testing.T, dir string, clusterSize, big int) {
	n := 0
	put := func(rel string, data []byte) {
		n++
		writeFile(t, filepath.Join(dir, rel), data, baseTime.Add(time.Duration(n)*2*time.Second))
	}
	put("hello.txt", []byte("hello, world\n"))
	put("README.TXT", []byte("upper case 8.3 name\n"))
	put("lower.txt", []byte("lower case 8.3 name, NT flag 0x08|0x10\n"))
	put("lowbase.TXT", []byte("lower base, upper extension\n"))
	put("MixedCase.Txt", []byte("mixed case needs a long name\n"))
	put("a very long file name with spaces and several.dots.tar.gz", []byte("long\n"))
	put("ünïcödé ☃ 日本語.txt", []byte("utf-8 name\n"))
	put("empty", nil)
	put("one-cluster.bin", fstest.RandBytes(1, clusterSize))
	put("cluster-plus-one.bin", fstest.RandBytes(2, clusterSize+1))
	put("big.bin", fstest.RandBytes(3, big))
	put("deep/a/b/c/d/e/f/g/h/leaf.txt", []byte("deep leaf\n"))
	put("readonly.txt", []byte("read only\n"))
	for i := range 300 {
		put(fmt.Sprintf("many/file-%03d with a long name.txt", i), []byte(strings.Repeat("x", i)))
	}
	if err := os.MkdirAll(filepath.Join(dir, "emptydir"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, "readonly.txt"), 0o444); err != nil {
		t.Fatal(err)
	}
}

// makeImage formats img with mkfs.vfat and copies src in with mtools, then
// adds a fragmented file by interleaving writes.
func makeImage(t *testing.T, fatBits, sizeKiB, secPerClus int, src string) (img string, frag []byte) {
	requireFATTools(t)
	tmp := t.TempDir()
	img = filepath.Join(tmp, "fat.img")
	fstest.Run(t, "mkfs.vfat", "-C", "-F", fmt.Sprint(fatBits), "-s", fmt.Sprint(secPerClus), "-n", "CAIRNTEST", img, fmt.Sprint(sizeKiB))
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"-i", img, "-s", "-m", "-Q"}
	for _, e := range ents {
		args = append(args, filepath.Join(src, e.Name()))
	}
	fstest.RunEnv(t, mtoolsEnv, "mcopy", append(args, "::/")...)
	fstest.RunEnv(t, mtoolsEnv, "mattrib", "-i", img, "+r", "::/readonly.txt")

	// Fragmentation: one-cluster fillers alternate with keepers; deleting
	// the fillers leaves one-cluster holes that the next file must use.
	cs := secPerClus * 512
	fill := filepath.Join(tmp, "filler")
	keep := filepath.Join(tmp, "keeper")
	writeFile(t, fill, fstest.RandBytes(9, cs), baseTime)
	writeFile(t, keep, fstest.RandBytes(10, cs), baseTime)
	fstest.RunEnv(t, mtoolsEnv, "mmd", "-i", img, "::/frag")
	for i := range 8 {
		fstest.RunEnv(t, mtoolsEnv, "mcopy", "-i", img, "-m", fill, fmt.Sprintf("::/frag/fill%d", i))
		fstest.RunEnv(t, mtoolsEnv, "mcopy", "-i", img, "-m", keep, fmt.Sprintf("::/frag/keep%d", i))
	}
	for i := range 8 {
		fstest.RunEnv(t, mtoolsEnv, "mdel", "-i", img, fmt.Sprintf("::/frag/fill%d", i))
	}
	if fatBits == 32 {
		resetFSInfoHint(t, img) // else mtools allocates after the last file
	}
	frag = fstest.RandBytes(11, 6*cs+100)
	fragSrc := filepath.Join(tmp, "fragmented.bin")
	writeFile(t, fragSrc, frag, baseTime)
	fstest.RunEnv(t, mtoolsEnv, "mcopy", "-i", img, "-m", fragSrc, "::/frag/fragmented.bin")
	return img, frag
}

// resetFSInfoHint marks the FAT32 FSInfo next-free hint unknown.
func resetFSInfoHint(t *testing.T, img string) {
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var b [512]byte
	if _, err := f.ReadAt(b[:], 0); err != nil {
		t.Fatal(err)
	}
	fsinfo := int64(binary.LittleEndian.Uint16(b[48:])) * int64(binary.LittleEndian.Uint16(b[11:]))
	if _, err := f.WriteAt([]byte{0xFF, 0xFF, 0xFF, 0xFF}, fsinfo+492); err != nil {
		t.Fatal(err)
	}
}

func openImage(t testing.TB, img string) (vfs.FS, *os.File) {
	t.Helper()
	f, size := fstest.OpenImage(t, img)
	if !Probe(f, size) {
		t.Fatalf("Probe(%s) = false", img)
	}
	fsys, err := Open(f, size)
	if err != nil {
		t.Fatalf("Open(%s): %v", img, err)
	}
	return fsys, f
}

func TestRealImages(t *testing.T) {
	for _, tc := range []struct {
		bits, sizeKiB, spc, big int
	}{
		{12, 6 << 10, 4, 1 << 20},  // 2 KiB clusters, < 4085 of them
		{16, 32 << 10, 4, 4 << 20}, // 2 KiB clusters, ~16000
		{32, 40 << 10, 1, 4 << 20}, // 512 B clusters, ~80000
	} {
		t.Run(fmt.Sprintf("FAT%d", tc.bits), func(t *testing.T) {
			src := filepath.Join(t.TempDir(), "src")
			buildSource(t, src, tc.spc*512, tc.big)
			want := scanSource(t, src)
			img, frag := makeImage(t, tc.bits, tc.sizeKiB, tc.spc, src)
			vol, _ := openImage(t, img)
			s := vol.(*fsys)
			if int(s.g.kind) != tc.bits {
				t.Fatalf("detected FAT%d, made FAT%d", s.g.kind, tc.bits)
			}
			if vol.Type() != "vfat" || vol.Label() != "CAIRNTEST" {
				t.Errorf("Type %q Label %q", vol.Type(), vol.Label())
			}
			got := walkFS(t, vol)
			compareTree(t, want, got, frag)
			checkFragmented(t, vol, frag)
			checkLookupFolds(t, vol)
			checkInodes(t, vol)
		})
	}
}

func compareTree(t *testing.T, want map[string]*srcEntry, got map[string]walked, frag []byte) {
	t.Helper()
	for p, w := range want {
		g, ok := got[p]
		if !ok {
			t.Errorf("%s: missing from the reader's tree; it has:\n%s", p, describe(got))
			continue
		}
		if w.dir != g.fi.IsDir() {
			t.Errorf("%s: dir %v, reader mode %o", p, w.dir, g.fi.Mode)
			continue
		}
		if w.dir {
			if g.fi.Mode != vfs.ModeDir|0o755 {
				t.Errorf("%s: mode %o", p, g.fi.Mode)
			}
			extra := uint32(0)
			if p == "." {
				extra = 1 // the frag directory added after the source was scanned
			}
			if g.fi.Nlink != w.nlinks+extra {
				t.Errorf("%s: nlink %d, want %d", p, g.fi.Nlink, w.nlinks+extra)
			}
			if g.fi.Size <= 0 || g.fi.Blocks*512 < g.fi.Size {
				t.Errorf("%s: directory size %d blocks %d", p, g.fi.Size, g.fi.Blocks)
			}
			continue
		}
		wantMode := uint32(vfs.ModeFile | 0o644)
		if w.ro {
			wantMode = vfs.ModeFile | 0o444
		}
		if g.fi.Mode != wantMode || g.fi.Nlink != 1 || g.fi.UID != 0 || g.fi.GID != 0 {
			t.Errorf("%s: mode %o nlink %d uid %d gid %d", p, g.fi.Mode, g.fi.Nlink, g.fi.UID, g.fi.GID)
		}
		if g.fi.Size != w.size || g.sum != w.sum {
			t.Errorf("%s: size %d sha256 %s, want %d %s", p, g.fi.Size, g.sum, w.size, w.sum)
		}
		if g.fi.Blocks*512 < g.fi.Size || g.fi.Blocks*512 >= g.fi.Size+64<<10 {
			t.Errorf("%s: blocks %d for size %d", p, g.fi.Blocks, g.fi.Size)
		}
		if wm := w.mtime.Truncate(2 * time.Second); !g.fi.Mtime.Equal(wm) || !g.fi.Ctime.Equal(wm) {
			t.Errorf("%s: mtime %v ctime %v, want %v", p, g.fi.Mtime, g.fi.Ctime, wm)
		}
		if g.fi.Btime.IsZero() || g.fi.Atime.IsZero() {
			t.Errorf("%s: btime %v atime %v", p, g.fi.Btime, g.fi.Atime)
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok && !strings.HasPrefix(p, "frag") {
			t.Errorf("%s: in the reader's tree, not in the source", p)
		}
	}
	// The deleted fillers (0xE5 entries) must not show.
	var fragNames []string
	for p := range got {
		if strings.HasPrefix(p, "frag/") {
			fragNames = append(fragNames, p)
		}
	}
	if len(fragNames) != 9 {
		t.Errorf("frag/ holds %v, want keep0..keep7 and fragmented.bin", fragNames)
	}
	if g := got["frag/fragmented.bin"]; g.sum != fstest.SHA(frag) {
		t.Errorf("frag/fragmented.bin: sha256 %s, want %s", g.sum, fstest.SHA(frag))
	}
}

// checkFragmented proves the interleaving did fragment the file, so the
// content check above covered reads across runs.
func checkFragmented(t *testing.T, fsys vfs.FS, frag []byte) {
	d, err := fsys.Lookup(fsys.Root(), "frag")
	if err != nil {
		t.Fatal(err)
	}
	e, err := fsys.Lookup(d.Ino, "fragmented.bin")
	if err != nil {
		t.Fatal(err)
	}
	f, err := fsys.Open(e.Ino)
	if err != nil {
		t.Fatal(err)
	}
	if runs := f.(*file).runs; len(runs) < 4 {
		t.Errorf("fragmented.bin has %d runs %v; the test did not fragment it", len(runs), runs)
	}
	// A read spanning every run at once.
	b := make([]byte, len(frag)-3)
	if n, err := f.ReadAt(b, 1); n != len(b) || err != nil && err != io.EOF || fstest.SHA(b) != fstest.SHA(frag[1:len(frag)-2]) {
		t.Errorf("spanning read: %d, %v", n, err)
	}
}

func checkLookupFolds(t *testing.T, fsys vfs.FS) {
	for _, name := range []string{"readme.txt", "LOWER.TXT", "mixedcase.txt", "MIXEDC~1.TXT"} {
		if _, err := fsys.Lookup(fsys.Root(), name); err != nil {
			t.Errorf("Lookup(%q): %v", name, err)
		}
	}
	if _, err := fsys.Lookup(fsys.Root(), "absent"); !errors.Is(err, vfs.ErrNotFound) {
		t.Errorf("Lookup(absent): %v", err)
	}
}

func checkInodes(t *testing.T, fsys vfs.FS) {
	for _, ino := range []uint64{0, 2, 33, 1 << 40} {
		if _, err := fsys.Stat(ino); !errors.Is(err, vfs.ErrNotFound) {
			t.Errorf("Stat(%d) = %v, want ErrNotFound", ino, err)
		}
	}
	if _, err := fsys.Open(fsys.Root()); !errors.Is(err, vfs.ErrNotFile) {
		t.Errorf("Open(root) = %v", err)
	}
	e, _ := fsys.Lookup(fsys.Root(), "hello.txt")
	if _, err := fsys.ReadDir(e.Ino); !errors.Is(err, vfs.ErrNotDir) {
		t.Errorf("ReadDir(file) = %v", err)
	}
	if _, err := fsys.Readlink(e.Ino); !errors.Is(err, vfs.ErrNotLink) {
		t.Errorf("Readlink(file) = %v", err)
	}
}
