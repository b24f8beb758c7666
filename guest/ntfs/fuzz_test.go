package ntfs

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/cairn-backup/cairn/guest/vfs"
)

// zeroPadded is a volume whose first bytes are data and the rest zeros,
// so that the committed seed stays small.
type zeroPadded struct {
	data []byte
	size int64
}

func (z zeroPadded) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off >= z.size {
		return 0, io.EOF
	}
	n := int(min(int64(len(p)), z.size-off))
	clear(p[:n])
	if off < int64(len(z.data)) {
		copy(p[:n], z.data[off:])
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// paddedVolume sizes the volume from the boot sector, capped at 64 MiB.
func paddedVolume(data []byte) zeroPadded {
	size := int64(len(data))
	if len(data) >= 0x30 {
		bps := int64(binary.LittleEndian.Uint16(data[11:]))
		sectors := int64(binary.LittleEndian.Uint64(data[0x28:]))
		if sectors > 0 && sectors < 1<<40 {
			size = max(size, min(bps*sectors, 64<<20))
		}
	}
	return zeroPadded{data, size}
}

func loadSeed(t testing.TB) []byte {
	f, err := os.Open("testdata/ntfs.img.gz")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// exercise opens the volume and walks it, bounded, reading every file
// and link; it returns the paths it read with their content or target.
func exercise(t testing.TB, data []byte) (vfs.FS, map[string]string, error) {
	v := paddedVolume(data)
	vol, err := Open(v, v.size)
	if err != nil {
		return nil, nil, err
	}
	out := map[string]string{}
	visits := 0
	var walk func(ino uint64, p string, depth int)
	walk = func(ino uint64, p string, depth int) {
		visits++
		if depth > 16 || visits > 3000 {
			return
		}
		fi, err := vol.Stat(ino)
		if err != nil {
			return
		}
		switch fi.Mode & vfs.ModeType {
		case vfs.ModeDir:
			ents, err := vol.ReadDir(ino)
			if err != nil {
				return
			}
			for _, e := range ents {
				if _, err := vol.Lookup(ino, e.Name); err != nil {
					t.Fatalf("Lookup(%q) of a listed name: %v", e.Name, err)
				}
				walk(e.Ino, p+"/"+e.Name, depth+1)
			}
		case vfs.ModeLink:
			if s, err := vol.Readlink(ino); err == nil {
				out[p] = "-> " + s
			}
		default:
			f, err := vol.Open(ino)
			if err != nil {
				return
			}
			var b bytes.Buffer
			buf := make([]byte, 32<<10)
			for off := int64(0); off < f.Size() && off < 1<<20; off += int64(len(buf)) {
				n, err := f.ReadAt(buf, off)
				b.Write(buf[:n])
				if err != nil {
					break
				}
			}
			out[p] = b.String()
		}
	}
	walk(vol.Root(), "", 0)
	return vol, out, nil
}

// TestSeed checks the committed image without ntfs-3g: the files the
// seed script made, including the compressed, sparse, linked ones.
func TestSeed(t *testing.T) {
	vol, files, err := exercise(t, loadSeed(t))
	if err != nil {
		t.Fatal(err)
	}
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

// sectorsOf encodes an image as its non-zero 512-byte sectors, each
// prefixed by its 32-bit sector number: the fuzz input format.
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

// imageOf decodes sectorsOf's format; later sectors win, the image is
// at most 64 MiB.
func imageOf(in []byte) []byte {
	var img []byte
	for ; len(in) >= 516; in = in[516:] {
		off := int(binary.LittleEndian.Uint32(in)) * 512
		if off >= 64<<20 {
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
	recoverPanics = false // a panic is a bug the fuzzer must report
	f.Add(sectorsOf(loadSeed(f)))
	f.Fuzz(func(t *testing.T, data []byte) {
		if _, _, err := exercise(t, imageOf(data)); err != nil && !errors.Is(err, vfs.ErrMalformed) && !errors.Is(err, io.EOF) {
			// Only an I/O error from reading past the padded end may be unclassified.
			t.Logf("Open: %v", err)
		}
	})
}
