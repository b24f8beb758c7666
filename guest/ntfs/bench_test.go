package ntfs

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/cairn-backup/cairn/guest/internal/fstest"
)

// BenchmarkLargeFile reads a 64 MiB file through the reader and the same
// clusters straight from the image, and reports reader time / raw time
// as "ratio".
func BenchmarkLargeFile(b *testing.B) {
	fstest.RequireTools(b, "ntfs-3g", "mkntfs", "ntfs-3g")
	tmp := b.TempDir()
	img := filepath.Join(tmp, "ntfs.img")
	fstest.Must(b, os.WriteFile(img, nil, 0o644))
	fstest.Must(b, os.Truncate(img, 100<<20))
	fstest.Run(b, "mkntfs", "-F", "-f", "-Q", img)
	mnt := filepath.Join(tmp, "mnt")
	fstest.Must(b, os.Mkdir(mnt, 0o755))
	fstest.Run(b, "ntfs-3g", img, mnt)
	const size = 64 << 20
	err := os.WriteFile(filepath.Join(mnt, "big.bin"), fstest.RandBytes(3, size), 0o644)
	fstest.Run(b, "umount", mnt)
	fstest.Must(b, err)

	raw, rawSize := fstest.OpenImage(b, img)
	vol, err := Open(raw, rawSize)
	fstest.Must(b, err)
	e, err := vol.Lookup(vol.Root(), "big.bin")
	fstest.Must(b, err)
	f, err := vol.Open(e.Ino)
	fstest.Must(b, err)
	cs := vol.(*fsys).v.clusterSize
	var extents []fstest.Extent
	for _, x := range f.(*file).st.ex {
		extents = append(extents, fstest.Extent{Off: x.lcn * cs, Len: x.n * cs})
	}
	fstest.ReadRatio(b, f, size, raw, extents)
}
