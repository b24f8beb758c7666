package fat

import (
	"compress/gzip"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairn-backup/cairn/guest/vfs"
)

// zeroPadded is a volume whose first bytes are data and the rest zeros, so
// that seeds stay small while the BPB describes a full-size volume.
type zeroPadded struct {
	data []byte
	size int64
}

func (z zeroPadded) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off >= z.size {
		return 0, io.EOF
	}
	n := len(p)
	if rem := z.size - off; int64(n) > rem {
		n = int(rem)
	}
	clear(p[:n])
	if off < int64(len(z.data)) {
		copy(p[:n], z.data[off:])
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

const fuzzMaxVolume = 64 << 20

// paddedVolume sizes the volume from the BPB, capped.
func paddedVolume(data []byte) zeroPadded {
	size := int64(len(data))
	if len(data) >= 40 {
		bps := int64(binary.LittleEndian.Uint16(data[11:]))
		tot := int64(binary.LittleEndian.Uint16(data[19:]))
		if tot == 0 {
			tot = int64(binary.LittleEndian.Uint32(data[32:]))
		}
		size = max(size, min(bps*tot, fuzzMaxVolume))
	}
	return zeroPadded{data, size}
}

func loadSeeds(t testing.TB) map[string][]byte {
	paths, err := filepath.Glob("testdata/*.img.gz")
	if err != nil || len(paths) == 0 {
		t.Fatalf("no seeds in testdata: %v", err)
	}
	out := map[string][]byte{}
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		zr, err := gzip.NewReader(f)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(zr)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		out[filepath.Base(p)] = b
	}
	return out
}

// exercise opens the volume and walks all of it, bounded, reading every
// file. It reports whether Open succeeded and how many files it read.
func exercise(t testing.TB, data []byte) (vfs.FS, int, error) {
	v := paddedVolume(data)
	fsys, err := Open(v, v.size)
	if err != nil {
		if !errors.Is(err, vfs.ErrMalformed) && !errors.Is(err, io.EOF) {
			// Reads past the padded end are I/O errors, the rest must be classified.
			t.Logf("Open: %v", err)
		}
		return nil, 0, err
	}
	fsys.Label()
	files, visits := 0, 0
	buf := make([]byte, 64<<10)
	var walk func(ino uint64, depth int)
	walk = func(ino uint64, depth int) {
		visits++
		if depth > 16 || visits > 2000 {
			return
		}
		fi, err := fsys.Stat(ino)
		if err != nil {
			return
		}
		if fi.IsDir() {
			ents, err := fsys.ReadDir(ino)
			if err != nil {
				return
			}
			for _, e := range ents {
				if _, err := fsys.Lookup(ino, e.Name); err != nil {
					t.Fatalf("Lookup(%q) of a listed name: %v", e.Name, err)
				}
				walk(e.Ino, depth+1)
			}
			return
		}
		f, err := fsys.Open(ino)
		if err != nil {
			return
		}
		files++
		for off := int64(0); off < f.Size() && off < 1<<20; off += int64(len(buf)) {
			if _, err := f.ReadAt(buf, off); err != nil && err != io.EOF {
				break
			}
		}
	}
	walk(fsys.Root(), 0)
	return fsys, files, nil
}

func TestSeedsOpen(t *testing.T) {
	want := map[string]variant{"fat12.img.gz": fat12, "fat16.img.gz": fat16, "fat32.img.gz": fat32}
	for name, data := range loadSeeds(t) {
		vol, files, err := exercise(t, data)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if k := vol.(*fsys).g.kind; k != want[name] || files != 6 || vol.Label() != "SEED" {
			t.Errorf("%s: FAT%d, %d files, label %q; want FAT%d, 6 files, SEED", name, k, files, vol.Label(), want[name])
		}
	}
}

// sectorsOf encodes an image as its non-zero 512-byte sectors, each
// prefixed by its 32-bit sector number: the fuzz input format, which
// keeps inputs small (Go's fuzzer stalls minimizing large inputs).
func sectorsOf(img []byte) []byte {
	var out []byte
	for i := 0; i < len(img); i += 512 {
		sec := img[i:min(i+512, len(img))]
		if strings.Trim(string(sec), "\x00") == "" {
			continue
		}
		out = binary.LittleEndian.AppendUint32(out, uint32(i/512))
		out = append(out, sec...)
		out = append(out, make([]byte, 512-len(sec))...)
	}
	return out
}

// imageOf decodes sectorsOf's format; later sectors win; at most 64 MiB.
func imageOf(in []byte) []byte {
	var img []byte
	for ; len(in) >= 516; in = in[516:] {
		off := int(binary.LittleEndian.Uint32(in)) * 512
		if off >= fuzzMaxVolume {
			continue
		}
		if off+512 > len(img) {
			img = append(img, make([]byte, off+512-len(img))...)
		}
		copy(img[off:], in[4:516])
	}
	return img
}

func FuzzOpen(f *testing.F) {
	for _, data := range loadSeeds(f) {
		f.Add(sectorsOf(data))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		exercise(t, imageOf(data))
	})
}
