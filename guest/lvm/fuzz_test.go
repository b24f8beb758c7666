package lvm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/cairn-backup/cairn/guest/internal/fstest"
	"github.com/cairn-backup/cairn/guest/vfs"
)

// pvVolume is the committed PV head img as the 32 MiB disk it was cut
// from (its trailing zeros were trimmed).
func pvVolume(img []byte) *fstest.Volume {
	v := fstest.NewVolume(img)
	v.Size = 32 << 20
	return v
}

// TestSeedPV reads the committed PV head (label, metadata area) made by
// lvm2: the LV "one" has two segments, "two" one.
func TestSeedPV(t *testing.T) {
	img := fstest.Seed(t, "pv.img.gz")
	v := pvVolume(img)
	pv, err := ReadPV(v, v.Size)
	if err != nil {
		t.Fatal(err)
	}
	vg := pv.Metadata
	if vg == nil || vg.Name != "seedvg" || vg.ExtentSize != 1<<20 || len(vg.PVs) != 1 || vg.PVs[0].UUID != pv.UUID ||
		vg.PVs[0].PEStart != 1<<20 || len(vg.LVs) != 2 || len(vg.LVs[0].Segments) != 2 || vg.LVs[0].Segments[1].Stripes[0].StartExtent != 5 {
		t.Fatalf("seed metadata: %+v", vg)
	}
	text := fstest.Seed(t, "seedvg.txt")
	vg2, err := ParseVG(text)
	if err != nil || vg2.Seqno != vg.Seqno {
		t.Fatalf("seed text: %v %+v", err, vg2)
	}
	// A flipped byte anywhere in the label or metadata is caught by a checksum.
	text0 := 4096 + int(binary.LittleEndian.Uint64(img[4096+40:]))
	for _, at := range []int{512 + 40, 512 + 100, 4096 + 30, text0 + 10, text0 + 700} {
		bad := bytes.Clone(img)
		bad[at] ^= 1
		v := pvVolume(bad)
		if _, err := ReadPV(v, v.Size); !errors.Is(err, vfs.ErrMalformed) {
			t.Errorf("byte %d flipped: ReadPV = %v, want ErrMalformed", at, err)
		}
	}
}

const unsupportedVG = `
vg {
	id = "aaaaaa-aaaa-aaaa-aaaa-aaaa-aaaa-aaaaaa"
	seqno = 9
	extent_size = 8 # 4 KiB
	physical_volumes {
		pv0 { id = "bbbbbb-bbbb-bbbb-bbbb-bbbb-bbbb-bbbbbb" device = "/dev/vdb" pe_start = 8 pe_count = 64 }
	}
	logical_volumes {
		plain { id = "c" status = ["READ", "WRITE", "VISIBLE"] segment_count = 1
			segment1 { start_extent = 0 extent_count = 4 type = "striped" stripe_count = 1 stripes = ["pv0", 60] } }
		pool { id = "p" status = ["READ", "WRITE", "VISIBLE"] segment_count = 1
			segment1 { start_extent = 0 extent_count = 8 type = "thin-pool" metadata = "pool_tmeta" pool = "pool_tdata" } }
		pool_tdata { id = "pd" status = ["READ", "WRITE"] segment_count = 1
			segment1 { start_extent = 0 extent_count = 8 type = "striped" stripe_count = 1 stripes = ["pv0", 0] } }
		thin { id = "t" status = ["READ", "WRITE", "VISIBLE"] segment_count = 1
			segment1 { start_extent = 0 extent_count = 16 type = "thin" thin_pool = "pool" device_id = 1 } }
		cow { id = "s" status = ["READ", "WRITE", "VISIBLE"] segment_count = 1
			segment1 { start_extent = 0 extent_count = 4 type = "striped" stripe_count = 1 stripes = ["pv0", 20] } }
		snapshot0 { id = "s0" status = ["READ"] segment_count = 1
			segment1 { start_extent = 0 extent_count = 4 type = "snapshot" chunk_size = 8 origin = "plain" cow_store = "cow" } }
		mirror { id = "r" status = ["READ", "WRITE", "VISIBLE"] segment_count = 1
			segment1 { start_extent = 0 extent_count = 2 type = "raid1" device_count = 2 raids = ["a", "b", "c", "d"] } }
	}
}
contents = "Text Format Volume Group"
version = 1
`

