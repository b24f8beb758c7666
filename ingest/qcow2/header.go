package qcow2

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"
)

// magic is the four-byte signature at offset 0 of every qcow2 image.
var magic = [4]byte{'Q', 'F', 'I', 0xfb}

const (
	minClusterBits = 9  // 512 B
	maxClusterBits = 21 // 2 MiB

	v2HeaderLength = 72
	v3HeaderLength = 104 // minimum header_length of a version 3 image

	maxBackingNameLen = 1023
	maxL1Bytes        = 32 << 20 // QEMU's QCOW_MAX_L1_SIZE

	// Incompatible feature bits.
	incompatDirty       = 1 << 0
	incompatCorrupt     = 1 << 1
	incompatDataFile    = 1 << 2
	incompatCompression = 1 << 3
	incompatExtL2       = 1 << 4
	incompatKnown       = incompatDirty | incompatCorrupt | incompatDataFile | incompatCompression | incompatExtL2

	// Compression types (header byte 104).
	compressionDeflate = 0
	compressionZstd    = 1

	// Header extension types.
	extEnd            = 0x00000000
	extBackingFormat  = 0xE2792ACA
	extFeatureNames   = 0x6803f857
	featureNameEntry  = 48
	maxBackingFmtName = 16 // QEMU stores the format name in char[16]
)

// header holds the validated fields of a qcow2 header plus the parts of its
// header extensions that matter for reading.
type header struct {
	version               uint32
	backingFileOffset     uint64
	backingFileSize       uint32
	clusterBits           uint32
	size                  uint64
	cryptMethod           uint32
	l1Size                uint32
	l1TableOffset         uint64
	refcountTableOffset   uint64
	refcountTableClusters uint32
	nbSnapshots           uint32
	snapshotsOffset       uint64
	incompatible          uint64
	compatible            uint64
	autoclear             uint64
	refcountOrder         uint32
	headerLength          uint32
	compressionType       uint8

	backingFile   string // empty when the image has no backing file
	backingFormat string // from the backing file format extension; may be empty
	featureNames  map[[2]byte]string
}

