package part

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	iofs "io/fs"
	"time"

	"github.com/diskfs/go-diskfs/partition/gpt"
	"github.com/diskfs/go-diskfs/partition/mbr"

	"github.com/cairn-backup/cairn/guest/vfs"
)

// ErrMalformed is wrapped by the errors of a partition table that is
// recognised but damaged or inconsistent. It wraps vfs.ErrMalformed, like
// every error about a malformed guest structure.
var ErrMalformed = fmt.Errorf("malformed partition table (%w)", vfs.ErrMalformed)

// Partition is one partition of a disk.
type Partition struct {
	Number int    // GPT: entry slot (1-based); MBR: 1-4 primary, 5 and up logical
	Start  int64  // byte offset on the disk
	Size   int64  // bytes
	Type   string // GPT type GUID, or MBR type byte as "0x83"
	Name   string // GPT partition name
}

// Table is what Read found.
type Table struct {
	Kind       string // "gpt", "mbr" or "" (none or unknown)
	Partitions []Partition
}

const (
	sectorSize    = 512
	maxGPTEntries = 1 << 14  // far above the 128 every tool writes
	maxGPTArray   = 16 << 20 // bytes of partition entries we are willing to read
	maxLogical    = 256      // logical partitions in an MBR extended partition

	// MaxPartitions bounds how many partitions Read returns, whatever the
	// table says: a GPT lists at most maxGPTEntries, an MBR 4+maxLogical.
	MaxPartitions = maxGPTEntries
)

// Read reads the partition table of a disk of size bytes. A disk
// without a recognised table gives an empty Table and no error; a
// table that is recognised but damaged or inconsistent (bad checksums in
// both GPT copies, a protective MBR without a GPT, partitions outside the
// disk, a looping chain of logical partitions) gives an error wrapping
// ErrMalformed. Errors reading r are returned as they are.
func Read(r io.ReaderAt, size int64) (Table, error) {
	if size < 2*sectorSize {
		return Table{}, nil
	}
	head := make([]byte, 2*sectorSize)
	if _, err := r.ReadAt(head, 0); err != nil {
		return Table{}, err
	}
	mbrSig := head[510] == 0x55 && head[511] == 0xaa
	protective := false
	if mbrSig && validMBREntries(head) {
		for i := 0; i < 4; i++ {
			if head[446+16*i+4] == 0xee {
				protective = true
			}
		}
	}
	lbs := 0 // logical sector size of a GPT
	if isGPTHeader(head[sectorSize:]) {
		lbs = sectorSize
	} else if size >= 2*4096 {
		b := make([]byte, 8)
		if _, err := r.ReadAt(b, 4096); err != nil {
			return Table{}, err
		}
		if string(b) == "EFI PART" {
			lbs = 4096
		}
	}
	switch {
	case lbs > 0 || protective:
		if lbs == 0 {
			lbs = sectorSize
		}
		parts, err := readGPT(r, size, lbs)
		if err != nil {
			return Table{}, err
		}
		return Table{Kind: "gpt", Partitions: parts}, nil
	case mbrSig && validMBREntries(head):
		parts, err := readMBR(r, size)
		if err != nil {
			return Table{}, err
		}
		return Table{Kind: "mbr", Partitions: parts}, nil
	}
	return Table{}, nil
}

func malformed(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, a...))
}

func isGPTHeader(b []byte) bool { return len(b) >= 8 && string(b[:8]) == "EFI PART" }

// validMBREntries reports whether the four entries of a boot sector look
// like a partition table (boot flags 0 or 0x80), as Linux checks: a file
// system's boot sector on an unpartitioned disk also ends in 55 AA.
func validMBREntries(sector []byte) bool {
	for i := 0; i < 4; i++ {
		if f := sector[446+16*i]; f != 0 && f != 0x80 {
			return false
		}
	}
	return true
}

// readGPT reads a GPT with go-diskfs (primary copy, else the backup at the
// end of the disk), after checking that neither header asks it to read an
// absurd amount, and checks every partition against the disk.
func readGPT(r io.ReaderAt, size int64, lbs int) ([]Partition, error) {
	for _, off := range []int64{int64(lbs), (size/int64(lbs) - 1) * int64(lbs)} {
		hdr := make([]byte, lbs)
		if _, err := r.ReadAt(hdr, off); err != nil {
			return nil, err
		}
		if err := saneGPTHeader(hdr); err != nil {
			return nil, err
		}
	}
	f := &readerFile{SectionReader: io.NewSectionReader(r, 0, size)}
	table, err := gpt.Read(f, lbs, lbs)
	if f.err != nil {
		return nil, f.err // the disk could not be read: not the table's fault
	}
	if err != nil {
		return nil, malformed("GPT: %v", err)
	}
	sectors := uint64(size / int64(lbs))
	var out []Partition
	for _, p := range table.Partitions {
		if p.Start == 0 || p.End < p.Start || p.End >= sectors {
			return nil, malformed("GPT partition %d spans sectors %d-%d of a %d-sector disk", p.Index, p.Start, p.End, sectors)
		}
		out = append(out, Partition{
			Number: p.Index, Start: int64(p.Start) * int64(lbs), Size: int64(p.End-p.Start+1) * int64(lbs),
			Type: string(p.Type), Name: p.Name,
		})
	}
	return out, nil
}

