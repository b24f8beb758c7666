package ext

import (
	"crypto/rand"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/cairn-backup/cairn/guest/internal/fstest"
)

// BenchmarkRead256M reads a 256 MiB file through the reader ("ext") and
// the same extents straight from the image ("raw"), 1 MiB at a time; the
// ratio of the two is the reader's overhead. The image is on the local
// file system, so after the first run both read the page cache.
//
//	go test -run XXX -bench Read256M ./guest/ext
func BenchmarkRead256M(b *testing.B) {
	fstest.RequireTools(b, "e2fsprogs", "mkfs.ext4")
	const size = 256 << 20
	dir := b.TempDir()
	src := filepath.Join(dir, "src")
	if err := os.Mkdir(src, 0o755); err != nil {
		b.Fatal(err)
	}
	data := make([]byte, size)
	rand.Read(data)
	if err := os.WriteFile(filepath.Join(src, "big"), data, 0o644); err != nil {
		b.Fatal(err)
	}
	data = nil
	img := filepath.Join(dir, "bench.img")
	fstest.Run(b, "mkfs.ext4", "-q", "-F", "-d", src, img, "400M")
	fh, imgSize := fstest.OpenImage(b, img)
	fsys, err := Open(fh, imgSize)
	if err != nil {
		b.Fatal(err)
	}
	e, err := fsys.Lookup(fsys.Root(), "big")
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	b.Run("ext", func(b *testing.B) {
		b.SetBytes(size)
		for i := 0; i < b.N; i++ {
			fl, err := fsys.Open(e.Ino) // map resolved per open, as a consumer would
			if err != nil {
				b.Fatal(err)
			}
			for off := int64(0); off < size; off += int64(len(buf)) {
				if _, err := fl.ReadAt(buf, off); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	fl, err := fsys.Open(e.Ino)
	if err != nil {
		b.Fatal(err)
	}
	runs := fl.(*file).runs
	bs := int64(fsys.(*FS).sb.blockSize)
	b.Logf("%d extents", len(runs))
	b.Run("raw", func(b *testing.B) {
		b.SetBytes(size)
		for i := 0; i < b.N; i++ {
			for _, r := range runs {
				for off, end := int64(r.phys)*bs, int64(r.phys+r.n)*bs; off < end; off += int64(len(buf)) {
					n := min(int64(len(buf)), end-off)
					if _, err := fh.ReadAt(buf[:n], off); err != nil {
						b.Fatal(err)
					}
				}
			}
		}
	})
}

// BenchmarkBigDir is the first `ls -l` of a 5,000-entry directory: a
// freshly opened file system, ReadDir, then Stat of every entry.
func BenchmarkBigDir(b *testing.B) {
	fstest.RequireTools(b, "e2fsprogs", "mkfs.ext4")
	dir := b.TempDir()
	src := filepath.Join(dir, "src", "big")
	if err := os.MkdirAll(src, 0o755); err != nil {
		b.Fatal(err)
	}
	for i := 0; i < 5000; i++ {
		if err := os.WriteFile(filepath.Join(src, "file-with-a-name-of-some-length-"+strconv.Itoa(i)), []byte("x"), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	img := filepath.Join(dir, "dir.img")
	fstest.Run(b, "mkfs.ext4", "-q", "-F", "-d", filepath.Dir(src), img, "100M")
	fh, size := fstest.OpenImage(b, img)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		fsys, err := Open(fh, size)
		if err != nil {
			b.Fatal(err)
		}
		e, err := fsys.Lookup(fsys.Root(), "big")
		if err != nil {
			b.Fatal(err)
		}
		entries, err := fsys.ReadDir(e.Ino)
		if err != nil || len(entries) != 5000 {
			b.Fatalf("%d entries, %v", len(entries), err)
		}
		for _, e := range entries {
			if _, err := fsys.Stat(e.Ino); err != nil {
				b.Fatal(err)
			}
		}
	}
}
