package ntfs

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/cairn-backup/cairn/guest/vfs"
)

type fsys struct {
	r       io.ReaderAt
	v       *volume
	mft     *stream
	records uint64
	label   string
	inodes  *lru[*inode]
	dirs    *lru[*dirIndex]
}

var _ vfs.FS = (*fsys)(nil)

const (
	inodeCacheWeight = 1 << 18 // extents + inodes
	dirCacheWeight   = 1 << 18 // directory entries
)

// Open reads the boot sector, the $MFT's own record and the root
// directory of an NTFS volume that r covers exactly.
func Open(r io.ReaderAt, size int64) (fs vfs.FS, err error) {
	defer guard(&err) // a bug, not the image: report it, do not crash the host
	v, err := readBoot(r, size)
	if err != nil {
		return nil, err
	}
	s := &fsys{r: r, v: v, inodes: newLRU[*inode](inodeCacheWeight), dirs: newLRU[*dirIndex](dirCacheWeight)}
	if err := s.bootstrapMFT(); err != nil {
		return nil, err
	}
	if _, err := s.listing(rootRecord); err != nil {
		return nil, err
	}
	s.label = s.volumeLabel()
	return s, nil
}

// bootstrapMFT reads record 0 at the boot sector's LCN and assembles the
// $MFT's $DATA, following its attribute list if the MFT is fragmented
// beyond one record.
func (s *fsys) bootstrapMFT() error {
	v := s.v
	b := make([]byte, v.recordSize)
	if _, err := s.r.ReadAt(b, v.mftLCN*v.clusterSize); err != nil {
		return fmt.Errorf("ntfs: reading $MFT record: %w", err)
	}
	if err := fixup(b, "FILE", "$MFT record 0"); err != nil {
		return err
	}
	_, attrs, err := parseRecord(b, v, "$MFT record 0")
	if err != nil {
		return err
	}
	var data []attr
	for _, a := range attrs {
		if a.typ == atData && a.name == "" {
			data = append(data, a)
		}
	}
	if len(data) == 0 || data[0].resident || data[0].startVCN != 0 {
		return malformed("$MFT record 0 has no non-resident $DATA starting at VCN 0")
	}
	// Enough of the MFT to read its extension records, if any.
	first := data[0]
	s.mft = &stream{r: s.r, v: v, what: "$MFT", ex: first.runs, size: (first.lastVCN + 1) * v.clusterSize, unitNo: -1}
	s.mft.init = s.mft.size
	s.records = uint64(s.mft.size / v.recordSize)
	all, err := s.withExtensions(0, attrs, "$MFT record 0")
	if err != nil {
		return err
	}
	data = data[:0]
	for _, a := range all {
		if a.typ == atData && a.name == "" {
			data = append(data, a)
		}
	}
	mft, err := newStream(s.r, v, data, "$MFT $DATA")
	if err != nil {
		return err
	}
	s.mft = mft
	s.records = uint64(mft.init / v.recordSize)
	if s.records <= rootRecord {
		return malformed("$MFT of %d records has no root directory", s.records)
	}
	return nil
}

// volumeLabel reads $VOLUME_NAME of $Volume (record 3); "" if absent.
func (s *fsys) volumeLabel() string {
	b, err := s.readRecord(3)
	if err != nil {
		return ""
	}
	_, attrs, err := parseRecord(b, s.v, "$Volume")
	if err != nil {
		return ""
	}
	for _, a := range attrs {
		if a.typ == 0x60 && a.resident {
			return utf16le(a.value)
		}
	}
	return ""
}

func (s *fsys) Type() string  { return "ntfs" }
func (s *fsys) Label() string { return s.label }
func (s *fsys) Root() uint64  { return rootRecord }

// recoverPanics is turned off by the fuzz tests so that a bug shows.
var recoverPanics = true

// guard turns a panic inside the reader into an error.
func guard(err *error) {
	if !recoverPanics {
		return
	}
	if p := recover(); p != nil {
		*err = fmt.Errorf("ntfs: internal error: %v: %w", p, vfs.ErrMalformed)
	}
}

