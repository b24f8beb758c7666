package repo

import (
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
	trailers := make(map[PackID]map[uint32]packEntry, len(disk))
	for id := range disk {
		entries, _, err := r.loadTrailer(id)
		if err != nil {
			rep.errorf("pack %s: %v", id, err)
			continue
		}
		m := make(map[uint32]packEntry, len(entries))
		for _, e := range entries {
			m[e.Offset] = e
		}
		trailers[id] = m
	}
	used := make(map[PackID]map[uint32][]blockRef)
	ids, err := r.PointIDs()
	if err != nil {
		return nil, err
	}
	for _, pid := range ids {
		p, err := r.LoadPoint(pid)
		if err != nil {
			rep.errorf("%v", err)
			continue
		}
		rep.Points++
		err = r.walkPoint(p, func(b blockRef) error {
			rep.Blobs++
			t, ok := trailers[b.Pack]
			if !ok {
				if _, exists := disk[b.Pack]; !exists {
					rep.errorf("%s: pack %s is missing", b, b.Pack)
				}
				return nil
			}
			e, ok := t[b.Offset]
			if !ok || e.ID != b.ID || e.Length != b.Length || e.Type != b.Type {
				rep.errorf("%s: pack %s has no %s blob %s at offset %d", b, b.Pack, b.Type, b.ID.Short(), b.Offset)
				return nil
			}
			if used[b.Pack] == nil {
				used[b.Pack] = make(map[uint32][]blockRef)
			}
			if len(used[b.Pack][b.Offset]) < 3 {
				used[b.Pack][b.Offset] = append(used[b.Pack][b.Offset], b)
			}
			return nil
		})
		if err != nil {
			rep.errorf("restore point %s: %v", pid, err)
		}
	}
	for id := range disk {
		if _, ok := used[id]; !ok {
			rep.Warnings = append(rep.Warnings, fmt.Sprintf("pack %s is not used by any restore point (prune removes it)", id))
		}
	}
	r.checkIndex(disk, rep)
	if o.ReadData {
		r.checkData(o, trailers, used, rep)
	}
	sort.Strings(rep.Warnings)
	return rep, nil
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

// checkData reads packs and verifies every blob in them.
func (r *Repository) checkData(o CheckOptions, trailers map[PackID]map[uint32]packEntry, used map[PackID]map[uint32][]blockRef, rep *CheckReport) {
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
		for off, e := range trailers[id] {
			if _, err := r.codec.decode(e.Type, e.ID, raw[off:off+e.Length]); err != nil {
				who := "no restore point uses it"
				if refs := used[id][off]; len(refs) > 0 {
					who = "used by " + refs[0].String()
					if len(refs) > 1 {
						who += fmt.Sprintf(" and %d more", len(refs)-1)
					}
				}
				rep.errorf("pack %s offset %d: %s blob %s: %v (%s)", id, off, e.Type, e.ID.Short(), err, who)
			}
		}
	}
	if o.Progress != nil {
		o.Progress(len(packs), len(packs))
	}
}
