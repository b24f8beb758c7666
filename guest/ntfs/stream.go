package ntfs

import (
	"fmt"
	"io"
	"slices"
	"sync"
)

// stream is one attribute's content assembled from all its extents: the
// unnamed $DATA of a file, a directory's $I30 index allocation, the $MFT.
type stream struct {
	r    io.ReaderAt
	v    *volume
	what string

	resident []byte
	ex       []extent
	size     int64 // logical size
	init     int64 // bytes past this read as zeros
	alloc    int64 // bytes actually allocated on the volume
	unit     int64 // compression unit in bytes, 0 if not compressed

	mu      sync.Mutex
	unitNo  int64 // which unit unitBuf holds, -1 none
	unitBuf []byte
}

const maxUnit = 1 << 20

// clone shares the extents but not the decompression cache.
func (s *stream) clone() *stream {
	return &stream{r: s.r, v: s.v, what: s.what, resident: s.resident, ex: s.ex,
		size: s.size, init: s.init, alloc: s.alloc, unit: s.unit, unitNo: -1}
}

// newStream assembles the parts of one attribute (one per record when
// an attribute list spreads it) into a readable stream.
func newStream(r io.ReaderAt, v *volume, parts []attr, what string) (*stream, error) {
	s := &stream{r: r, v: v, what: what, unitNo: -1}
	if len(parts) == 0 {
		return nil, malformed("%s: no attribute", what)
	}
	if parts[0].resident {
		if len(parts) > 1 {
			return nil, malformed("%s: resident attribute in %d parts", what, len(parts))
		}
		s.resident = parts[0].value
		s.size, s.init = int64(len(s.resident)), int64(len(s.resident))
		return s, nil
	}
	slices.SortFunc(parts, func(a, b attr) int { return int(max(-1, min(1, a.startVCN-b.startVCN))) })
	first := parts[0]
	if first.startVCN != 0 {
		return nil, malformed("%s: first extent starts at VCN %d", what, first.startVCN)
	}
	next := int64(0)
	for _, p := range parts {
		if p.resident || p.startVCN != next {
			return nil, malformed("%s: extent at VCN %d, expected %d", what, p.startVCN, next)
		}
		if len(s.ex)+len(p.runs) > maxExtents {
			return nil, malformed("%s: more than %d runs", what, maxExtents)
		}
		s.ex = append(s.ex, p.runs...)
		next = p.lastVCN + 1
	}
	cs := v.clusterSize
	s.size, s.init, s.alloc = first.dataSize, first.initSize, first.compSize
	if next*cs != first.allocSize {
		return nil, malformed("%s: runs map %d clusters, allocated size is %d bytes", what, next, first.allocSize)
	}
	if first.flags&afEncrypted != 0 {
		return nil, fmt.Errorf("ntfs: %s: encrypted (EFS) content cannot be read without the user's key", what)
	}
	if first.flags&afCompressed != 0 {
		if first.cunit == 0 || cs<<first.cunit > maxUnit {
			return nil, malformed("%s: compression unit 2^%d clusters of %d bytes", what, first.cunit, cs)
		}
		s.unit = cs << first.cunit
		if first.allocSize%s.unit != 0 || s.size > first.allocSize {
			return nil, malformed("%s: compressed size %d / allocated %d not in units of %d", what, s.size, first.allocSize, s.unit)
		}
	} else if s.size > first.allocSize {
		return nil, malformed("%s: size %d beyond the %d bytes allocated", what, s.size, first.allocSize)
	}
	return s, nil
}

// ReadAt reads the stream; holes and the part past the initialized size
// read as zeros.
func (s *stream) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("ntfs: negative offset %d", off)
	}
	if off >= s.size {
		return 0, io.EOF
	}
	var eof error
	if rem := s.size - off; int64(len(p)) > rem {
		p, eof = p[:rem], io.EOF
	}
	if s.resident != nil || s.size == 0 {
		copy(p, s.resident[off:])
		return len(p), eof
	}
	n := 0
	for n < len(p) {
		pos := off + int64(n)
		if pos >= s.init {
			clear(p[n:])
			return len(p), eof
		}
		end := min(int64(len(p)), s.init-off) // do not read past init in one go
		m, err := s.readSome(p[n:end], pos)
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, eof
}

// readSome fills a prefix of p from offset pos (< init) and returns its length.
func (s *stream) readSome(p []byte, pos int64) (int, error) {
	if s.unit > 0 {
		return s.readCompressed(p, pos)
	}
	cs := s.v.clusterSize
	i := findExtent(s.ex, pos/cs)
	if i < 0 {
		return 0, malformed("%s: offset %d is not mapped", s.what, pos)
	}
	e := s.ex[i]
	within := pos - e.vcn*cs
	n := int(min(int64(len(p)), e.n*cs-within))
	if e.lcn < 0 {
		clear(p[:n])
		return n, nil
	}
	m, err := s.r.ReadAt(p[:n], e.lcn*cs+within)
	if m < n {
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return m, fmt.Errorf("ntfs: %s: reading cluster %d: %w", s.what, e.lcn, err)
	}
	return n, nil
}

// readCompressed serves from the compression unit holding pos.
func (s *stream) readCompressed(p []byte, pos int64) (int, error) {
	u := pos / s.unit
	within := pos - u*s.unit
	n := int(min(int64(len(p)), s.unit-within))
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.unitNo != u {
		if s.unitBuf == nil {
			s.unitBuf = make([]byte, s.unit)
		}
		s.unitNo = -1
		if err := s.loadUnit(u, s.unitBuf); err != nil {
			return 0, err
		}
		s.unitNo = u
	}
	copy(p[:n], s.unitBuf[within:])
	return n, nil
}

// loadUnit decodes compression unit u into out (unit bytes).
func (s *stream) loadUnit(u int64, out []byte) error {
	cs := s.v.clusterSize
	perUnit := s.unit / cs
	vcn, end := u*perUnit, (u+1)*perUnit
	var real []extent
	realClusters := int64(0)
	for v := vcn; v < end; {
		i := findExtent(s.ex, v)
		if i < 0 {
			return malformed("%s: VCN %d is not mapped", s.what, v)
		}
		e := s.ex[i]
		take := min(e.vcn+e.n, end) - v
		if e.lcn >= 0 {
			real = append(real, extent{vcn: v, lcn: e.lcn + v - e.vcn, n: take})
			realClusters += take
		}
		v += take
	}
	switch {
	case realClusters == 0:
		clear(out)
		return nil
	case realClusters == perUnit: // stored uncompressed
		for _, e := range real {
			if _, err := s.r.ReadAt(out[(e.vcn-vcn)*cs:(e.vcn-vcn+e.n)*cs], e.lcn*cs); err != nil {
				return fmt.Errorf("ntfs: %s: reading cluster %d: %w", s.what, e.lcn, err)
			}
		}
		return nil
	}
	comp := make([]byte, realClusters*cs)
	at := int64(0)
	for _, e := range real {
		if _, err := s.r.ReadAt(comp[at:at+e.n*cs], e.lcn*cs); err != nil {
			return fmt.Errorf("ntfs: %s: reading cluster %d: %w", s.what, e.lcn, err)
		}
		at += e.n * cs
	}
	if err := lznt1(comp, out); err != nil {
		return malformed("%s: compression unit %d: %v", s.what, u, err)
	}
	return nil
}
