package ntfs

import (
	"encoding/binary"
	"unicode/utf16"
)

// Attribute types.
const (
	atStandardInfo = 0x10
	atAttrList     = 0x20
	atFileName     = 0x30
	atData         = 0x80
	atIndexRoot    = 0x90
	atIndexAlloc   = 0xA0
	atBitmap       = 0xB0
	atReparse      = 0xC0
	atEnd          = 0xFFFFFFFF
)

// Attribute flags.
const (
	afCompressed = 0x00FF
	afEncrypted  = 0x4000
	afSparse     = 0x8000
)

// attr is one attribute header and its value or runs.
type attr struct {
	typ      uint32
	name     string
	flags    uint16
	resident bool
	value    []byte // resident value (a copy)

	startVCN, lastVCN int64
	cunit             uint8 // log2 of clusters per compression unit
	allocSize         int64
	dataSize          int64
	initSize          int64
	compSize          int64 // allocated clusters in bytes, compressed/sparse only
	runs              []extent
}

// recordHeader is what an MFT record says about itself.
type recordHeader struct {
	seq   uint16
	links uint16
	flags uint16 // 0x01 in use, 0x02 directory
	base  uint64 // base record reference; 0 for a base record
}

// parseRecord checks a fixed-up FILE record and decodes its attributes.
func parseRecord(b []byte, v *volume, what string) (recordHeader, []attr, error) {
	le := binary.LittleEndian
	var h recordHeader
	h.seq = le.Uint16(b[0x10:])
	h.links = le.Uint16(b[0x12:])
	h.flags = le.Uint16(b[0x16:])
	h.base = le.Uint64(b[0x20:]) & 0xFFFFFFFFFFFF
	first := int(le.Uint16(b[0x14:]))
	used := int(le.Uint32(b[0x18:]))
	if used > len(b) || first < 0x2A || first+8 > used {
		return h, nil, malformed("%s: attributes at %d, %d bytes used of %d", what, first, used, len(b))
	}
	var attrs []attr
	for off := first; ; {
		if off+8 > used {
			return h, nil, malformed("%s: attribute list runs past the record", what)
		}
		typ := le.Uint32(b[off:])
		if typ == atEnd {
			break
		}
		alen := int(le.Uint32(b[off+4:]))
		if alen < 16 || alen%8 != 0 || off+alen > used {
			return h, nil, malformed("%s: attribute 0x%x at %d of length %d", what, typ, off, alen)
		}
		a, err := parseAttr(b[off:off+alen], v, what)
		if err != nil {
			return h, nil, err
		}
		attrs = append(attrs, a)
		off += alen
	}
	return h, attrs, nil
}

func parseAttr(b []byte, v *volume, what string) (attr, error) {
	le := binary.LittleEndian
	a := attr{typ: le.Uint32(b), resident: b[8] == 0, flags: le.Uint16(b[12:])}
	nameLen, nameOff := int(b[9]), int(le.Uint16(b[10:]))
	if nameLen > 0 {
		if nameOff+2*nameLen > len(b) {
			return a, malformed("%s: attribute 0x%x name out of bounds", what, a.typ)
		}
		a.name = utf16le(b[nameOff : nameOff+2*nameLen])
	}
	if a.resident {
		if len(b) < 24 {
			return a, malformed("%s: resident attribute 0x%x too short", what, a.typ)
		}
		vl, vo := int(le.Uint32(b[16:])), int(le.Uint16(b[20:]))
		if vo+vl > len(b) || vo < 0 {
			return a, malformed("%s: attribute 0x%x value %d bytes at %d beyond its %d", what, a.typ, vl, vo, len(b))
		}
		a.value = append([]byte(nil), b[vo:vo+vl]...)
		a.dataSize, a.initSize, a.allocSize = int64(vl), int64(vl), int64(vl)
		return a, nil
	}
	if len(b) < 0x40 {
		return a, malformed("%s: non-resident attribute 0x%x too short", what, a.typ)
	}
	a.startVCN = int64(le.Uint64(b[0x10:]))
	a.lastVCN = int64(le.Uint64(b[0x18:]))
	runOff := int(le.Uint16(b[0x20:]))
	a.cunit = b[0x22]
	a.allocSize = int64(le.Uint64(b[0x28:]))
	a.dataSize = int64(le.Uint64(b[0x30:]))
	a.initSize = int64(le.Uint64(b[0x38:]))
	a.compSize = a.allocSize
	if a.flags&(afCompressed|afSparse) != 0 && len(b) >= 0x48 && a.startVCN == 0 {
		a.compSize = int64(le.Uint64(b[0x40:]))
	}
	maxBytes := v.clusters * v.clusterSize
	if a.startVCN < 0 || a.lastVCN < -1 || a.lastVCN >= v.clusters || a.startVCN > a.lastVCN+1 ||
		a.dataSize < 0 || a.initSize < 0 || a.allocSize < 0 || a.dataSize > 1<<50 ||
		(a.startVCN == 0 && (a.initSize > a.dataSize || a.allocSize > maxBytes || a.allocSize%v.clusterSize != 0)) {
		return a, malformed("%s: attribute 0x%x VCNs %d..%d, sizes %d/%d/%d", what, a.typ, a.startVCN, a.lastVCN, a.allocSize, a.dataSize, a.initSize)
	}
	if runOff < 0x40 || runOff > len(b) {
		return a, malformed("%s: attribute 0x%x mapping pairs at %d", what, a.typ, runOff)
	}
	runs, err := decodeRuns(b[runOff:], a.startVCN, a.lastVCN, v.clusters, what)
	if err != nil {
		return a, err
	}
	a.runs = runs
	return a, nil
}

func utf16le(b []byte) string {
	u := make([]uint16, len(b)/2)
	for i := range u {
		u[i] = binary.LittleEndian.Uint16(b[2*i:])
	}
	return string(utf16.Decode(u))
}
