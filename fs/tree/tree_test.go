package tree

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/fs/testimg"
	"github.com/cairn-backup/cairn/repo"
)

func TestLayoutAndBytes(t *testing.T) {
	f := newFixture(t)
	img := gptImage(t, f.dir)
	plain := filepath.Join(f.dir, "plain.raw") // no partition table
	data := make([]byte, 3*MiB+12345)          // not a multiple of the block size
	for i := range data {
		data[i] = byte(i * 7)
	}
	os.WriteFile(plain, data, 0o600)
	p := f.backup(t, "web1", [2]string{"vda", img.Path}, [2]string{"vdb", plain})
	tr := f.tree(Options{Readers: noReaders})
	defer tr.Close()

	if got := names(t, tr.Root()); !slices.Equal(got, []string{"web1"}) {
		t.Fatalf("root lists %v", got)
	}
	pdir := p.Time.UTC().Format(PointDirLayout)
	if got := names(t, walk(t, tr, "web1")); !slices.Equal(got, []string{pdir, "latest"}) {
		t.Fatalf("web1 lists %v, want [%s latest]", got, pdir)
	}
	target, err := walk(t, tr, "web1", "latest").(Symlink).Readlink()
	if err != nil || target != pdir {
		t.Fatalf("latest -> %q, %v; want %q", target, err, pdir)
	}
	if got := names(t, walk(t, tr, "web1", pdir)); !slices.Equal(got, []string{"vda", "vda.raw", "vdb", "vdb.raw", "vm.json"}) {
		t.Fatalf("restore point lists %v", got)
	}
	if got := names(t, walk(t, tr, "web1", pdir, "vda")); !slices.Equal(got, []string{"p1.raw", "p2.raw"}) {
		t.Fatalf("vda/ lists %v", got)
	}
	if got := names(t, walk(t, tr, "web1", pdir, "vdb")); len(got) != 0 {
		t.Fatalf("vdb/ (no partition table) lists %v", got)
	}

	src := img.Bytes(t)
	vda := walk(t, tr, "web1", pdir, "vda.raw")
	if a := vda.Attr(); a.Size != img.Size || !a.Stable || a.Mode != fileMode || a.Blocks >= img.Size/512 {
		t.Fatalf("vda.raw attr %+v", a)
	}
	for _, chunk := range []int{4096, 1 << 20, 100_000} {
		if got := readAll(t, vda, chunk); !bytes.Equal(got, src) {
			t.Fatalf("vda.raw read in %d-byte chunks differs from the image", chunk)
		}
	}
	for _, part := range img.Parts {
		n := walk(t, tr, "web1", pdir, "vda", fmt.Sprintf("p%d.raw", part.Number))
		if n.Attr().Size != part.Size {
			t.Fatalf("p%d.raw size %d, sfdisk says %d", part.Number, n.Attr().Size, part.Size)
		}
		if got := readAll(t, n, 1<<20); !bytes.Equal(got, src[part.Start:part.Start+part.Size]) {
			t.Fatalf("p%d.raw differs from the partition's bytes", part.Number)
		}
	}
	if _, ok := walk(t, tr, "web1", "latest").(File); ok {
		t.Fatal("latest is a symlink, not a file")
	}
	if got := readAll(t, walk(t, tr, "web1", pdir, "vdb.raw"), 65536); !bytes.Equal(got, data) {
		t.Fatal("vdb.raw differs")
	}

	var meta struct {
		ID, VM string
		Disks  []struct {
			Name, File string
			Size       int64
		}
		Definition map[string]any
	}
	raw := readAll(t, walk(t, tr, "web1", pdir, "vm.json"), 4096)
	if err := json.Unmarshal(raw, &meta); err != nil {
		t.Fatalf("vm.json: %v\n%s", err, raw)
	}
	if meta.ID != p.ID || meta.VM != "web1" || len(meta.Disks) != 2 || meta.Disks[0].File != "vda.raw" ||
		meta.Disks[0].Size != img.Size || meta.Definition["vcpus"] != 2.0 {
		t.Fatalf("vm.json: %s", raw)
	}
	if strings.Contains(string(raw), `"tables"`) || !strings.Contains(string(raw), "\n  \"id\"") {
		t.Fatalf("vm.json should be indented and hold no block tables:\n%s", raw)
	}

	for _, name := range [][]string{{"nope"}, {"web1", "nope"}, {"web1", pdir, "vdc.raw"}, {"web1", pdir, "vda", "p3.raw"}, {"web1", pdir, "vda", "x"}} {
		parent := walk(t, tr, name[:len(name)-1]...)
		if _, err := parent.(Dir).Lookup(name[len(name)-1]); !errors.Is(err, ErrNoEntry) {
			t.Errorf("lookup %v: %v, want ErrNoEntry", name, err)
		}
	}
}

