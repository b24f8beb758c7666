package part

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"path/filepath"
	"testing"

	"github.com/cairn-backup/cairn/fs/testimg"
)

const MiB = testimg.MiB

func readParts(t *testing.T, b []byte) (Table, error) {
	t.Helper()
	return Read(bytes.NewReader(b), int64(len(b)))
}

func TestReadPartitionsGPTAndMBR(t *testing.T) {
	dir := t.TempDir()
	gpt := testimg.Make(t, filepath.Join(dir, "gpt.raw"), testimg.Spec{
		Size: 16 * MiB, Label: "gpt", Parts: []testimg.PartSpec{{Size: 2 * MiB}, {Size: 3 * MiB}, {}},
	})
	mbr := testimg.Make(t, filepath.Join(dir, "mbr.raw"), testimg.Spec{
		Size: 64 * MiB, Script: "label: dos\nstart=2048, size=16384, type=83\nstart=18432, size=81920, type=5\n" +
			"start=20480, size=20480, type=83\nstart=43008, size=20480, type=82\nstart=100352, size=10240, type=7\n",
	})
	for _, c := range []struct {
		img  *testimg.Image
		kind string
		skip int // sfdisk's extended partition, not shown
	}{{gpt, "gpt", 0}, {mbr, "mbr", 2}} {
		table, err := readParts(t, c.img.Bytes(t))
		if err != nil || table.Kind != c.kind {
			t.Fatalf("%s: %+v, %v", c.kind, table, err)
		}
		var want []testimg.Part
		for _, p := range c.img.Parts {
			if p.Number != c.skip {
				want = append(want, p)
			}
		}
		if len(table.Partitions) != len(want) {
			t.Fatalf("%s: found %+v, sfdisk says %+v", c.kind, table.Partitions, c.img.Parts)
		}
		for i, p := range table.Partitions {
			if p.Number != want[i].Number || p.Start != want[i].Start || p.Size != want[i].Size {
				t.Errorf("%s partition %d: %+v, sfdisk says %+v", c.kind, i, p, want[i])
			}
		}
	}
	table, _ := readParts(t, mbr.Bytes(t))
	if table.Partitions[1].Number != 3 || table.Partitions[1].Type != "0x07" || table.Partitions[3].Type != "0x82" {
		t.Errorf("MBR partitions %+v", table.Partitions)
	}
}

func TestReadPartitionsNoTable(t *testing.T) {
	for name, b := range map[string][]byte{
		"empty disk": make([]byte, 1*MiB),
		"tiny disk":  make([]byte, 700),
		"fat boot sector": func() []byte {
			b := make([]byte, 1*MiB)
			copy(b[446:], "boot code, not a table: flags are not 0 or 0x80")
			b[510], b[511] = 0x55, 0xaa
			return b
		}(),
	} {
		table, err := readParts(t, b)
		if err != nil || table.Kind != "" || len(table.Partitions) != 0 {
			t.Errorf("%s: %+v, %v", name, table, err)
		}
	}
}

// mbrDisk is a 16 MiB disk with an MBR holding the given entries.
func mbrDisk(entries ...[3]uint32) []byte { // type, start, size (sectors)
	b := make([]byte, 16*MiB)
	for i, e := range entries {
		writeMBREntry(b, 0, i, e)
	}
	b[510], b[511] = 0x55, 0xaa
	return b
}

func writeMBREntry(b []byte, sector int64, i int, e [3]uint32) {
	p := b[sector*512+446+int64(16*i):]
	p[4] = byte(e[0])
	binary.LittleEndian.PutUint32(p[8:], e[1])
	binary.LittleEndian.PutUint32(p[12:], e[2])
}

// fixGPT recomputes the CRCs of the primary GPT header and entries.
func fixGPT(b []byte) {
	h := b[512:]
	count, esize := binary.LittleEndian.Uint32(h[80:]), binary.LittleEndian.Uint32(h[84:])
	if n := int(count) * int(esize); n <= 32*MiB && 1024+n <= len(b) {
		binary.LittleEndian.PutUint32(h[88:], crc32.ChecksumIEEE(b[1024:1024+n]))
	}
	clear(h[16:20])
	binary.LittleEndian.PutUint32(h[16:], crc32.ChecksumIEEE(h[:92]))
}

func TestReadPartitionsMalformed(t *testing.T) {
	gptImg := testimg.Make(t, filepath.Join(t.TempDir(), "gpt.raw"), testimg.Spec{
		Size: 16 * MiB, Label: "gpt", Parts: []testimg.PartSpec{{Size: 2 * MiB}},
	})
	gpt := gptImg.Bytes(t)
	sectors := uint32(16 * MiB / 512)
	cases := map[string][]byte{
		"partition past the end": mbrDisk([3]uint32{0x83, 2048, sectors}),
		"two extended":           mbrDisk([3]uint32{0x05, 2048, 4096}, [3]uint32{0x0f, 8192, 4096}),
		"protective MBR, no GPT": mbrDisk([3]uint32{0xee, 1, sectors - 1}),
		"EBR loop": func() []byte {
			b := mbrDisk([3]uint32{0x05, 2048, 8192})
			writeMBREntry(b, 2048, 0, [3]uint32{0x83, 2048, 1024})
			writeMBREntry(b, 2048, 1, [3]uint32{0x05, 0, 8192}) // links to itself
			b[2048*512+510], b[2048*512+511] = 0x55, 0xaa
			return b
		}(),
		"logical partition outside its extended one": func() []byte {
			b := mbrDisk([3]uint32{0x05, 2048, 8192})
			writeMBREntry(b, 2048, 0, [3]uint32{0x83, 2048, 100000})
			b[2048*512+510], b[2048*512+511] = 0x55, 0xaa
			return b
		}(),
		"GPT partition past the end": func() []byte {
			b := bytes.Clone(gpt)
			binary.LittleEndian.PutUint64(b[1024+40:], uint64(sectors)+100) // last LBA of entry 1
			fixGPT(b)
			return b
		}(),
		"GPT asking for a huge entry array": func() []byte {
			b := bytes.Clone(gpt)
			binary.LittleEndian.PutUint32(b[512+80:], 1<<30)
			fixGPT(b)
			return b
		}(),
		"both GPT headers damaged": func() []byte {
			b := bytes.Clone(gpt)
			b[512+16] ^= 1
			b[len(b)-512+16] ^= 1
			return b
		}(),
	}
	for name, b := range cases {
		if table, err := readParts(t, b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %+v, %v; want ErrMalformed", name, table, err)
		}
	}
	// One damaged GPT header: the backup is used.
	b := bytes.Clone(gpt)
	b[512+16] ^= 1
	if table, err := readParts(t, b); err != nil || len(table.Partitions) != 1 || table.Partitions[0].Start != gptImg.Parts[0].Start {
		t.Errorf("primary GPT damaged: %+v, %v", table, err)
	}
}

type failingReader struct{ err error }

func (f failingReader) ReadAt(p []byte, off int64) (int, error) {
	if off >= 512*3 {
		return 0, f.err
	}
	clear(p)
	if off == 0 && len(p) >= 512 { // a protective MBR: the GPT must be read
		writeMBREntry(p, 0, 0, [3]uint32{0xee, 1, 1000})
		p[510], p[511] = 0x55, 0xaa
	}
	return len(p), nil
}

func TestReadPartitionsReadError(t *testing.T) {
	boom := errors.New("boom")
	_, err := Read(failingReader{boom}, 16*MiB)
	if !errors.Is(err, boom) || errors.Is(err, ErrMalformed) {
		t.Fatalf("a failed read must be returned as is, not as a malformed table: %v", err)
	}
}
