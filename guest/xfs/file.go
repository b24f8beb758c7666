package xfs

import (
	"fmt"
	"io"

	"github.com/cairn-backup/cairn/guest/vfs"
)

// file is an open regular file: its extent map, built once at Open, maps
// each read to as few ReadAt calls on the volume as the layout allows.
type file struct {
	f    *FS
	ino  uint64
	size int64
	xs   []extent
}

// Open returns the content of regular file ino.
func (f *FS) Open(ino uint64) (vfs.File, error) {
	ip, err := f.readInode(ino)
	if err != nil {
		return nil, err
	}
	if ip.fileType() != vfs.ModeFile {
		return nil, fmt.Errorf("xfs: inode %d: %w", ino, vfs.ErrNotFile)
	}
	if ip.flags&diflagRealtime != 0 {
		return nil, fmt.Errorf("xfs: inode %d: files on a realtime device are not supported", ino)
	}
	xs, err := f.extents(ip)
	if err != nil {
		return nil, err
	}
	return &file{f: f, ino: ino, size: ip.size, xs: xs}, nil
}

func (fl *file) Size() int64 { return fl.size }

// ReadAt reads file bytes at off; holes and unwritten extents read as zeros.
func (fl *file) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("xfs: inode %d: negative offset", fl.ino)
	}
	if off >= fl.size {
		return 0, io.EOF
	}
	want := len(p)
	if int64(want) > fl.size-off {
		p = p[:fl.size-off]
	}
	n, err := fl.f.readMapped(fl.ino, fl.xs, p, off, true)
	if err == nil && n < want {
		err = io.EOF
	}
	return n, err
}

// readMapped fills p with the bytes at logical offset off of a fork mapped
// by xs. Holes read as zeros when holesOK, otherwise they are an error.
func (f *FS) readMapped(ino uint64, xs []extent, p []byte, off int64, holesOK bool) (int, error) {
	bs := int64(f.sb.blockSize)
	done := 0
	i := findExtent(xs, uint64(off)/uint64(bs))
	for done < len(p) {
		pos := off + int64(done)
		lb := uint64(pos / bs)
		for i < len(xs) && xs[i].off+xs[i].count <= lb {
			i++
		}
		var n int64
		rest := int64(len(p) - done)
		switch {
		case i >= len(xs) || xs[i].off > lb: // hole
			if !holesOK {
				return done, malformed("inode %d: hole at block %d", ino, lb)
			}
			n = rest
			if i < len(xs) {
				n = min(n, int64(xs[i].off)*bs-pos)
			}
			clear(p[done : done+int(n)])
		default:
			x := xs[i]
			n = min(rest, int64(x.off+x.count)*bs-pos)
			if x.unwritten {
				clear(p[done : done+int(n)])
				break
			}
			base, _ := f.sb.fsbOffset(x.fsb) // checked by checkExtents
			phys := base + pos - int64(x.off)*bs
			if err := f.readAt(p[done:done+int(n)], phys); err != nil {
				return done, fmt.Errorf("xfs: inode %d: reading block %d: %w", ino, lb, err)
			}
		}
		done += int(n)
	}
	return done, nil
}
