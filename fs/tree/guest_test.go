package tree

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/fs/testimg"
	"github.com/cairn-backup/cairn/guest"
	"github.com/cairn-backup/cairn/guest/vfs"
	"github.com/cairn-backup/cairn/repo"
)

// fakefs is a tiny file system format for testing the tree without the
// real readers: "CAIRNFAKEFS\0", a little-endian uint32 length, JSON
// metadata, and file content at the offsets the metadata gives, read
// through the volume's io.ReaderAt (so corrupt blocks show).
const fakeMagic = "CAIRNFAKEFS\x00"

type fakeInode struct {
	Mode    uint32
	UID     uint32
	GID     uint32
	Nlink   uint32
	Size    int64
	Blocks  int64
	Mtime   int64
	Target  string      `json:",omitempty"`
	Entries [][2]string `json:",omitempty"` // name, ino
	Data    int64       `json:",omitempty"` // offset of the content in the volume
	Bad     bool        `json:",omitempty"` // Stat fails as malformed
}

type fakeFS struct {
	r      io.ReaderAt
	inodes map[uint64]fakeInode
}

var fakeReader = guest.Reader{
	Name: "fake",
	Probe: func(r io.ReaderAt, size int64) bool {
		b := make([]byte, len(fakeMagic))
		_, err := r.ReadAt(b, 0)
		return err == nil && string(b) == fakeMagic
	},
	Open: func(r io.ReaderAt, size int64) (vfs.FS, error) {
		h := make([]byte, len(fakeMagic)+4)
		if _, err := r.ReadAt(h, 0); err != nil {
			return nil, err
		}
		n := binary.LittleEndian.Uint32(h[len(fakeMagic):])
		if int64(n) > size {
			return nil, fmt.Errorf("%w: fake: metadata length %d", vfs.ErrMalformed, n)
		}
		meta := make([]byte, n)
		if _, err := r.ReadAt(meta, int64(len(h))); err != nil {
			return nil, err
		}
		fs := &fakeFS{r: r}
		if err := json.Unmarshal(meta, &fs.inodes); err != nil {
			return nil, fmt.Errorf("%w: fake: %v", vfs.ErrMalformed, err)
		}
		return fs, nil
	},
}

func (f *fakeFS) Type() string  { return "fake" }
func (f *fakeFS) Label() string { return "" }
func (f *fakeFS) Root() uint64  { return 1 }

func (f *fakeFS) inode(ino uint64) (fakeInode, error) {
	in, ok := f.inodes[ino]
	if !ok {
		return in, vfs.ErrNotFound
	}
	if in.Bad {
		return in, fmt.Errorf("%w: fake: inode %d is damaged", vfs.ErrMalformed, ino)
	}
	return in, nil
}

func (f *fakeFS) Stat(ino uint64) (vfs.FileInfo, error) {
	in, err := f.inode(ino)
	if err != nil {
		return vfs.FileInfo{}, err
	}
	t := time.Unix(in.Mtime, 0)
	return vfs.FileInfo{Ino: ino, Mode: in.Mode, Nlink: in.Nlink, UID: in.UID, GID: in.GID, Size: in.Size,
		Blocks: in.Blocks, Atime: t.Add(time.Hour), Mtime: t, Ctime: t}, nil
}

func (f *fakeFS) ReadDir(ino uint64) ([]vfs.DirEntry, error) {
	in, err := f.inode(ino)
	if err != nil {
		return nil, err
	}
	var out []vfs.DirEntry
	for _, e := range in.Entries {
		var n uint64
		fmt.Sscan(e[1], &n)
		out = append(out, vfs.DirEntry{Name: e[0], Ino: n, Type: f.inodes[n].Mode & vfs.ModeType})
	}
	return out, nil
}

func (f *fakeFS) Lookup(dir uint64, name string) (vfs.DirEntry, error) {
	es, err := f.ReadDir(dir)
	if err != nil {
		return vfs.DirEntry{}, err
	}
	for _, e := range es {
		if e.Name == name {
			return e, nil
		}
	}
	return vfs.DirEntry{}, vfs.ErrNotFound
}

