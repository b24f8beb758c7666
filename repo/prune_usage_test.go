package repo

import (
	"testing"
)

// Two backups that run at once both store blocks the repository lacks, so
// the same blob lands in two packs and the index points at one of them.
// When prune deletes the copy a forgotten point used, the index must move
// to the surviving copy (survivingCopies), and the kept point must still
// read back byte-exact.
func TestPruneKeepsSurvivingCopyOfConcurrentBlob(t *testing.T) {
	r := newTestRepo(t, true)
	img := imageFromSeeds(seedRange(500, 40), 0)
	s1, err := r.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	s2, err := r.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	p1 := &RestorePoint{VM: "vm-1", Source: "image", Consistency: "crash"}
	p2 := &RestorePoint{VM: "vm-2", Source: "image", Consistency: "crash"}
	p1.Disks = append(p1.Disks, storeDisk(t, s1, "sda", img, testTableSize))
	p2.Disks = append(p2.Disks, storeDisk(t, s2, "sda", img, testTableSize))
	if err := s1.Commit(p1); err != nil {
		t.Fatal(err)
	}
	if err := s2.Commit(p2); err != nil {
		t.Fatal(err)
	}
	if p1.Disks[0].Tables[0].Pack == p2.Disks[0].Tables[0].Pack {
		t.Fatal("the two sessions shared a pack; the scenario needs two copies")
	}
	// Sync the index: it points each blob at one of the copies. Forget the
	// point whose copies the index names, so that prune deletes them and
	// the index must move to the other point's copies.
	checkOK(t, r, false)
	_, blobs := indexState(t, r)
	e, ok := blobs[p1.Disks[0].Tables[0].ID]
	if !ok {
		t.Fatal("the index has no record of the first block table")
	}
	gone, kept := p1, p2
	if e.Pack == p2.Disks[0].Tables[0].Pack {
		gone, kept = p2, p1
	}
	if err := r.DeletePoint(gone.ID); err != nil {
		t.Fatal(err)
	}
	rep, err := r.Prune(PruneOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.PacksDeleted == 0 {
		t.Fatalf("prune deleted no pack: %+v", rep)
	}
	r2 := reopen(t, r)
	assertIndexMatchesPacks(t, r2)
	_, blobs = indexState(t, r2)
	for id := range blobsOf(r2, img) {
		if _, ok := blobs[id]; !ok {
			t.Errorf("blob %s of the kept point lost its index record", id.Short())
		}
	}
	assertDisk(t, r2, kept.ID, "sda", img)
	checkOK(t, r2, true)
}

func TestPackUseLookupAndMarks(t *testing.T) {
	var pid PackID
	mk := func(off, n uint32, typ BlobType, seed byte) packEntry {
		var id ID
		for i := range id {
			id[i] = seed + byte(i)
		}
		return packEntry{Type: typ, ID: id, Location: Location{Pack: pid, Offset: off, Length: n}}
	}
	entries := []packEntry{mk(8, 100, BlobData, 1), mk(108, 50, BlobTable, 2), mk(158, 70, BlobData, 3)}
	u := newPackUse(entries, 400)
	ref := func(e packEntry) blockRef { return blockRef{Type: e.Type, ID: e.ID, Location: e.Location} }
	for i, e := range entries {
		if got := u.lookup(ref(e)); got != i {
			t.Errorf("lookup(entry %d) = %d", i, got)
		}
	}
	bad := []blockRef{
		ref(mk(9, 100, BlobData, 1)),   // offset inside a blob
		ref(mk(8, 99, BlobData, 1)),    // wrong length
		ref(mk(108, 50, BlobData, 2)),  // wrong type
		ref(mk(158, 70, BlobData, 4)),  // another ID
		ref(mk(1000, 70, BlobData, 3)), // past the end
	}
	for _, b := range bad {
		if got := u.lookup(b); got != -1 {
			t.Errorf("lookup(%+v) = %d, want -1", b.Location, got)
		}
	}
	if u.unusedBytes() != 220 {
		t.Fatalf("unused %d, want 220", u.unusedBytes())
	}
	u.mark(2)
	u.mark(2)
	u.mark(0)
	if u.usedBytes != 170 || !u.isUsed(0) || u.isUsed(1) || !u.isUsed(2) || u.unusedBytes() != 50 {
		t.Fatalf("after marks: used %d, bits %v", u.usedBytes, u.used)
	}
	u.resetUsed()
	if u.usedBytes != 0 || u.isUsed(0) || u.isUsed(2) {
		t.Fatal("reset left marks")
	}
}