// TestUnsupportedTypes: thin, snapshot and raid LVs (which cannot be made
// here without device-mapper) are returned with ErrUnsupported, hidden
// LVs are not returned, and a plain LV next to them still reads.
func TestUnsupportedTypes(t *testing.T) {
	vg, err := ParseVG([]byte(unsupportedVG))
	if err != nil {
		t.Fatal(err)
	}
	disk := make([]byte, 4096+64*4096)
	copy(disk[4096+60*4096:], "plain LV data")
	pv := &PV{UUID: strings.Repeat("b", 32), Metadata: vg, r: bytes.NewReader(disk), size: int64(len(disk))}
	vols, err := Assemble([]*PV{pv})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]Volume{}
	for _, v := range vols {
		got[v.Name] = v
	}
	if len(vols) != 5 {
		t.Errorf("%d volumes, want the 5 visible ones", len(vols))
	}
	for _, name := range []string{"pool", "thin", "cow", "mirror"} {
		if v := got[name]; !errors.Is(v.Err, ErrUnsupported) || v.ReaderAt != nil {
			t.Errorf("%s: Err = %v", name, v.Err)
		}
	}
	p := got["plain"]
	if p.Err != nil || p.Size != 4*4096 {
		t.Fatalf("plain: %+v", p)
	}
	buf := make([]byte, 13)
	if _, err := p.ReadAt(buf, 0); err != nil || string(buf) != "plain LV data" {
		t.Errorf("plain: %q, %v", buf, err)
	}
}

// TestParserLimits: hostile metadata text is refused, not recursed into.
func TestParserLimits(t *testing.T) {
	for name, text := range map[string]string{
		"deep":         strings.Repeat("a {", 100) + strings.Repeat("}", 100),
		"unterminated": `vg { id = "x`,
		"stray brace":  `}`,
		"bad number":   `vg { seqno = 99999999999999999999 }`,
		"nested list":  `vg { a = [[1]] }`,
		"two VGs":      `a { id = "x" seqno = 1 extent_size = 8 } b { id = "y" seqno = 1 extent_size = 8 }`,
		"no extent":    `a { id = "x" seqno = 1 }`,
		"gap":          strings.Replace(unsupportedVG, "start_extent = 0 extent_count = 4 type = \"striped\" stripe_count = 1 stripes = [\"pv0\", 60]", "start_extent = 0 extent_count = 4 type = \"striped\" stripe_count = 2 stripes = [\"pv0\", 60]", 1),
	} {
		if _, err := ParseVG([]byte(text)); !errors.Is(err, vfs.ErrMalformed) {
			t.Errorf("%s: ParseVG = %v, want ErrMalformed", name, err)
		}
	}
}

func FuzzParseVG(f *testing.F) {
	f.Add(fstest.Seed(f, "seedvg.txt"))
	f.Add([]byte(unsupportedVG))
	f.Fuzz(func(t *testing.T, text []byte) {
		vg, err := ParseVG(text)
		if err != nil {
			return
		}
		disk := bytes.NewReader(make([]byte, 1<<20))
		refs := []*PV{}
		for _, p := range vg.PVs {
			refs = append(refs, &PV{UUID: p.UUID, Metadata: vg, r: disk, size: 1 << 20})
		}
		vols, _ := Assemble(refs)
		buf := make([]byte, 4096)
		for _, v := range vols {
			if v.Err == nil {
				v.ReadAt(buf, 0)
				v.ReadAt(buf, max(0, v.Size-100))
			}
		}
	})
}

func FuzzReadPV(f *testing.F) {
	f.Add(fstest.Seed(f, "pv.img.gz"))
	f.Fuzz(func(t *testing.T, img []byte) {
		pv, err := ReadPV(bytes.NewReader(img), int64(len(img)))
		if err != nil {
			return
		}
		vols, _ := Assemble([]*PV{pv})
		buf := make([]byte, 512)
		for _, v := range vols {
			if v.Err == nil {
				v.ReadAt(buf, 0)
			}
		}
	})
}