func (f *fakeFS) Readlink(ino uint64) (string, error) {
	in, err := f.inode(ino)
	if err != nil {
		return "", err
	}
	return in.Target, nil
}

func (f *fakeFS) Open(ino uint64) (vfs.File, error) {
	in, err := f.inode(ino)
	if err != nil {
		return nil, err
	}
	return fakeFile{io.NewSectionReader(f.r, in.Data, in.Size)}, nil
}

type fakeFile struct{ *io.SectionReader }

// fakeImage writes a fake file system into partition 1 of a GPT disk and
// returns the image and the content of /big (sparse) and /hello.
func fakeImage(t *testing.T, dir string) (*testimg.Image, []byte, []byte) {
	img := testimg.Make(t, filepath.Join(dir, "fake.raw"), testimg.Spec{
		Size: 32 * MiB, Label: "gpt", Seed: 3,
		Parts: []testimg.PartSpec{{Size: 16 * MiB}, {Size: 8 * MiB, Fill: testimg.Random}},
	})
	hello := []byte("hello, guest\n")
	big := make([]byte, 3*MiB) // data, a 2 MiB hole, data
	for i := range MiB {
		big[i] = byte(i * 7)
		big[2*MiB+i] = byte(i * 13)
	}
	const mtime = 1700000000
	inodes := map[uint64]fakeInode{
		1: {Mode: vfs.ModeDir | 0o755, Nlink: 3, Mtime: mtime, Entries: [][2]string{
			{"etc", "2"}, {"hello", "3"}, {"hello-link", "3"}, {"sym", "4"}, {"fifo", "5"}, {"big", "6"},
			{"bad", "7"}, {"../evil", "3"}, {"hello", "6"}}},
		2: {Mode: vfs.ModeDir | 0o750, UID: 0, GID: 4, Nlink: 2, Mtime: mtime - 10, Entries: [][2]string{{"passwd", "8"}}},
		3: {Mode: vfs.ModeFile | 0o640, UID: 1000, GID: 1000, Nlink: 2, Size: int64(len(hello)), Blocks: 8, Mtime: mtime - 20, Data: 4 * MiB},
		4: {Mode: vfs.ModeLink | 0o777, Nlink: 1, Size: 5, Mtime: mtime - 30, Target: "hello"},
		5: {Mode: vfs.ModeFIFO | 0o600, Nlink: 1, Mtime: mtime - 40},
		6: {Mode: vfs.ModeFile | 0o600, Nlink: 1, Size: int64(len(big)), Blocks: 2 * MiB / 512, Mtime: mtime - 50, Data: 6 * MiB},
		7: {Bad: true},
		8: {Mode: vfs.ModeFile | 0o644, Nlink: 1, Size: 5, Blocks: 8, Mtime: mtime - 60, Data: 5 * MiB},
	}
	meta, _ := json.Marshal(inodes)
	p1 := img.Parts[0]
	h := append([]byte(fakeMagic), binary.LittleEndian.AppendUint32(nil, uint32(len(meta)))...)
	testimg.WriteAt(t, img.Path, append(h, meta...), p1.Start)
	testimg.WriteAt(t, img.Path, hello, p1.Start+4*MiB)
	testimg.WriteAt(t, img.Path, []byte("root\n"), p1.Start+5*MiB)
	testimg.WriteAt(t, img.Path, big, p1.Start+6*MiB)
	return img, hello, big
}

