package ext

import (
	"encoding/binary"
	"fmt"

	"github.com/cairn-backup/cairn/guest/vfs"
)

const bgInodeUninit = 0x1

// descBlock returns the block holding group g's descriptor. Outside
// meta_bg the descriptor table follows the superblock; with meta_bg each
// meta group of descPerBlock groups keeps its one descriptor block in its
// first group, after that group's superblock backup if it has one.
func (f *FS) descBlock(g uint64) uint64 {
	sb := f.sb
	mg := g / sb.descPerBlock
	if sb.incompat&incompatMetaBG == 0 || mg < uint64(sb.firstMetaBG) {
		return uint64(sb.firstDataBlock) + 1 + mg
	}
	first := mg * sb.descPerBlock
	blk := uint64(sb.firstDataBlock) + first*uint64(sb.blocksPerGroup)
	if sb.groupHasSuper(first) {
		blk++
	}
	return blk
}

// groupDesc is the part of a block group descriptor this reader needs.
type groupDesc struct {
	inodeTable uint64
	flags      uint16
}

func (f *FS) group(g uint64) (groupDesc, error) {
	if g >= f.sb.groupCount {
		return groupDesc{}, fmt.Errorf("ext: block group %d of %d: %w", g, f.sb.groupCount, vfs.ErrMalformed)
	}
	b, err := f.dev.block(f.descBlock(g))
	if err != nil {
		return groupDesc{}, fmt.Errorf("ext: descriptor of block group %d: %w", g, err)
	}
	d := b[(g%f.sb.descPerBlock)*uint64(f.sb.descSize):][:f.sb.descSize]
	le := binary.LittleEndian
	gd := groupDesc{inodeTable: uint64(le.Uint32(d[0x8:])), flags: le.Uint16(d[0x12:])}
	if f.sb.descSize >= 64 {
		gd.inodeTable |= uint64(le.Uint32(d[0x28:])) << 32
	}
	itBlocks := (uint64(f.sb.inodesPerGroup)*uint64(f.sb.inodeSize) + f.sb.blockSize - 1) / f.sb.blockSize
	if gd.inodeTable == 0 || gd.inodeTable+itBlocks > f.sb.blocksCount {
		return groupDesc{}, fmt.Errorf("ext: block group %d: inode table at block %d: %w", g, gd.inodeTable, vfs.ErrMalformed)
	}
	if f.sb.roCompat&(roCompatGdtCsum|roCompatMetadataCsum) == 0 {
		gd.flags = 0 // the flags mean nothing without uninit_bg
	}
	return gd, nil
}