func TestInodesStableAndDistinct(t *testing.T) {
	f := newFixture(t)
	img := gptImage(t, f.dir)
	p := f.backup(t, "a", [2]string{"vda", img.Path})
	f.backup(t, "b", [2]string{"vda", img.Path})
	pdir := p.Time.UTC().Format(PointDirLayout)
	inos := func() map[string]uint64 {
		tr := f.tree(Options{Readers: noReaders})
		defer tr.Close()
		m := map[string]uint64{}
		var visit func(path string, n Node)
		visit = func(path string, n Node) {
			m[path] = n.Attr().Ino
			if d, ok := n.(Dir); ok {
				es, err := d.Readdir()
				if err != nil {
					t.Fatal(err)
				}
				for _, e := range es {
					c, err := d.Lookup(e.Name)
					if err != nil {
						t.Fatal(err)
					}
					if c.Attr().Ino != e.Ino || c.Attr().Mode != e.Mode {
						t.Fatalf("%s/%s: listing says ino %d mode %o, lookup %d %o", path, e.Name, e.Ino, e.Mode, c.Attr().Ino, c.Attr().Mode)
					}
					visit(path+"/"+e.Name, c)
				}
			}
		}
		visit("", tr.Root())
		return m
	}
	a, b := inos(), inos()
	if len(a) != 1+2*8 { // root; per VM: dir, latest, point, vm.json, vda.raw, vda/, p1, p2
		t.Fatalf("walked %d nodes: %v", len(a), a)
	}
	seen := map[uint64]string{}
	for path, ino := range a {
		if b[path] != ino {
			t.Errorf("%s: inode %d, then %d", path, ino, b[path])
		}
		if other, dup := seen[ino]; dup {
			t.Errorf("%s and %s share inode %d", path, other, ino)
		}
		seen[ino] = path
	}
	if a["/a/"+pdir+"/vda.raw"] == 0 || a[""] != RootIno {
		t.Fatal("missing inode numbers")
	}
}

