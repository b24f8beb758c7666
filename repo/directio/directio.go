// Package directio writes files around the page cache (O_DIRECT).
//
// Backups and restores write gigabytes that nobody reads back soon. Through
// the page cache every byte is first copied into freshly allocated kernel
// pages, which costs as much CPU as compressing it on a virtual machine,
// and evicts the host's working set. Direct I/O hands the caller's buffer
// to the device instead. It requires offsets, lengths and buffer addresses
// aligned to the device's logical block; Align (a page) satisfies every
// device. Callers keep an ordinary handle for unaligned pieces and for file
// systems that refuse O_DIRECT.
package directio

import (
	"errors"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Align is the alignment of offsets, lengths and buffers for direct I/O.
const Align = 4096

// Buffer returns n bytes of memory starting on an Align boundary.
func Buffer(n int) []byte {
	b := make([]byte, n+Align)
	skip := (Align - int(uintptr(unsafe.Pointer(unsafe.SliceData(b)))%Align)) % Align
	return b[skip : skip+n : skip+n]
}

// Aligned reports whether b starts on an Align boundary (and is not empty).
func Aligned(b []byte) bool {
	return len(b) > 0 && uintptr(unsafe.Pointer(unsafe.SliceData(b)))%Align == 0
}

// OpenWriter opens the existing file at path for writing with O_DIRECT. It
// returns nil where the file system does not support direct I/O.
func OpenWriter(path string) *os.File {
	f, err := os.OpenFile(path, os.O_WRONLY|unix.O_DIRECT, 0)
	if err != nil {
		return nil
	}
	return f
}

// Unsupported reports whether err from a direct write means the file (or
// this particular buffer) cannot take direct I/O, so that the caller should
// write through its ordinary handle instead.
func Unsupported(err error) bool {
	return err != nil && (errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP))
}
