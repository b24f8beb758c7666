package xfs

import (
	"encoding/binary"
	"hash/crc32"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// verifyCRC checks a v5 metadata CRC: CRC-32C over the whole buffer with
// the 4-byte little-endian checksum field at off taken as zero.
func verifyCRC(b []byte, off int) bool {
	if off+4 > len(b) {
		return false
	}
	var zero [4]byte
	c := crc32.Update(0, castagnoli, b[:off])
	c = crc32.Update(c, castagnoli, zero[:])
	c = crc32.Update(c, castagnoli, b[off+4:])
	return c == binary.LittleEndian.Uint32(b[off:])
}
