package ntfs

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/cairn-backup/cairn/guest/vfs"
)

// File attribute flags ($STANDARD_INFORMATION, $FILE_NAME).
const (
	faReadOnly  = 0x0001
	faSystem    = 0x0004
	faReparse   = 0x0400
	faDirectory = 0x10000000 // in $FILE_NAME: the file has a $I30 index
)

// Name spaces of $FILE_NAME.
const (
	nsPOSIX = 0
	nsWin32 = 1
	nsDOS   = 2
	nsBoth  = 3
)

// fileName is one $FILE_NAME attribute.
type fileName struct {
	parent uint64
	name   string
	ns     byte
}

// inode is the parsed base record of a file with its extension records.
type inode struct {
	no      uint64
	seq     uint16
	isDir   bool
	attrs   uint32 // $STANDARD_INFORMATION file attributes
	times   [4]int64
	names   []fileName
	data    *stream // unnamed $DATA; nil for directories
	dataErr error
	dataRaw attr // first extent of $DATA, for Stat when the stream failed

	indexRoot  []byte
	indexAlloc *stream
	indexErr   error

	reparse []byte
	weight  int
}

const (
	maxExtensionRecords = 4096
	maxAttrListBytes    = 1 << 20
	maxReparseBytes     = 16 << 10
)

// readRecord reads and fixes up MFT record no.
func (s *fsys) readRecord(no uint64) ([]byte, error) {
	if no >= s.records {
		return nil, fmt.Errorf("ntfs: MFT record %d beyond the %d records: %w", no, s.records, vfs.ErrNotFound)
	}
	b := make([]byte, s.v.recordSize)
	if _, err := s.mft.ReadAt(b, int64(no)*s.v.recordSize); err != nil {
		return nil, fmt.Errorf("ntfs: reading MFT record %d: %w", no, err)
	}
	if err := fixup(b, "FILE", fmt.Sprintf("MFT record %d", no)); err != nil {
		return nil, err
	}
	return b, nil
}

// inode loads (or finds in the cache) the file with MFT record number no.
func (s *fsys) inode(no uint64) (*inode, error) {
	if in, ok := s.inodes.get(no); ok {
		return in, nil
	}
	in, err := s.loadInode(no)
	if err != nil {
		return nil, err
	}
	s.inodes.put(no, in, in.weight)
	return in, nil
}

func (s *fsys) loadInode(no uint64) (*inode, error) {
	what := fmt.Sprintf("MFT record %d", no)
	b, err := s.readRecord(no)
	if err != nil {
		return nil, err
	}
	h, attrs, err := parseRecord(b, s.v, what)
	if err != nil {
		return nil, err
	}
	if h.flags&0x01 == 0 || h.base != 0 {
		return nil, fmt.Errorf("ntfs: inode %d is not in use or not a base record: %w", no, vfs.ErrNotFound)
	}
	attrs, err = s.withExtensions(no, attrs, what)
	if err != nil {
		return nil, err
	}
	in := &inode{no: no, seq: h.seq, isDir: h.flags&0x02 != 0}
	var data, ialloc []attr
	for _, a := range attrs {
		in.weight += len(a.runs)
		switch {
		case a.typ == atStandardInfo && a.resident && len(a.value) >= 0x24:
			for i := range in.times {
				in.times[i] = int64(binary.LittleEndian.Uint64(a.value[8*i:]))
			}
			in.attrs = binary.LittleEndian.Uint32(a.value[0x20:])
		case a.typ == atFileName:
			fn, err := parseFileName(a.value, what)
			if err != nil {
				return nil, err
			}
			in.names = append(in.names, fn)
		case a.typ == atData && a.name == "":
			data = append(data, a)
		case a.typ == atIndexRoot && a.name == "$I30" && a.resident:
			in.indexRoot = a.value
		case a.typ == atIndexAlloc && a.name == "$I30":
			ialloc = append(ialloc, a)
		case a.typ == atReparse:
			in.reparse, err = s.attrValue(a, maxReparseBytes, what+" $REPARSE_POINT")
			if err != nil {
				return nil, err
			}
		}
	}
	if len(data) > 0 {
		for _, a := range data {
			if a.startVCN == 0 {
				in.dataRaw = a
			}
		}
		in.data, in.dataErr = newStream(s.r, s.v, data, what+" $DATA")
	}
	if len(ialloc) > 0 {
		in.indexAlloc, in.indexErr = newStream(s.r, s.v, ialloc, what+" $INDEX_ALLOCATION")
	}
	return in, nil
}

