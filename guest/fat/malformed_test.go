package fat

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairn-backup/cairn/guest/internal/fstest"
	"github.com/cairn-backup/cairn/guest/vfs"
)

// smallImage is a FAT16 image with a multi-cluster file, a long name and a
// multi-cluster directory, returned as bytes.
func smallImage(t *testing.T) []byte {
	requireFATTools(t)
	tmp := t.TempDir()
	src := filepath.Join(tmp, "src")
	writeFile(t, filepath.Join(src, "big.bin"), fstest.RandBytes(1, 20000), baseTime)
	writeFile(t, filepath.Join(src, "MixedCase.Txt"), []byte("x"), baseTime)
	for i := range 40 {
		writeFile(t, filepath.Join(src, "many", strings.Repeat("n", 30)+string(rune('a'+i%26))+string(rune('a'+i/26))), nil, baseTime)
	}
	img := filepath.Join(tmp, "fat.img")
	fstest.Run(t, "mkfs.vfat", "-C", "-F", "16", "-s", "1", img, "8192")
	fstest.RunEnv(t, mtoolsEnv, "mcopy", "-i", img, "-s", "-m", filepath.Join(src, "big.bin"), filepath.Join(src, "MixedCase.Txt"), filepath.Join(src, "many"), "::/")
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type bytesAt []byte

func (b bytesAt) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(b)) {
		return 0, errors.New("read past end")
	}
	n := copy(p, b[off:])
	if n < len(p) {
		return n, errors.New("short read")
	}
	return n, nil
}

func mustOpen(t *testing.T, img []byte) *fsys {
	t.Helper()
	v, err := Open(bytesAt(img), int64(len(img)))
	if err != nil {
		t.Fatal(err)
	}
	return v.(*fsys)
}

func setFAT16(img []byte, g *geometry, c uint32, v uint16) {
	binary.LittleEndian.PutUint16(img[g.fatOffset+2*int64(c):], v)
}

func TestMalformedChains(t *testing.T) {
	orig := smallImage(t)
	s := mustOpen(t, orig)
	g := s.g
	big, err := s.Lookup(rootIno, "big.bin")
	if err != nil {
		t.Fatal(err)
	}
	d, _ := s.entry(big.Ino)
	many, _ := s.Lookup(rootIno, "many")
	md, _ := s.entry(many.Ino)
	for _, tc := range []struct {
		name  string
		patch func(img []byte)
		dir   bool
		want  string
	}{
		{"self loop", func(img []byte) { setFAT16(img, g, d.cluster+1, uint16(d.cluster)) }, false, "twice"},
		{"short chain", func(img []byte) { setFAT16(img, g, d.cluster+1, 0xFFFF) }, false, "ends after 2 clusters"},
		{"out of range", func(img []byte) { setFAT16(img, g, d.cluster, uint16(g.clusters+2)) }, false, "links to"},
		{"free cluster in chain", func(img []byte) { setFAT16(img, g, d.cluster, 0) }, false, "links to 0x0"},
		{"bad cluster in chain", func(img []byte) { setFAT16(img, g, d.cluster, 0xFFF7) }, false, "links to 0xfff7"},
		{"first cluster out of range", func(img []byte) {
			binary.LittleEndian.PutUint16(img[big.Ino+26:], 0xFFF0)
		}, false, "first cluster"},
		{"directory loop", func(img []byte) { setFAT16(img, g, md.cluster+2, uint16(md.cluster)) }, true, "loop"},
		{"directory chain loops back to itself", func(img []byte) { setFAT16(img, g, md.cluster, uint16(md.cluster)) }, true, "loop"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := append([]byte(nil), orig...)
			tc.patch(img)
			s := mustOpen(t, img)
			var err error
			if tc.dir {
				_, err = s.ReadDir(many.Ino)
			} else {
				_, err = s.Open(big.Ino)
			}
			if !errors.Is(err, vfs.ErrMalformed) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want ErrMalformed mentioning %q", err, tc.want)
			}
		})
	}
}

func TestLFNChecksumMismatchFallsBack(t *testing.T) {
	img := smallImage(t)
	s := mustOpen(t, img)
	e, err := s.Lookup(rootIno, "MixedCase.Txt")
	if err != nil {
		t.Fatal(err)
	}
	img[e.Ino-direntSize+13]++ // the LFN slot just before the 8.3 entry
	s = mustOpen(t, img)
	ents, err := s.ReadDir(rootIno)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, e := range ents {
		names[e.Name] = true
	}
	if names["MixedCase.Txt"] || !names["MIXEDC~1.TXT"] {
		t.Fatalf("names %v: want the 8.3 fallback MIXEDC~1.TXT", names)
	}
}

func TestMalformedBootSector(t *testing.T) {
	orig := smallImage(t)
	for _, tc := range []struct {
		name  string
		patch func([]byte) []byte
		want  string
	}{
		{"truncated", func(b []byte) []byte { return b[:len(b)/2] }, "truncated"},
		{"sector size", func(b []byte) []byte { b[11], b[12] = 0, 3; return b }, "bytes per sector"},
		{"cluster size", func(b []byte) []byte { b[13] = 3; return b }, "sectors per cluster"},
		{"no FATs", func(b []byte) []byte { b[16] = 0; return b }, "FATs 0"},
		{"signature", func(b []byte) []byte { b[510] = 0; return b }, "signature"},
		{"FAT too small", func(b []byte) []byte { b[22], b[23] = 1, 0; return b }, "cannot map"},
		{"data past end", func(b []byte) []byte { b[14], b[15] = 0xFF, 0xFF; return b }, "data region"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := tc.patch(append([]byte(nil), orig...))
			if Probe(bytesAt(img), int64(len(img))) {
				t.Error("Probe accepted it")
			}
			_, err := Open(bytesAt(img), int64(len(img)))
			if !errors.Is(err, vfs.ErrMalformed) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want ErrMalformed mentioning %q", err, tc.want)
			}
		})
	}
}
