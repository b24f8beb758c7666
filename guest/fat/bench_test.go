package fat

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkLargeFile reads a 64 MiB file through the reader and the same
// bytes straight from the image (the runs the reader found, in file
// order), and reports reader time / raw time as "ratio".
func BenchmarkLargeFile(b *testing.B) {
	requireTool(b, "mkfs.vfat", "dosfstools")
	requireTool(b, "mcopy", "mtools")
	tmp := b.TempDir()
	const size = 64 << 20
	src := filepath.Join(tmp, "big.bin")
	writeFile(b, src, randBytes(5, size), baseTime)
	img := filepath.Join(tmp, "fat.img")
	runCmd(b, nil, "mkfs.vfat", "-C", "-F", "32", "-s", "1", img, "100000")
	runCmd(b, mtoolsEnv, "mcopy", "-i", img, src, "::/big.bin")
	vol, raw := openImage(b, img)
	e, err := vol.Lookup(vol.Root(), "big.bin")
	if err != nil {
		b.Fatal(err)
	}
	f, err := vol.Open(e.Ino)
	if err != nil {
		b.Fatal(err)
	}
	s := vol.(*fsys)
	runs := f.(*file).runs
	buf := make([]byte, 1<<20)
	var tReader, tRaw time.Duration
	b.SetBytes(size)
	b.ResetTimer()
	for range b.N {
		st := time.Now()
		for off := int64(0); off < size; off += int64(len(buf)) {
			if _, err := f.ReadAt(buf, off); err != nil {
				b.Fatal(err)
			}
		}
		tReader += time.Since(st)
		st = time.Now()
		cs := s.g.clusterSize
		for _, r := range runs {
			start, end := s.g.clusterOffset(r.phys), s.g.clusterOffset(r.phys)+int64(r.n)*cs
			for off := start; off < end; off += int64(len(buf)) {
				n := min(int64(len(buf)), end-off)
				if _, err := raw.ReadAt(buf[:n], off); err != nil {
					b.Fatal(err)
				}
			}
		}
		tRaw += time.Since(st)
	}
	b.ReportMetric(float64(tReader)/float64(tRaw), "ratio")
	_ = os.Remove(img)
}
