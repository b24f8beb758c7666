package lvm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"

	"github.com/cairn-backup/cairn/guest/vfs"
)

// On-disk constants (lib/format_text/layout.h, lib/label/label.h).
const (
	sectorSize     = 512
	labelScan      = 4 // the label is in one of the first four sectors
	labelID        = "LABELONE"
	labelType      = "LVM2 001"
	mdaMagic       = " LVM2 x[5A%r0N*>"
	mdaHeaderSize  = 512
	initialCRC     = 0xf597a6cf
	uuidLen        = 32
	rawLocnIgnored = 1

	maxAreas    = 8
	maxMetadata = 16 << 20 // largest metadata text read
)

// ErrNotPV is returned by ReadPV when the device carries no LVM2 label.
var ErrNotPV = errors.New("lvm: no LVM2 physical volume label")

// PV is one LVM2 physical volume: its identity from the label and the
// volume group metadata its own metadata areas hold.
type PV struct {
	UUID       string // 32 characters, without dashes
	DeviceSize int64  // as recorded in the label (0 when unknown)
	// Metadata is the newest valid VG metadata in this PV's metadata
	// areas; nil for a PV created with --metadatacopies 0 (another PV of
	// the VG carries it) or one that belongs to no VG yet.
	Metadata *VG

	r    io.ReaderAt
	size int64
}

// crc is LVM's calc_crc: CRC-32 (IEEE) with initial value 0xf597a6cf and
// no final inversion.
func crc(b []byte) uint32 {
	return ^crc32.Update(^uint32(initialCRC), crc32.IEEETable, b)
}

func malformed(format string, args ...any) error {
	return fmt.Errorf("lvm: "+format+": %w", append(args, vfs.ErrMalformed)...)
}

// Probe reports whether r carries an LVM2 label in its first 4 sectors.
func Probe(r io.ReaderAt, size int64) bool {
	_, _, err := findLabel(r, size)
	return err == nil
}

// findLabel returns the label sector's bytes and its offset.
func findLabel(r io.ReaderAt, size int64) ([]byte, int64, error) {
	buf := make([]byte, labelScan*sectorSize)
	n, err := r.ReadAt(buf, 0)
	if n < len(buf) && err != nil && err != io.EOF {
		return nil, 0, fmt.Errorf("lvm: reading label: %w", err)
	}
	for s := 0; s < labelScan && (s+1)*sectorSize <= n; s++ {
		b := buf[s*sectorSize : (s+1)*sectorSize]
		if string(b[:8]) != labelID || string(b[24:32]) != labelType {
			continue
		}
		if binary.LittleEndian.Uint64(b[8:]) != uint64(s) {
			return nil, 0, malformed("label in sector %d claims sector %d", s, binary.LittleEndian.Uint64(b[8:]))
		}
		if crc(b[20:]) != binary.LittleEndian.Uint32(b[16:]) {
			return nil, 0, malformed("label checksum mismatch in sector %d", s)
		}
		return b, int64(s) * sectorSize, nil
	}
	return nil, 0, ErrNotPV
}

type area struct{ off, size uint64 }

