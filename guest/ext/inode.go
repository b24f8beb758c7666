package ext

import (
	"encoding/binary"
	"fmt"
	"slices"
	"time"

	"github.com/cairn-backup/cairn/guest/vfs"
	"golang.org/x/sys/unix"
)

// Inode flags (i_flags).
const (
	flagEncrypt    = 0x800
	flagHugeFile   = 0x40000
	flagExtents    = 0x80000
	flagInlineData = 0x10000000
)

// inode is one decoded on-disk inode.
type inode struct {
	ino                        uint64
	mode                       uint16
	nlink                      uint16
	uid                        uint32
	gid                        uint32
	size                       uint64
	blocks                     uint64 // 512-byte units
	flags                      uint32
	fileACL                    uint64
	iblock                     [60]byte
	atime, mtime, ctime, btime time.Time
	raw                        []byte // the whole on-disk inode (for in-inode extended attributes)
	extra                      int    // i_extra_isize, 0 for 128-byte inodes
}

func (f *FS) readInode(ino uint64) (*inode, error) {
	if ino < 1 || ino > uint64(f.sb.inodesCount) {
		return nil, fmt.Errorf("ext: inode %d out of range 1..%d: %w", ino, f.sb.inodesCount, vfs.ErrNotFound)
	}
	g := (ino - 1) / uint64(f.sb.inodesPerGroup)
	idx := (ino - 1) % uint64(f.sb.inodesPerGroup)
	gd, err := f.group(g)
	if err != nil {
		return nil, err
	}
	if gd.flags&bgInodeUninit != 0 {
		return nil, fmt.Errorf("ext: inode %d is in an uninitialised group: %w", ino, vfs.ErrNotFound)
	}
	isz := uint64(f.sb.inodeSize)
	off := idx * isz
	b, err := f.dev.block(gd.inodeTable + off/f.sb.blockSize)
	if err != nil {
		return nil, fmt.Errorf("ext: inode %d: %w", ino, err)
	}
	raw := append([]byte(nil), b[off%f.sb.blockSize:][:isz]...)
	in, err := f.decodeInode(ino, raw)
	if err != nil {
		return nil, err
	}
	if in.mode == 0 {
		return nil, fmt.Errorf("ext: inode %d is not in use: %w", ino, vfs.ErrNotFound)
	}
	return in, nil
}

// prefetchInodes hints the volume's reader at the inode table blocks of a
// directory's entries: whoever lists a directory (ls -l, cp -a) stats
// every entry next, one inode after another.
func (f *FS) prefetchInodes(entries []vfs.DirEntry) {
	if _, ok := f.dev.r.(vfs.Prefetcher); !ok || len(entries) < 8 {
		return
	}
	blocks := make([]uint64, 0, len(entries))
	isz := uint64(f.sb.inodeSize)
	tables := map[uint64]uint64{} // block group -> its inode table; 0: unreadable
	for _, e := range entries {
		if e.Ino < 1 || e.Ino > uint64(f.sb.inodesCount) {
			continue
		}
		g := (e.Ino - 1) / uint64(f.sb.inodesPerGroup)
		table, ok := tables[g]
		if !ok {
			if gd, err := f.group(g); err == nil {
				table = gd.inodeTable
			}
			tables[g] = table
		}
		if table == 0 {
			continue // the stat that follows reports it
		}
		b := table + ((e.Ino-1)%uint64(f.sb.inodesPerGroup))*isz/f.sb.blockSize
		if _, ok := f.dev.cache.get(b); !ok {
			blocks = append(blocks, b)
		}
	}
	slices.Sort(blocks)
	blocks = slices.Compact(blocks)
	for i := 0; i < len(blocks); {
		j := i + 1
		for j < len(blocks) && blocks[j] == blocks[j-1]+1 {
			j++
		}
		vfs.Prefetch(f.dev.r, int64(blocks[i]*f.sb.blockSize), int64(uint64(j-i)*f.sb.blockSize))
		i = j
	}
}

