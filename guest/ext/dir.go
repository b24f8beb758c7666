package ext

import (
	"encoding/binary"
	"fmt"

	"github.com/cairn-backup/cairn/guest/vfs"
)

const (
	// maxDirEntries bounds one directory listing.
	maxDirEntries = 1 << 20
	// maxDirBytes bounds the size of a directory this reader will scan.
	maxDirBytes = 1 << 30
	// dirCacheEntries bounds the entries kept by the per-directory cache
	// that makes repeated Lookup in one directory fast.
	dirCacheEntries = 1 << 18
)

// dirIndex is a listed directory kept for Lookup.
type dirIndex struct {
	entries []vfs.DirEntry
	byName  map[string]int
}

// fileTypes maps the directory entry file type to ModeType bits.
var fileTypes = [8]uint32{0, vfs.ModeFile, vfs.ModeDir, vfs.ModeChar, vfs.ModeBlock, vfs.ModeFIFO, vfs.ModeSocket, vfs.ModeLink}

func (f *FS) readDir(ino uint64) ([]vfs.DirEntry, error) {
	in, err := f.readInode(ino)
	if err != nil {
		return nil, err
	}
	if !in.isDir() {
		return nil, fmt.Errorf("ext: inode %d: %w", ino, vfs.ErrNotDir)
	}
	if in.size > maxDirBytes {
		return nil, fmt.Errorf("ext: directory %d of %d bytes: %w", ino, in.size, vfs.ErrMalformed)
	}
	var out []vfs.DirEntry
	if in.flags&flagInlineData != 0 {
		// i_block: the parent's inode number, then entries; the rest of
		// the entries in the system.data attribute.
		if err := f.parseDirBlock(ino, in.iblock[4:], &out); err != nil {
			return nil, err
		}
		more, err := in.inlineData()
		if err != nil {
			return nil, err
		}
		if len(more) > 0 {
			if err := f.parseDirBlock(ino, more, &out); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	fl, err := f.openInode(in)
	if err != nil {
		return nil, err
	}
	// Read up to 256 KiB of contiguous directory blocks at a time.
	bs := f.sb.blockSize
	per := max(1, (256<<10)/bs)
	buf := make([]byte, min(per, (in.size+bs-1)/bs)*bs)
	for _, r := range fl.runs {
		for b := r.log; b < r.log+r.n; b += per {
			n := min(per, r.log+r.n-b)
			chunk := buf[:n*bs]
			if err := fl.dev.readAt(chunk, int64((r.phys+b-r.log)*bs)); err != nil {
				return nil, fmt.Errorf("ext: directory %d: %w", ino, err)
			}
			for i := uint64(0); i < n; i++ {
				if err := f.parseDirBlock(ino, chunk[i*bs:(i+1)*bs], &out); err != nil {
					return nil, err
				}
			}
		}
	}
	return out, nil
}

// parseDirBlock appends the live entries of one directory block, skipping
// ".", "..", deleted entries and the htree and checksum records (all of
// which have inode 0).
func (f *FS) parseDirBlock(dir uint64, b []byte, out *[]vfs.DirEntry) error {
	le := binary.LittleEndian
	filetype := f.sb.incompat&incompatFiletype != 0
	for off := 0; off < len(b); {
		bad := func(format string, a ...any) error {
			return fmt.Errorf("ext: directory %d: entry at %d: "+format+": %w", append([]any{dir, off}, append(a, vfs.ErrMalformed)...)...)
		}
		if len(b)-off < 8 {
			return bad("%d trailing bytes", len(b)-off)
		}
		e := b[off:]
		ino := uint64(le.Uint32(e))
		recLen := f.recLen(le.Uint16(e[4:]))
		nameLen := int(e[6])
		if !filetype {
			nameLen = int(le.Uint16(e[6:]))
		}
		if recLen < 8 || recLen%4 != 0 || recLen > len(e) || 8+nameLen > recLen {
			return bad("record length %d, name length %d", recLen, nameLen)
		}
		off += recLen
		if ino == 0 {
			continue
		}
		if nameLen == 0 || nameLen > 255 {
			return bad("name length %d", nameLen)
		}
		if ino > uint64(f.sb.inodesCount) {
			return bad("inode %d beyond %d", ino, f.sb.inodesCount)
		}
		name := string(e[8 : 8+nameLen])
		if name == "." || name == ".." {
			continue
		}
		var typ uint32
		if filetype {
			typ = fileTypes[e[7]&7]
		}
		if len(*out) >= maxDirEntries {
			return bad("more than %d entries", maxDirEntries)
		}
		*out = append(*out, vfs.DirEntry{Name: name, Ino: ino, Type: typ})
	}
	return nil
}

// recLen decodes rec_len; 64 KiB blocks need a 17th bit, stored in the
// two low bits (always zero otherwise).
func (f *FS) recLen(v uint16) int {
	if f.sb.blockSize < 65536 {
		return int(v)
	}
	if v == 65535 || v == 0 {
		return 65536
	}
	return int(v&65532) | int(v&3)<<16
}

// dirIndexOf lists a directory once and keeps the listing, indexed by
// name, in a bounded cache.
func (f *FS) dirIndexOf(ino uint64) (*dirIndex, error) {
	if d, ok := f.dirs.get(ino); ok {
		return d, nil
	}
	entries, err := f.readDir(ino)
	if err != nil {
		return nil, err
	}
	d := &dirIndex{entries: entries, byName: make(map[string]int, len(entries))}
	for i, e := range entries {
		if _, dup := d.byName[e.Name]; !dup {
			d.byName[e.Name] = i
		}
	}
	f.dirs.add(ino, d, int64(len(entries))+1)
	return d, nil
}
