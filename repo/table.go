package repo

import (
	"encoding/binary"
	"fmt"
)

// BlockEntry says where one disk block is stored. The zero value (ZeroID,
// no location) is an all-zero block that occupies no storage.
type BlockEntry struct {
	ID ID
	Location
}

// IsZero reports whether the block reads as zeros.
func (e BlockEntry) IsZero() bool { return e.ID.IsZero() }

// tableEntrySize is the encoded size of a BlockEntry:
//
//	id(32) pack(16) offset(4) length(4)     integers little-endian
const tableEntrySize = 32 + 16 + 4 + 4

// encodeTable encodes a block table: a dense array of BlockEntry covering
// consecutive blocks. Trailing zero entries are omitted.
func encodeTable(entries []BlockEntry) []byte {
	n := len(entries)
	for n > 0 && entries[n-1].IsZero() {
		n--
	}
	out := make([]byte, n*tableEntrySize)
	for i, e := range entries[:n] {
		b := out[i*tableEntrySize:]
		copy(b, e.ID[:])
		copy(b[32:], e.Pack[:])
		binary.LittleEndian.PutUint32(b[48:], e.Offset)
		binary.LittleEndian.PutUint32(b[52:], e.Length)
	}
	return out
}

// decodeTable decodes a block table of at most max entries; missing
// trailing entries are zero blocks.
func decodeTable(b []byte, max int) ([]BlockEntry, error) {
	if len(b)%tableEntrySize != 0 || len(b)/tableEntrySize > max {
		return nil, fmt.Errorf("%w: block table of %d bytes (max %d entries)", ErrCorrupt, len(b), max)
	}
	out := make([]BlockEntry, max)
	for i := 0; i < len(b)/tableEntrySize; i++ {
		s := b[i*tableEntrySize:]
		e := &out[i]
		copy(e.ID[:], s[:32])
		copy(e.Pack[:], s[32:48])
		e.Offset = binary.LittleEndian.Uint32(s[48:])
		e.Length = binary.LittleEndian.Uint32(s[52:])
		if e.IsZero() != (e.Length == 0) || (e.IsZero() && e.Location != (Location{})) {
			return nil, fmt.Errorf("%w: block table entry %d: zero id with a location, or data without one", ErrCorrupt, i)
		}
	}
	return out, nil
}