func TestSameSecondNamesAndRefresh(t *testing.T) {
	f := newFixture(t)
	img := gptImage(t, f.dir)
	first := f.backup(t, "vm", [2]string{"vda", img.Path})
	var now atomic.Int64
	now.Store(time.Now().UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()) }
	tr := f.tree(Options{Now: clock})
	defer tr.Close()
	base := first.Time.UTC().Format(PointDirLayout)
	if got := names(t, walk(t, tr, "vm")); !slices.Equal(got, []string{base, "latest"}) {
		t.Fatalf("vm lists %v", got)
	}

	// A restore point in the same second, but earlier: the existing one
	// keeps its name.
	sec := first.Time.Truncate(time.Second)
	earlier := f.commitAt(t, "vm", first, sec)
	later := f.commitAt(t, "vm", first, sec.Add(999*time.Millisecond))
	if got := names(t, walk(t, tr, "vm")); len(got) != 2 {
		t.Fatalf("listed again within the refresh interval: %v", got)
	}
	now.Add(int64(3 * time.Second))
	want := sorted([]string{base, base + "-" + earlier.ID[:8], "latest"})
	if first.Time.Equal(later.Time) || later.Time.After(first.Time) {
		want = sorted(append(want, base+"-"+later.ID[:8]))
	}
	got := names(t, walk(t, tr, "vm"))
	if !slices.Equal(sorted(got), want) {
		t.Fatalf("after refresh vm lists %v, want %v", got, want)
	}
	latest, _ := walk(t, tr, "vm", "latest").(Symlink).Readlink()
	newest := base
	if later.Time.After(first.Time) {
		newest = base + "-" + later.ID[:8]
	}
	if latest != newest {
		t.Fatalf("latest -> %s, want %s", latest, newest)
	}

	// A fresh tree names them in time order: the earliest gets the plain name.
	tr2 := f.tree(Options{})
	defer tr2.Close()
	if _, err := walk(t, tr2, "vm").(Dir).Lookup(base); err != nil {
		t.Fatal(err)
	}
	if _, err := walk(t, tr2, "vm").(Dir).Lookup(base + "-" + first.ID[:8]); err != nil {
		t.Fatalf("fresh tree: %v (lists %v)", err, names(t, walk(t, tr2, "vm")))
	}

	// A lookup of a name not in a listing older than missRefresh re-reads it.
	third := f.commitAt(t, "other", first, first.Time.Add(time.Hour))
	now.Add(int64(missRefresh + time.Millisecond))
	if _, err := walk(t, tr, "other").(Dir).Lookup(third.Time.UTC().Format(PointDirLayout)); err != nil {
		t.Fatalf("new VM's restore point not found on lookup: %v", err)
	}

	// Forgetting removes it from the listing.
	if err := f.repo.DeletePoint(third.ID); err != nil {
		t.Fatal(err)
	}
	now.Add(int64(3 * time.Second))
	if got := names(t, tr.Root()); !slices.Equal(got, []string{"vm"}) {
		t.Fatalf("root after forget: %v", got)
	}
}

func TestCorruptPointIsSkipped(t *testing.T) {
	f := newFixture(t)
	img := gptImage(t, f.dir)
	p := f.backup(t, "good", [2]string{"vda", img.Path})
	bad := f.commitAt(t, "bad", p, p.Time.Add(time.Minute))
	path := filepath.Join(f.repo.Dir(), "points", bad.ID)
	raw, _ := os.ReadFile(path)
	raw[len(raw)-5] ^= 0xff
	os.WriteFile(path, raw, 0o600)
	tr := f.tree(Options{})
	defer tr.Close()
	if got := names(t, tr.Root()); !slices.Equal(got, []string{"good"}) {
		t.Fatalf("root lists %v", got)
	}
	names(t, tr.Root())
	if n := strings.Count(f.logs.String(), "\n"); n != 1 || !strings.Contains(f.logs.String(), bad.ID) {
		t.Fatalf("the bad restore point should be logged once, got %d:\n%s", n, f.logs)
	}
}

func TestMalformedPartitionTable(t *testing.T) {
	f := newFixture(t)
	img := gptImage(t, f.dir)
	src := img.Bytes(t)
	// Break both GPT headers' checksums.
	for _, off := range []int64{512 + 16, img.Size - 512 + 16} {
		testimg.WriteAt(t, img.Path, []byte{src[off] ^ 0xff}, off)
	}
	p := f.backup(t, "vm", [2]string{"vda", img.Path})
	tr := f.tree(Options{})
	defer tr.Close()
	pdir := p.Time.UTC().Format(PointDirLayout)
	parts := walk(t, tr, "vm", pdir, "vda").(Dir)
	if _, err := parts.Readdir(); !errors.Is(err, ErrMalformed) {
		t.Fatalf("readdir of a disk with a broken GPT: %v", err)
	}
	if _, err := parts.Lookup("p1.raw"); !errors.Is(err, ErrMalformed) {
		t.Fatalf("lookup in a disk with a broken GPT: %v", err)
	}
	if !strings.Contains(f.logs.String(), "malformed partition table") || strings.Count(f.logs.String(), "\n") != 1 {
		t.Fatalf("want one log line, got:\n%s", f.logs)
	}
	if got := readAll(t, walk(t, tr, "vm", pdir, "vda.raw"), 1<<20); !bytes.Equal(got, img.Bytes(t)) {
		t.Fatal("the disk image must still read")
	}
}

