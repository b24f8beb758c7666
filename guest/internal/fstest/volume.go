package fstest

import (
	"bytes"
	"encoding/binary"
	"io"
)

// SectorSize is the unit of the sector fuzz-input format and of Volume.
const SectorSize = 512

// recordSize is one record of the fuzz-input format: a uint32 sector
// number and the sector.
const recordSize = 4 + SectorSize

// Volume is a disk image held as its non-zero sectors: every byte below
// Size that no sector holds reads as zero, and reads at or past Size end
// with io.EOF. Tests grow Size to what the file system's own header says
// (seed images are committed with their trailing zeros trimmed, fuzz
// inputs hold only the sectors that matter). Safe for concurrent reads.
type Volume struct {
	sectors map[int64][]byte
	Size    int64
}

// NewVolume is img as a Volume of len(img) bytes. It keeps references
// into img, which must not change afterwards.
func NewVolume(img []byte) *Volume {
	v := &Volume{sectors: map[int64][]byte{}, Size: int64(len(img))}
	zero := make([]byte, SectorSize)
	for off := 0; off < len(img); off += SectorSize {
		sec := img[off:min(off+SectorSize, len(img))]
		if len(sec) < SectorSize {
			sec = append(bytes.Clone(sec), zero[len(sec):]...)
		}
		if !bytes.Equal(sec, zero) {
			v.sectors[int64(off/SectorSize)] = sec
		}
	}
	return v
}

// DecodeSectors reads the fuzz-input format: records of a little-endian
// uint32 sector number and SectorSize bytes; a trailing partial record is
// ignored, a later record for the same sector wins, and a sector that
// would end past limit bytes is dropped. Size is the end of the last
// sector kept. The Volume keeps references into in.
func DecodeSectors(in []byte, limit int64) *Volume {
	v := &Volume{sectors: map[int64][]byte{}}
	for ; len(in) >= recordSize; in = in[recordSize:] {
		s := int64(binary.LittleEndian.Uint32(in))
		if (s+1)*SectorSize > limit {
			continue
		}
		v.sectors[s] = in[4:recordSize]
		v.Size = max(v.Size, (s+1)*SectorSize)
	}
	return v
}

// EncodeSectors writes img in the fuzz-input format, leaving out its
// all-zero sectors (Go's fuzzer stalls minimizing inputs of megabytes).
// A short last sector is padded with zeros.
func EncodeSectors(img []byte) []byte {
	var out []byte
	zero := make([]byte, SectorSize)
	for off := 0; off < len(img); off += SectorSize {
		sec := img[off:min(off+SectorSize, len(img))]
		if bytes.Equal(sec, zero[:len(sec)]) {
			continue
		}
		out = binary.LittleEndian.AppendUint32(out, uint32(off/SectorSize))
		out = append(out, sec...)
		out = append(out, zero[len(sec):]...)
	}
	return out
}

// Head returns a copy of the first sector, zeros where the volume has
// none: where a file system's header is parsed to size the volume.
func (v *Volume) Head() []byte {
	b := make([]byte, SectorSize)
	copy(b, v.sectors[0])
	return b
}

// ReadAt implements io.ReaderAt.
func (v *Volume) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off >= v.Size {
		return 0, io.EOF
	}
	n := int(min(int64(len(p)), v.Size-off))
	for done := 0; done < n; {
		pos := off + int64(done)
		s, in := pos/SectorSize, int(pos%SectorSize)
		k := min(SectorSize-in, n-done)
		if b, ok := v.sectors[s]; ok {
			copy(p[done:done+k], b[in:])
		} else {
			clear(p[done : done+k])
		}
		done += k
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// Layout says how large a file system's volume is, so that a seed image
// committed with its trailing zeros trimmed, or a fuzz input holding only
// the sectors that are not zero, reads as the whole volume.
type Layout struct {
	// Max caps the volume, and drops fuzz-input sectors past it.
	Max int64
	// Size is the volume size the file system's first sector gives, or
	// 0 when it gives none.
	Size func(head []byte) int64
}

// Image is img grown to the size its first sector gives (at most Max).
func (l Layout) Image(img []byte) *Volume { return l.grow(NewVolume(img)) }

// Input is a fuzz input (see DecodeSectors) grown the same way.
func (l Layout) Input(in []byte) *Volume { return l.grow(DecodeSectors(in, l.Max)) }

func (l Layout) grow(v *Volume) *Volume {
	v.Size = max(v.Size, min(l.Size(v.Head()), l.Max))
	return v
}
