package ntfs

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/cairn-backup/cairn/guest/internal/fstest"
	"github.com/cairn-backup/cairn/guest/vfs"
)

func wantMalformed(t *testing.T, err error, mention string) {
	t.Helper()
	if !errors.Is(err, vfs.ErrMalformed) || !strings.Contains(err.Error(), mention) {
		t.Fatalf("got %v, want ErrMalformed mentioning %q", err, mention)
	}
}

func TestMalformedVolume(t *testing.T) {
	seed := fstest.Seed(t, "ntfs.img.gz")
	open := func(b []byte) (vfs.FS, error) {
		v := layout.Image(b)
		return Open(v, v.Size)
	}
	vol, err := open(seed)
	if err != nil {
		t.Fatal(err)
	}
	s := vol.(*fsys)
	mft := s.v.mftLCN * s.v.clusterSize
	rec := func(no int64) int64 { return mft + no*s.v.recordSize } // the seed's MFT is contiguous
	for _, tc := range []struct {
		name    string
		patch   func(b []byte)
		mention string
	}{
		{"OEM id", func(b []byte) { copy(b[3:], "MSDOS5.0") }, "OEM id"},
		{"cluster size", func(b []byte) { b[13] = 3 }, "sectors per cluster"},
		{"MFT outside the volume", func(b []byte) { binary.LittleEndian.PutUint64(b[0x30:], 1<<40) }, "$MFT at cluster"},
		{"record size", func(b []byte) { b[0x40] = 0xFF }, "MFT record size"},
		{"MFT record magic", func(b []byte) { copy(b[mft:], "BAAD") }, "magic"},
		{"torn root record", func(b []byte) { b[rec(rootRecord)+510] ^= 0xFF }, "update sequence mismatch"},
		{"root record attribute length", func(b []byte) {
			off := rec(rootRecord) + int64(binary.LittleEndian.Uint16(b[rec(rootRecord)+0x14:]))
			binary.LittleEndian.PutUint32(b[off+4:], 3)
		}, "of length 3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := append([]byte(nil), seed...)
			tc.patch(b)
			if tc.name == "OEM id" || tc.name == "cluster size" {
				if v := layout.Image(b); Probe(v, v.Size) {
					t.Error("Probe accepted it")
				}
			}
			_, err := open(b)
			wantMalformed(t, err, tc.mention)
		})
	}
	if _, err := Open(bytes.NewReader(seed[:4096]), 4096); err == nil {
		t.Error("a truncated volume opened")
	}
}

func TestDecodeRuns(t *testing.T) {
	// 0x21: 1-byte length, 2-byte offset.
	ex, err := decodeRuns([]byte{0x21, 4, 0x10, 0x00, 0x01, 3, 0x21, 2, 0xF0, 0xFF, 0}, 0, 8, 100, "t")
	if err != nil {
		t.Fatal(err)
	}
	want := []extent{{0, 16, 4}, {4, -1, 3}, {7, 0, 2}}
	if len(ex) != 3 || ex[0] != want[0] || ex[1] != want[1] || ex[2] != want[2] {
		t.Fatalf("got %v, want %v", ex, want)
	}
	for _, tc := range []struct {
		name    string
		runs    []byte
		last    int64
		mention string
	}{
		{"outside the volume", []byte{0x21, 4, 0x62, 0x00, 0}, 3, "outside the volume"},
		{"negative LCN", []byte{0x21, 4, 0xF0, 0xFF, 0}, 3, "outside the volume"},
		{"zero length", []byte{0x01, 0, 0}, 0, "run of 0"},
		{"truncated pair", []byte{0x32, 4}, 3, "mapping pair"},
		{"VCNs disagree", []byte{0x21, 4, 0x10, 0x00, 0}, 9, "attribute says 9"},
	} {
		_, err := decodeRuns(tc.runs, 0, tc.last, 100, "t")
		if !errors.Is(err, vfs.ErrMalformed) || !strings.Contains(err.Error(), tc.mention) {
			t.Errorf("%s: got %v, want ErrMalformed mentioning %q", tc.name, err, tc.mention)
		}
	}
}

func TestLZNT1(t *testing.T) {
	// "abcabcabcabc" then end: literals a b c, then a back-reference
	// of displacement 3, length 9 at position 3 (12 length bits).
	tok := uint16((3-1)<<12 | (9 - 3))
	chunk := []byte{0x08, 'a', 'b', 'c', byte(tok), byte(tok >> 8)}
	in := append([]byte{byte(len(chunk) - 1), 0xB0}, chunk...)
	out := make([]byte, 8192)
	for i := range out {
		out[i] = 0xEE
	}
	if err := lznt1(in, out); err != nil {
		t.Fatal(err)
	}
	if string(out[:12]) != "abcabcabcabc" || strings.Trim(string(out[12:]), "\x00") != "" {
		t.Fatalf("decoded %q...", out[:16])
	}
	bad := []byte{byte(len(chunk) - 1), 0xB0, 0x01, 0x00, 0x10} // back-reference at position 0
	if err := lznt1(bad, out); err == nil {
		t.Error("a back-reference before any output decoded")
	}
	if err := lznt1([]byte{0xFF, 0xBF, 1, 2}, out); err == nil {
		t.Error("a chunk past the input decoded")
	}
}

// TestIndexLoop feeds a directory whose index block points to itself.
func TestIndexLoop(t *testing.T) {
	const bs = 4096
	blk := make([]byte, bs)
	copy(blk, "INDX")
	binary.LittleEndian.PutUint16(blk[4:], 0x28)     // update sequence offset
	binary.LittleEndian.PutUint16(blk[6:], bs/512+1) // and count
	binary.LittleEndian.PutUint64(blk[16:], 0)       // this block's VCN
	node := blk[24:]
	binary.LittleEndian.PutUint32(node[0:], 0x40)    // entries at
	binary.LittleEndian.PutUint32(node[4:], 0x40+24) // end of entries
	end := node[0x40:]
	binary.LittleEndian.PutUint16(end[8:], 24)   // entry length
	binary.LittleEndian.PutUint16(end[12:], 0x3) // subnode | last
	binary.LittleEndian.PutUint64(end[16:], 0)   // subnode VCN 0: itself
	for i := 1; i <= bs/512; i++ {               // sector stamps
		blk[i*512-2], blk[i*512-1] = 0x01, 0x00
	}
	blk[0x28], blk[0x29] = 0x01, 0x00

	root := make([]byte, 16+16+24)
	binary.LittleEndian.PutUint32(root[0:], atFileName)
	binary.LittleEndian.PutUint32(root[8:], bs)
	binary.LittleEndian.PutUint32(root[16:], 16)
	binary.LittleEndian.PutUint32(root[20:], 16+24)
	binary.LittleEndian.PutUint16(root[32+8:], 24)
	binary.LittleEndian.PutUint16(root[32+12:], 0x3)

	v := &volume{clusterSize: 4096, clusters: 16}
	in := &inode{no: 99, isDir: true, indexRoot: root,
		indexAlloc: &stream{v: v, resident: blk, size: bs, init: bs, unitNo: -1}}
	s := &fsys{v: v, inodes: newLRU[*inode](100), dirs: newLRU[*dirIndex](100)}
	s.inodes.put(99, in, 0)
	_, err := s.ReadDir(99)
	wantMalformed(t, err, "loop")
}
