package ntfs

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkLargeFile reads a 64 MiB file through the reader and the same
// clusters straight from the image, and reports reader time / raw time
// as "ratio".
func BenchmarkLargeFile(b *testing.B) {
	requireTool(b, "mkntfs", "ntfs-3g")
	requireTool(b, "ntfs-3g", "ntfs-3g")
	tmp := b.TempDir()
	img := filepath.Join(tmp, "ntfs.img")
	must(b, os.WriteFile(img, nil, 0o644))
	must(b, os.Truncate(img, 100<<20))
	runCmd(b, nil, "mkntfs", "-F", "-f", "-Q", img)
	mnt := filepath.Join(tmp, "mnt")
	must(b, os.Mkdir(mnt, 0o755))
	runCmd(b, nil, "ntfs-3g", img, mnt)
	const size = 64 << 20
	err := os.WriteFile(filepath.Join(mnt, "big.bin"), randBytes(3, size), 0o644)
	runCmd(b, nil, "umount", mnt)
	must(b, err)

	raw, err := os.Open(img)
	must(b, err)
	defer raw.Close()
	st, _ := raw.Stat()
	vol, err := Open(raw, st.Size())
	must(b, err)
	e, err := vol.Lookup(vol.Root(), "big.bin")
	must(b, err)
	f, err := vol.Open(e.Ino)
	must(b, err)
	ex, cs := f.(*file).st.ex, vol.(*fsys).v.clusterSize
	buf := make([]byte, 1<<20)
	var tReader, tRaw time.Duration
	b.SetBytes(size)
	b.ResetTimer()
	for range b.N {
		t0 := time.Now()
		for off := int64(0); off < size; off += int64(len(buf)) {
			if _, err := f.ReadAt(buf, off); err != nil {
				b.Fatal(err)
			}
		}
		tReader += time.Since(t0)
		t0 = time.Now()
		for _, x := range ex {
			for off, end := x.lcn*cs, (x.lcn+x.n)*cs; off < end; off += int64(len(buf)) {
				if _, err := raw.ReadAt(buf[:min(int64(len(buf)), end-off)], off); err != nil {
					b.Fatal(err)
				}
			}
		}
		tRaw += time.Since(t0)
	}
	b.ReportMetric(float64(tReader)/float64(tRaw), "ratio")
}
