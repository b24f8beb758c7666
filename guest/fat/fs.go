package fat

import (
	"fmt"
	"io"
	"strings"

	"github.com/cairn-backup/cairn/guest/vfs"
)

// rootIno is the root directory's inode number; no 8.3 entry can sit at
// byte 1 of the volume.
const rootIno = 1

type fsys struct {
	r     io.ReaderAt
	g     *geometry
	fat   *table
	label string
	dirs  *dirCache
}

var _ vfs.FS = (*fsys)(nil)

// Open reads the boot sector and the root directory of a FAT volume that
// r covers exactly.
func Open(r io.ReaderAt, size int64) (vfs.FS, error) {
	g, err := readBootSector(r, size)
	if err != nil {
		return nil, err
	}
	t, err := newTable(r, g)
	if err != nil {
		return nil, err
	}
	s := &fsys{r: r, g: g, fat: t, label: g.bpbLabel, dirs: newDirCache()}
	root, err := s.listing(rootIno)
	if err != nil {
		return nil, err
	}
	if root.label != "" {
		s.label = root.label
	}
	return s, nil
}

func (s *fsys) Type() string  { return "vfat" }
func (s *fsys) Label() string { return s.label }
func (s *fsys) Root() uint64  { return rootIno }

// entry reads back the 8.3 entry an inode number designates.
func (s *fsys) entry(ino uint64) (dirent, error) {
	g := s.g
	pos := int64(ino)
	inRoot := g.kind != fat32 && pos >= g.rootOffset && pos < g.rootOffset+g.rootBytes
	inData := pos >= g.dataOffset && pos < g.dataOffset+int64(g.clusters)*g.clusterSize
	if ino%direntSize != 0 || ino > uint64(g.volumeBytes) || !(inRoot || inData) {
		return dirent{}, fmt.Errorf("vfat: inode %d: %w", ino, vfs.ErrNotFound)
	}
	var b [direntSize]byte
	if _, err := s.r.ReadAt(b[:], pos); err != nil {
		return dirent{}, fmt.Errorf("vfat: reading directory entry at %d: %w", pos, err)
	}
	if b[0] == 0 || b[0] == 0xE5 || b[0] == '.' || b[11]&attrLFN == attrLFN || b[11]&attrVolume != 0 {
		return dirent{}, fmt.Errorf("vfat: inode %d is not a file: %w", ino, vfs.ErrNotFound)
	}
	return parseRaw(b[:], pos, g.kind == fat32), nil
}

func (s *fsys) Stat(ino uint64) (vfs.FileInfo, error) {
	if ino == rootIno {
		l, err := s.listing(ino)
		if err != nil {
			return vfs.FileInfo{}, err
		}
		return vfs.FileInfo{Ino: ino, Mode: vfs.ModeDir | 0o755, Nlink: l.nlink(), Size: l.bytes, Blocks: (l.bytes + 511) / 512}, nil
	}
	d, err := s.entry(ino)
	if err != nil {
		return vfs.FileInfo{}, err
	}
	btime, mtime, atime := d.times()
	fi := vfs.FileInfo{Ino: ino, Nlink: 1, Atime: atime, Mtime: mtime, Ctime: mtime, Btime: btime}
	if d.isDir() {
		l, err := s.listing(ino)
		if err != nil {
			return vfs.FileInfo{}, err
		}
		fi.Mode = vfs.ModeDir | 0o755
		fi.Nlink = l.nlink()
		fi.Size = l.bytes
		fi.Blocks = (l.bytes + 511) / 512
	} else {
		fi.Mode = vfs.ModeFile | 0o644
		if d.attr&attrReadOnly != 0 {
			fi.Mode = vfs.ModeFile | 0o444
		}
		cs := s.g.clusterSize
		fi.Size = int64(d.size)
		fi.Blocks = (fi.Size + cs - 1) / cs * cs / 512
	}
	return fi, nil
}

func (s *fsys) ReadDir(ino uint64) ([]vfs.DirEntry, error) {
	l, err := s.listing(ino)
	if err != nil {
		return nil, err
	}
	out := make([]vfs.DirEntry, len(l.ents))
	for i := range l.ents {
		out[i] = l.ents[i].vfsEntry()
	}
	return out, nil
}

func (d *dirent) vfsEntry() vfs.DirEntry {
	t := uint32(vfs.ModeFile)
	if d.isDir() {
		t = vfs.ModeDir
	}
	return vfs.DirEntry{Name: d.name, Ino: uint64(d.pos), Type: t}
}

// Lookup matches the name exactly, then case-insensitively against the
// long and the short names, as the FAT semantics of Windows do.
func (s *fsys) Lookup(dir uint64, name string) (vfs.DirEntry, error) {
	l, err := s.listing(dir)
	if err != nil {
		return vfs.DirEntry{}, err
	}
	if i, ok := l.byName[name]; ok {
		return l.ents[i].vfsEntry(), nil
	}
	for i := range l.ents {
		if strings.EqualFold(l.ents[i].name, name) || strings.EqualFold(l.ents[i].short, name) {
			return l.ents[i].vfsEntry(), nil
		}
	}
	return vfs.DirEntry{}, fmt.Errorf("vfat: %q in directory %d: %w", name, dir, vfs.ErrNotFound)
}

func (s *fsys) Readlink(ino uint64) (string, error) {
	if _, err := s.Stat(ino); err != nil {
		return "", err
	}
	return "", fmt.Errorf("vfat: inode %d: %w", ino, vfs.ErrNotLink)
}

func (s *fsys) Open(ino uint64) (vfs.File, error) {
	if ino == rootIno {
		return nil, fmt.Errorf("vfat: root directory: %w", vfs.ErrNotFile)
	}
	d, err := s.entry(ino)
	if err != nil {
		return nil, err
	}
	if d.isDir() {
		return nil, fmt.Errorf("vfat: inode %d is a directory: %w", ino, vfs.ErrNotFile)
	}
	f := &file{s: s, size: int64(d.size)}
	if d.size == 0 {
		return f, nil
	}
	cs := s.g.clusterSize
	want := (int64(d.size) + cs - 1) / cs
	f.runs, _, err = s.fat.chain(d.cluster, uint32(want), 0, fmt.Sprintf("file %q (inode %d)", d.short, ino))
	if err != nil {
		return nil, err
	}
	return f, nil
}

// dirClusterLimit is the most clusters a directory of maxDirEntries spans.
func (s *fsys) dirClusterLimit() uint32 {
	return uint32((maxDirEntries*direntSize + s.g.clusterSize - 1) / s.g.clusterSize)
}
