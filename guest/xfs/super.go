package xfs

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math/bits"

	"github.com/cairn-backup/cairn/guest/vfs"
)

// Superblock and feature constants (xfs_format.h).
const (
	sbMagic = 0x58465342 // "XFSB"

	versionNumMask  = 0x000f
	versionMoreBits = 0x8000
	version2Ftype   = 0x00000200 // sb_features2: directory entries carry a file type

	incompatFtype  = 0x01
	incompatSpino  = 0x02
	incompatMeta   = 0x04
	incompatBig    = 0x08
	incompatRepair = 0x10
	incompatNrext  = 0x20
	incompatKnown  = incompatFtype | incompatSpino | incompatMeta | incompatBig | incompatRepair | incompatNrext

	maxBlockSize = 65536
)

// super is the part of the primary superblock the reader uses.
type super struct {
	blockSize  uint32
	dblocks    uint64
	uuid       [16]byte
	logStart   uint64
	rootIno    uint64
	agBlocks   uint32
	agCount    uint32
	logBlocks  uint32
	version    int // 4 or 5
	sectSize   uint16
	inodeSize  uint16
	inoPBlock  uint16
	label      string
	blockLog   uint8
	inodeLog   uint8
	inoPBLog   uint8
	agBlkLog   uint8
	inProgress uint8
	dirBlkLog  uint8
	ftype      bool
	bigtime    bool
	nrext64    bool
	incompat   uint32
}

// crc reports whether metadata carries v5 self-describing headers and CRCs.
func (s *super) crc() bool { return s.version == 5 }

// Probe reports whether r starts with an XFS superblock. It reads one sector.
func Probe(r io.ReaderAt, size int64) bool {
	if size < 512 {
		return false
	}
	var b [512]byte
	if _, err := r.ReadAt(b[:], 0); err != nil {
		return false
	}
	_, err := parseSuper(b[:], size)
	return err == nil
}

func malformed(format string, args ...any) error {
	return fmt.Errorf("xfs: "+format+": %w", append(args, vfs.ErrMalformed)...)
}