// parseHeader decodes and validates the header found in first, which holds
// the first cluster of the image (or all of the file when it is shorter;
// bytes past avail are zero). avail is the number of bytes of first that
// actually came from the file.
func parseHeader(first []byte, avail int) (*header, error) {
	if avail < v2HeaderLength {
		return nil, fmt.Errorf("header: %w (file is %d bytes, need at least %d)", ErrTruncated, avail, v2HeaderLength)
	}
	if !bytes.Equal(first[:4], magic[:]) {
		return nil, fmt.Errorf("header: %w", ErrBadMagic)
	}
	be := binary.BigEndian
	h := &header{
		version:               be.Uint32(first[4:]),
		backingFileOffset:     be.Uint64(first[8:]),
		backingFileSize:       be.Uint32(first[16:]),
		clusterBits:           be.Uint32(first[20:]),
		size:                  be.Uint64(first[24:]),
		cryptMethod:           be.Uint32(first[32:]),
		l1Size:                be.Uint32(first[36:]),
		l1TableOffset:         be.Uint64(first[40:]),
		refcountTableOffset:   be.Uint64(first[48:]),
		refcountTableClusters: be.Uint32(first[56:]),
		nbSnapshots:           be.Uint32(first[60:]),
		snapshotsOffset:       be.Uint64(first[64:]),
	}
	switch h.version {
	case 2:
		h.refcountOrder = 4
		h.headerLength = v2HeaderLength
	case 3:
		if avail < v3HeaderLength {
			return nil, fmt.Errorf("version 3 header: %w (file is %d bytes, need at least %d)", ErrTruncated, avail, v3HeaderLength)
		}
		h.incompatible = be.Uint64(first[72:])
		h.compatible = be.Uint64(first[80:])
		h.autoclear = be.Uint64(first[88:])
		h.refcountOrder = be.Uint32(first[96:])
		h.headerLength = be.Uint32(first[100:])
	default:
		return nil, fmt.Errorf("header: %w: version %d (only 2 and 3 are supported)", ErrUnsupported, h.version)
	}
	if h.clusterBits < minClusterBits || h.clusterBits > maxClusterBits {
		return nil, fmt.Errorf("header: %w: cluster_bits %d (must be %d..%d)", ErrCorrupt, h.clusterBits, minClusterBits, maxClusterBits)
	}
	clusterSize := uint64(1) << h.clusterBits
	if h.version == 3 {
		if h.headerLength < v3HeaderLength {
			return nil, fmt.Errorf("header: %w: header_length %d is shorter than %d", ErrCorrupt, h.headerLength, v3HeaderLength)
		}
		if uint64(h.headerLength) > clusterSize {
			return nil, fmt.Errorf("header: %w: header_length %d exceeds the cluster size %d", ErrCorrupt, h.headerLength, clusterSize)
		}
		if int(h.headerLength) > avail {
			return nil, fmt.Errorf("header: %w: header_length %d but the file is %d bytes", ErrTruncated, h.headerLength, avail)
		}
		if h.headerLength > v3HeaderLength {
			h.compressionType = first[104]
		}
		if h.refcountOrder > 6 {
			return nil, fmt.Errorf("header: %w: refcount_order %d (at most 6)", ErrCorrupt, h.refcountOrder)
		}
	}
	if h.size > math.MaxInt64 {
		return nil, fmt.Errorf("header: %w: virtual size %d is too large", ErrCorrupt, h.size)
	}
	if h.cryptMethod != 0 {
		name := "unknown"
		switch h.cryptMethod {
		case 1:
			name = "AES"
		case 2:
			name = "LUKS"
		}
		return nil, fmt.Errorf("header: %w: image is encrypted (crypt_method %d, %s)", ErrUnsupported, h.cryptMethod, name)
	}

	// Header extensions live between the end of the header and either the
	// backing file name or the end of the first cluster.
	extEndOff := clusterSize
	if h.backingFileOffset != 0 {
		if h.backingFileOffset > clusterSize {
			return nil, fmt.Errorf("header: %w: backing file name offset %d lies outside the first cluster", ErrCorrupt, h.backingFileOffset)
		}
		extEndOff = h.backingFileOffset
	}
	if extEndOff > uint64(len(first)) {
		extEndOff = uint64(len(first))
	}
	if err := h.parseExtensions(first, uint64(h.headerLength), extEndOff); err != nil {
		return nil, err
	}

	if err := h.checkFeatures(); err != nil {
		return nil, err
	}

	if h.backingFileOffset != 0 && h.backingFileSize != 0 {
		n := uint64(h.backingFileSize)
		if n > maxBackingNameLen || n > clusterSize-h.backingFileOffset {
			return nil, fmt.Errorf("header: %w: backing file name is too long (%d bytes)", ErrCorrupt, n)
		}
		end := h.backingFileOffset + n
		if end > uint64(avail) {
			return nil, fmt.Errorf("header: backing file name at %d..%d: %w (file is %d bytes)", h.backingFileOffset, end, ErrTruncated, avail)
		}
		h.backingFile = cString(first[h.backingFileOffset:end])
	}
	return h, nil
}