func TestGuestFileSystem(t *testing.T) {
	f := newFixture(t)
	img, hello, big := fakeImage(t, f.dir)
	// vdb: the same file system on a disk without a partition table.
	vdb := filepath.Join(f.dir, "vdb.raw")
	p1 := img.Parts[0]
	os.WriteFile(vdb, img.Bytes(t)[p1.Start:p1.Start+p1.Size], 0o600)
	p := f.backup(t, "vm", [2]string{"vda", img.Path}, [2]string{"vdb", vdb})
	tr := f.tree(Options{Readers: []guest.Reader{fakeReader}})
	defer tr.Close()
	pdir := p.Time.UTC().Format(PointDirLayout)
	if got := names(t, walk(t, tr, "vm", pdir, "vdb")); !slices.Equal(got, []string{"fs"}) {
		t.Fatalf("vdb/ lists %v", got)
	}
	if n, err := tr.ResolveGuest(p, "vdb:/hello"); err != nil || !bytes.Equal(readAll(t, n, 7), hello) {
		t.Fatalf("vdb:/hello: %v", err)
	}

	if got := names(t, walk(t, tr, "vm", pdir, "vda")); !slices.Equal(got, []string{"p1", "p1.raw", "p2.raw"}) {
		t.Fatalf("vda/ lists %v", got)
	}
	root := walk(t, tr, "vm", pdir, "vda", "p1")
	if a := root.Attr(); a.Mode != syscall.S_IFDIR|0o755 || a.Guest == nil || a.Guest.Nlink != 3 {
		t.Fatalf("root attributes %+v", a)
	}
	// The guest's order, without the names that cannot be path
	// components and without the repeated "hello".
	if got := names(t, root); !slices.Equal(got, []string{"etc", "hello", "hello-link", "sym", "fifo", "big", "bad"}) {
		t.Fatalf("p1/ lists %v", got)
	}
	h1, h2 := walk(t, tr, "vm", pdir, "vda", "p1", "hello"), walk(t, tr, "vm", pdir, "vda", "p1", "hello-link")
	a := h1.Attr()
	if a.Ino != h2.Attr().Ino || a.Guest.Nlink != 2 || a.Guest.UID != 1000 || a.Mode != syscall.S_IFREG|0o640 ||
		a.Mtime.Unix() != 1700000000-20 || a.Guest.Atime.Sub(a.Mtime) != time.Hour {
		t.Fatalf("hard link attributes %+v / %+v", a, h2.Attr())
	}
	if got := readAll(t, h1, 4); !bytes.Equal(got, hello) {
		t.Fatalf("hello reads %q", got)
	}
	if got := readAll(t, walk(t, tr, "vm", pdir, "vda", "p1", "big"), 300000); !bytes.Equal(got, big) {
		t.Fatal("big differs")
	}
	if target, err := walk(t, tr, "vm", pdir, "vda", "p1", "sym").(Symlink).Readlink(); err != nil || target != "hello" {
		t.Fatalf("readlink: %q %v", target, err)
	}
	if a := walk(t, tr, "vm", pdir, "vda", "p1", "fifo").Attr(); a.Mode != syscall.S_IFIFO|0o600 {
		t.Fatalf("fifo mode %o", a.Mode)
	}
	if _, err := root.(Dir).Lookup("nope"); !errors.Is(err, ErrNoEntry) {
		t.Fatalf("lookup of a missing name: %v", err)
	}
	// A damaged inode: an error wrapping ErrMalformed naming where, logged;
	// the rest still reads.
	_, err := root.(Dir).Lookup("bad")
	var ge *GuestError
	if !errors.As(err, &ge) || !errors.Is(err, vfs.ErrMalformed) || ge.Point != p.ID || ge.Volume != "p1" || ge.Path != "/bad" {
		t.Fatalf("lookup of a damaged inode: %v", err)
	}
	if !strings.Contains(f.logs.String(), "restore point "+p.ID+" disk vda volume p1 path /bad") {
		t.Fatalf("log:\n%s", f.logs)
	}
	if got := readAll(t, walk(t, tr, "vm", pdir, "vda", "p1", "etc", "passwd"), 4096); string(got) != "root\n" {
		t.Fatalf("etc/passwd reads %q", got)
	}

	t.Run("copy out", func(t *testing.T) {
		n, err := tr.ResolveGuest(p, "vda/p1:/")
		if err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(t.TempDir(), "out")
		var failed []string
		sum, err := CopyOut(context.Background(), n, "/", out, CopyOptions{Owners: os.Geteuid() == 0,
			OnError: func(path string, err error) { failed = append(failed, path) }})
		if err != nil {
			t.Fatal(err)
		}
		if sum.Errors != 1 || len(failed) != 1 || failed[0] != filepath.Join(out, "bad") || sum.HardLinks != 1 || sum.Symlinks != 1 {
			t.Fatalf("summary %+v, failed %v", sum, failed)
		}
		var st1, st2 syscall.Stat_t
		syscall.Stat(filepath.Join(out, "hello"), &st1)
		syscall.Stat(filepath.Join(out, "hello-link"), &st2)
		if st1.Ino != st2.Ino || st1.Mode != syscall.S_IFREG|0o640 || st1.Mtim.Sec != 1700000000-20 || st1.Atim.Sec != 1700000000-20+3600 {
			t.Fatalf("hello copied as %+v / %+v", st1, st2)
		}
		if os.Geteuid() == 0 && st1.Uid != 1000 {
			t.Fatalf("owner %d", st1.Uid)
		}
		gotBig, _ := os.ReadFile(filepath.Join(out, "big"))
		var stb syscall.Stat_t
		syscall.Stat(filepath.Join(out, "big"), &stb)
		if !bytes.Equal(gotBig, big) || stb.Blocks*512 > int64(len(big))-MiB {
			t.Fatalf("big: equal %v, %d blocks (want a hole)", bytes.Equal(gotBig, big), stb.Blocks)
		}
		if target, _ := os.Readlink(filepath.Join(out, "sym")); target != "hello" {
			t.Fatalf("symlink -> %q", target)
		}
		if st, err := os.Stat(filepath.Join(out, "etc")); err != nil || st.Mode().Perm() != 0o750 || st.ModTime().Unix() != 1700000000-10 {
			t.Fatalf("etc copied as %v %v", st, err)
		}
		if st, err := os.Lstat(filepath.Join(out, "fifo")); err != nil || st.Mode()&os.ModeNamedPipe == 0 {
			t.Fatalf("fifo copied as %v %v", st, err)
		}
		// One file, to a directory that exists.
		n, _ = tr.ResolveGuest(p, "vda/p1:etc/passwd")
		if _, err := CopyOut(context.Background(), n, "passwd", out, CopyOptions{}); err != nil {
			t.Fatal(err)
		}
		if got, _ := os.ReadFile(filepath.Join(out, "passwd")); string(got) != "root\n" {
			t.Fatalf("passwd copied as %q", got)
		}
		for _, spec := range []string{"vda/p2:/", "vda:/", "vdb/p1:/", "vda/p1:/nope", "vda/p1"} {
			if _, err := tr.ResolveGuest(p, spec); err == nil {
				t.Errorf("ResolveGuest(%q) found something", spec)
			}
		}
	})

	t.Run("corrupt block under a guest file", func(t *testing.T) {
		dr, err := f.repo.OpenDisk(p, "vda", 0)
		if err != nil {
			t.Fatal(err)
		}
		bad := (img.Parts[0].Start + 6*MiB) / 65536 // the first block of big
		e, err := dr.Entry(bad)
		if err != nil || e.IsZero() {
			t.Fatal(e, err)
		}
		pack := e.Pack.String()
		packPath := filepath.Join(f.repo.Dir(), "packs", pack[:2], pack+".pack")
		raw, _ := os.ReadFile(packPath)
		raw[int(e.Offset)+int(e.Length)/2] ^= 0x55
		os.WriteFile(packPath, raw, 0o600)
		tr := f.tree(Options{Readers: []guest.Reader{fakeReader}})
		defer tr.Close()
		h, err := walk(t, tr, "vm", pdir, "vda", "p1", "big").(File).Open()
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 4096)
		n, err := h.ReadAt(buf, 100)
		var re *ReadError
		if n != 0 || !errors.As(err, &re) || !errors.Is(err, repo.ErrCorrupt) || re.Offset != bad*65536+100 {
			t.Fatalf("read over a corrupt block: %d, %v", n, err)
		}
		if !strings.Contains(f.logs.String(), fmt.Sprintf("restore point %s disk vda offset %d", p.ID, bad*65536+100)) {
			t.Fatalf("no log line naming the offset:\n%s", f.logs)
		}
		if got := readAll(t, walk(t, tr, "vm", pdir, "vda", "p1", "hello"), 4096); !bytes.Equal(got, hello) {
			t.Fatal("other files must still read")
		}
	})
}
