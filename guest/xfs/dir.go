package xfs

import (
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/cairn-backup/cairn/guest/vfs"
)

// Directory constants (xfs_da_format.h).
const (
	dirBlockMagic  = 0x58443242 // "XD2B": single-block directory, v4
	dirDataMagic   = 0x58443244 // "XD2D": data block of a leaf/node directory, v4
	dir3BlockMagic = 0x58444233 // "XDB3"
	dir3DataMagic  = 0x58444433 // "XDD3"
	dirHdrV4       = 16
	dirHdrV5       = 64
	dirFreeTag     = 0xffff

	// dirLeafOffset is where the hash index starts in a directory's
	// logical space; entries live only in the data blocks below it.
	dirLeafOffset = 1 << 35

	maxDirEntries = 1 << 20
	maxDirBlocks  = 1 << 18
)

// ftypeMode maps a directory entry's file type byte to vfs.Mode type bits.
var ftypeMode = [...]uint32{0, vfs.ModeFile, vfs.ModeDir, vfs.ModeChar, vfs.ModeBlock, vfs.ModeFIFO, vfs.ModeSocket, vfs.ModeLink}

// ReadDir lists directory ino without "." and "..".
func (f *FS) ReadDir(ino uint64) ([]vfs.DirEntry, error) {
	d, err := f.dir(ino)
	if err != nil {
		return nil, err
	}
	return append([]vfs.DirEntry(nil), d.entries...), nil
}

// Lookup finds name in directory dir.
func (f *FS) Lookup(dir uint64, name string) (vfs.DirEntry, error) {
	d, err := f.dir(dir)
	if err != nil {
		return vfs.DirEntry{}, err
	}
	i, ok := d.byName[name]
	if !ok {
		return vfs.DirEntry{}, fmt.Errorf("xfs: %q in directory %d: %w", name, dir, vfs.ErrNotFound)
	}
	return d.entries[i], nil
}

// dir returns the parsed directory ino, from the cache when it is there.
func (f *FS) dir(ino uint64) (*dirListing, error) {
	f.mu.Lock()
	d := f.dirs.get(ino)
	f.mu.Unlock()
	if d != nil {
		return d, nil
	}
	ip, err := f.readInode(ino)
	if err != nil {
		return nil, err
	}
	if ip.fileType() != vfs.ModeDir {
		return nil, fmt.Errorf("xfs: inode %d: %w", ino, vfs.ErrNotDir)
	}
	p := &dirParser{f: f, ino: ino, d: &dirListing{byName: map[string]int{}}}
	if ip.format == fmtLocal {
		err = p.shortform(ip)
	} else {
		err = p.blocks(ip)
	}
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	f.dirs.put(ino, p.d)
	f.mu.Unlock()
	return p.d, nil
}

type dirParser struct {
	f   *FS
	ino uint64
	d   *dirListing
}

// add records one entry after checking its name and inode number.
func (p *dirParser) add(name []byte, ino uint64, ftype byte, hasType bool) error {
	if len(name) == 0 || strings.ContainsAny(string(name), "/\x00") {
		return malformed("directory %d: bad entry name %q", p.ino, name)
	}
	s := string(name)
	if s == "." || s == ".." {
		return nil
	}
	if _, ok := p.f.sb.inoOffset(ino); !ok {
		return malformed("directory %d: entry %q names inode %d out of range", p.ino, s, ino)
	}
	if _, dup := p.d.byName[s]; dup {
		return malformed("directory %d: entry %q appears twice", p.ino, s)
	}
	if len(p.d.entries) >= maxDirEntries {
		return malformed("directory %d: more than %d entries", p.ino, maxDirEntries)
	}
	e := vfs.DirEntry{Name: s, Ino: ino}
	if hasType {
		if int(ftype) >= len(ftypeMode) {
			return malformed("directory %d: entry %q file type %d", p.ino, s, ftype)
		}
		e.Type = ftypeMode[ftype]
	}
	p.d.byName[s] = len(p.d.entries)
	p.d.entries = append(p.d.entries, e)
	return nil
}