// parseExtensions walks the header extension area [start, end) of first.
func (h *header) parseExtensions(first []byte, start, end uint64) error {
	be := binary.BigEndian
	off := start
	for off < end {
		if off+8 > end || off+8 > uint64(len(first)) {
			return fmt.Errorf("header extension at offset %d: %w: extension header crosses the end of the extension area", off, ErrCorrupt)
		}
		typ := be.Uint32(first[off:])
		n := uint64(be.Uint32(first[off+4:]))
		off += 8
		if n > end-off {
			return fmt.Errorf("header extension %#08x at offset %d: %w: length %d exceeds the extension area", typ, off-8, ErrCorrupt, n)
		}
		data := first[off : off+n]
		switch typ {
		case extEnd:
			return nil
		case extBackingFormat:
			if n >= maxBackingFmtName {
				return fmt.Errorf("backing file format extension: %w: length %d too large", ErrCorrupt, n)
			}
			h.backingFormat = cString(data)
		case extFeatureNames:
			if h.featureNames == nil {
				h.featureNames = make(map[[2]byte]string)
			}
			for i := 0; i+featureNameEntry <= len(data); i += featureNameEntry {
				e := data[i : i+featureNameEntry]
				h.featureNames[[2]byte{e[0], e[1]}] = cString(e[2:])
			}
		default:
			// Unknown or irrelevant extension (bitmaps, crypto header,
			// external data file name, ...): skip.
		}
		off += (n + 7) &^ 7
	}
	return nil
}

// checkFeatures rejects images whose feature bits this package cannot honour.
func (h *header) checkFeatures() error {
	inc := h.incompatible
	if inc&incompatCorrupt != 0 {
		return fmt.Errorf("header: %w: the corrupt bit is set (run qemu-img check -r)", ErrCorrupt)
	}
	if inc&incompatDataFile != 0 {
		return fmt.Errorf("header: %w: external data files are not supported", ErrUnsupported)
	}
	if unknown := inc &^ incompatKnown; unknown != 0 {
		return fmt.Errorf("header: %w: unknown incompatible features %s", ErrUnsupported, h.describeBits(0, unknown))
	}
	switch h.compressionType {
	case compressionDeflate:
		if inc&incompatCompression != 0 {
			return fmt.Errorf("header: %w: compression type bit set with compression_type deflate", ErrCorrupt)
		}
	case compressionZstd:
		if inc&incompatCompression == 0 {
			return fmt.Errorf("header: %w: compression_type zstd without the compression type feature bit", ErrCorrupt)
		}
	default:
		return fmt.Errorf("header: %w: unknown compression_type %d", ErrUnsupported, h.compressionType)
	}
	if inc&incompatExtL2 != 0 && h.clusterBits < minClusterBits+5 {
		return fmt.Errorf("header: %w: extended L2 entries with %d-byte clusters give subclusters smaller than 512 bytes", ErrCorrupt, 1<<h.clusterBits)
	}
	return nil
}

// describeBits names the feature bits in mask of the given feature type
// (0 incompatible, 1 compatible, 2 autoclear), using the feature name
// table when the image has one.
func (h *header) describeBits(typ byte, mask uint64) string {
	var parts []string
	for bit := 0; bit < 64; bit++ {
		if mask&(1<<uint(bit)) == 0 {
			continue
		}
		s := fmt.Sprintf("bit %d", bit)
		if name, ok := h.featureNames[[2]byte{typ, byte(bit)}]; ok && name != "" {
			s += fmt.Sprintf(" (%q)", name)
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, ", ")
}

// cString returns b up to its first NUL byte, as QEMU reads such fields.
func cString(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// Sentinel errors; every error returned by this package wraps one of these
// or an I/O error from the operating system.
var (
	// ErrBadMagic means the file does not start with the qcow2 signature.
	ErrBadMagic = errors.New("not a qcow2 image (bad magic)")
	// ErrUnsupported means the image uses a feature this package does not
	// implement (encryption, external data files, unknown features, ...).
	ErrUnsupported = errors.New("unsupported feature")
	// ErrCorrupt means the image's metadata is inconsistent.
	ErrCorrupt = errors.New("corrupt image")
	// ErrTruncated means metadata or data lies past the end of the file.
	ErrTruncated = errors.New("truncated image")
	// ErrBackingChain means the backing chain is unusable (loop, too deep,
	// unsupported format or protocol).
	ErrBackingChain = errors.New("bad backing chain")
)