// ReadPV reads the LVM2 label, PV header and metadata areas of the device
// r (size bytes). It returns ErrNotPV when there is no label.
func ReadPV(r io.ReaderAt, size int64) (*PV, error) {
	b, _, err := findLabel(r, size)
	if err != nil {
		return nil, err
	}
	le := binary.LittleEndian
	off := int(le.Uint32(b[20:]))
	if off < 32 || off+uuidLen+8 > len(b) {
		return nil, malformed("PV header offset %d", off)
	}
	pv := &PV{r: r, size: size}
	uuid := b[off : off+uuidLen]
	if !validUUID(uuid) {
		return nil, malformed("PV UUID %q", bytes.TrimRight(uuid, "\x00"))
	}
	pv.UUID = string(uuid)
	if ds := le.Uint64(b[off+uuidLen:]); ds < 1<<62 {
		pv.DeviceSize = int64(ds)
	}
	pos := off + uuidLen + 8
	lists := [2][]area{}
	for l := 0; l < 2; l++ {
		for {
			if pos+16 > len(b) {
				return nil, malformed("PV header area list runs past the label sector")
			}
			a := area{le.Uint64(b[pos:]), le.Uint64(b[pos+8:])}
			pos += 16
			if a.off == 0 {
				break
			}
			if len(lists[l]) == maxAreas {
				return nil, malformed("PV header lists more than %d areas", maxAreas)
			}
			lists[l] = append(lists[l], a)
		}
	}
	var errs []error
	for _, m := range lists[1] {
		vg, err := readMDA(r, size, m)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if vg != nil && (pv.Metadata == nil || vg.Seqno > pv.Metadata.Seqno) {
			pv.Metadata = vg
		}
	}
	if pv.Metadata == nil && len(errs) > 0 {
		return nil, fmt.Errorf("lvm: PV %s: no valid metadata: %w", pv.UUID, errors.Join(errs...))
	}
	return pv, nil
}

func validUUID(b []byte) bool {
	for _, c := range b {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '!' || c == '#') {
			return false
		}
	}
	return true
}

// readMDA reads one metadata area: its header and the current metadata
// text in its circular buffer. It returns nil, nil for an area with no
// metadata (an orphan PV or an ignored area).
func readMDA(r io.ReaderAt, size int64, m area) (*VG, error) {
	if m.off > uint64(size) || m.size < 2*mdaHeaderSize || m.size > uint64(size)-m.off {
		return nil, malformed("metadata area at %d (+%d) outside the %d-byte device", m.off, m.size, size)
	}
	h := make([]byte, mdaHeaderSize)
	if _, err := r.ReadAt(h, int64(m.off)); err != nil {
		return nil, fmt.Errorf("lvm: reading metadata area header at %d: %w", m.off, err)
	}
	le := binary.LittleEndian
	if string(h[4:20]) != mdaMagic {
		return nil, malformed("metadata area header magic at %d", m.off)
	}
	if crc(h[4:]) != le.Uint32(h) {
		return nil, malformed("metadata area header checksum at %d", m.off)
	}
	if v := le.Uint32(h[20:]); v != 1 {
		return nil, malformed("metadata area header version %d", v)
	}
	if le.Uint64(h[24:]) != m.off || le.Uint64(h[32:]) != m.size {
		return nil, malformed("metadata area header at %d disagrees with the PV header", m.off)
	}
	// raw_locns[0] is the committed metadata.
	loff, lsize := le.Uint64(h[40:]), le.Uint64(h[48:])
	lcrc, lflags := le.Uint32(h[56:]), le.Uint32(h[60:])
	if loff == 0 || lflags&rawLocnIgnored != 0 {
		return nil, nil
	}
	buf := m.size - mdaHeaderSize
	if loff < mdaHeaderSize || loff >= m.size || lsize == 0 || lsize > buf || lsize > maxMetadata {
		return nil, malformed("metadata location %d (+%d) in a %d-byte area", loff, lsize, m.size)
	}
	text := make([]byte, lsize)
	first := min(lsize, m.size-loff)
	if _, err := r.ReadAt(text[:first], int64(m.off+loff)); err != nil {
		return nil, fmt.Errorf("lvm: reading metadata: %w", err)
	}
	if first < lsize { // wrapped around the circular buffer
		if _, err := r.ReadAt(text[first:], int64(m.off+mdaHeaderSize)); err != nil {
			return nil, fmt.Errorf("lvm: reading metadata: %w", err)
		}
	}
	if crc(text) != lcrc {
		return nil, malformed("metadata text checksum at %d", m.off+loff)
	}
	text = bytes.TrimRight(text, "\x00")
	return ParseVG(text)
}
