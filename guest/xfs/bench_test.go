package xfs

import (
	"crypto/rand"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/cairn-backup/cairn/guest/internal/fstest"
)

var (
	benchOnce sync.Once
	benchImg  string
	benchErr  string
)

const benchFileSize = 256 << 20

// benchImage makes an XFS image holding one 256 MiB file of random bytes.
func benchImage(b *testing.B) string {
	requireTools(b)
	benchOnce.Do(func() {
		dir, _ := os.MkdirTemp("", "cairn-xfs-bench-")
		img, mnt := filepath.Join(dir, "xfs.img"), filepath.Join(dir, "mnt")
		os.Mkdir(mnt, 0o755)
		os.WriteFile(img, nil, 0o600)
		os.Truncate(img, 600<<20)
		for _, c := range [][]string{{"mkfs.xfs", "-q", "-f", img}, {"mount", "-o", "loop", img, mnt}} {
			if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
				benchErr = string(out)
				return
			}
		}
		f, _ := os.Create(filepath.Join(mnt, "big"))
		io.CopyN(f, rand.Reader, benchFileSize)
		f.Close()
		exec.Command("umount", mnt).Run()
		benchImg = img
	})
	if benchImg == "" {
		b.Fatal("building the benchmark image:", benchErr)
	}
	return benchImg
}

// BenchmarkReadLargeFile reads a 256 MiB file in 1 MiB ReadAt calls
// through the reader ("xfs") and the same number of bytes straight from
// the image file ("raw"); compare the two MB/s figures.
func BenchmarkReadLargeFile(b *testing.B) {
	img := benchImage(b)
	fh, size := fstest.OpenImage(b, img)
	buf := make([]byte, 1<<20)
	b.Run("xfs", func(b *testing.B) {
		b.SetBytes(benchFileSize)
		for i := 0; i < b.N; i++ {
			fsys, err := OpenXFS(fh, size)
			if err != nil {
				b.Fatal(err)
			}
			e, err := fsys.Lookup(fsys.Root(), "big")
			if err != nil {
				b.Fatal(err)
			}
			f, err := fsys.Open(e.Ino)
			if err != nil {
				b.Fatal(err)
			}
			for off := int64(0); off < f.Size(); off += int64(len(buf)) {
				if _, err := f.ReadAt(buf, off); err != nil && err != io.EOF {
					b.Fatal(err)
				}
			}
		}
	})
	b.Run("raw", func(b *testing.B) {
		b.SetBytes(benchFileSize)
		for i := 0; i < b.N; i++ {
			for off := int64(0); off < benchFileSize; off += int64(len(buf)) {
				if _, err := fh.ReadAt(buf, 64<<20+off); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}
