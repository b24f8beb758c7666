package ext

import (
	"encoding/binary"
	"fmt"
	"io"

	"github.com/cairn-backup/cairn/guest/vfs"
)

const (
	superOffset = 1024
	superSize   = 1024
	extMagic    = 0xEF53
)

// Feature bits (s_feature_compat, _incompat, _ro_compat).
const (
	compatHasJournal = 0x4

	incompatCompression = 0x1
	incompatFiletype    = 0x2
	incompatRecover     = 0x4
	incompatJournalDev  = 0x8
	incompatMetaBG      = 0x10
	incompatExtents     = 0x40
	incompat64bit       = 0x80
	incompatDirData     = 0x1000
	incompatLargeDir    = 0x4000
	incompatInlineData  = 0x8000
	incompatEncrypt     = 0x10000

	roCompatSparseSuper  = 0x1
	roCompatLargeFile    = 0x2
	roCompatBtreeDir     = 0x4
	roCompatHugeFile     = 0x8
	roCompatGdtCsum      = 0x10
	roCompatExtraIsize   = 0x40
	roCompatMetadataCsum = 0x400

	compatSparseSuper2 = 0x200
)

// superblock holds the fields of the ext2/3/4 superblock this reader uses.
type superblock struct {
	inodesCount    uint32
	blocksCount    uint64
	firstDataBlock uint32
	logBlockSize   uint32
	blocksPerGroup uint32
	inodesPerGroup uint32
	revLevel       uint32
	firstIno       uint32
	inodeSize      uint32
	compat         uint32
	incompat       uint32
	roCompat       uint32
	label          string
	journalUUID    [16]byte
	journalInum    uint32
	journalDev     uint32
	descSize       uint32
	firstMetaBG    uint32
	backupBGs      [2]uint32
	blockSize      uint64
	groupCount     uint64
	descPerBlock   uint64
}

// Probe reports whether r looks like an ext2, ext3 or ext4 file system:
// the superblock magic and a plausible block size. An external journal
// device (which holds no files) is not reported.
func Probe(r io.ReaderAt, size int64) bool {
	if size < superOffset+superSize {
		return false
	}
	b := make([]byte, superSize)
	if _, err := r.ReadAt(b, superOffset); err != nil && err != io.EOF {
		return false
	}
	_, err := parseSuper(b, size)
	return err == nil
}

func parseSuper(b []byte, size int64) (*superblock, error) {
	le := binary.LittleEndian
	if m := le.Uint16(b[0x38:]); m != extMagic {
		return nil, fmt.Errorf("ext: superblock magic 0x%04x: %w", m, vfs.ErrMalformed)
	}
	sb := &superblock{
		inodesCount:    le.Uint32(b[0x0:]),
		blocksCount:    uint64(le.Uint32(b[0x4:])),
		firstDataBlock: le.Uint32(b[0x14:]),
		logBlockSize:   le.Uint32(b[0x18:]),
		blocksPerGroup: le.Uint32(b[0x20:]),
		inodesPerGroup: le.Uint32(b[0x28:]),
		revLevel:       le.Uint32(b[0x4C:]),
		firstIno:       11,
		inodeSize:      128,
	}
	if sb.revLevel >= 1 {
		sb.firstIno = le.Uint32(b[0x54:])
		sb.inodeSize = uint32(le.Uint16(b[0x58:]))
		sb.compat = le.Uint32(b[0x5C:])
		sb.incompat = le.Uint32(b[0x60:])
		sb.roCompat = le.Uint32(b[0x64:])
	}
	sb.label = cString(b[0x78:0x88])
	copy(sb.journalUUID[:], b[0xD0:0xE0])
	sb.journalInum = le.Uint32(b[0xE0:])
	sb.journalDev = le.Uint32(b[0xE4:])
	sb.descSize = 32
	if sb.incompat&incompat64bit != 0 {
		sb.descSize = uint32(le.Uint16(b[0xFE:]))
		sb.blocksCount |= uint64(le.Uint32(b[0x150:])) << 32
	}
	sb.firstMetaBG = le.Uint32(b[0x104:])
	sb.backupBGs = [2]uint32{le.Uint32(b[0x24C:]), le.Uint32(b[0x250:])}
	return sb, sb.validate(size)
}

