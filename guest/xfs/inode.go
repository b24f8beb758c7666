package xfs

import (
	"encoding/binary"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cairn-backup/cairn/guest/vfs"
)

// Inode constants (xfs_format.h).
const (
	inodeMagic = 0x494e // "IN"

	fmtDev     = 0
	fmtLocal   = 1
	fmtExtents = 2
	fmtBtree   = 3

	coreSizeV2 = 100
	coreSizeV3 = 176

	diflagRealtime = 0x0001
	diflag2Bigtime = 1 << 3
	diflag2Nrext64 = 1 << 4

	bigtimeEpochOffset = 1 << 31
)

// inode is a decoded on-disk inode: its core and its data fork bytes.
type inode struct {
	ino      uint64
	mode     uint16
	version  uint8
	format   uint8
	nlink    uint32
	uid, gid uint32
	atime    time.Time
	mtime    time.Time
	ctime    time.Time
	btime    time.Time
	size     int64
	nblocks  uint64
	nextents uint64
	flags    uint16
	rdev     uint64
	fork     []byte // data fork, exactly its on-disk size
}

func (ip *inode) fileType() uint32 { return uint32(ip.mode) & vfs.ModeType }

// readInode reads and checks the inode numbered ino.
func (f *FS) readInode(ino uint64) (*inode, error) {
	off, ok := f.sb.inoOffset(ino)
	if !ok {
		return nil, malformed("inode %d: number out of range", ino)
	}
	buf := make([]byte, f.sb.inodeSize)
	if err := f.readAt(buf, off); err != nil {
		return nil, malformed("inode %d: %v", ino, err)
	}
	return f.parseInode(ino, buf)
}

func (f *FS) parseInode(ino uint64, b []byte) (*inode, error) {
	be := binary.BigEndian
	if be.Uint16(b) != inodeMagic {
		return nil, malformed("inode %d: magic %#04x", ino, be.Uint16(b))
	}
	ip := &inode{ino: ino, mode: be.Uint16(b[2:]), version: b[4], format: b[5]}
	core := coreSizeV2
	switch ip.version {
	case 1:
		ip.nlink = uint32(be.Uint16(b[6:]))
	case 2:
		ip.nlink = be.Uint32(b[16:])
	case 3:
		if !f.sb.crc() {
			return nil, malformed("inode %d: v3 inode in a v4 file system", ino)
		}
		core = coreSizeV3
		if !verifyCRC(b, 100) {
			return nil, malformed("inode %d: checksum mismatch", ino)
		}
		if be.Uint64(b[152:]) != ino {
			return nil, malformed("inode %d: records itself as inode %d", ino, be.Uint64(b[152:]))
		}
		ip.nlink = be.Uint32(b[16:])
	default:
		return nil, malformed("inode %d: version %d", ino, ip.version)
	}
	if f.sb.crc() && ip.version != 3 {
		return nil, malformed("inode %d: v%d inode in a v5 file system", ino, ip.version)
	}
	ip.uid, ip.gid = be.Uint32(b[8:]), be.Uint32(b[12:])
	var flags2 uint64
	if ip.version == 3 {
		flags2 = be.Uint64(b[120:])
	}
	big := flags2&diflag2Bigtime != 0
	ip.atime = decodeTime(b[32:], big)
	ip.mtime = decodeTime(b[40:], big)
	ip.ctime = decodeTime(b[48:], big)
	if ip.version == 3 {
		ip.btime = decodeTime(b[144:], big)
	}
	size := be.Uint64(b[56:])
	if size > 1<<63-1 {
		return nil, malformed("inode %d: size %d", ino, size)
	}
	ip.size = int64(size)
	ip.nblocks = be.Uint64(b[64:])
	if flags2&diflag2Nrext64 != 0 {
		ip.nextents = be.Uint64(b[24:])
	} else {
		ip.nextents = uint64(be.Uint32(b[76:]))
	}
	forkoff := int(b[82]) * 8
	ip.flags = be.Uint16(b[90:])
	forkSize := len(b) - core
	if forkoff != 0 {
		if forkoff >= forkSize {
			return nil, malformed("inode %d: attribute fork offset %d", ino, forkoff)
		}
		forkSize = forkoff
	}
	ip.fork = b[core : core+forkSize]
	if ip.format == fmtDev {
		if len(ip.fork) < 4 {
			return nil, malformed("inode %d: device fork too small", ino)
		}
		d := be.Uint32(ip.fork)
		ip.rdev = unix.Mkdev(d>>18&0x3fff, d&0x3ffff)
	}
	return ip, nil
}

// decodeTime decodes an inode timestamp: seconds and nanoseconds as two
// 32-bit words, or with bigtime nanoseconds since 1901-12-13 in 64 bits.
func decodeTime(b []byte, big bool) time.Time {
	be := binary.BigEndian
	if big {
		v := be.Uint64(b)
		return time.Unix(int64(v/1e9)-bigtimeEpochOffset, int64(v%1e9))
	}
	sec := int32(be.Uint32(b))
	nsec := be.Uint32(b[4:])
	if nsec >= 1e9 {
		nsec = 0
	}
	return time.Unix(int64(sec), int64(nsec))
}

func (f *FS) fileInfo(ip *inode) vfs.FileInfo {
	fi := vfs.FileInfo{
		Ino:    ip.ino,
		Mode:   uint32(ip.mode),
		Nlink:  ip.nlink,
		UID:    ip.uid,
		GID:    ip.gid,
		Size:   ip.size,
		Blocks: int64(min(ip.nblocks, 1<<40)) << (f.sb.blockLog - 9),
		Atime:  ip.atime,
		Mtime:  ip.mtime,
		Ctime:  ip.ctime,
		Btime:  ip.btime,
	}
	if t := ip.fileType(); t == vfs.ModeBlock || t == vfs.ModeChar {
		fi.Rdev = ip.rdev
	}
	return fi
}