func (s *fsys) Stat(ino uint64) (fi vfs.FileInfo, err error) {
	defer guard(&err)
	in, err := s.inode(ino)
	if err != nil {
		return vfs.FileInfo{}, err
	}
	fi = vfs.FileInfo{
		Ino:   ino,
		Btime: ntfsTime(in.times[0]),
		Mtime: ntfsTime(in.times[1]),
		Ctime: ntfsTime(in.times[2]),
		Atime: ntfsTime(in.times[3]),
		Nlink: in.nlink(),
	}
	kind, rdev := in.special()
	switch {
	case kind != 0:
		fi.Mode = kind | 0o644
		fi.Rdev = rdev
	case in.linkKind() != 0:
		t, err := s.readlink(in)
		if err != nil {
			return vfs.FileInfo{}, err
		}
		fi.Mode = vfs.ModeLink | 0o777
		fi.Size = int64(len(t))
	case in.isDir:
		// As ntfs-3g shows them: one link, the size of the index
		// allocation (0 when the index fits in the record).
		fi.Mode = vfs.ModeDir | 0o755
		fi.Nlink = 1
		if in.indexAlloc != nil {
			fi.Size = in.indexAlloc.size
			fi.Blocks = in.indexAlloc.alloc / 512
		}
	default:
		fi.Mode = vfs.ModeFile | 0o644
		if in.attrs&faReadOnly != 0 {
			fi.Mode = vfs.ModeFile | 0o444
		}
		if in.data != nil || in.dataErr != nil {
			fi.Size = in.dataRaw.dataSize
			if !in.dataRaw.resident {
				fi.Blocks = in.dataRaw.compSize / 512
			}
		}
	}
	return fi, nil
}

// nlink counts the names of the file, a DOS 8.3 alias not being a name.
func (in *inode) nlink() uint32 {
	n := uint32(0)
	for _, fn := range in.names {
		if fn.ns != nsDOS {
			n++
		}
	}
	return max(n, 1)
}

func (s *fsys) ReadDir(ino uint64) (out []vfs.DirEntry, err error) {
	defer guard(&err)
	l, err := s.listing(ino)
	if err != nil {
		return nil, err
	}
	out = make([]vfs.DirEntry, len(l.ents))
	for i, d := range l.ents {
		out[i] = d.vfsEntry()
	}
	return out, nil
}

func (d dentry) vfsEntry() vfs.DirEntry {
	e := vfs.DirEntry{Name: d.name, Ino: d.ino}
	switch {
	case d.attrs&(faReparse|faSystem) != 0:
		// A link or an Interix special file: only Stat can tell.
	case d.attrs&faDirectory != 0:
		e.Type = vfs.ModeDir
	default:
		e.Type = vfs.ModeFile
	}
	return e
}

// Lookup matches the name exactly, then case-insensitively (Windows
// semantics for Win32 names).
func (s *fsys) Lookup(dir uint64, name string) (e vfs.DirEntry, err error) {
	defer guard(&err)
	l, err := s.listing(dir)
	if err != nil {
		return vfs.DirEntry{}, err
	}
	if i, ok := l.byName[name]; ok {
		return l.ents[i].vfsEntry(), nil
	}
	for _, d := range l.ents {
		if strings.EqualFold(d.name, name) {
			return d.vfsEntry(), nil
		}
	}
	return vfs.DirEntry{}, fmt.Errorf("ntfs: %q in directory %d: %w", name, dir, vfs.ErrNotFound)
}

func (s *fsys) Readlink(ino uint64) (t string, err error) {
	defer guard(&err)
	in, err := s.inode(ino)
	if err != nil {
		return "", err
	}
	if in.linkKind() == 0 {
		return "", fmt.Errorf("ntfs: inode %d: %w", ino, vfs.ErrNotLink)
	}
	return s.readlink(in)
}

// errUnsupported reports content this reader cannot produce faithfully.
var errUnsupported = errors.New("not supported")

func (s *fsys) Open(ino uint64) (f vfs.File, err error) {
	defer guard(&err)
	in, err := s.inode(ino)
	if err != nil {
		return nil, err
	}
	if k, _ := in.special(); in.isDir || k != 0 || in.linkKind() != 0 {
		return nil, fmt.Errorf("ntfs: inode %d: %w", ino, vfs.ErrNotFile)
	}
	if tag := in.reparseTag(); tag != 0 {
		// WOF-compressed, deduplicated, cloud placeholder...: the
		// unnamed $DATA is not the content.
		return nil, fmt.Errorf("ntfs: inode %d: reparse point tag 0x%08x: %w", ino, tag, errUnsupported)
	}
	if in.dataErr != nil {
		return nil, in.dataErr
	}
	if in.data == nil {
		return nil, malformed("inode %d: file without a $DATA attribute", ino)
	}
	// A private stream per open file: the compression-unit cache is
	// per file, the extents are shared read-only.
	return &file{st: in.data.clone()}, nil
}

type file struct{ st *stream }

func (f *file) Size() int64 { return f.st.size }

func (f *file) ReadAt(p []byte, off int64) (n int, err error) {
	defer guard(&err)
	return f.st.ReadAt(p, off)
}
