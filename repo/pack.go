package repo

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"math"
	"path/filepath"
)

// PackID names a pack file: 16 random bytes, written as 32 hex digits.
type PackID [16]byte

func (p PackID) String() string { return hex.EncodeToString(p[:]) }

// ParsePackID decodes a pack file name (without extension).
func ParsePackID(s string) (PackID, error) {
	var p PackID
	if len(s) != 32 {
		return p, fmt.Errorf("invalid pack id %q", s)
	}
	_, err := hex.Decode(p[:], []byte(s))
	return p, err
}

// Location is where a stored blob lives.
type Location struct {
	Pack   PackID
	Offset uint32 // from the start of the pack file
	Length uint32 // stored (sealed) length
}

// packEntry is one blob in a pack trailer.
type packEntry struct {
	Type BlobType
	ID   ID
	Location
}

const (
	packMagic     = "CAIRNPK1"
	packEndMagic  = "CRNPKEND"
	packFooterLen = 4 + 8 // length + packEndMagic
	packExt       = ".pack"
	// maxTrailerLen bounds what a reader allocates for a trailer.
	maxTrailerLen = 64 << 20
)

func packPath(repoDir string, id PackID) string {
	s := id.String()
	return filepath.Join(repoDir, "packs", s[:2], s+packExt)
}

func trailerAAD(id PackID) []byte { return append([]byte("pack"), id[:]...) }

// encodeTrailer returns the plaintext trailer of a pack:
//
//	version(1)=1 uvarint(count) { type(1) id(32) uvarint(offset) uvarint(length) }*
func encodeTrailer(entries []packEntry) []byte {
	out := make([]byte, 0, 1+binary.MaxVarintLen64+len(entries)*(33+10))
	out = append(out, 1)
	out = binary.AppendUvarint(out, uint64(len(entries)))
	for _, e := range entries {
		out = append(out, byte(e.Type))
		out = append(out, e.ID[:]...)
		out = binary.AppendUvarint(out, uint64(e.Offset))
		out = binary.AppendUvarint(out, uint64(e.Length))
	}
	return out
}

// decodeTrailer parses a plaintext trailer of a pack of packSize bytes and
// checks that every entry lies inside the blob area.
func decodeTrailer(pack PackID, b []byte, blobAreaEnd int64) ([]packEntry, error) {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: pack %s trailer: %s", ErrCorrupt, pack, fmt.Sprintf(format, a...))
	}
	if len(b) < 1 || b[0] != 1 {
		return nil, bad("unknown version")
	}
	b = b[1:]
	count, n := binary.Uvarint(b)
	if n <= 0 || count > uint64(len(b))/34 {
		return nil, bad("bad entry count")
	}
	b = b[n:]
	entries := make([]packEntry, 0, count)
	end := int64(len(packMagic))
	for i := uint64(0); i < count; i++ {
		if len(b) < 33 {
			return nil, bad("entry %d truncated", i)
		}
		var e packEntry
		e.Type = BlobType(b[0])
		if e.Type != BlobData && e.Type != BlobTable {
			return nil, bad("entry %d has unknown type %d", i, b[0])
		}
		copy(e.ID[:], b[1:33])
		b = b[33:]
		off, n1 := binary.Uvarint(b)
		if n1 <= 0 {
			return nil, bad("entry %d offset", i)
		}
		b = b[n1:]
		length, n2 := binary.Uvarint(b)
		if n2 <= 0 {
			return nil, bad("entry %d length", i)
		}
		b = b[n2:]
		// Compare without overflow: off and length are arbitrary uint64s,
		// and an accepted offset must fit a Location's uint32.
		if off < uint64(end) || length == 0 || length > maxBlobSize+1024 || blobAreaEnd < end ||
			off > uint64(blobAreaEnd) || length > uint64(blobAreaEnd)-off || off+length > math.MaxUint32 {
			return nil, bad("entry %d at %d+%d outside the blob area", i, off, length)
		}
		end = int64(off + length)
		e.Pack, e.Offset, e.Length = pack, uint32(off), uint32(length)
		entries = append(entries, e)
	}
	if len(b) != 0 {
		return nil, bad("%d trailing bytes", len(b))
	}
	return entries, nil
}

// readTrailer reads and authenticates the trailer of a pack file of the given size.
func (r *Repository) readTrailer(f io.ReaderAt, id PackID, size int64) ([]packEntry, error) {
	if size < int64(len(packMagic)+packFooterLen) {
		return nil, fmt.Errorf("%w: pack %s is truncated (%d bytes)", ErrCorrupt, id, size)
	}
	var head [len(packMagic)]byte
	if _, err := f.ReadAt(head[:], 0); err != nil {
		return nil, fmt.Errorf("read pack %s: %w", id, err)
	}
	var foot [packFooterLen]byte
	if _, err := f.ReadAt(foot[:], size-packFooterLen); err != nil {
		return nil, fmt.Errorf("read pack %s: %w", id, err)
	}
	if string(head[:]) != packMagic || string(foot[4:]) != packEndMagic {
		return nil, fmt.Errorf("%w: pack %s has no valid header/footer (truncated or not a pack)", ErrCorrupt, id)
	}
	tlen := int64(binary.LittleEndian.Uint32(foot[:4]))
	start := size - packFooterLen - tlen
	if tlen > maxTrailerLen || start < int64(len(packMagic)) {
		return nil, fmt.Errorf("%w: pack %s trailer length %d invalid", ErrCorrupt, id, tlen)
	}
	sealed := make([]byte, tlen)
	if _, err := f.ReadAt(sealed, start); err != nil {
		return nil, fmt.Errorf("read pack %s trailer: %w", id, err)
	}
	plain, err := r.codec.seal.openMeta(sealed, trailerAAD(id))
	if err != nil {
		return nil, fmt.Errorf("pack %s trailer: %w", id, err)
	}
	return decodeTrailer(id, plain, start)
}

// MarshalText encodes the pack ID as hex (for JSON manifests).
func (p PackID) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// UnmarshalText decodes a hex pack ID.
func (p *PackID) UnmarshalText(b []byte) error {
	v, err := ParsePackID(string(b))
	*p = v
	return err
}
