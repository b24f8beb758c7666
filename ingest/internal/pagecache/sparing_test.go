package pagecache

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// cachedPages reports, for each page of f, whether it is in the page cache.
func cachedPages(t *testing.T, f *os.File, size int) []bool {
	t.Helper()
	c, err := Resident(f, int64(size))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// readAsOther reads n bytes at off of the file through a handle of its
// own, as another user of the host would: those pages are theirs. Its
// readahead is off too, so that the test knows which pages it brought in.
func readAsOther(t *testing.T, path string, n int, off int64) {
	t.Helper()
	other, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if _, err := other.ReadAt(make([]byte, n), off); err != nil {
		t.Fatal(err)
	}
}

func countCached(c []bool) (n int) {
	for _, v := range c {
		if v {
			n++
		}
	}
	return n
}

// uncachedImage writes size random bytes to a file on a disk-backed file
// system (the package directory: a tmpfs /tmp cannot drop pages), drops
// its pages from the page cache and opens it with Open.
func uncachedImage(t *testing.T, size int) (*os.File, []byte) {
	t.Helper()
	dir, err := os.MkdirTemp(".", "cachesparing-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	data := make([]byte, size)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	path := dir + "/disk.raw"
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	w, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := unix.Fadvise(int(w.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		t.Fatal(err)
	}
	w.Close()
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if n := countCached(cachedPages(t, f, size)); n != 0 {
		t.Fatalf("%d pages of the test image stay cached after POSIX_FADV_DONTNEED: this file system cannot drop pages", n)
	}
	return f, data
}

// TestSparingDropsWhatItBroughtIn: reading a cold image through
// Sparing returns its bytes and leaves none of them in the page cache,
// while pages that were cached before the read stay cached.
func TestSparingDropsWhatItBroughtIn(t *testing.T) {
	const size = 8 << 20
	f, data := uncachedImage(t, size)
	page := os.Getpagesize()

	readAsOther(t, f.Name(), 1<<20, 1<<20) // the second MiB is theirs
	before := cachedPages(t, f, size)
	for i := (1 << 20) / page; i < (2<<20)/page; i++ {
		if !before[i] {
			t.Fatalf("page %d not cached after reading it", i)
		}
	}

	// Read everything in 1 MiB pieces, as the backup workers do, and one
	// piece that straddles the cached MiB.
	c := NewSparing(f, size)
	got := make([]byte, size)
	for off := 0; off < size; off += 1 << 20 {
		if n, err := c.ReadAt(got[off:off+1<<20], int64(off)); err != nil || n != 1<<20 {
			t.Fatalf("ReadAt(%d) = %d, %v", off, n, err)
		}
	}
	straddle := make([]byte, 1<<20)
	if n, err := c.ReadAt(straddle, 1<<19+1<<20); err != nil || n != len(straddle) {
		t.Fatalf("straddling ReadAt = %d, %v", n, err)
	}
	if !bytes.Equal(got, data) || !bytes.Equal(straddle, data[1<<19+1<<20:1<<19+2<<20]) {
		t.Fatal("Sparing returned other bytes than the file holds")
	}

	after := cachedPages(t, f, size)
	for i, cached := range after {
		inTheirs := i >= (1<<20)/page && i < (2<<20)/page
		if inTheirs && !cached {
			t.Errorf("page %d was cached before the backup read it and is gone", i)
		}
		if !inTheirs && cached {
			t.Errorf("page %d, brought in by the backup, is still cached", i)
		}
	}
}

// TestSparingEnd: at and past the end of the image, ReadAt behaves as
// os.File.ReadAt does (short read with io.EOF), cached or not.
func TestSparingEnd(t *testing.T) {
	const size = 1<<20 + 1000
	f, data := uncachedImage(t, size)
	c := NewSparing(f, size)
	for _, warm := range []bool{false, true} {
		buf := make([]byte, 1<<20)
		n, err := c.ReadAt(buf, 1<<19)
		if n != size-1<<19 || !errors.Is(err, io.EOF) || !bytes.Equal(buf[:n], data[1<<19:]) {
			t.Fatalf("warm=%v: ReadAt across the end = %d, %v; want %d, EOF", warm, n, err, size-1<<19)
		}
		if n, err := c.ReadAt(buf, size); n != 0 || !errors.Is(err, io.EOF) {
			t.Fatalf("warm=%v: ReadAt at the end = %d, %v; want 0, EOF", warm, n, err)
		}
		if _, err := f.ReadAt(make([]byte, size), 0); err != nil { // now all cached
			t.Fatal(err)
		}
	}
}

// TestSparingPieces reads random ranges, at unaligned offsets into
// unaligned buffers, of a partly cached file: the bytes are the file's,
// the cached pages stay, and no page read from the device stays cached,
// whether it was read with O_DIRECT (the aligned middle of a run) or
// through the cache (its unaligned ends).
func TestSparingPieces(t *testing.T) {
	const size = 4<<20 + 777
	f, data := uncachedImage(t, size)
	page := os.Getpagesize()
	readAsOther(t, f.Name(), 64<<10, 1<<20+8192)
	theirs := cachedPages(t, f, size)
	c := NewSparing(f, size)
	defer c.Close()
	if c.direct == nil {
		t.Fatal("no O_DIRECT handle on a disk-backed file system")
	}
	rng := rand.New(rand.NewPCG(3, 4))
	backing := make([]byte, 2<<20+page)
	for range 200 {
		off := rng.Int64N(size)
		n := rng.IntN(1 << 20)
		shift := rng.IntN(3) * (page / 2) // 0, half a page, a page into an aligned buffer
		p := backing[shift : shift+n]
		got, err := c.ReadAt(p, off)
		want := min(int64(n), size-off)
		if int64(got) != want || !bytes.Equal(p[:got], data[off:off+int64(got)]) {
			t.Fatalf("ReadAt(%d bytes at %d, buffer +%d) = %d, %v; want %d bytes of the file", n, off, shift, got, err, want)
		}
		if (int64(n) > want) != errors.Is(err, io.EOF) || err != nil && !errors.Is(err, io.EOF) {
			t.Fatalf("ReadAt(%d bytes at %d) across the end = %v", n, off, err)
		}
	}
	for i, cached := range cachedPages(t, f, size) {
		if cached != theirs[i] {
			t.Errorf("page %d: cached %v after the reads, %v before", i, cached, theirs[i])
		}
	}
}
