package ntfs

import (
	"encoding/binary"
	"fmt"
	"io"

	"github.com/cairn-backup/cairn/guest/vfs"
)

// volume is the validated boot sector.
type volume struct {
	sectorSize  int64
	clusterSize int64
	clusters    int64 // clusters on the volume; valid LCNs are 0..clusters-1
	mftLCN      int64
	recordSize  int64
	indexSize   int64 // default index record size; $INDEX_ROOT says the real one
}

func malformed(format string, args ...any) error {
	return fmt.Errorf("ntfs: "+format+": %w", append(args, vfs.ErrMalformed)...)
}

func readBoot(r io.ReaderAt, size int64) (*volume, error) {
	if size < 512 {
		return nil, malformed("volume of %d bytes is smaller than a boot sector", size)
	}
	var b [512]byte
	if _, err := r.ReadAt(b[:], 0); err != nil {
		return nil, fmt.Errorf("ntfs: reading boot sector: %w", err)
	}
	return parseBoot(b[:], size)
}

// sizeField decodes the clusters-per-record fields: positive is a
// cluster count, negative n means 2^-n bytes.
func sizeField(v int8, cs int64) (int64, bool) {
	if v > 0 {
		return int64(v) * cs, true
	}
	if v < -31 || v == 0 {
		return 0, false
	}
	return 1 << uint(-v), true
}

func parseBoot(b []byte, size int64) (*volume, error) {
	le := binary.LittleEndian
	if string(b[3:11]) != "NTFS    " {
		return nil, malformed("boot sector OEM id %q", b[3:11])
	}
	if b[510] != 0x55 || b[511] != 0xAA {
		return nil, malformed("boot sector signature 0x%02x%02x", b[510], b[511])
	}
	v := &volume{sectorSize: int64(le.Uint16(b[11:]))}
	switch v.sectorSize {
	case 256, 512, 1024, 2048, 4096:
	default:
		return nil, malformed("bytes per sector %d", v.sectorSize)
	}
	spc := int64(b[13])
	if spc > 0x80 {
		if spc < 0xF4 { // at most 2^12 sectors per cluster
			return nil, malformed("sectors per cluster byte 0x%02x", spc)
		}
		spc = 1 << uint(256-spc)
	}
	if spc == 0 || spc&(spc-1) != 0 {
		return nil, malformed("sectors per cluster %d", spc)
	}
	v.clusterSize = spc * v.sectorSize
	if v.clusterSize > 2<<20 {
		return nil, malformed("cluster size %d", v.clusterSize)
	}
	sectors := int64(le.Uint64(b[0x28:]))
	if sectors <= 0 || sectors > size/v.sectorSize+1 {
		// The backup boot sector lies in the sector after the volume,
		// so a volume may be one sector larger than the partition.
		return nil, malformed("boot sector says %d sectors, the volume holds %d bytes (truncated image?)", sectors, size)
	}
	v.clusters = sectors * v.sectorSize / v.clusterSize
	v.mftLCN = int64(le.Uint64(b[0x30:]))
	if v.mftLCN <= 0 || v.mftLCN >= v.clusters {
		return nil, malformed("$MFT at cluster %d of %d", v.mftLCN, v.clusters)
	}
	var ok bool
	if v.recordSize, ok = sizeField(int8(b[0x40]), v.clusterSize); !ok || v.recordSize < 512 || v.recordSize > 64<<10 || v.recordSize&(v.recordSize-1) != 0 || v.recordSize < v.sectorSize {
		return nil, malformed("MFT record size field 0x%02x", b[0x40])
	}
	if v.indexSize, ok = sizeField(int8(b[0x44]), v.clusterSize); !ok || v.indexSize < 512 || v.indexSize > 64<<10 {
		return nil, malformed("index record size field 0x%02x", b[0x44])
	}
	return v, nil
}

// Probe reports whether the volume starts with an NTFS boot sector.
func Probe(r io.ReaderAt, size int64) bool {
	_, err := readBoot(r, size)
	return err == nil
}

// fixup applies the update sequence array of a multi-sector record (FILE
// or INDX) in place and checks every sector's stamp: a torn write or a
// crafted record fails here.
func fixup(b []byte, magic string, what string) error {
	if len(b) < 8 || string(b[:4]) != magic {
		return malformed("%s: magic %q, want %q", what, b[:min(4, len(b))], magic)
	}
	off := int(binary.LittleEndian.Uint16(b[4:]))
	n := int(binary.LittleEndian.Uint16(b[6:]))
	const ss = 512 // the stride is 512 bytes whatever the sector size
	if n < 1 || n-1 != len(b)/ss || off+2*n > len(b) || off < 8 {
		return malformed("%s: update sequence of %d at %d for %d bytes", what, n, off, len(b))
	}
	usn0, usn1 := b[off], b[off+1]
	for i := 1; i < n; i++ {
		end := i*ss - 2
		if b[end] != usn0 || b[end+1] != usn1 {
			return malformed("%s: sector %d update sequence mismatch (torn write)", what, i-1)
		}
		b[end], b[end+1] = b[off+2*i], b[off+2*i+1]
	}
	return nil
}
