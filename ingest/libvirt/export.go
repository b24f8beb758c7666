package libvirt

import (
	"fmt"
	"sync"

	"github.com/cairn-backup/cairn/ingest"
	"github.com/cairn-backup/cairn/ingest/source"
)

// Meta contexts (NBD block status) the strategy reads.
const (
	ctxAllocation = "base:allocation"
	flagZero      = 2 // base:allocation: the range reads as zeros
	flagDirty     = 1 // qemu:dirty-bitmap:*: the range changed
)

// export is the part of an NBD client the strategy uses: one export of
// one disk, with the meta contexts negotiated when it was opened.
type export interface {
	Size() int64
	ReadAt(p []byte, off int64) (int, error)
	// BlockStatus calls fn for the extents of metaContext in
	// [off, off+length), in order; the server may answer for less than
	// the whole range.
	BlockStatus(metaContext string, off, length int64, fn func(off, length int64, flags uint32) error) error
	Close() error
}

// walkStatus calls fn for every extent of metaContext over the whole export.
func walkStatus(e export, metaContext string, fn func(off, length int64, flags uint32) error) error {
	const maxReq = 1 << 30
	size := e.Size()
	for off := int64(0); off < size; {
		next := off
		err := e.BlockStatus(metaContext, off, min(size-off, maxReq), func(o, l int64, f uint32) error {
			if o != next || l <= 0 {
				return fmt.Errorf("block status of %s: extent %d+%d does not continue at %d", metaContext, o, l, next)
			}
			l = min(l, size-o)
			next = o + l
			return fn(o, l, f)
		})
		if err != nil {
			return err
		}
		if next == off {
			return fmt.Errorf("block status of %s at %d: the server reported nothing", metaContext, off)
		}
		off = next
	}
	return nil
}

// dirtyExtents reads a dirty bitmap's changed ranges, merged.
func dirtyExtents(e export, bitmap string) ([]ingest.Extent, int64, error) {
	var out []ingest.Extent
	var total int64
	err := walkStatus(e, bitmap, func(off, length int64, flags uint32) error {
		if flags&flagDirty == 0 {
			return nil
		}
		total += length
		if n := len(out); n > 0 && out[n-1].Off+out[n-1].Len == off {
			out[n-1].Len += length
		} else {
			out = append(out, ingest.Extent{Off: off, Len: length})
		}
		return nil
	})
	return out, total, err
}

// exportSource is an NBD export as an ingest source: its allocation map
// (base:allocation) says where data may be, so unallocated and zeroed
// ranges cost nothing. Reads go to a pool of connections, one per
// concurrent reader, because ingest reads with several workers.
type exportSource struct {
	format string
	size   int64
	first  export
	open   func() (export, error) // another connection to the same export

	mu   sync.Mutex
	idle []export
	all  []export
}

var _ source.Source = (*exportSource)(nil)

func newExportSource(first export, format string, open func() (export, error)) *exportSource {
	return &exportSource{format: format, size: first.Size(), first: first, open: open, idle: []export{first}, all: []export{first}}
}

func (s *exportSource) Size() int64    { return s.size }
func (s *exportSource) Format() string { return s.format }

func (s *exportSource) get() (export, error) {
	s.mu.Lock()
	if n := len(s.idle); n > 0 {
		e := s.idle[n-1]
		s.idle = s.idle[:n-1]
		s.mu.Unlock()
		return e, nil
	}
	s.mu.Unlock()
	e, err := s.open()
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.all = append(s.all, e)
	s.mu.Unlock()
	return e, nil
}

func (s *exportSource) put(e export) {
	s.mu.Lock()
	s.idle = append(s.idle, e)
	s.mu.Unlock()
}

func (s *exportSource) ReadAt(p []byte, off int64) (int, error) {
	e, err := s.get()
	if err != nil {
		return 0, err
	}
	defer s.put(e)
	return e.ReadAt(p, off)
}

func (s *exportSource) Extents(fn func(off, length int64) error) error {
	var runOff, runLen int64
	err := walkStatus(s.first, ctxAllocation, func(off, length int64, flags uint32) error {
		if flags&flagZero != 0 {
			return nil
		}
		if runLen > 0 && runOff+runLen == off {
			runLen += length
			return nil
		}
		if runLen > 0 {
			if err := fn(runOff, runLen); err != nil {
				return err
			}
		}
		runOff, runLen = off, length
		return nil
	})
	if err != nil {
		return err
	}
	if runLen > 0 {
		return fn(runOff, runLen)
	}
	return nil
}

func (s *exportSource) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var first error
	for _, e := range s.all {
		if err := e.Close(); err != nil && first == nil {
			first = err
		}
	}
	s.all, s.idle = nil, nil
	return first
}
