package fat

import (
	"encoding/binary"
	"errors"
	"io"
	"testing"

	"github.com/cairn-backup/cairn/guest/internal/fstest"
	"github.com/cairn-backup/cairn/guest/vfs"
)

// walkLimits bound the walks of seeds and fuzz inputs.
var walkLimits = fstest.Limits{Visits: 2000, Depth: 16, Read: 1 << 20}

// layout sizes a volume from its BPB, up to 64 MiB.
var layout = fstest.Layout{Max: 64 << 20, Size: func(h []byte) int64 {
	bps := int64(binary.LittleEndian.Uint16(h[11:]))
	tot := int64(binary.LittleEndian.Uint16(h[19:]))
	if tot == 0 {
		tot = int64(binary.LittleEndian.Uint32(h[32:]))
	}
	return bps * tot
}}

// exercise opens the volume and walks all of it, bounded, reading every
// file; a name ReadDir lists that Lookup cannot find fails the test.
func exercise(t testing.TB, v *fstest.Volume) (vfs.FS, *fstest.Result, error) {
	fsys, err := Open(v, v.Size)
	if err != nil {
		if !errors.Is(err, vfs.ErrMalformed) && !errors.Is(err, io.EOF) {
			// Reads past the padded end are I/O errors, the rest must be classified.
			t.Logf("Open: %v", err)
		}
		return nil, nil, err
	}
	fsys.Label()
	res := fstest.Walk(fsys, walkLimits)
	if errs := res.Ops("Lookup"); len(errs) > 0 {
		t.Fatalf("Lookup of a listed name: %v", errs[0])
	}
	return fsys, res, nil
}

func TestSeedsOpen(t *testing.T) {
	want := map[string]variant{"fat12.img.gz": fat12, "fat16.img.gz": fat16, "fat32.img.gz": fat32}
	for name, data := range fstest.Seeds(t, "*.img.gz") {
		vol, res, err := exercise(t, layout.Image(data))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if k, files := vol.(*fsys).g.kind, res.Files; k != want[name] || files != 6 || vol.Label() != "SEED" {
			t.Errorf("%s: FAT%d, %d files, label %q; want FAT%d, 6 files, SEED", name, k, files, vol.Label(), want[name])
		}
	}
}

func FuzzOpen(f *testing.F) {
	for _, data := range fstest.Seeds(f, "*.img.gz") {
		f.Add(fstest.EncodeSectors(data))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		exercise(t, layout.Input(data))
	})
}
