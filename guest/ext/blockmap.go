package ext

import (
	"encoding/binary"
	"fmt"

	"github.com/cairn-backup/cairn/guest/vfs"
)

// blockMapRuns maps a file kept in the ext2/ext3 block map: twelve direct
// pointers in i_block, then a single, a double and a triple indirect
// block. A zero pointer at any level is a hole.
func (f *FS) blockMapRuns(in *inode, l *runList) error {
	le := binary.LittleEndian
	per := f.sb.blockSize / 4
	var log uint64
	for i := 0; i < 12; i++ {
		if p := uint64(le.Uint32(in.iblock[4*i:])); p != 0 && log < l.limit {
			if err := l.add(log, p, 1); err != nil {
				return err
			}
		}
		log++
	}
	span := uint64(1)
	for level := 1; level <= 3; level++ {
		span *= per
		if log >= l.limit {
			return nil
		}
		if p := uint64(le.Uint32(in.iblock[4*(11+level):])); p != 0 {
			if err := f.walkIndirect(in, p, level, log, l); err != nil {
				return err
			}
		}
		log += span
	}
	return nil
}

// walkIndirect maps the blocks below one indirect block of the given
// level (1 = its pointers are data blocks), whose first logical block is log.
func (f *FS) walkIndirect(in *inode, blk uint64, level int, log uint64, l *runList) error {
	if blk >= l.blocks {
		return fmt.Errorf("ext: inode %d: indirect block %d outside the volume: %w", in.ino, blk, vfs.ErrMalformed)
	}
	if err := l.visit(blk); err != nil {
		return err
	}
	b, err := f.dev.block(blk)
	if err != nil {
		return fmt.Errorf("ext: inode %d: indirect block: %w", in.ino, err)
	}
	per := f.sb.blockSize / 4
	span := uint64(1)
	for i := 1; i < level; i++ {
		span *= per
	}
	le := binary.LittleEndian
	for i := uint64(0); i < per && log < l.limit; i, log = i+1, log+span {
		p := uint64(le.Uint32(b[4*i:]))
		if p == 0 {
			continue
		}
		if level == 1 {
			err = l.add(log, p, 1)
		} else {
			err = f.walkIndirect(in, p, level-1, log, l)
		}
		if err != nil {
			return err
		}
	}
	return nil
}
