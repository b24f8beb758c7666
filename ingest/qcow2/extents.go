package qcow2

import "fmt"

// Extents calls fn for each extent [off, off+length) of the virtual disk
// that may hold non-zero data, in ascending order, merged where adjacent,
// taking the whole backing chain into account: a cluster unallocated in the
// top image falls through to the backing file; a zero cluster is a hole
// even if the backing file has data there. Everything outside the extents
// reads as zeros. If fn returns an error, Extents stops and returns it
// unchanged.
func (im *Image) Extents(fn func(off, length int64) error) error {
	m := &merger{fn: fn}
	if err := im.extentsIn(0, im.size, m.add); err != nil {
		if m.fnErr != nil {
			return m.fnErr
		}
		return fmt.Errorf("qcow2: %s: extents: %w", im.path, err)
	}
	if err := m.flush(); err != nil {
		return m.fnErr
	}
	return nil
}

// extentsIn emits the extents that may hold data within [start, end).
func (im *Image) extentsIn(start, end int64, emit func(off, n int64) error) error {
	for off := start; off < end; {
		r, err := im.mapRun(off, end-off)
		if err != nil {
			return err
		}
		switch r.kind {
		case runData, runCompressed:
			if err := emit(off, r.length); err != nil {
				return err
			}
		case runUnalloc:
			if im.backing != nil {
				if e := min(off+r.length, im.backing.virtualSize()); off < e {
					if err := im.backing.extentsIn(off, e, emit); err != nil {
						return err
					}
				}
			}
		}
		off += r.length
	}
	return nil
}

// merger coalesces adjacent extents before passing them to fn.
type merger struct {
	fn         func(off, length int64) error
	start, end int64
	have       bool
	fnErr      error // the error fn returned, if any
}

func (m *merger) add(off, n int64) error {
	if n <= 0 {
		return nil
	}
	if m.have && off == m.end {
		m.end += n
		return nil
	}
	if err := m.flush(); err != nil {
		return err
	}
	m.start, m.end, m.have = off, off+n, true
	return nil
}

func (m *merger) flush() error {
	if !m.have {
		return nil
	}
	m.have = false
	if err := m.fn(m.start, m.end-m.start); err != nil {
		m.fnErr = err
		return err
	}
	return nil
}