// withExtensions adds the attributes of the extension records an
// $ATTRIBUTE_LIST names.
func (s *fsys) withExtensions(no uint64, attrs []attr, what string) ([]attr, error) {
	var list []byte
	for _, a := range attrs {
		if a.typ == atAttrList {
			var err error
			if list, err = s.attrValue(a, maxAttrListBytes, what+" $ATTRIBUTE_LIST"); err != nil {
				return nil, err
			}
		}
	}
	if list == nil {
		return attrs, nil
	}
	seen := map[uint64]bool{no: true}
	for off := 0; off+26 <= len(list); {
		l := int(binary.LittleEndian.Uint16(list[off+4:]))
		if l < 26 || off+l > len(list) {
			return nil, malformed("%s: attribute list entry of %d bytes at %d", what, l, off)
		}
		ref := binary.LittleEndian.Uint64(list[off+16:]) & 0xFFFFFFFFFFFF
		off += l
		if seen[ref] {
			continue
		}
		seen[ref] = true
		if len(seen) > maxExtensionRecords {
			return nil, malformed("%s: more than %d extension records", what, maxExtensionRecords)
		}
		b, err := s.readRecord(ref)
		if err != nil {
			return nil, fmt.Errorf("%s: extension record: %w", what, err)
		}
		h, ext, err := parseRecord(b, s.v, fmt.Sprintf("MFT record %d (extension of %d)", ref, no))
		if err != nil {
			return nil, err
		}
		if h.flags&0x01 == 0 || h.base != no {
			return nil, malformed("%s: extension record %d belongs to %d", what, ref, h.base)
		}
		for _, a := range ext {
			if a.typ != atAttrList {
				attrs = append(attrs, a)
			}
		}
	}
	return attrs, nil
}

// attrValue returns the whole value of a small attribute.
func (s *fsys) attrValue(a attr, limit int64, what string) ([]byte, error) {
	if a.resident {
		return a.value, nil
	}
	st, err := newStream(s.r, s.v, []attr{a}, what)
	if err != nil {
		return nil, err
	}
	if st.size > limit {
		return nil, malformed("%s: %d bytes", what, st.size)
	}
	b := make([]byte, st.size)
	if len(b) == 0 {
		return b, nil
	}
	if _, err := st.ReadAt(b, 0); err != nil {
		return nil, err
	}
	return b, nil
}

func parseFileName(v []byte, what string) (fileName, error) {
	if len(v) < 0x42 || 0x42+2*int(v[0x40]) > len(v) {
		return fileName{}, malformed("%s: $FILE_NAME of %d bytes", what, len(v))
	}
	return fileName{
		parent: binary.LittleEndian.Uint64(v) & 0xFFFFFFFFFFFF,
		name:   utf16le(v[0x42 : 0x42+2*int(v[0x40])]),
		ns:     v[0x41],
	}, nil
}

// ntfsTime converts 100 ns intervals since 1601-01-01 UTC.
func ntfsTime(t int64) time.Time {
	if t == 0 {
		return time.Time{}
	}
	const epochDiff = 116444736000000000 // 1601 → 1970 in 100 ns
	d := t - epochDiff
	sec, rem := d/10_000_000, d%10_000_000
	if rem < 0 {
		sec--
		rem += 10_000_000
	}
	return time.Unix(sec, rem*100).UTC()
}
