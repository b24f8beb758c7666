package xfs

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

// sparseVolume is a volume made of the non-zero 512-byte sectors of an
// image; everything else reads as zeros. Fuzz inputs are these sectors as
// records of a 4-byte sector number and 512 bytes, so the fuzzer mutates
// metadata rather than megabytes of zeros.
type sparseVolume struct {
	sectors map[int64][]byte
	size    int64
}

func (v *sparseVolume) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off >= v.size {
		return 0, io.EOF
	}
	n := int(min(int64(len(p)), v.size-off))
	for done := 0; done < n; {
		s, in := (off+int64(done))/512, int((off+int64(done))%512)
		k := min(512-in, n-done)
		if b, ok := v.sectors[s]; ok {
			copy(p[done:done+k], b[in:])
		} else {
			clear(p[done : done+k])
		}
		done += k
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

const maxFuzzVolume = 256 << 20

func unpack(data []byte) *sparseVolume {
	v := &sparseVolume{sectors: map[int64][]byte{}}
	for len(data) >= 4+512 {
		s := int64(binary.LittleEndian.Uint32(data))
		if (s+1)*512 <= maxFuzzVolume {
			v.sectors[s] = data[4:516]
			v.size = max(v.size, (s+1)*512)
		}
		data = data[516:]
	}
	if sb, ok := v.sectors[0]; ok && binary.BigEndian.Uint32(sb) == sbMagic {
		bs, blocks := int64(binary.BigEndian.Uint32(sb[4:])), binary.BigEndian.Uint64(sb[8:])
		if bs > 0 && bs <= maxBlockSize && blocks < maxFuzzVolume {
			v.size = max(v.size, min(bs*int64(blocks), maxFuzzVolume))
		}
	}
	return v
}

func pack(img []byte) []byte {
	var out []byte
	zero := make([]byte, 512)
	for s := 0; s*512 < len(img); s++ {
		sec := make([]byte, 512)
		copy(sec, img[s*512:])
		if bytes.Equal(sec, zero) {
			continue
		}
		out = binary.LittleEndian.AppendUint32(out, uint32(s))
		out = append(out, sec...)
	}
	return out
}

func loadSeed(t testing.TB, name string) []byte {
	f, err := os.Open("testdata/" + name + ".img.gz")
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
	return pack(b)
}

// exercise opens the volume and walks it, bounded, reading every file
// (up to 1 MiB each) and link; it returns what it read by path.
func exercise(data []byte) (map[string]string, error) {
	v := unpack(data)
	fsys, err := OpenXFS(v, v.size)
	if err != nil {
		return nil, err
	}
	fsys.LogClean()
	out := map[string]string{}
	var errs []error
	visits := 0
	var walk func(ino uint64, p string, depth int)
	walk = func(ino uint64, p string, depth int) {
		if visits++; visits > 3000 || depth > 16 {
			return
		}
		fi, err := fsys.Stat(ino)
		if err != nil {
			errs = append(errs, err)
			return
		}
		switch fi.Mode & vfs.ModeType {
		case vfs.ModeDir:
			ents, err := fsys.ReadDir(ino)
			if err != nil {
				errs = append(errs, err)
				return
			}
			for _, e := range ents {
				if _, err := fsys.Lookup(ino, e.Name); err != nil {
					errs = append(errs, err)
				}
				walk(e.Ino, p+"/"+e.Name, depth+1)
			}
		case vfs.ModeFile:
			f, err := fsys.Open(ino)
			if err != nil {
				errs = append(errs, err)
				return
			}
			buf := make([]byte, min(f.Size(), 1<<20))
			n, err := f.ReadAt(buf, 0)
			if err != nil && err != io.EOF {
				errs = append(errs, err)
			}
			out[p] = string(buf[:n])
		case vfs.ModeLink:
			tg, err := fsys.Readlink(ino)
			if err != nil {
				errs = append(errs, err)
			}
			out[p] = tg
		}
	}
	walk(fsys.Root(), "", 0)
	return out, errors.Join(errs...)
}

// TestSeeds reads the committed seed images completely.
func TestSeeds(t *testing.T) {
	for _, name := range []string{"v4", "v5"} {
		got, err := exercise(loadSeed(t, name))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		links := 1
		if name == "v4" { // see mkseeds.sh: only v4 has a remote symlink
			links = 2
			if got["/remote"] != strings.Repeat("r/", 300) {
				t.Errorf("%s: remote symlink %q", name, got["/remote"])
			}
		}
		if got["/hello"] != "hello\n" || len(got["/data"]) != 6000 || got["/fast"] != "hello" ||
			got["/d600/file-number-599"] != "hello\n" || got["/setuid"] != "hello\n" {
			t.Errorf("%s: seed content wrong: hello %q data %d fast %q remote %d", name, got["/hello"], len(got["/data"]), got["/fast"], len(got["/remote"]))
		}
		if len(got) != 3+links+5+40+150+600 {
			t.Errorf("%s: read %d files and links", name, len(got))
		}
	}
}

// TestCorruptSectors flips bytes in every metadata sector of the seeds:
// the reader must report damage as ErrMalformed (or read on), never panic.
func TestCorruptSectors(t *testing.T) {
	for _, name := range []string{"v4", "v5"} {
		seed := loadSeed(t, name)
		step := max(1, len(seed)/516/60) * 516
		for r := 0; r+516 <= len(seed); r += step {
			for _, at := range []int{4, 4 + 8, 4 + 100, 4 + 301} {
				data := bytes.Clone(seed)
				data[r+at] ^= 0x5a
				if _, err := exercise(data); err != nil && !errors.Is(err, vfs.ErrMalformed) {
					t.Errorf("%s: sector record %d byte %d: error does not wrap ErrMalformed: %v", name, r/516, at, err)
				}
			}
		}
	}
}

func FuzzOpen(f *testing.F) {
	f.Add(loadSeed(f, "v4"))
	f.Add(loadSeed(f, "v5"))
	f.Fuzz(func(t *testing.T, data []byte) {
		exercise(data)
	})
}