func TestCorruptBlock(t *testing.T) {
	f := newFixture(t)
	img := gptImage(t, f.dir)
	p := f.backup(t, "vm", [2]string{"vda", img.Path})
	// Corrupt the stored copy of a block inside partition 2.
	dr, err := f.repo.OpenDisk(p, "vda", 0)
	if err != nil {
		t.Fatal(err)
	}
	part := img.Parts[1]
	bad := part.Start/65536 + 3
	e, err := dr.Entry(bad)
	if err != nil || e.IsZero() {
		t.Fatalf("block %d: %v %v", bad, e, err)
	}
	pack := e.Pack.String()
	packPath := filepath.Join(f.repo.Dir(), "packs", pack[:2], pack+".pack")
	raw, _ := os.ReadFile(packPath)
	raw[int(e.Offset)+int(e.Length)/2] ^= 0x55
	os.WriteFile(packPath, raw, 0o600)

	tr := f.tree(Options{})
	defer tr.Close()
	pdir := p.Time.UTC().Format(PointDirLayout)
	h, _ := walk(t, tr, "vm", pdir, "vda", "p2.raw").(File).Open()
	buf := make([]byte, 256<<10)
	off := bad*65536 - part.Start - 1000 // a read that starts before the bad block
	n, err := h.ReadAt(buf, off)
	var re *ReadError
	if n != 0 || !errors.As(err, &re) || !errors.Is(err, repo.ErrCorrupt) {
		t.Fatalf("read over a corrupt block: %d, %v", n, err)
	}
	if re.Point != p.ID || re.Disk != "vda" || re.Offset != bad*65536 || re.VM != "vm" {
		t.Fatalf("read error %+v, want offset %d", re, bad*65536)
	}
	// Other blocks and files still read.
	src := img.Bytes(t)
	got := make([]byte, 65536)
	if _, err := h.ReadAt(got, (bad+1)*65536-part.Start); err != nil || !bytes.Equal(got, src[(bad+1)*65536:(bad+2)*65536]) {
		t.Fatalf("the block after the corrupt one: %v", err)
	}
	if got := readAll(t, walk(t, tr, "vm", pdir, "vda", "p1.raw"), 1<<20); !bytes.Equal(got, src[img.Parts[0].Start:img.Parts[0].Start+img.Parts[0].Size]) {
		t.Fatal("p1.raw must still read")
	}
}