func (f *FS) decodeInode(ino uint64, raw []byte) (*inode, error) {
	le := binary.LittleEndian
	in := &inode{
		ino:   ino,
		mode:  le.Uint16(raw[0x0:]),
		uid:   uint32(le.Uint16(raw[0x2:])) | uint32(le.Uint16(raw[0x78:]))<<16,
		gid:   uint32(le.Uint16(raw[0x18:])) | uint32(le.Uint16(raw[0x7A:]))<<16,
		nlink: le.Uint16(raw[0x1A:]),
		flags: le.Uint32(raw[0x20:]),
		size:  uint64(le.Uint32(raw[0x4:])),
		raw:   raw,
	}
	copy(in.iblock[:], raw[0x28:0x28+60])
	t := in.mode & 0xF000
	if t == 0x8000 || (t == 0x4000 && f.sb.incompat&incompatLargeDir != 0) {
		in.size |= uint64(le.Uint32(raw[0x6C:])) << 32
	}
	in.fileACL = uint64(le.Uint32(raw[0x68:])) | uint64(le.Uint16(raw[0x76:]))<<32
	in.blocks = uint64(le.Uint32(raw[0x1C:]))
	if f.sb.roCompat&roCompatHugeFile != 0 {
		in.blocks |= uint64(le.Uint16(raw[0x74:])) << 32
		if in.flags&flagHugeFile != 0 {
			in.blocks *= f.sb.blockSize / 512
		}
	}
	if len(raw) > 128 {
		in.extra = int(le.Uint16(raw[0x80:]))
		if in.extra < 4 || 128+in.extra > len(raw) || in.extra%4 != 0 {
			if in.extra != 0 {
				return nil, fmt.Errorf("ext: inode %d: i_extra_isize %d: %w", ino, in.extra, vfs.ErrMalformed)
			}
		}
	}
	in.atime = in.time(0x8, 0x8C)
	in.ctime = in.time(0xC, 0x84)
	in.mtime = in.time(0x10, 0x88)
	if in.has(0x94) {
		in.btime = in.time(0x90, 0x94)
	}
	return in, nil
}

// has reports whether the inode's extra space covers the 4-byte field at off.
func (in *inode) has(off int) bool { return off+4 <= 128+in.extra }

// time decodes a timestamp: signed 32-bit seconds, and when the inode is
// large enough an extra word of 30 bits of nanoseconds and 2 epoch bits
// that extend the seconds to 34 bits.
func (in *inode) time(off, extraOff int) time.Time {
	le := binary.LittleEndian
	sec := int64(int32(le.Uint32(in.raw[off:])))
	var nsec int64
	if in.has(extraOff) {
		x := le.Uint32(in.raw[extraOff:])
		sec += int64(x&3) << 32
		nsec = int64(x >> 2)
		if nsec > 999999999 {
			nsec = 0
		}
	}
	return time.Unix(sec, nsec)
}

func (in *inode) isDir() bool  { return in.mode&0xF000 == 0x4000 }
func (in *inode) isReg() bool  { return in.mode&0xF000 == 0x8000 }
func (in *inode) isLink() bool { return in.mode&0xF000 == 0xA000 }

// rdev decodes a device node's number: the old 16-bit encoding in
// i_block[0], or when that is zero the new 32-bit one in i_block[1].
func (in *inode) rdev() uint64 {
	t := in.mode & 0xF000
	if t != 0x2000 && t != 0x6000 {
		return 0
	}
	le := binary.LittleEndian
	if old := le.Uint32(in.iblock[0:]); old != 0 {
		return unix.Mkdev((old>>8)&0xff, old&0xff)
	}
	d := le.Uint32(in.iblock[4:])
	return unix.Mkdev((d&0xfff00)>>8, (d&0xff)|((d>>12)&0xfff00))
}

func (f *FS) info(in *inode) vfs.FileInfo {
	return vfs.FileInfo{
		Ino:    in.ino,
		Mode:   uint32(in.mode),
		Nlink:  uint32(in.nlink),
		UID:    in.uid,
		GID:    in.gid,
		Size:   int64(in.size),
		Blocks: int64(in.blocks),
		Rdev:   in.rdev(),
		Atime:  in.atime,
		Mtime:  in.mtime,
		Ctime:  in.ctime,
		Btime:  in.btime,
	}
}

// inlineData returns the system.data extended attribute of an inline-data
// inode: the bytes that follow the 60 in i_block.
func (in *inode) inlineData() ([]byte, error) {
	le := binary.LittleEndian
	if in.extra == 0 {
		return nil, nil
	}
	area := in.raw[128+in.extra:]
	if len(area) < 4 || le.Uint32(area) != 0xEA020000 {
		return nil, nil
	}
	entries := area[4:]
	for off := 0; off+16 <= len(entries); {
		e := entries[off:]
		if le.Uint32(e) == 0 {
			break
		}
		nameLen, index := int(e[0]), e[1]
		voff, vsize := int(le.Uint16(e[2:])), int(le.Uint32(e[8:]))
		if off+16+nameLen > len(entries) {
			break
		}
		if index == 7 && string(e[16:16+nameLen]) == "data" {
			if le.Uint32(e[4:]) != 0 || voff+vsize > len(entries) || voff < 0 {
				return nil, fmt.Errorf("ext: inode %d: inline data attribute at %d size %d: %w", in.ino, voff, vsize, vfs.ErrMalformed)
			}
			return entries[voff : voff+vsize], nil
		}
		off += (16 + nameLen + 3) &^ 3
	}
	return nil, nil
}
