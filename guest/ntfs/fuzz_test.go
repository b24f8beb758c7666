package ntfs

import (
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/cairn-backup/cairn/guest/internal/fstest"
	"github.com/cairn-backup/cairn/guest/vfs"
)

// walkLimits bound the walks of the seed and of fuzz inputs.
var walkLimits = fstest.Limits{Visits: 3000, Depth: 16, Read: 1 << 20}

// layout sizes a volume from its boot sector, up to 64 MiB.
var layout = fstest.Layout{Max: 64 << 20, Size: func(h []byte) int64 {
	bps := int64(binary.LittleEndian.Uint16(h[11:]))
	if sectors := int64(binary.LittleEndian.Uint64(h[0x28:])); sectors > 0 && sectors < 1<<40 {
		return bps * sectors
	}
	return 0
}}

// seedVolume is the committed seed volume, padded back to its size.
func seedVolume(t testing.TB) *fstest.Volume {
	return layout.Image(fstest.Seed(t, "ntfs.img.gz"))
}

// exercise opens the volume and walks it, bounded, reading every file
// and link; a name ReadDir lists that Lookup cannot find fails the test.
// Res.Read holds the paths read with their content or "-> target".
func exercise(t testing.TB, v *fstest.Volume) (vfs.FS, *fstest.Result, error) {
	vol, err := Open(v, v.Size)
	if err != nil {
		return nil, nil, err
	}
	res := fstest.Walk(vol, walkLimits)
	if errs := res.Ops("Lookup"); len(errs) > 0 {
		t.Fatalf("Lookup of a listed name: %v", errs[0])
	}
	return vol, res, nil
}

// TestSeed checks the committed image without ntfs-3g: the files the
// seed script made, including the compressed, sparse, linked ones.
func TestSeed(t *testing.T) {
	vol, res, err := exercise(t, seedVolume(t))
	if err != nil {
		t.Fatal(err)
	}
	files := res.Read
	if vol.Label() != "SEED" {
		t.Errorf("label %q", vol.Label())
	}
	want := map[string]string{
		"/hello.txt":           "hello\n",
		"/ünï ☃ long name.txt": "x\n",
		"/empty":               "",
		"/dir/symlink":         "-> ../hello.txt",
		"/compressed/text.txt": strings.Repeat("compressible line\n", 20000/18+1)[:20000],
		"/many/a rather long file name number 40.txt": "",
	}
	for p, w := range want {
		if got, ok := files[p]; !ok || got != w {
			t.Errorf("%s: %q (present %v), want %q", p, trunc(got), ok, trunc(w))
		}
	}
	if sp := files["/sparse.bin"]; len(sp) != 60100 || strings.Trim(sp[:60000], "\x00") != "" {
		t.Errorf("sparse.bin: %d bytes", len(sp))
	}
	if a, b := files["/hardlink.bin"], files["/dir/sub/nonresident.bin"]; len(a) != 9000 || a != b {
		t.Errorf("hard link content %d/%d bytes", len(a), len(b))
	}
	if len(files) != 48 {
		t.Errorf("%d files and links, want 48", len(files))
	}
	d, err := vol.Lookup(vol.Root(), "compressed")
	if err != nil {
		t.Fatal(err)
	}
	e, err := vol.Lookup(d.Ino, "text.txt")
	if err != nil {
		t.Fatal(err)
	}
	if f, err := vol.Open(e.Ino); err != nil || f.(*file).st.unit == 0 {
		t.Errorf("compressed/text.txt is not compressed in the seed (%v)", err)
	}
}

func trunc(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

func FuzzOpen(f *testing.F) {
	recoverPanics = false // a panic is a bug the fuzzer must report
	f.Add(fstest.EncodeSectors(fstest.Seed(f, "ntfs.img.gz")))
	f.Fuzz(func(t *testing.T, data []byte) {
		if _, _, err := exercise(t, layout.Input(data)); err != nil && !errors.Is(err, vfs.ErrMalformed) && !errors.Is(err, io.EOF) {
			// Only an I/O error from reading past the padded end may be unclassified.
			t.Logf("Open: %v", err)
		}
	})
}