func TestSeekDataHole(t *testing.T) {
	f := newFixture(t)
	path := filepath.Join(f.dir, "holes.raw")
	const size = 200 * MiB // four block tables (64 MiB each) and a bit
	fh, _ := os.Create(path)
	fh.Truncate(size)
	for _, off := range []int64{1 * MiB, 1*MiB + 65536, 130*MiB + 100, size - 10} {
		fh.WriteAt([]byte("data"), off)
	}
	fh.Close()
	p := f.backup(t, "vm", [2]string{"vda", path})
	tr := f.tree(Options{})
	defer tr.Close()
	pdir := p.Time.UTC().Format(PointDirLayout)
	h, _ := walk(t, tr, "vm", pdir, "vda.raw").(File).Open()
	s := h.(Seeker)
	check := func(what string, got int64, err error, want int64) {
		t.Helper()
		if want < 0 {
			if !errors.Is(err, syscall.ENXIO) {
				t.Errorf("%s: %d, %v; want ENXIO", what, got, err)
			}
			return
		}
		if err != nil || got != want {
			t.Errorf("%s: %d, %v; want %d", what, got, err, want)
		}
	}
	d, err := s.SeekData(0)
	check("data from 0", d, err, 1*MiB)
	d, err = s.SeekData(1*MiB + 5)
	check("data inside data", d, err, 1*MiB+5)
	d, err = s.SeekHole(1 * MiB)
	check("hole after first data", d, err, 1*MiB+2*65536)
	d, err = s.SeekData(2 * MiB)
	check("data in third table", d, err, 130*MiB)
	d, err = s.SeekData(131 * MiB)
	check("data in last block", d, err, size-65536)
	d, err = s.SeekHole(size - 65536)
	check("hole at end", d, err, size)
	d, err = s.SeekData(size)
	check("data past end", d, err, -1)

	// The same through a partition-like window that starts mid-block.
	w := tr.newHandle(p, &p.Disks[0], 1*MiB+1000, 130*MiB)
	d, err = w.SeekData(0)
	check("window data from 0", d, err, 0)
	d, err = w.SeekHole(0)
	check("window hole", d, err, 2*65536-1000)
	d, err = w.SeekData(2 * 65536)
	check("window data later", d, err, 129*MiB-1000)
	d, err = w.SeekData(129*MiB - 1000 + 65536)
	check("window no more data", d, err, -1)
	d, err = w.SeekHole(130*MiB - 1)
	check("window hole at end", d, err, 130*MiB-1)
	d, err = w.SeekHole(130 * MiB)
	check("window hole past end", d, err, -1)
}

// Many readers, sequential and random, over a small cache: readahead,
// eviction and work stealing must never return wrong bytes.
func TestConcurrentReads(t *testing.T) {
	f := newFixture(t)
	img := gptImage(t, f.dir)
	p := f.backup(t, "vm", [2]string{"vda", img.Path})
	src := img.Bytes(t)
	for _, cache := range []int64{1 << 20, 64 << 20} {
		tr := f.tree(Options{CacheBytes: cache})
		pdir := p.Time.UTC().Format(PointDirLayout)
		vda := walk(t, tr, "vm", pdir, "vda.raw").(File)
		var wg sync.WaitGroup
		errs := make(chan error, 16)
		for g := 0; g < 8; g++ {
			wg.Add(1)
			go func(g int) {
				defer wg.Done()
				h, _ := vda.Open()
				rng := rand.New(rand.NewPCG(uint64(g), 1))
				buf := make([]byte, 300_000)
				off := int64(0)
				for i := 0; i < 200; i++ {
					if g%2 == 1 { // random
						off = rng.Int64N(int64(len(src)))
					}
					n, err := h.ReadAt(buf[:1+rng.IntN(len(buf))], off)
					if err != nil && err != io.EOF {
						errs <- err
						return
					}
					if !bytes.Equal(buf[:n], src[off:off+int64(n)]) {
						errs <- fmt.Errorf("goroutine %d: wrong bytes at %d+%d", g, off, n)
						return
					}
					off += int64(n)
					if off >= int64(len(src)) {
						off = 0
					}
				}
			}(g)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		tr.Close()
	}
}

func TestEscapeName(t *testing.T) {
	for in, want := range map[string]string{
		"web1": "web1", "a/b": "a%2Fb", "50%": "50%25", ".": "%2E", "..": "%2E%2E", "": "%", "a\x00": "a%00", "...": "...",
	} {
		if got := escapeName(in); got != want {
			t.Errorf("escapeName(%q) = %q, want %q", in, got, want)
		}
	}
	es := []DirEntry{{Name: "p10.raw"}, {Name: "p2.raw"}, {Name: "p1.raw"}, {Name: "latest"}, {Name: "2026-01-01T00-00-00Z"}}
	sortEntries(es)
	var got []string
	for _, e := range es {
		got = append(got, e.Name)
	}
	if !slices.Equal(got, []string{"2026-01-01T00-00-00Z", "latest", "p1.raw", "p2.raw", "p10.raw"}) {
		t.Fatalf("sorted %v", got)
	}
}
