package qcow2

import (
	"errors"
	"os"
	"runtime"
	"syscall"
)

// Linux values of lseek's whence for sparse files.
const (
	seekData = 3
	seekHole = 4
)

// dataExtents emits the data regions of file f within [start, end), using
// SEEK_DATA/SEEK_HOLE where the platform and file system support them.
// Where they do not, the whole range is reported: extents only promise that
// everything outside them reads as zeros.
func dataExtents(f *os.File, start, end int64, emit func(off, n int64) error) error {
	if runtime.GOOS != "linux" {
		return emit(start, end-start)
	}
	off := start
	for off < end {
		d, err := f.Seek(off, seekData)
		if errors.Is(err, syscall.ENXIO) {
			return nil // no data after off
		}
		if err != nil || d < off {
			return emit(off, end-off)
		}
		if d >= end {
			return nil
		}
		h, err := f.Seek(d, seekHole)
		if err != nil || h <= d || h > end {
			h = end
		}
		if err := emit(d, h-d); err != nil {
			return err
		}
		off = h
	}
	return nil
}
