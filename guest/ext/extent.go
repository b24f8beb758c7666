package ext

import (
	"encoding/binary"
	"fmt"

	"github.com/cairn-backup/cairn/guest/vfs"
)

const (
	extentMagic    = 0xF30A
	maxExtentDepth = 5
	// maxExtentNodes bounds the tree nodes one file's walk reads, so a
	// crafted tree whose index entries all point at one node cannot spin.
	maxExtentNodes = 1 << 20
	initMaxLen     = 32768 // ee_len above this marks an uninitialised extent
)

// extentRuns walks an extent tree, root in i_block. Uninitialised
// extents are left out: they read as zeros, like holes.
func (f *FS) extentRuns(in *inode, l *runList) error {
	nodes := 0
	return f.walkExtents(in, in.iblock[:], -1, l, &nodes)
}

func (f *FS) walkExtents(in *inode, node []byte, wantDepth int, l *runList, nodes *int) error {
	le := binary.LittleEndian
	bad := func(format string, a ...any) error {
		return fmt.Errorf("ext: inode %d: extent "+format+": %w", append([]any{in.ino}, append(a, vfs.ErrMalformed)...)...)
	}
	if *nodes++; *nodes > maxExtentNodes {
		return bad("tree has more than %d nodes", maxExtentNodes)
	}
	if m := le.Uint16(node); m != extentMagic {
		return bad("header magic 0x%04x", m)
	}
	entries, max, depth := int(le.Uint16(node[2:])), int(le.Uint16(node[4:])), int(le.Uint16(node[6:]))
	if 12+12*max > len(node) || entries > max {
		return bad("header: %d of %d entries in %d bytes", entries, max, len(node))
	}
	if depth > maxExtentDepth || (wantDepth >= 0 && depth != wantDepth) {
		return bad("header depth %d (expected %d)", depth, wantDepth)
	}
	for i := 0; i < entries; i++ {
		e := node[12+12*i:]
		lblk := uint64(le.Uint32(e))
		if depth == 0 {
			n := uint64(le.Uint16(e[4:]))
			phys := uint64(le.Uint16(e[6:]))<<32 | uint64(le.Uint32(e[8:]))
			if n > initMaxLen {
				// Uninitialised: reads as zeros, but still claims its range.
				n -= initMaxLen
				if lblk < l.next {
					return bad("logical block %d mapped twice", lblk)
				}
				l.next = lblk + n
				continue
			}
			if err := l.add(lblk, phys, n); err != nil {
				return err
			}
			continue
		}
		if lblk >= l.limit && lblk >= l.next {
			break // the rest of the tree maps only past the end of the file
		}
		child := uint64(le.Uint16(e[8:]))<<32 | uint64(le.Uint32(e[4:]))
		if child == 0 || child >= l.blocks {
			return bad("index to block %d", child)
		}
		if err := l.visit(child); err != nil {
			return err
		}
		b, err := f.dev.block(child)
		if err != nil {
			return fmt.Errorf("ext: inode %d: extent node: %w", in.ino, err)
		}
		if err := f.walkExtents(in, b, depth-1, l, nodes); err != nil {
			return err
		}
	}
	return nil
}