// parseSuper decodes and checks the primary superblock from its first
// sector. The checks bound every geometry value later arithmetic relies on.
func parseSuper(b []byte, size int64) (*super, error) {
	be := binary.BigEndian
	if len(b) < 512 || be.Uint32(b[0:]) != sbMagic {
		return nil, malformed("superblock magic missing")
	}
	s := &super{
		blockSize:  be.Uint32(b[4:]),
		dblocks:    be.Uint64(b[8:]),
		logStart:   be.Uint64(b[48:]),
		rootIno:    be.Uint64(b[56:]),
		agBlocks:   be.Uint32(b[84:]),
		agCount:    be.Uint32(b[88:]),
		logBlocks:  be.Uint32(b[96:]),
		sectSize:   be.Uint16(b[102:]),
		inodeSize:  be.Uint16(b[104:]),
		inoPBlock:  be.Uint16(b[106:]),
		blockLog:   b[120],
		inodeLog:   b[122],
		inoPBLog:   b[123],
		agBlkLog:   b[124],
		inProgress: b[126],
		dirBlkLog:  b[192],
	}
	copy(s.uuid[:], b[32:48])
	s.label = string(bytes.TrimRight(b[108:120], "\x00"))
	vn := be.Uint16(b[100:])
	s.version = int(vn & versionNumMask)
	switch s.version {
	case 4:
		if vn&versionMoreBits != 0 && be.Uint32(b[200:])&version2Ftype != 0 {
			s.ftype = true
		}
	case 5:
		s.incompat = be.Uint32(b[216:])
		if s.incompat&^uint32(incompatKnown) != 0 {
			return nil, fmt.Errorf("xfs: unsupported incompatible features %#x", s.incompat&^uint32(incompatKnown))
		}
		s.ftype = s.incompat&incompatFtype != 0
		s.bigtime = s.incompat&incompatBig != 0
		s.nrext64 = s.incompat&incompatNrext != 0
	default:
		return nil, malformed("superblock version %d", s.version)
	}
	switch {
	case s.blockSize < 512 || s.blockSize > maxBlockSize || bits.OnesCount32(s.blockSize) != 1 || 1<<s.blockLog != s.blockSize:
		return nil, malformed("superblock block size %d (log %d)", s.blockSize, s.blockLog)
	case s.sectSize < 512 || uint32(s.sectSize) > s.blockSize || bits.OnesCount16(s.sectSize) != 1:
		return nil, malformed("superblock sector size %d", s.sectSize)
	case s.inodeSize < 256 || s.inodeSize > 2048 || 1<<s.inodeLog != uint32(s.inodeSize) || uint32(s.inodeSize) > s.blockSize:
		return nil, malformed("superblock inode size %d", s.inodeSize)
	case s.version == 5 && s.inodeSize < 512:
		return nil, malformed("v5 superblock with %d-byte inodes", s.inodeSize)
	case uint32(s.inoPBlock) != s.blockSize/uint32(s.inodeSize) || 1<<s.inoPBLog != uint32(s.inoPBlock):
		return nil, malformed("superblock inodes per block %d (log %d)", s.inoPBlock, s.inoPBLog)
	case s.agBlocks < 16 || s.agBlkLog > 31 || uint64(s.agBlocks) > 1<<s.agBlkLog || uint64(s.agBlocks) <= 1<<s.agBlkLog>>1:
		return nil, malformed("superblock AG size %d blocks (log %d)", s.agBlocks, s.agBlkLog)
	case s.agCount == 0 || s.dblocks == 0 || s.dblocks > uint64(s.agCount)*uint64(s.agBlocks) ||
		s.dblocks <= uint64(s.agCount-1)*uint64(s.agBlocks):
		return nil, malformed("superblock %d blocks in %d AGs of %d", s.dblocks, s.agCount, s.agBlocks)
	case s.dirBlkLog > 8 || s.blockSize<<s.dirBlkLog > maxBlockSize:
		return nil, malformed("superblock directory block log %d", s.dirBlkLog)
	case int(s.agBlkLog)+int(s.inoPBLog) > 56:
		return nil, malformed("superblock inode number layout")
	}
	if s.version == 5 && !verifyCRC(b[:s.sectSize], 224) {
		return nil, malformed("superblock checksum mismatch")
	}
	if uint64(size) < s.dblocks*uint64(s.blockSize) {
		return nil, fmt.Errorf("xfs: volume is %d bytes but the file system needs %d (truncated image?): %w",
			size, s.dblocks*uint64(s.blockSize), vfs.ErrMalformed)
	}
	return s, nil
}

// fsbOffset converts a file system block number (AG number in the high
// bits, AG block in the low agblklog bits) to a byte offset in the volume.
func (s *super) fsbOffset(fsb uint64) (int64, bool) {
	agno := fsb >> s.agBlkLog
	agbno := fsb & (1<<s.agBlkLog - 1)
	if agno >= uint64(s.agCount) || agbno >= uint64(s.agBlocks) {
		return 0, false
	}
	lin := agno*uint64(s.agBlocks) + agbno
	if lin >= s.dblocks {
		return 0, false
	}
	return int64(lin) << s.blockLog, true
}

// inoOffset converts an inode number to the byte offset of its inode:
// AG number, then AG block (agblklog bits), then index in block (inopblog bits).
func (s *super) inoOffset(ino uint64) (int64, bool) {
	shift := s.agBlkLog + s.inoPBLog
	agno := ino >> shift
	agbno := (ino >> s.inoPBLog) & (1<<s.agBlkLog - 1)
	idx := ino & (1<<s.inoPBLog - 1)
	if ino == 0 || agno >= uint64(s.agCount) || agbno >= uint64(s.agBlocks) {
		return 0, false
	}
	lin := agno*uint64(s.agBlocks) + agbno
	if lin >= s.dblocks {
		return 0, false
	}
	return int64(lin)<<s.blockLog + int64(idx)<<s.inodeLog, true
}