// saneGPTHeader rejects a GPT header that passes its checksum but gives
// an entry size or count no GPT has: go-diskfs would allocate whatever the
// header says. A header that fails its checksum is left to go-diskfs,
// which ignores it (and tries the other copy).
func saneGPTHeader(b []byte) error {
	if !isGPTHeader(b) || len(b) < 92 {
		return nil
	}
	h := bytes.Clone(b[:92])
	want := binary.LittleEndian.Uint32(h[16:20])
	clear(h[16:20])
	if crc32.ChecksumIEEE(h) != want {
		return nil
	}
	count := binary.LittleEndian.Uint32(b[80:84])
	esize := binary.LittleEndian.Uint32(b[84:88])
	if esize < 128 || esize > 4096 || esize&(esize-1) != 0 || count == 0 || count > maxGPTEntries ||
		uint64(count)*uint64(esize) > maxGPTArray {
		return malformed("GPT header lists %d entries of %d bytes", count, esize)
	}
	return nil
}

// readMBR reads the primary partitions with go-diskfs and follows the
// chain of extended boot records for logical partitions (numbered from 5,
// as Linux does). The extended partition itself is not listed.
func readMBR(r io.ReaderAt, size int64) ([]Partition, error) {
	f := &readerFile{SectionReader: io.NewSectionReader(r, 0, size)}
	table, err := mbr.Read(f, sectorSize, sectorSize)
	if f.err != nil {
		return nil, f.err
	}
	if err != nil {
		return nil, malformed("MBR: %v", err)
	}
	sectors := size / sectorSize
	inDisk := func(start, n uint32) bool { return start > 0 && int64(start)+int64(n) <= sectors }
	var out []Partition
	var ext *mbr.Partition
	for _, p := range table.Partitions {
		if p.Type == mbr.Empty || p.Size == 0 {
			continue
		}
		if !inDisk(p.Start, p.Size) {
			return nil, malformed("MBR partition %d spans sectors %d+%d of a %d-sector disk", p.Index, p.Start, p.Size, sectors)
		}
		if isExtended(byte(p.Type)) {
			if ext != nil {
				return nil, malformed("MBR has two extended partitions")
			}
			ext = p
			continue
		}
		out = append(out, Partition{Number: p.Index, Start: int64(p.Start) * sectorSize,
			Size: int64(p.Size) * sectorSize, Type: fmt.Sprintf("0x%02x", byte(p.Type))})
	}
	if ext == nil {
		return out, nil
	}
	// Each extended boot record holds one logical partition (relative to
	// the record) and a link to the next record (relative to the extended
	// partition).
	ebr := make([]byte, sectorSize)
	cur := ext.Start
	seen := map[uint32]bool{}
	for n := 5; ; n++ {
		if seen[cur] || len(seen) >= maxLogical {
			return nil, malformed("MBR chain of logical partitions loops or is too long")
		}
		seen[cur] = true
		if _, err := r.ReadAt(ebr, int64(cur)*sectorSize); err != nil {
			return nil, err
		}
		if ebr[510] != 0x55 || ebr[511] != 0xaa {
			if cur == ext.Start {
				return out, nil // an empty extended partition
			}
			return nil, malformed("extended boot record at sector %d has no signature", cur)
		}
		data, link := mbrEntry(ebr, 0), mbrEntry(ebr, 1)
		if data.typ != 0 && data.size != 0 {
			start := cur + data.start
			if start < cur || start < ext.Start || uint64(start)+uint64(data.size) > uint64(ext.Start)+uint64(ext.Size) {
				return nil, malformed("logical partition %d spans sectors %d+%d outside its extended partition", n, start, data.size)
			}
			out = append(out, Partition{Number: n, Start: int64(start) * sectorSize,
				Size: int64(data.size) * sectorSize, Type: fmt.Sprintf("0x%02x", data.typ)})
		}
		if !isExtended(link.typ) || link.size == 0 {
			return out, nil
		}
		next := ext.Start + link.start
		if next < ext.Start || link.start >= ext.Size {
			return nil, malformed("extended boot record at sector %d links outside its extended partition", cur)
		}
		cur = next
	}
}

type rawMBREntry struct {
	typ         byte
	start, size uint32
}

func mbrEntry(sector []byte, i int) rawMBREntry {
	e := sector[446+16*i:]
	return rawMBREntry{typ: e[4], start: binary.LittleEndian.Uint32(e[8:12]), size: binary.LittleEndian.Uint32(e[12:16])}
}

func isExtended(t byte) bool { return t == 0x05 || t == 0x0f || t == 0x85 }

// readerFile adapts an io.ReaderAt to go-diskfs's backend.File and keeps
// the first read error, so that a disk that cannot be read is not mistaken
// for a malformed table.
type readerFile struct {
	*io.SectionReader
	err error
}

func (f *readerFile) ReadAt(p []byte, off int64) (int, error) {
	n, err := f.SectionReader.ReadAt(p, off)
	if err != nil && err != io.EOF && f.err == nil {
		f.err = err
	}
	return n, err
}

func (f *readerFile) Read(p []byte) (int, error) {
	n, err := f.SectionReader.Read(p)
	if err != nil && err != io.EOF && f.err == nil {
		f.err = err
	}
	return n, err
}

func (f *readerFile) Close() error                 { return nil }
func (f *readerFile) Stat() (iofs.FileInfo, error) { return fileInfo{f.Size()}, nil }

type fileInfo struct{ size int64 }

func (i fileInfo) Name() string        { return "disk" }
func (i fileInfo) Size() int64         { return i.size }
func (i fileInfo) Mode() iofs.FileMode { return 0o444 }
func (i fileInfo) ModTime() time.Time  { return time.Time{} }
func (i fileInfo) IsDir() bool         { return false }
func (i fileInfo) Sys() any            { return nil }
