package xfs

import (
	"encoding/binary"
	"testing"
	"time"
)

// TestDecodeExtent packs records the way xfs_bmbt_disk_set_all does and
// checks every field at its limits.
func TestDecodeExtent(t *testing.T) {
	for _, want := range []extent{
		{off: 0, fsb: 0, count: 1},
		{off: 1<<54 - 1, fsb: 1<<52 - 1, count: 1<<21 - 1, unwritten: true},
		{off: 12345, fsb: 1<<43 + 77, count: 9},
	} {
		var flag uint64
		if want.unwritten {
			flag = 1 << 63
		}
		var b [16]byte
		binary.BigEndian.PutUint64(b[:], flag|want.off<<9|want.fsb>>43)
		binary.BigEndian.PutUint64(b[8:], want.fsb<<21|want.count)
		if got := decodeExtent(b[:]); got != want {
			t.Errorf("decodeExtent = %+v, want %+v", got, want)
		}
	}
}

// TestGeometry checks inode and block number decoding against a
// hand-computed layout: 4 AGs of 1000 blocks (agblklog 10), 4 KiB blocks,
// 512-byte inodes (8 per block, inopblog 3).
func TestGeometry(t *testing.T) {
	s := &super{blockSize: 4096, blockLog: 12, agBlocks: 1000, agBlkLog: 10, agCount: 4, dblocks: 3900,
		inodeSize: 512, inodeLog: 9, inoPBlock: 8, inoPBLog: 3}
	ino := uint64(2)<<13 | 5<<3 | 6 // AG 2, block 5, inode 6
	if off, ok := s.inoOffset(ino); !ok || off != (2*1000+5)*4096+6*512 {
		t.Errorf("inoOffset = %d, %v", off, ok)
	}
	if off, ok := s.fsbOffset(3<<10 | 899); !ok || off != (3*1000+899)*4096 {
		t.Errorf("fsbOffset = %d, %v", off, ok)
	}
	for _, bad := range []uint64{3<<10 | 900, 1<<10 | 1000, 4 << 10} { // past dblocks, past agblocks, past agcount
		if _, ok := s.fsbOffset(bad); ok {
			t.Errorf("fsbOffset(%#x) accepted", bad)
		}
	}
	if _, ok := s.inoOffset(0); ok {
		t.Error("inode 0 accepted")
	}
}

func TestDecodeTime(t *testing.T) {
	var b [8]byte
	binary.BigEndian.PutUint32(b[:], uint32(0xffffff9c)) // -100 s
	binary.BigEndian.PutUint32(b[4:], 5)
	if got := decodeTime(b[:], false); !got.Equal(time.Unix(-100, 5)) {
		t.Errorf("legacy time = %v", got)
	}
	binary.BigEndian.PutUint64(b[:], uint64(1<<31+1_700_000_000)*1e9+42)
	if got := decodeTime(b[:], true); !got.Equal(time.Unix(1_700_000_000, 42)) {
		t.Errorf("bigtime = %v", got)
	}
}
