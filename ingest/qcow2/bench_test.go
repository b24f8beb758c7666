package qcow2

import (
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkReadAt compares sequential 1 MiB reads of a fully allocated
// qcow2 image (as made by qemu-img convert) with reads of the same bytes
// from a raw file. Both files are in the page cache after the first pass.
func BenchmarkReadAt(b *testing.B) {
	needQemu(b)
	dir := b.TempDir()
	const size = 128 << 20
	raw := filepath.Join(dir, "disk.raw")
	writeRandomRaw(b, raw, size, 1, region{0, size})
	images := map[string]string{}
	for _, cs := range []string{"64k", "4k", "2M"} {
		img := filepath.Join(dir, "disk-"+cs+".qcow2")
		sh(b, "qemu-img", "convert", "-f", "raw", "-O", "qcow2", "-o", "cluster_size="+cs, raw, img)
		images[cs] = img
	}
	b.Run("raw", func(b *testing.B) {
		f, err := os.Open(raw)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		benchSequential(b, f, size)
	})
	for _, cs := range []string{"64k", "4k", "2M"} {
		b.Run("qcow2-"+cs, func(b *testing.B) {
			benchSequential(b, mustOpen(b, images[cs]), size)
		})
	}
	// Alternate raw and qcow2 reads of the same range and report the
	// ratio of the time spent in each: more robust than comparing separate
	// runs on a busy machine.
	b.Run("ratio-64k", func(b *testing.B) {
		f, err := os.Open(raw)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		im := mustOpen(b, images["64k"])
		buf := make([]byte, 1<<20)
		var tRaw, tQcow time.Duration
		off := int64(0)
		b.SetBytes(2 << 20)
		b.ResetTimer()
		read := func(r io.ReaderAt, off int64) time.Duration {
			t0 := time.Now()
			if _, err := r.ReadAt(buf, off); err != nil && err != io.EOF {
				b.Fatal(err)
			}
			return time.Since(t0)
		}
		for i := 0; i < b.N; i++ {
			// Alternate the order so that neither side profits from
			// running second.
			if i%2 == 0 {
				tRaw += read(f, off)
				tQcow += read(im, off)
			} else {
				tQcow += read(im, off)
				tRaw += read(f, off)
			}
			if off += int64(len(buf)); off >= size {
				off = 0
			}
		}
		b.ReportMetric(float64(tQcow)/float64(tRaw), "qcow2/raw")
	})
}

func benchSequential(b *testing.B, r io.ReaderAt, size int64) {
	buf := make([]byte, 1<<20)
	// Warm the page cache.
	for off := int64(0); off < size; off += int64(len(buf)) {
		if _, err := r.ReadAt(buf, off); err != nil && err != io.EOF {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(len(buf)))
	b.ResetTimer()
	off := int64(0)
	for i := 0; i < b.N; i++ {
		if _, err := r.ReadAt(buf, off); err != nil && err != io.EOF {
			b.Fatal(err)
		}
		if off += int64(len(buf)); off >= size {
			off = 0
		}
	}
}
