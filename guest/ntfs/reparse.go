package ntfs

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"github.com/cairn-backup/cairn/guest/vfs"
	"strings"
)

// Reparse tags this package turns into symbolic links.
const (
	tagMountPoint = 0xA0000003 // junction
	tagSymlink    = 0xA000000C
)

// interixMagic starts the content of a symbolic link made by ntfs-3g or
// Windows Services for Unix: a system file holding "IntxLNK\1" and the
// UTF-16 target.
var interixMagic = []byte("IntxLNK\x01")

const maxLinkTarget = 4096

// linkKind tells whether the inode is a symbolic link and how it is stored.
func (in *inode) linkKind() int {
	if len(in.reparse) >= 8 {
		switch binary.LittleEndian.Uint32(in.reparse) {
		case tagSymlink, tagMountPoint:
			return linkReparse
		}
		return 0
	}
	if !in.isDir && in.attrs&faSystem != 0 && in.data != nil && in.data.size > int64(len(interixMagic)) && in.data.size <= int64(len(interixMagic))+2*maxLinkTarget {
		var m [8]byte
		if n, _ := in.data.ReadAt(m[:], 0); n == len(m) && bytes.Equal(m[:], interixMagic) {
			return linkInterix
		}
	}
	return 0
}

const (
	linkReparse = 1
	linkInterix = 2
)

// special reports an Interix special file as ntfs-3g shows it: a system
// file with no reparse point whose unnamed $DATA is empty (a FIFO), one
// byte long (a socket), or "IntxCHR\0"/"IntxBLK\0" with a little-endian
// 64-bit major and minor (a device). It returns the type bits and the
// Linux device number, or 0.
func (in *inode) special() (uint32, uint64) {
	if in.isDir || in.attrs&faSystem == 0 || len(in.reparse) != 0 || in.data == nil || in.data.unit != 0 {
		return 0, 0
	}
	switch in.data.size {
	case 0:
		return vfs.ModeFIFO, 0
	case 1:
		return vfs.ModeSocket, 0
	case 24:
		var b [24]byte
		if n, _ := in.data.ReadAt(b[:], 0); n != len(b) {
			return 0, 0
		}
		kind := uint32(0)
		switch string(b[:8]) {
		case "IntxCHR\x00":
			kind = vfs.ModeChar
		case "IntxBLK\x00":
			kind = vfs.ModeBlock
		default:
			return 0, 0
		}
		major, minor := binary.LittleEndian.Uint64(b[8:]), binary.LittleEndian.Uint64(b[16:])
		return kind, (minor & 0xff) | (major&0xfff)<<8 | (minor&^0xff)<<12 | (major&^0xfff)<<32
	}
	return 0, 0
}

// reparseTag returns the tag of a reparse point, 0 when there is none.
func (in *inode) reparseTag() uint32 {
	if len(in.reparse) < 8 {
		return 0
	}
	return binary.LittleEndian.Uint32(in.reparse)
}

// readlink decodes the target. Relative symlinks become relative POSIX
// paths ("\" → "/"); absolute ones on a drive ("\??\C:\dir\x") become
// paths relative to the link's directory that climb to the volume root
// ("../../dir/x"), which is what ntfs-3g shows for a target on the same
// volume; other absolute forms (UNC, volume GUID) keep their path with
// "/" separators.
func (s *fsys) readlink(in *inode) (string, error) {
	what := fmt.Sprintf("inode %d", in.no)
	switch in.linkKind() {
	case linkInterix:
		b := make([]byte, in.data.size)
		if _, err := in.data.ReadAt(b, 0); err != nil {
			return "", err
		}
		t := utf16le(b[len(interixMagic):])
		t = strings.TrimRight(t, "\x00")
		if t == "" || strings.Contains(t, "\x00") {
			return "", malformed("%s: Interix symlink target %q", what, t)
		}
		return t, nil
	case linkReparse:
	default:
		return "", nil
	}
	r := in.reparse
	le := binary.LittleEndian
	tag := le.Uint32(r)
	dlen := int(le.Uint16(r[4:]))
	hdr := 8 + 8
	if tag == tagSymlink {
		hdr += 4
	}
	if len(r) < hdr || 8+dlen > len(r) || dlen < hdr-8 {
		return "", malformed("%s: reparse data of %d bytes", what, len(r))
	}
	path := r[hdr : 8+dlen]
	subOff, subLen := int(le.Uint16(r[8:])), int(le.Uint16(r[10:]))
	if subOff+subLen > len(path) || subLen%2 != 0 || subLen == 0 {
		return "", malformed("%s: reparse substitute name %d+%d of %d", what, subOff, subLen, len(path))
	}
	target := utf16le(path[subOff : subOff+subLen])
	relative := tag == tagSymlink && le.Uint32(r[16:])&1 != 0
	if strings.ContainsRune(target, 0) {
		return "", malformed("%s: reparse target contains NUL", what)
	}
	if relative {
		return strings.ReplaceAll(target, `\`, "/"), nil
	}
	rest, ok := driveRelative(target)
	if !ok {
		return strings.ReplaceAll(target, `\`, "/"), nil
	}
	depth, err := s.depth(in)
	if err != nil {
		return "", err
	}
	up := strings.Repeat("../", depth)
	if rest == "" {
		if up == "" {
			return ".", nil
		}
		return strings.TrimSuffix(up, "/"), nil
	}
	return up + strings.ReplaceAll(rest, `\`, "/"), nil
}

// driveRelative strips "\??\C:\" (or "C:\") and returns the path below
// the drive root.
func driveRelative(t string) (string, bool) {
	t = strings.TrimPrefix(t, `\??\`)
	t = strings.TrimPrefix(t, `\\?\`)
	if len(t) >= 2 && t[1] == ':' && (t[0]|0x20) >= 'a' && (t[0]|0x20) <= 'z' {
		return strings.Trim(t[2:], `\`), true
	}
	return "", false
}

// depth counts the directories between the root and the link's parent,
// following the first non-DOS $FILE_NAME upwards.
func (s *fsys) depth(in *inode) (int, error) {
	cur := in
	for d := 0; d < 1024; d++ {
		var parent uint64
		found := false
		for _, n := range cur.names {
			if n.ns != nsDOS {
				parent, found = n.parent, true
				break
			}
		}
		if !found {
			return 0, malformed("inode %d has no name", cur.no)
		}
		if parent == rootRecord {
			return d, nil
		}
		p, err := s.inode(parent)
		if err != nil {
			return 0, err
		}
		cur = p
	}
	return 0, malformed("inode %d: parent chain longer than 1024 (loop)", in.no)
}
