package xfs

import (
	"encoding/binary"
)

const (
	symlinkMaxLen = 1024
	symlinkMagic  = 0x58534c4d // "XSLM"
	symlinkHdrV5  = 56
)

// readlink returns a symlink's target: inline in the data fork when short,
// otherwise in remote blocks that on v5 each start with a checked header.
func (f *FS) readlink(ip *inode) (string, error) {
	if ip.size <= 0 || ip.size > symlinkMaxLen {
		return "", malformed("inode %d: symlink length %d", ip.ino, ip.size)
	}
	switch ip.format {
	case fmtLocal:
		if ip.size > int64(len(ip.fork)) {
			return "", malformed("inode %d: inline symlink of %d bytes exceeds its fork", ip.ino, ip.size)
		}
		return string(ip.fork[:ip.size]), nil
	case fmtExtents, fmtBtree:
	default:
		return "", malformed("inode %d: symlink fork format %d", ip.ino, ip.format)
	}
	xs, err := f.extents(ip)
	if err != nil {
		return "", err
	}
	// One buffer per extent, each with its own header on v5.
	if len(xs) > symlinkMaxLen {
		return "", malformed("inode %d: symlink has %d extents", ip.ino, len(xs))
	}
	out := make([]byte, 0, ip.size)
	be := binary.BigEndian
	for i, x := range xs {
		if len(out) == int(ip.size) {
			break
		}
		if i > 0 && x.off != xs[i-1].off+xs[i-1].count {
			return "", malformed("inode %d: remote symlink has a hole", ip.ino)
		}
		if x.count<<f.sb.blockLog > 4*symlinkMaxLen+maxBlockSize {
			return "", malformed("inode %d: remote symlink extent of %d blocks", ip.ino, x.count)
		}
		buf := make([]byte, x.count<<f.sb.blockLog)
		base, _ := f.sb.fsbOffset(x.fsb)
		if err := f.readAt(buf, base); err != nil {
			return "", malformed("inode %d: remote symlink: %v", ip.ino, err)
		}
		data := buf
		if f.sb.crc() {
			if be.Uint32(buf) != symlinkMagic || !verifyCRC(buf, 12) {
				return "", malformed("inode %d: remote symlink extent %d header or checksum", ip.ino, i)
			}
			soff, sbytes := be.Uint32(buf[4:]), be.Uint32(buf[8:])
			if be.Uint64(buf[32:]) != ip.ino || int(soff) != len(out) || sbytes == 0 || int(sbytes) > len(buf)-symlinkHdrV5 {
				return "", malformed("inode %d: remote symlink extent %d header", ip.ino, i)
			}
			data = buf[symlinkHdrV5 : symlinkHdrV5+sbytes]
		}
		n := min(len(data), int(ip.size)-len(out))
		out = append(out, data[:n]...)
	}
	if len(out) != int(ip.size) || xs[0].off != 0 {
		return "", malformed("inode %d: remote symlink blocks hold %d of %d bytes", ip.ino, len(out), ip.size)
	}
	return string(out), nil
}
