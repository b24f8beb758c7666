package fat

import (
	"path/filepath"
	"testing"

	"github.com/cairn-backup/cairn/guest/internal/fstest"
)

// BenchmarkLargeFile reads a 64 MiB file through the reader and the same
// bytes straight from the image (the runs the reader found, in file
// order), and reports reader time / raw time as "ratio".
func BenchmarkLargeFile(b *testing.B) {
	requireFATTools(b)
	tmp := b.TempDir()
	const size = 64 << 20
	src := filepath.Join(tmp, "big.bin")
	writeFile(b, src, fstest.RandBytes(5, size), baseTime)
	img := filepath.Join(tmp, "fat.img")
	fstest.Run(b, "mkfs.vfat", "-C", "-F", "32", "-s", "1", img, "100000")
	fstest.RunEnv(b, mtoolsEnv, "mcopy", "-i", img, src, "::/big.bin")
	vol, raw := openImage(b, img)
	e, err := vol.Lookup(vol.Root(), "big.bin")
	fstest.Must(b, err)
	f, err := vol.Open(e.Ino)
	fstest.Must(b, err)
	g := vol.(*fsys).g
	var extents []fstest.Extent
	for _, r := range f.(*file).runs {
		extents = append(extents, fstest.Extent{Off: g.clusterOffset(r.phys), Len: int64(r.n) * g.clusterSize})
	}
	fstest.ReadRatio(b, f, size, raw, extents)
}
