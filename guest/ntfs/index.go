package ntfs

import (
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/cairn-backup/cairn/guest/vfs"
)

// dentry is one visible name in a directory.
type dentry struct {
	name  string
	ino   uint64
	attrs uint32 // file attributes from the index key
}

const (
	maxDirEntries = 1 << 21
	maxIndexDepth = 32
	firstUser     = 16 // records below are metafiles, hidden as ntfs-3g hides them
	rootRecord    = 5
)

// dirIndex is a parsed directory.
type dirIndex struct {
	ents   []dentry
	byName map[string]int // exact name → index in ents
}

// listing returns the visible entries of directory no, B-tree order.
func (s *fsys) listing(no uint64) (*dirIndex, error) {
	if d, ok := s.dirs.get(no); ok {
		return d, nil
	}
	in, err := s.inode(no)
	if err != nil {
		return nil, err
	}
	if !in.isDir || in.indexRoot == nil {
		return nil, fmt.Errorf("ntfs: inode %d: %w", no, vfs.ErrNotDir)
	}
	w := &indexWalk{s: s, in: in, what: fmt.Sprintf("directory %d", no), visited: map[int64]bool{}}
	if err := w.root(); err != nil {
		return nil, err
	}
	d := &dirIndex{ents: w.out, byName: make(map[string]int, len(w.out))}
	for i, e := range w.out {
		if _, dup := d.byName[e.name]; !dup {
			d.byName[e.name] = i
		}
	}
	s.dirs.put(no, d, len(w.out))
	return d, nil
}

type indexWalk struct {
	s         *fsys
	in        *inode
	what      string
	blockSize int64
	vcnUnit   int64
	visited   map[int64]bool
	out       []dentry
}

func (w *indexWalk) root() error {
	r := w.in.indexRoot
	le := binary.LittleEndian
	if len(r) < 32 || le.Uint32(r) != atFileName {
		return malformed("%s: $INDEX_ROOT of %d bytes does not index file names", w.what, len(r))
	}
	w.blockSize = int64(le.Uint32(r[8:]))
	if w.blockSize < 512 || w.blockSize > 64<<10 || w.blockSize&(w.blockSize-1) != 0 {
		return malformed("%s: index block size %d", w.what, w.blockSize)
	}
	w.vcnUnit = 512
	if w.blockSize >= w.s.v.clusterSize {
		w.vcnUnit = w.s.v.clusterSize
	}
	return w.node(r[16:], 0)
}

// node walks one index node (header + entries) in order.
func (w *indexWalk) node(n []byte, depth int) error {
	le := binary.LittleEndian
	if len(n) < 16 {
		return malformed("%s: index node header truncated", w.what)
	}
	start, end := int(le.Uint32(n)), int(le.Uint32(n[4:]))
	if start < 16 || end > len(n) || start > end {
		return malformed("%s: index entries %d..%d in a node of %d bytes", w.what, start, end, len(n))
	}
	for off := start; ; {
		if off+16 > end {
			return malformed("%s: index entries run past the node without an end entry", w.what)
		}
		elen := int(le.Uint16(n[off+8:]))
		klen := int(le.Uint16(n[off+10:]))
		flags := le.Uint16(n[off+12:])
		if elen < 16 || elen%8 != 0 || off+elen > end || 16+klen > elen {
			return malformed("%s: index entry of %d bytes (key %d) at %d", w.what, elen, klen, off)
		}
		e := n[off : off+elen]
		if flags&0x01 != 0 {
			if elen < 24 {
				return malformed("%s: index entry with subnode too short", w.what)
			}
			if err := w.child(int64(le.Uint64(e[elen-8:])), depth+1); err != nil {
				return err
			}
		}
		if flags&0x02 != 0 {
			return nil
		}
		if err := w.entry(e[:16+klen], le.Uint64(e)); err != nil {
			return err
		}
		off += elen
	}
}

func (w *indexWalk) child(vcn int64, depth int) error {
	if depth > maxIndexDepth {
		return malformed("%s: index deeper than %d levels", w.what, maxIndexDepth)
	}
	if w.visited[vcn] {
		return malformed("%s: index block VCN %d reached twice (loop)", w.what, vcn)
	}
	w.visited[vcn] = true
	a := w.in.indexAlloc
	if a == nil {
		if w.in.indexErr != nil {
			return w.in.indexErr
		}
		return malformed("%s: index points to VCN %d but has no $INDEX_ALLOCATION", w.what, vcn)
	}
	off := vcn * w.vcnUnit
	if vcn < 0 || off > a.size-w.blockSize {
		return malformed("%s: index block VCN %d beyond the %d-byte allocation", w.what, vcn, a.size)
	}
	b := make([]byte, w.blockSize)
	if _, err := a.ReadAt(b, off); err != nil {
		return fmt.Errorf("ntfs: %s: reading index block %d: %w", w.what, vcn, err)
	}
	what := fmt.Sprintf("%s index block %d", w.what, vcn)
	if err := fixup(b, "INDX", what); err != nil {
		return err
	}
	if got := int64(binary.LittleEndian.Uint64(b[16:])); got != vcn {
		return malformed("%s: says it is VCN %d", what, got)
	}
	return w.node(b[24:], depth)
}

// entry records one index key (a $FILE_NAME) if it is a visible name.
func (w *indexWalk) entry(e []byte, ref uint64) error {
	if len(e) < 16+0x42 {
		return malformed("%s: index key of %d bytes", w.what, len(e)-16)
	}
	fn, err := parseFileName(e[16:], w.what)
	if err != nil {
		return err
	}
	no := ref & 0xFFFFFFFFFFFF
	if fn.ns == nsDOS || (no < firstUser && no != rootRecord) || (no == w.in.no && fn.name == ".") {
		return nil
	}
	if fn.name == "" || fn.name == "." || fn.name == ".." || strings.ContainsAny(fn.name, "/\x00") {
		return malformed("%s: entry for record %d named %q", w.what, no, fn.name)
	}
	if len(w.out) >= maxDirEntries {
		return malformed("%s: more than %d entries", w.what, maxDirEntries)
	}
	w.out = append(w.out, dentry{name: fn.name, ino: no, attrs: binary.LittleEndian.Uint32(e[16+0x38:])})
	return nil
}