// shortform parses a directory stored inside its inode.
func (p *dirParser) shortform(ip *inode) error {
	b := ip.fork
	if ip.size < 6 || ip.size > int64(len(b)) {
		return malformed("directory %d: short-form size %d", p.ino, ip.size)
	}
	b = b[:ip.size]
	count, i8 := int(b[0]), b[1]
	inoLen := 4
	if i8 != 0 {
		inoLen = 8
	}
	pos := 2 + inoLen
	ft := 0
	if p.f.sb.ftype {
		ft = 1
	}
	for i := 0; i < count; i++ {
		if pos+3 > len(b) {
			return malformed("directory %d: short-form entry %d truncated", p.ino, i)
		}
		nl := int(b[pos])
		end := pos + 3 + nl + ft + inoLen
		if end > len(b) {
			return malformed("directory %d: short-form entry %d truncated", p.ino, i)
		}
		name := b[pos+3 : pos+3+nl]
		var ftype byte
		if ft == 1 {
			ftype = b[pos+3+nl]
		}
		ib := b[pos+3+nl+ft : end]
		var ino uint64
		if inoLen == 8 {
			ino = binary.BigEndian.Uint64(ib)
		} else {
			ino = uint64(binary.BigEndian.Uint32(ib))
		}
		if err := p.add(name, ino, ftype, p.f.sb.ftype); err != nil {
			return err
		}
		pos = end
	}
	return nil
}

// blocks parses every data block of a block, leaf, node or btree
// directory: the logical space below dirLeafOffset, whatever index sits above it.
func (p *dirParser) blocks(ip *inode) error {
	f := p.f
	xs, err := f.extents(ip)
	if err != nil {
		return err
	}
	dirBlk := int64(f.sb.blockSize) << f.sb.dirBlkLog
	fsbPerDir := uint64(1) << f.sb.dirBlkLog
	limit := uint64(dirLeafOffset) >> f.sb.blockLog
	buf := make([]byte, dirBlk)
	nblocks := 0
	last := ^uint64(0)
	for _, x := range xs {
		for lb := x.off &^ (fsbPerDir - 1); lb < x.off+x.count && lb < limit; lb += fsbPerDir {
			db := lb / fsbPerDir
			if db == last {
				continue
			}
			last = db
			if nblocks++; nblocks > maxDirBlocks {
				return malformed("directory %d: more than %d data blocks", p.ino, maxDirBlocks)
			}
			if _, err := f.readMapped(p.ino, xs, buf, int64(lb)<<f.sb.blockLog, false); err != nil {
				return err
			}
			if err := p.dataBlock(buf, db); err != nil {
				return err
			}
		}
	}
	return nil
}

// dataBlock parses one directory data block: header, then entries and
// unused regions up to the end (or, in a single-block directory, up to
// its hash leaf and tail).
func (p *dirParser) dataBlock(b []byte, db uint64) error {
	be := binary.BigEndian
	sb := p.f.sb
	magic := be.Uint32(b)
	hdr, end := dirHdrV4, len(b)
	blockMagic, dataMagic := uint32(dirBlockMagic), uint32(dirDataMagic)
	if sb.crc() {
		hdr, blockMagic, dataMagic = dirHdrV5, dir3BlockMagic, dir3DataMagic
	}
	switch {
	case magic == blockMagic && db == 0:
		count := int64(be.Uint32(b[len(b)-8:]))
		if count > int64(len(b)-8-hdr)/8 {
			return malformed("directory %d: block tail count %d", p.ino, count)
		}
		end = len(b) - 8 - int(count)*8
	case magic == dataMagic:
	default:
		return malformed("directory %d: data block %d magic %#08x", p.ino, db, magic)
	}
	if sb.crc() {
		if !verifyCRC(b, 4) {
			return malformed("directory %d: data block %d checksum mismatch", p.ino, db)
		}
		if be.Uint64(b[40:]) != p.ino {
			return malformed("directory %d: data block %d belongs to inode %d", p.ino, db, be.Uint64(b[40:]))
		}
	}
	ft := 0
	if sb.ftype {
		ft = 1
	}
	for pos := hdr; pos < end; {
		if end-pos < 8 {
			return malformed("directory %d: block %d: entry at %d truncated", p.ino, db, pos)
		}
		if be.Uint16(b[pos:]) == dirFreeTag {
			n := int(be.Uint16(b[pos+2:]))
			if n < 8 || n%8 != 0 || n > end-pos {
				return malformed("directory %d: block %d: free region of %d bytes at %d", p.ino, db, n, pos)
			}
			pos += n
			continue
		}
		nl := int(b[pos+8])
		n := (8 + 1 + nl + ft + 2 + 7) &^ 7
		if n > end-pos {
			return malformed("directory %d: block %d: entry at %d overruns the block", p.ino, db, pos)
		}
		var ftype byte
		if ft == 1 {
			ftype = b[pos+9+nl]
		}
		if err := p.add(b[pos+9:pos+9+nl], be.Uint64(b[pos:]), ftype, sb.ftype); err != nil {
			return err
		}
		pos += n
	}
	return nil
}
