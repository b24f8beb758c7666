package repo

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"sort"
	"time"
)

// CheckOptions select how deep check goes.
type CheckOptions struct {
	ReadData      bool    // re-read and re-hash stored blobs
	SubsetPercent float64 // with ReadData: read only this share of packs (0 or 100: all)
	Progress      func(done, total int)
}

// CheckReport lists what check found. Errors mean data is missing or
// damaged; Warnings are harmless leftovers that prune cleans up.
type CheckReport struct {
	Points    int      `json:"points"`
	Packs     int      `json:"packs"`
	Blobs     int      `json:"blobs_referenced"`
	PacksRead int      `json:"packs_read"`
	BytesRead int64    `json:"bytes_read"`
	Errors    []string `json:"errors"`
	Warnings  []string `json:"warnings"`
}

// OK reports whether check found no errors.
func (c *CheckReport) OK() bool { return len(c.Errors) == 0 }

func (c *CheckReport) errorf(format string, a ...any) {
	if len(c.Errors) < 1000 {
		c.Errors = append(c.Errors, fmt.Sprintf(format, a...))
	}
}

// Check verifies the repository: every restore point decodes, every block
// table loads and verifies, every referenced blob lies in a pack whose
// trailer lists it at that place, and the index points only at existing
// packs. With ReadData it also reads the blobs back and checks their hashes.
// The caller holds a shared lock.
func (r *Repository) Check(o CheckOptions) (*CheckReport, error) {
	rep := &CheckReport{}
	disk, err := r.packsOnDisk()
	if err != nil {
		return nil, err
	}
	rep.Packs = len(disk)
	// Each pack's trailer is kept in packUse's compact columns (17 bytes a
	// blob): check runs on repositories of hundreds of millions of blobs.
	trailers := make(map[PackID]*packUse, len(disk))
	for id := range disk {
		entries, size, err := r.loadTrailer(id)
		if err != nil {
			rep.errorf("pack %s: %v", id, err)
			continue
		}
		trailers[id] = newPackUse(entries, size)
	}
	err = r.walkPoints(rep, func(b blockRef) {
		rep.Blobs++
		u, ok := trailers[b.Pack]
		if !ok {
			if _, exists := disk[b.Pack]; !exists {
				rep.errorf("%s: pack %s is missing", b, b.Pack)
			}
			return
		}
		i := u.lookup(b)
		if i < 0 {
			rep.errorf("%s: pack %s has no %s blob %s at offset %d", b, b.Pack, b.Type, b.ID.Short(), b.Offset)
			return
		}
		u.mark(i)
	})
	if err != nil {
		return nil, err
	}
	for id, u := range trailers {
		if u.usedBytes == 0 {
			rep.Warnings = append(rep.Warnings, fmt.Sprintf("pack %s is not used by any restore point (prune removes it)", id))
		}
	}
	r.checkIndex(disk, rep)
	if o.ReadData {
		r.checkData(o, trailers, rep)
	}
	sort.Strings(rep.Warnings)
	return rep, nil
}

// walkPoints calls fn for every blob of every restore point; a point that
// cannot be loaded or walked is an error in rep.
func (r *Repository) walkPoints(rep *CheckReport, fn func(blockRef)) error {
	ids, err := r.PointIDs()
	if err != nil {
		return err
	}
	for _, pid := range ids {
		p, err := r.LoadPoint(pid)
		if err != nil {
			if rep != nil {
				rep.errorf("%v", err)
			}
			continue
		}
		if rep != nil {
			rep.Points++
		}
		err = r.walkPoint(p, func(b blockRef) error { fn(b); return nil })
		if err != nil && rep != nil {
			rep.errorf("restore point %s: %v", pid, err)
		}
	}
	return nil
}

// checkIndex verifies that the index points only at packs that exist.
func (r *Repository) checkIndex(disk map[PackID]int64, rep *CheckReport) {
	ix, err := openIndexWait(r.indexDir(), true, 2*time.Minute)
	if err != nil {
		rep.Warnings = append(rep.Warnings, fmt.Sprintf("index not checked: %v", err))
		return
	}
	defer ix.close()
	bad := 0
	err = ix.forEachBlob(func(e packEntry) error {
		if _, ok := disk[e.Pack]; !ok {
			bad++
		}
		return nil
	})
	if err != nil {
		rep.errorf("index: %v (run `cairn repair index`)", err)
	}
	if bad > 0 {
		rep.errorf("index: %d records point at missing packs (run `cairn repair index`)", bad)
	}
}

// checkData reads packs and verifies every blob in them. The trailer is
// decoded again from the pack read, so every blob's full ID is at hand.
func (r *Repository) checkData(o CheckOptions, trailers map[PackID]*packUse, rep *CheckReport) {
	var packs []PackID
	for id := range trailers {
		packs = append(packs, id)
	}
	sort.Slice(packs, func(i, j int) bool { return packs[i].String() < packs[j].String() })
	if o.SubsetPercent > 0 && o.SubsetPercent < 100 {
		rand.Shuffle(len(packs), func(i, j int) { packs[i], packs[j] = packs[j], packs[i] })
		n := int(float64(len(packs))*o.SubsetPercent/100 + 0.999)
		packs = packs[:n]
	}
	type badBlob struct {
		e   packEntry
		err error
	}
	var bad []badBlob
	for i, id := range packs {
		if o.Progress != nil {
			o.Progress(i, len(packs))
		}
		raw, err := os.ReadFile(packPath(r.dir, id))
		if err != nil {
			rep.errorf("pack %s: %v", id, err)
			continue
		}
		rep.PacksRead++
		rep.BytesRead += int64(len(raw))
		entries, err := r.readTrailer(bytes.NewReader(raw), id, int64(len(raw)))
		if err != nil {
			rep.errorf("pack %s: %v", id, err)
			continue
		}
		for _, e := range entries {
			if _, err := r.codec.decode(e.Type, e.ID, raw[e.Offset:e.Offset+e.Length]); err != nil {
				bad = append(bad, badBlob{e, err})
			}
		}
	}
	if o.Progress != nil {
		o.Progress(len(packs), len(packs))
	}
	if len(bad) == 0 {
		return
	}
	// Name who uses each damaged blob (a second walk, only on damage).
	users := make(map[Location][]blockRef, len(bad))
	for _, b := range bad {
		users[b.e.Location] = nil
	}
	_ = r.walkPoints(nil, func(b blockRef) {
		if refs, ok := users[b.Location]; ok && len(refs) < 3 {
			users[b.Location] = append(refs, b)
		}
	})
	for _, b := range bad {
		who := "no restore point uses it"
		if refs := users[b.e.Location]; len(refs) > 0 {
			who = "used by " + refs[0].String()
			if len(refs) > 1 {
				who += fmt.Sprintf(" and %d more", len(refs)-1)
			}
		}
		rep.errorf("pack %s offset %d: %s blob %s: %v (%s)", b.e.Pack, b.e.Offset, b.e.Type, b.e.ID.Short(), b.err, who)
	}
}
