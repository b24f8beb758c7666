package xfs

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/cairn-backup/cairn/guest/internal/fstest"
	"github.com/cairn-backup/cairn/guest/vfs"
)

// walkLimits bound the walks of seeds and fuzz inputs.
var walkLimits = fstest.Limits{Visits: 3000, Depth: 16, Read: 1 << 20}

// layout sizes a volume from its superblock, up to 256 MiB. Fuzz inputs
// are an image's non-zero 512-byte sectors as records of a 4-byte sector
// number and 512 bytes (fstest.EncodeSectors), so the fuzzer mutates
// metadata rather than megabytes of zeros.
var layout = fstest.Layout{Max: 256 << 20, Size: func(sb []byte) int64 {
	if binary.BigEndian.Uint32(sb) != sbMagic {
		return 0
	}
	if bs, blocks := int64(binary.BigEndian.Uint32(sb[4:])), binary.BigEndian.Uint64(sb[8:]); bs > 0 && bs <= maxBlockSize && blocks < 256<<20 {
		return bs * int64(blocks)
	}
	return 0
}}

// loadSeed returns the committed seed image testdata/name.img.gz as a
// fuzz input.
func loadSeed(t testing.TB, name string) []byte {
	return fstest.EncodeSectors(fstest.Seed(t, name+".img.gz"))
}

// exercise opens the volume and walks it, bounded, reading every file
// (up to 1 MiB each) and link; it returns what it read by path (a link
// as "-> target") and every error it met.
func exercise(data []byte) (map[string]string, error) {
	v := layout.Input(data)
	fsys, err := OpenXFS(v, v.Size)
	if err != nil {
		return nil, err
	}
	fsys.LogClean()
	res := fstest.Walk(fsys, walkLimits)
	return res.Read, errors.Join(res.Errs...)
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
			if got["/remote"] != "-> "+strings.Repeat("r/", 300) {
				t.Errorf("%s: remote symlink %q", name, got["/remote"])
			}
		}
		if got["/hello"] != "hello\n" || len(got["/data"]) != 6000 || got["/fast"] != "-> hello" ||
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
