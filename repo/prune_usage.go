package repo

import (
	"encoding/binary"
	"fmt"
	"sort"
)

// packUse is what prune keeps of one pack while it marks the blobs restore
// points use: the trailer in compact columns (offset, length, type and the
// first 8 bytes of the ID, 17 bytes a blob) and one used bit a blob. Full
// trailers are read again only for the packs that are repacked or deleted,
// so prune's memory follows the number of blobs at 17 bytes each, not at
// the ~300 bytes a blob that full entries and per-blob maps cost.
type packUse struct {
	size      int64 // file size
	blobBytes int64 // sum of the blobs' stored lengths
	usedBytes int64 // sum of the used blobs' stored lengths
	offsets   []uint32
	lengths   []uint32
	tags      []uint64 // idTag of each blob's ID
	types     []BlobType
	used      []uint64 // bit i: blob i is used
}

// idTag is the part of an ID prune keeps to check a reference against a
// trailer; a reference naming a blob the pack does not hold is corruption,
// and 64 bits make a false match of a corrupt reference negligible.
func idTag(id ID) uint64 { return binary.LittleEndian.Uint64(id[:8]) }

// newPackUse keeps the compact columns of a trailer. decodeTrailer returns
// entries in strictly ascending offset order; find relies on it.
func newPackUse(entries []packEntry, size int64) *packUse {
	n := len(entries)
	u := &packUse{size: size, offsets: make([]uint32, n), lengths: make([]uint32, n),
		tags: make([]uint64, n), types: make([]BlobType, n), used: make([]uint64, (n+63)/64)}
	for i, e := range entries {
		u.offsets[i], u.lengths[i], u.tags[i], u.types[i] = e.Offset, e.Length, idTag(e.ID), e.Type
		u.blobBytes += int64(e.Length)
	}
	return u
}

// find returns the index of the blob at offset off, or -1.
func (u *packUse) find(off uint32) int {
	i := sort.Search(len(u.offsets), func(i int) bool { return u.offsets[i] >= off })
	if i < len(u.offsets) && u.offsets[i] == off {
		return i
	}
	return -1
}

// lookup returns the index of the blob b names, or -1 when the trailer
// holds no such blob at b's offset.
func (u *packUse) lookup(b blockRef) int {
	i := u.find(b.Offset)
	if i < 0 || u.lengths[i] != b.Length || u.types[i] != b.Type || u.tags[i] != idTag(b.ID) {
		return -1
	}
	return i
}

func (u *packUse) isUsed(i int) bool { return u.used[i/64]&(1<<(i%64)) != 0 }

// mark records blob i as used (once).
func (u *packUse) mark(i int) {
	if !u.isUsed(i) {
		u.used[i/64] |= 1 << (i % 64)
		u.usedBytes += int64(u.lengths[i])
	}
}

func (u *packUse) resetUsed() {
	clear(u.used)
	u.usedBytes = 0
}

// unusedBytes are the bytes of unused blobs: the pack's header, trailer
// and footer are not reclaimable.
func (u *packUse) unusedBytes() int64 { return u.blobBytes - u.usedBytes }

// usedEntries reads the pack's trailer again and returns the entries of
// its used blobs.
func (r *Repository) usedEntries(id PackID, u *packUse) ([]packEntry, error) {
	entries, _, err := r.loadTrailer(id)
	if err != nil {
		return nil, err
	}
	if len(entries) != len(u.offsets) {
		return nil, fmt.Errorf("%w: pack %s trailer changed while pruning", ErrCorrupt, id)
	}
	var out []packEntry
	for i, e := range entries {
		if u.isUsed(i) {
			out = append(out, e)
		}
	}
	return out, nil
}

// survivingCopies finds, for every blob of the packs prune deletes, a copy
// in a pack it keeps (the index must point there instead). Only the tags
// of the doomed blobs are held in full; kept packs' trailers are read
// again only when one of their tags matches.
func (r *Repository) survivingCopies(del map[PackID]bool, use map[PackID]*packUse) (map[ID]packEntry, error) {
	need := make(map[ID]bool)
	tags := make(map[uint64]bool)
	for id := range del {
		entries, _, err := r.loadTrailer(id)
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			need[e.ID] = true
			tags[idTag(e.ID)] = true
		}
	}
	alt := make(map[ID]packEntry)
	for id, u := range use {
		if del[id] || !u.hasAnyTag(tags) {
			continue
		}
		entries, _, err := r.loadTrailer(id)
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			if need[e.ID] {
				alt[e.ID] = e
			}
		}
	}
	return alt, nil
}

func (u *packUse) hasAnyTag(tags map[uint64]bool) bool {
	for _, t := range u.tags {
		if tags[t] {
			return true
		}
	}
	return false
}
