package repo

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"
)

// PruneOptions tune prune.
type PruneOptions struct {
	DryRun bool
	// MaxUnusedPercent: a pack with more unused bytes than this share is
	// repacked (its live blobs copied into new packs). 0 means 10.
	MaxUnusedPercent float64
}

// PruneReport says what prune did (or, with DryRun, would do).
type PruneReport struct {
	Points          int   `json:"points"`
	Packs           int   `json:"packs"`
	PacksDeleted    int   `json:"packs_deleted"`
	PacksRepacked   int   `json:"packs_repacked"`
	BlobsMoved      int   `json:"blobs_moved"`
	PointsRewritten int   `json:"points_rewritten"`
	BytesBefore     int64 `json:"bytes_before"`
	BytesFreed      int64 `json:"bytes_freed"`
	TmpRemoved      int   `json:"tmp_files_removed"`
	DryRun          bool  `json:"dry_run"`
}

// Prune frees the space of blobs no restore point uses: packs with no used
// blob are deleted, packs with much unused space are repacked. The caller
// holds the exclusive lock, so no backup runs meanwhile.
//
// Crash safety: new packs are durable before any restore point refers to
// them; restore points are rewritten atomically one by one; the index
// forgets a pack before the pack is deleted. Killed at any moment, the
// repository stays consistent and the next prune finishes the job.
func (r *Repository) Prune(o PruneOptions) (*PruneReport, error) {
	if o.MaxUnusedPercent <= 0 {
		o.MaxUnusedPercent = 10
	}
	rep := &PruneReport{DryRun: o.DryRun}
	ix, err := openIndexWait(r.indexDir(), false, time.Minute)
	if err != nil {
		return nil, fmt.Errorf("open index: %w", err)
	}
	defer ix.close()
	if _, err := r.syncIndex(ix, nil); err != nil {
		return nil, err
	}
	use, err := r.packUsage()
	if err != nil {
		return nil, err
	}
	points, err := r.Points()
	if err != nil {
		return nil, fmt.Errorf("prune needs every restore point readable: %w", err)
	}
	rep.Points, rep.Packs = len(points), len(use)
	if err := r.markUsed(points, use, false); err != nil {
		return nil, fmt.Errorf("prune stopped, nothing deleted: %w", err)
	}
	del, repack := make(map[PackID]bool), make(map[PackID]bool)
	for id, u := range use {
		rep.BytesBefore += u.size
		// Counting the pack's own header, trailer and footer as unused made
		// small fully used packs qualify for repacking on every prune.
		unused := u.unusedBytes()
		switch {
		case u.usedBytes == 0:
			del[id] = true
			rep.BytesFreed += u.size
		case unused > 0 && float64(unused) > float64(u.size)*o.MaxUnusedPercent/100:
			repack[id] = true
			rep.BytesFreed += unused
		}
	}
	rep.PacksDeleted, rep.PacksRepacked = len(del), len(repack)
	if o.DryRun {
		return rep, nil
	}
	moved, err := r.repack(repack, use, rep)
	if err != nil {
		return nil, err
	}
	if err := r.rewritePoints(points, moved, rep); err != nil {
		return nil, err
	}
	// Rewritten block tables leave the old tables (and every blob that was
	// moved) unused: recount over the points as they are now, and delete
	// every old pack that nothing uses any more.
	if len(moved) > 0 {
		if err := r.markUsed(points, use, true); err != nil {
			return nil, err
		}
		for id, u := range use {
			if u.usedBytes == 0 && !del[id] {
				del[id] = true
				if !repack[id] {
					rep.PacksDeleted++
					rep.BytesFreed += u.size
				}
			}
		}
	}
	// Forget the doomed packs in the index first (their blobs may survive
	// elsewhere: the new packs, or duplicates), then delete them.
	if _, err := r.syncIndex(ix, nil); err != nil {
		return nil, err
	}
	alt, err := r.survivingCopies(del, use)
	if err != nil {
		return nil, err
	}
	if err := ix.removePacks(del, func(id ID) (packEntry, bool) { e, ok := alt[id]; return e, ok }); err != nil {
		return nil, err
	}
	// No syncIndex here: the packs repack wrote were added above, and the
	// doomed packs are still on disk, so a sync would add them back (and
	// leave the index pointing at packs deleted just below).
	for id := range del {
		if err := os.Remove(packPath(r.dir, id)); err != nil && !os.IsNotExist(err) {
			return nil, fmt.Errorf("delete pack %s: %w", id, err)
		}
	}
	rep.TmpRemoved = r.cleanTmp()
	return rep, nil
}

// packUsage reads every pack trailer.
func (r *Repository) packUsage() (map[PackID]*packUse, error) {
	disk, err := r.packsOnDisk()
	if err != nil {
		return nil, err
	}
	use := make(map[PackID]*packUse, len(disk))
	for id := range disk {
		entries, size, err := r.loadTrailer(id)
		if err != nil {
			return nil, fmt.Errorf("prune stopped, nothing deleted: %w (run `cairn check`)", err)
		}
		use[id] = newPackUse(entries, size)
	}
	return use, nil
}