func (sb *superblock) validate(size int64) error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("ext: superblock: "+format+": %w", append(a, vfs.ErrMalformed)...)
	}
	if sb.logBlockSize > 6 {
		return bad("block size 2^(10+%d)", sb.logBlockSize)
	}
	sb.blockSize = 1024 << sb.logBlockSize
	if sb.incompat&incompatJournalDev != 0 {
		return bad("external journal device, holds no files")
	}
	if sb.inodeSize < 128 || sb.inodeSize > uint32(sb.blockSize) || sb.inodeSize&(sb.inodeSize-1) != 0 {
		return bad("inode size %d", sb.inodeSize)
	}
	if sb.descSize < 32 || sb.descSize > 1024 || sb.descSize&(sb.descSize-1) != 0 {
		return bad("group descriptor size %d", sb.descSize)
	}
	if sb.blocksPerGroup == 0 || uint64(sb.blocksPerGroup) > 8*sb.blockSize {
		return bad("%d blocks per group", sb.blocksPerGroup)
	}
	if sb.inodesPerGroup == 0 || uint64(sb.inodesPerGroup) > 8*sb.blockSize {
		return bad("%d inodes per group", sb.inodesPerGroup)
	}
	if uint64(sb.firstDataBlock) >= sb.blocksCount || sb.firstDataBlock > 1 {
		return bad("first data block %d of %d", sb.firstDataBlock, sb.blocksCount)
	}
	if sb.blocksCount > (1<<62)/sb.blockSize {
		return bad("%d blocks", sb.blocksCount)
	}
	if sb.blocksCount > uint64(size)/sb.blockSize {
		// The kernel refuses this too ("block count exceeds size of device").
		return bad("%d blocks of %d bytes exceed the %d-byte volume", sb.blocksCount, sb.blockSize, size)
	}
	sb.groupCount = (sb.blocksCount - uint64(sb.firstDataBlock) + uint64(sb.blocksPerGroup) - 1) / uint64(sb.blocksPerGroup)
	if uint64(sb.inodesCount) > sb.groupCount*uint64(sb.inodesPerGroup) || sb.inodesCount < 2 {
		return bad("%d inodes in %d groups of %d", sb.inodesCount, sb.groupCount, sb.inodesPerGroup)
	}
	if sb.revLevel >= 1 && (sb.firstIno < 3 || sb.firstIno > sb.inodesCount) {
		return bad("first inode %d", sb.firstIno)
	}
	sb.descPerBlock = sb.blockSize / uint64(sb.descSize)
	if sb.incompat&incompatCompression != 0 {
		return bad("compression feature is not supported")
	}
	if sb.incompat&incompatDirData != 0 {
		return bad("dirdata feature is not supported")
	}
	return nil
}

// fsType names the file system the way blkid does: ext4 when any feature
// ext3 lacks is present, ext3 when there is a journal, ext2 otherwise.
func (sb *superblock) fsType() string {
	const ext3Incompat = incompatFiletype | incompatRecover | incompatMetaBG
	const ext3RoCompat = roCompatSparseSuper | roCompatLargeFile | roCompatBtreeDir
	switch {
	case sb.incompat&^ext3Incompat != 0 || sb.roCompat&^ext3RoCompat != 0:
		return "ext4"
	case sb.compat&compatHasJournal != 0:
		return "ext3"
	}
	return "ext2"
}

// groupHasSuper reports whether block group g holds a superblock backup
// (and so, outside meta_bg, the group descriptor table).
func (sb *superblock) groupHasSuper(g uint64) bool {
	if g == 0 {
		return true
	}
	if sb.compat&compatSparseSuper2 != 0 {
		return g == uint64(sb.backupBGs[0]) || g == uint64(sb.backupBGs[1])
	}
	if g <= 1 || sb.roCompat&roCompatSparseSuper == 0 {
		return true
	}
	if g&1 == 0 {
		return false
	}
	return isPower(g, 3) || isPower(g, 5) || isPower(g, 7)
}

func isPower(n, b uint64) bool {
	for n%b == 0 {
		n /= b
	}
	return n == 1
}

func cString(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}
