package guest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/guest/part"
	"github.com/cairn-backup/cairn/guest/vfs"
)

// sparseDisk is a large disk that is zeros except where data says.
type sparseDisk struct {
	size  int64
	data  map[int64][]byte // offset → bytes
	reads atomic.Int64
}

func (d *sparseDisk) ReadAt(p []byte, off int64) (int, error) {
	d.reads.Add(1)
	if off >= d.size {
		return 0, io.EOF
	}
	n := len(p)
	if rest := d.size - off; int64(n) > rest {
		n = int(rest)
	}
	clear(p[:n])
	for at, b := range d.data {
		lo, hi := max(at, off), min(at+int64(len(b)), off+int64(n))
		if lo < hi {
			copy(p[lo-off:hi-off], b[lo-at:hi-at])
		}
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// gptDisk is a disk with a GPT listing count partitions of one sector
// each, every one starting with magic.
func gptDisk(count int, magic []byte) *sparseDisk {
	const lbs = 512
	entries := make([]byte, count*128)
	first := int64(2 + (count*128+lbs-1)/lbs)
	d := &sparseDisk{size: (first + int64(count) + 64) * lbs, data: map[int64][]byte{}}
	for i := 0; i < count; i++ {
		e := entries[i*128:]
		copy(e[0:16], bytes.Repeat([]byte{0xaf}, 16)) // type GUID
		binary.LittleEndian.PutUint64(e[16:], uint64(i+1))
		binary.LittleEndian.PutUint64(e[32:], uint64(first+int64(i)))
		binary.LittleEndian.PutUint64(e[40:], uint64(first+int64(i)))
		if magic != nil {
			d.data[(first+int64(i))*lbs] = magic
		}
	}
	last := d.size/lbs - 1
	hdr := func(self, alt, table int64) []byte {
		h := make([]byte, lbs)
		copy(h, "EFI PART")
		binary.LittleEndian.PutUint32(h[8:], 0x00010000)
		binary.LittleEndian.PutUint32(h[12:], 92)
		binary.LittleEndian.PutUint64(h[24:], uint64(self))
		binary.LittleEndian.PutUint64(h[32:], uint64(alt))
		binary.LittleEndian.PutUint64(h[40:], uint64(first))
		binary.LittleEndian.PutUint64(h[48:], uint64(last-33))
		binary.LittleEndian.PutUint64(h[72:], uint64(table))
		binary.LittleEndian.PutUint32(h[80:], uint32(count))
		binary.LittleEndian.PutUint32(h[84:], 128)
		binary.LittleEndian.PutUint32(h[88:], crc32.ChecksumIEEE(entries))
		binary.LittleEndian.PutUint32(h[16:], crc32.ChecksumIEEE(h[:92]))
		return h
	}
	mbr := make([]byte, lbs)
	mbr[446+4] = 0xee
	binary.LittleEndian.PutUint32(mbr[446+8:], 1)
	binary.LittleEndian.PutUint32(mbr[446+12:], uint32(min(d.size/lbs-1, 0xffffffff)))
	mbr[510], mbr[511] = 0x55, 0xaa
	d.data[0] = mbr
	d.data[lbs] = hdr(1, last, 2)
	d.data[2*lbs] = entries
	d.data[(last-32)*lbs] = entries
	d.data[last*lbs] = hdr(last, 1, last-32)
	return d
}

// testReader recognises volumes starting with "TESTFS" and counts probes.
type testReader struct{ probes atomic.Int64 }

func (tr *testReader) reader() Reader {
	return Reader{
		Name: "test",
		Probe: func(r io.ReaderAt, size int64) bool {
			tr.probes.Add(1)
			b := make([]byte, 6)
			r.ReadAt(b, 0)
			return string(b) == "TESTFS"
		},
		Open: func(r io.ReaderAt, size int64) (vfs.FS, error) {
			return nil, errors.New("not needed")
		},
	}
}

func TestInspectPartitionsAndProbe(t *testing.T) {
	tr := &testReader{}
	d := gptDisk(4, []byte("TESTFS"))
	plain := &sparseDisk{size: 1 << 20, data: map[int64][]byte{0: []byte("TESTFS")}}
	blank := &sparseDisk{size: 1 << 20}
	m, err := Inspect([]Disk{{"vda", d, d.size}, {"vdb", plain, plain.size}, {"vdc", blank, blank.size}},
		Options{Readers: []Reader{tr.reader()}})
	if err != nil {
		t.Fatal(err)
	}
	vda, vdb, vdc := m.Disks[0], m.Disks[1], m.Disks[2]
	if vda.Table != "gpt" || len(vda.Volumes) != 4 || vda.Volumes[2].Kind != Partition || vda.Volumes[2].Number != 3 || vda.Volumes[2].FSType() != "test" {
		t.Fatalf("vda: %+v", vda)
	}
	if len(vdb.Volumes) != 1 || vdb.Volumes[0].Kind != WholeDisk || vdb.Volumes[0].FSType() != "test" {
		t.Fatalf("vdb: %+v", vdb)
	}
	if len(vdc.Volumes) != 0 || vdc.Table != "" || vdc.Err != nil {
		t.Fatalf("vdc: %+v", vdc)
	}
	v := vda.Volumes[1]
	b := make([]byte, 6)
	if _, err := v.ReaderAt().ReadAt(b, 0); err != nil || string(b) != "TESTFS" {
		t.Fatalf("volume reader: %q %v", b, err)
	}
	if _, err := (&Volume{}).FS(); !errors.Is(err, ErrNoFileSystem) {
		t.Fatalf("FS of an unrecognised volume: %v", err)
	}
}

// A GPT with the most entries cairn accepts: Inspect lists them all, but
// probes only MaxProbe of them, and finishes quickly.
func TestInspectBounded(t *testing.T) {
	tr := &testReader{}
	d := gptDisk(part.MaxPartitions, []byte("TESTFS"))
	start := time.Now()
	m, err := Inspect([]Disk{{"vda", d, d.size}}, Options{Readers: []Reader{tr.reader()}, MaxProbe: 100})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(m.Disks[0].Volumes); n != part.MaxPartitions {
		t.Fatalf("%d volumes listed", n)
	}
	if tr.probes.Load() != 100 || len(m.Notes) != 1 || !strings.Contains(m.Notes[0], "not probed") {
		t.Fatalf("%d probes, notes %q", tr.probes.Load(), m.Notes)
	}
	if el := time.Since(start); el > 10*time.Second {
		t.Fatalf("took %s", el)
	}
	// One entry more than that is refused as malformed, on its disk only.
	big := gptDisk(part.MaxPartitions+1, nil)
	ok := &sparseDisk{size: 1 << 20, data: map[int64][]byte{0: []byte("TESTFS")}}
	m, err = Inspect([]Disk{{"vda", big, big.size}, {"vdb", ok, ok.size}}, Options{Readers: []Reader{tr.reader()}})
	if err != nil || !errors.Is(m.Disks[0].Err, part.ErrMalformed) || len(m.Disks[1].Volumes) != 1 {
		t.Fatalf("%v, %+v", err, m.Disks)
	}
}

// A read error is returned, not taken for "no file system".
func TestInspectReadError(t *testing.T) {
	boom := errors.New("boom")
	_, err := Inspect([]Disk{{"vda", failing{boom}, 1 << 20}}, Options{Readers: []Reader{(&testReader{}).reader()}})
	if !errors.Is(err, boom) {
		t.Fatalf("Inspect over a failing disk: %v", err)
	}
}

type failing struct{ err error }

func (f failing) ReadAt(p []byte, off int64) (int, error) { return 0, f.err }

// A reader that panics in Probe or Open does not take Inspect down.
func TestInspectReaderPanics(t *testing.T) {
	d := &sparseDisk{size: 1 << 20, data: map[int64][]byte{0: []byte("TESTFS")}}
	bad := Reader{Name: "bad", Probe: func(io.ReaderAt, int64) bool { panic("probe") }}
	good := Reader{Name: "good", Probe: func(io.ReaderAt, int64) bool { return true },
		Open: func(io.ReaderAt, int64) (vfs.FS, error) { panic("open") }}
	m, err := Inspect([]Disk{{"vda", d, d.size}}, Options{Readers: []Reader{bad, good}})
	if err != nil || len(m.Disks[0].Volumes) != 1 {
		t.Fatalf("%v %+v", err, m)
	}
	if _, err := m.Disks[0].Volumes[0].FS(); !errors.Is(err, vfs.ErrMalformed) {
		t.Fatalf("FS after a panicking Open: %v", err)
	}
}
