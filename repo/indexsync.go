package repo

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// packsOnDisk lists the packs in REPO/packs with their sizes.
func (r *Repository) packsOnDisk() (map[PackID]int64, error) {
	out := make(map[PackID]int64)
	root := filepath.Join(r.dir, "packs")
	subs, err := os.ReadDir(root)
	if err != nil {
		return nil, fmt.Errorf("list packs: %w", err)
	}
	for _, sub := range subs {
		if !sub.IsDir() {
			continue
		}
		ents, err := os.ReadDir(filepath.Join(root, sub.Name()))
		if err != nil {
			return nil, fmt.Errorf("list packs: %w", err)
		}
		for _, e := range ents {
			name, ok := strings.CutSuffix(e.Name(), packExt)
			if !ok {
				continue
			}
			id, err := ParsePackID(name)
			if err != nil {
				continue
			}
			info, err := e.Info()
			if err != nil {
				continue // removed meanwhile
			}
			out[id] = info.Size()
		}
	}
	return out, nil
}

// loadTrailer opens a pack and reads its trailer.
func (r *Repository) loadTrailer(id PackID) ([]packEntry, int64, error) {
	f, err := os.Open(packPath(r.dir, id))
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, 0, err
	}
	entries, err := r.readTrailer(f, id, st.Size())
	return entries, st.Size(), err
}

// SyncReport says what an index sync changed.
type SyncReport struct {
	Added, Removed int
	Damaged        []error // packs whose trailer could not be read
}

// syncIndex makes a writable index agree with the packs on disk: packs
// written by backups that could not merge (or that were killed) are added,
// records of packs that no longer exist are dropped.
// Packs in known (written by this process) are recorded from memory
// instead of reading their trailers back.
func (r *Repository) syncIndex(ix *index, known map[PackID]packFacts) (SyncReport, error) {
	var rep SyncReport
	disk, err := r.packsOnDisk()
	if err != nil {
		return rep, err
	}
	indexed, err := ix.packs()
	if err != nil {
		return rep, err
	}
	batch := ix.newPackBatch()
	defer batch.cancel()
	for id := range disk {
		if _, ok := indexed[id]; ok {
			continue
		}
		f, ok := known[id]
		if !ok {
			if f.entries, f.size, err = r.loadTrailer(id); err != nil {
				rep.Damaged = append(rep.Damaged, err)
				continue
			}
		}
		if err := batch.add(id, f.entries, f.size); err != nil {
			return rep, err
		}
		rep.Added++
	}
	if err := batch.flush(); err != nil {
		return rep, err
	}
	gone := make(map[PackID]bool)
	for id := range indexed {
		if _, ok := disk[id]; !ok {
			gone[id] = true
		}
	}
	if len(gone) > 0 {
		if err := ix.removePacks(gone, func(ID) (packEntry, bool) { return packEntry{}, false }); err != nil {
			return rep, err
		}
		rep.Removed = len(gone)
	}
	return rep, ix.db.Sync()
}

// MergeIndex merges packs that are not yet in the index, if the index can
// be opened for writing right now. It reports whether it could.
func (r *Repository) MergeIndex() (bool, SyncReport, error) { return r.mergeIndex(nil) }

// mergeIndex is MergeIndex with the facts of packs this process wrote.
func (r *Repository) mergeIndex(known map[PackID]packFacts) (bool, SyncReport, error) {
	ix, err := openIndex(r.indexDir(), false)
	if err != nil {
		if isBusy(err) {
			return false, SyncReport{}, nil
		}
		return false, SyncReport{}, err
	}
	rep, err := r.syncIndex(ix, known)
	if cerr := ix.close(); err == nil {
		err = cerr
	}
	return err == nil, rep, err
}

func (r *Repository) indexDir() string { return filepath.Join(r.dir, "index") }
