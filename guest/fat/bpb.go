package fat

import (
	"encoding/binary"
	"fmt"
	"io"
	"strings"

	"github.com/cairn-backup/cairn/guest/vfs"
)

// Variant is the FAT width, decided by the cluster count.
type variant int

const (
	fat12 variant = 12
	fat16 variant = 16
	fat32 variant = 32
)

// geometry is the validated content of the boot sector.
type geometry struct {
	kind        variant
	sectorSize  int64
	clusterSize int64
	fatOffset   int64  // byte offset of the first FAT
	fatBytes    int64  // size of one FAT
	rootOffset  int64  // FAT12/16: byte offset of the fixed root directory
	rootBytes   int64  // FAT12/16: its size
	dataOffset  int64  // byte offset of cluster 2
	clusters    uint32 // number of data clusters; valid ones are 2..clusters+1
	rootCluster uint32 // FAT32 only
	volumeBytes int64
	bpbLabel    string
}

func malformed(format string, args ...any) error {
	return fmt.Errorf("vfat: "+format+": %w", append(args, vfs.ErrMalformed)...)
}

// readBootSector reads and validates the BPB.
func readBootSector(r io.ReaderAt, size int64) (*geometry, error) {
	if size < 512 {
		return nil, malformed("volume of %d bytes is smaller than a boot sector", size)
	}
	var b [512]byte
	if _, err := r.ReadAt(b[:], 0); err != nil {
		return nil, fmt.Errorf("vfat: reading boot sector: %w", err)
	}
	return parseBootSector(b[:], size)
}

func parseBootSector(b []byte, size int64) (*geometry, error) {
	le := binary.LittleEndian
	if b[0] != 0xEB && b[0] != 0xE9 {
		return nil, malformed("boot sector jump byte 0x%02x", b[0])
	}
	if b[510] != 0x55 || b[511] != 0xAA {
		return nil, malformed("boot sector signature 0x%02x%02x", b[510], b[511])
	}
	bps := int64(le.Uint16(b[11:]))
	switch bps {
	case 512, 1024, 2048, 4096:
	default:
		return nil, malformed("BPB bytes per sector %d", bps)
	}
	spc := int64(b[13])
	if spc == 0 || spc&(spc-1) != 0 {
		return nil, malformed("BPB sectors per cluster %d", spc)
	}
	if spc*bps > 256<<10 {
		return nil, malformed("BPB cluster size %d bytes", spc*bps)
	}
	reserved := int64(le.Uint16(b[14:]))
	numFATs := int64(b[16])
	rootEnts := int64(le.Uint16(b[17:]))
	totSec := int64(le.Uint16(b[19:]))
	if totSec == 0 {
		totSec = int64(le.Uint32(b[32:]))
	}
	fatSz := int64(le.Uint16(b[22:]))
	if fatSz == 0 {
		fatSz = int64(le.Uint32(b[36:]))
	}
	if reserved == 0 || numFATs == 0 || fatSz == 0 || totSec == 0 {
		return nil, malformed("BPB reserved sectors %d, FATs %d, FAT sectors %d, total sectors %d", reserved, numFATs, fatSz, totSec)
	}
	g := &geometry{sectorSize: bps, clusterSize: spc * bps, volumeBytes: totSec * bps}
	if g.volumeBytes > size {
		return nil, malformed("BPB says %d bytes but the volume holds %d (truncated image?)", g.volumeBytes, size)
	}
	rootSecs := (rootEnts*32 + bps - 1) / bps
	dataSec := reserved + numFATs*fatSz + rootSecs
	if dataSec >= totSec {
		return nil, malformed("BPB data region starts at sector %d of %d", dataSec, totSec)
	}
	clusters := (totSec - dataSec) / spc
	switch {
	case clusters < 4085:
		g.kind = fat12
	case clusters < 65525:
		g.kind = fat16
	default:
		g.kind = fat32
	}
	if clusters == 0 || clusters > 0x0FFFFFF5 {
		return nil, malformed("cluster count %d", clusters)
	}
	g.clusters = uint32(clusters)
	g.fatOffset = reserved * bps
	g.fatBytes = fatSz * bps
	if need := (int64(clusters+2)*int64(g.kind) + 7) / 8; g.fatBytes < need {
		return nil, malformed("FAT of %d bytes cannot map %d clusters", g.fatBytes, clusters)
	}
	g.rootOffset = (reserved + numFATs*fatSz) * bps
	g.rootBytes = rootEnts * 32
	g.dataOffset = dataSec * bps
	labelAt := 43
	if g.kind == fat32 {
		if rootEnts != 0 || le.Uint16(b[22:]) != 0 {
			return nil, malformed("FAT32 BPB with %d fixed root entries", rootEnts)
		}
		g.rootCluster = le.Uint32(b[44:]) & 0x0FFFFFFF
		if !g.validCluster(g.rootCluster) {
			return nil, malformed("FAT32 root cluster %d outside 2..%d", g.rootCluster, clusters+1)
		}
		labelAt = 71
	} else if rootEnts == 0 {
		return nil, malformed("FAT%d BPB with no root directory entries", g.kind)
	}
	if b[labelAt-5] == 0x29 || b[labelAt-5] == 0x28 { // extended boot signature precedes serial and label
		l := strings.TrimRight(string(b[labelAt:labelAt+11]), " \x00")
		if l != "NO NAME" {
			g.bpbLabel = decodeOEM([]byte(l))
		}
	}
	return g, nil
}

func (g *geometry) validCluster(c uint32) bool { return c >= 2 && c-2 < g.clusters }

func (g *geometry) clusterOffset(c uint32) int64 {
	return g.dataOffset + int64(c-2)*g.clusterSize
}

// Probe reports whether the volume starts with a valid FAT boot sector.
func Probe(r io.ReaderAt, size int64) bool {
	_, err := readBootSector(r, size)
	return err == nil
}