// repack copies the used blobs of packs into new packs, verifying each.
func (r *Repository) repack(packs map[PackID]bool, use map[PackID]*packUse, rep *PruneReport) (map[Location]Location, error) {
	moved := make(map[Location]Location)
	if len(packs) == 0 {
		return moved, nil
	}
	pw := newPackWriter(r)
	ids := make([]PackID, 0, len(packs))
	for id := range packs {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i].String() < ids[j].String() })
	for _, id := range ids {
		entries, err := r.usedEntries(id, use[id])
		if err != nil {
			pw.abort()
			return nil, err
		}
		raw, err := os.ReadFile(packPath(r.dir, id))
		if err != nil {
			pw.abort()
			return nil, err
		}
		for _, e := range entries {
			stored := raw[e.Offset : e.Offset+e.Length]
			if _, err := r.codec.decode(e.Type, e.ID, stored); err != nil {
				pw.abort()
				return nil, fmt.Errorf("repack pack %s offset %d: %w; nothing deleted (run `cairn check --read-data`)", id, e.Offset, err)
			}
			loc, err := pw.add(e.Type, e.ID, stored)
			if err != nil {
				pw.abort()
				return nil, err
			}
			moved[e.Location] = loc
			rep.BlobsMoved++
		}
	}
	return moved, pw.flush()
}

// rewritePoints points restore points at moved blobs: block tables whose
// entries moved are re-encoded and stored; each point is rewritten atomically.
func (r *Repository) rewritePoints(points []*RestorePoint, moved map[Location]Location, rep *PruneReport) error {
	if len(moved) == 0 {
		return nil
	}
	pw := newPackWriter(r)
	var changed []*RestorePoint
	rewritten := make(map[ID]TableRef) // a table shared by several points is stored once
	for _, p := range points {
		dirty := false
		for di := range p.Disks {
			d := &p.Disks[di]
			dr, err := r.OpenDisk(p, d.Name, 1)
			if err != nil {
				pw.abort()
				return err
			}
			for ti := range d.Tables {
				t := &d.Tables[ti]
				if ref, ok := rewritten[t.ID]; ok {
					*t = TableRef{Index: t.Index, ID: ref.ID, Pack: ref.Pack, Offset: ref.Offset, Length: ref.Length}
					dirty = true
					continue
				}
				oldID := t.ID
				tbl, err := dr.Table(t.Index)
				if err != nil {
					pw.abort()
					return err
				}
				n := 0
				for i := range tbl {
					if nl, ok := moved[tbl[i].Location]; ok && !tbl[i].IsZero() {
						tbl[i].Location = nl
						n++
					}
				}
				if n == 0 {
					if nl, ok := moved[t.location()]; ok {
						t.Pack, t.Offset, t.Length = nl.Pack, nl.Offset, nl.Length
						dirty = true
					}
					continue
				}
				raw := encodeTable(tbl)
				id := r.codec.hasher.Sum(raw)
				loc, err := pw.add(BlobTable, id, r.codec.encode(nil, BlobTable, id, raw, newCompressor()))
				if err != nil {
					pw.abort()
					return err
				}
				*t = TableRef{Index: t.Index, ID: id, Pack: loc.Pack, Offset: loc.Offset, Length: loc.Length}
				rewritten[oldID] = *t
				dirty = true
			}
		}
		if dirty {
			changed = append(changed, p)
		}
	}
	if err := pw.flush(); err != nil {
		return err
	}
	for _, p := range changed {
		if err := r.writePoint(p); err != nil {
			return fmt.Errorf("rewrite restore point %s: %w", p.ID, err)
		}
		rep.PointsRewritten++
	}
	return nil
}

// cleanTmp removes files left in REPO/tmp by killed writers, and restore
// point temp files (see writeFileAtomic) that a killed writer never
// renamed. Only safe under the exclusive lock.
func (r *Repository) cleanTmp() int {
	names, _ := filepath.Glob(filepath.Join(r.dir, "tmp", "*"))
	points, _ := filepath.Glob(filepath.Join(r.dir, "points", ".tmp-*"))
	names = append(names, points...)
	n := 0
	for _, name := range names {
		if os.Remove(name) == nil {
			n++
		}
	}
	return n
}

// markUsed records in use which blobs the points reference. With reset it
// clears earlier marks first and ignores packs not in use (written since).
func (r *Repository) markUsed(points []*RestorePoint, use map[PackID]*packUse, reset bool) error {
	if reset {
		for _, u := range use {
			u.resetUsed()
		}
	}
	for _, p := range points {
		err := r.walkPoint(p, func(b blockRef) error {
			u := use[b.Pack]
			if u == nil {
				if reset {
					return nil
				}
				return fmt.Errorf("%w: %s references missing pack %s; run `cairn check` before pruning", ErrCorrupt, b, b.Pack)
			}
			i := u.lookup(b)
			if i < 0 {
				return fmt.Errorf("%w: %s names %s blob %s at pack %s offset %d, which the pack does not hold; run `cairn check`", ErrCorrupt, b, b.Type, b.ID.Short(), b.Pack, b.Offset)
			}
			u.mark(i)
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}
