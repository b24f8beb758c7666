package repo

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// trailerBlobs returns the IDs of all blobs in complete packs on disk.
func trailerBlobs(t *testing.T, r *Repository) map[ID]bool {
	t.Helper()
	out := make(map[ID]bool)
	for _, id := range packIDs(t, r) {
		entries, _, err := r.loadTrailer(id)
		if err != nil {
			t.Fatalf("trailer of %s: %v", id, err)
		}
		for _, e := range entries {
			out[e.ID] = true
		}
	}
	return out
}

func tmpFiles(t *testing.T, r *Repository) []string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(r.Dir(), "tmp", "*"))
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// assertReuse stores img's blocks in a new session and checks that exactly
// the blocks in durable packs (known) are reported as not new.
func assertReuse(t *testing.T, r *Repository, img []byte, known map[ID]bool) *RestorePoint {
	t.Helper()
	s, err := r.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	var reused, fresh int
	for id, b := range blobsOf(r, img) {
		_, isNew, err := s.Store(BlobData, id, b)
		if err != nil {
			t.Fatal(err)
		}
		if isNew == known[id] {
			t.Fatalf("block %s: isNew=%v, but durable=%v", id.Short(), isNew, known[id])
		}
		if isNew {
			fresh++
		} else {
			reused++
		}
	}
	if reused == 0 || fresh == 0 {
		t.Fatalf("want both reused and new blocks, got %d reused, %d new", reused, fresh)
	}
	p := &RestorePoint{VM: "vm", Disks: []Disk{storeDisk(t, s, "sda", img, testTableSize)}}
	if err := s.Commit(p); err != nil {
		t.Fatal(err)
	}
	assertDisk(t, r, p.ID, "sda", img)
	return p
}

// TestAbortedSession: a session that stored blobs but ended with Abort
// leaves durable packs and no point; the next session reuses the blobs.
func TestAbortedSession(t *testing.T) {
	r := newTestRepo(t, true)
	img := imageFromSeeds(seedRange(1, 400), 0) // 1.6 MiB: one full pack + an open one
	s, err := r.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	for id, b := range blobsOf(r, img) {
		if _, _, err := s.Store(BlobData, id, b); err != nil {
			t.Fatal(err)
		}
	}
	s.Abort()

	if ids, err := r.PointIDs(); err != nil || len(ids) != 0 {
		t.Fatalf("points after Abort: %v %v", ids, err)
	}
	if tmp := tmpFiles(t, r); len(tmp) != 0 {
		t.Fatalf("Abort left files in tmp/: %v", tmp)
	}
	packs := packIDs(t, r)
	if len(packs) == 0 {
		t.Fatal("no complete pack survived Abort")
	}
	durable := trailerBlobs(t, r)
	if len(durable) == 0 || len(durable) >= 400 {
		t.Fatalf("%d blobs in durable packs; want some but not all", len(durable))
	}
	rep := checkOK(t, r, true)
	if rep.Points != 0 || len(rep.Warnings) != len(packs) || !containsAny(rep.Warnings, "not used by any restore point") {
		t.Fatalf("Check after Abort: %+v", rep)
	}
	assertReuse(t, r, img, durable)
	checkOK(t, r, true)
}

// TestKilledSession: the process dies mid-session: its open pack stays in
// tmp/, its finished packs are in packs/, no point exists.
func TestKilledSession(t *testing.T) {
	r := newTestRepo(t, false)
	keep := commitPoint(t, r, "other", diskImage{name: "sda", img: imageFromSeeds([]uint64{7777}, 0)})
	before := packIDs(t, r)
	img := imageFromSeeds(seedRange(1000, 350), 0)

	s, err := r.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	for id, b := range blobsOf(r, img) {
		if _, _, err := s.Store(BlobData, id, b); err != nil {
			t.Fatal(err)
		}
	}
	// "Kill": background pack finishing completes, then the process is
	// gone: the kernel drops its index lock; the open pack is abandoned.
	s.pw.finishWG.Wait()
	s.ix.close()
	if s.pw.cur == nil {
		t.Fatal("test needs an unfinished pack")
	}
	s.pw.cur.f.Close()

	if tmp := tmpFiles(t, r); len(tmp) != 1 {
		t.Fatalf("want the abandoned pack in tmp/, got %v", tmp)
	}
	r2 := reopen(t, r)
	pts, err := r2.Points()
	if err != nil || len(pts) != 1 || pts[0].ID != keep.ID {
		t.Fatalf("points after a killed session: %v %v", pts, err)
	}
	if n := len(packIDs(t, r2)); n <= len(before) {
		t.Fatalf("no finished pack of the killed session is visible (%d packs)", n)
	}
	rep := checkOK(t, r2, true)
	if len(rep.Warnings) == 0 {
		t.Error("Check gives no warning about unused packs")
	}
	durable := trailerBlobs(t, r2)
	p := assertReuse(t, r2, img, durable)

	// Prune cleans up tmp/ and keeps both points intact.
	pr, err := r2.Prune(PruneOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if pr.TmpRemoved != 1 || len(tmpFiles(t, r2)) != 0 {
		t.Fatalf("prune removed %d tmp files; left %v", pr.TmpRemoved, tmpFiles(t, r2))
	}
	assertDisk(t, r2, p.ID, "sda", img)
	assertDisk(t, r2, keep.ID, "sda", imageFromSeeds([]uint64{7777}, 0))
	rep = checkOK(t, r2, true)
	if len(rep.Warnings) != 0 {
		t.Errorf("warnings after prune: %q", rep.Warnings)
	}
}

// TestLeftoverTmpFiles: a crash during a pack write or a point write leaves
// temp files; they are invisible, harmless, and prune removes them.
func TestLeftoverTmpFiles(t *testing.T) {
	r := newTestRepo(t, true)
	img := imageFromSeeds([]uint64{1, 2, 3}, 0)
	p := commitPoint(t, r, "vm", diskImage{name: "sda", img: img})

	// A pack that was being written (header and part of a blob).
	var pid PackID
	pid[0] = 0x42
	if err := os.WriteFile(filepath.Join(r.Dir(), "tmp", pid.String()+packExt), append([]byte(packMagic), blockData(5, 3000)...), 0o600); err != nil {
		t.Fatal(err)
	}
	// A point file written but not yet renamed (writeFileAtomic's temp name).
	raw, err := os.ReadFile(r.pointPath(p.ID))
	if err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(r.Dir(), "points", ".tmp-"+"0123456789abcdef"+"-123456")
	if err := os.WriteFile(stale, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	ids, err := r.PointIDs()
	if err != nil || len(ids) != 1 || ids[0] != p.ID {
		t.Fatalf("PointIDs with leftovers: %v %v", ids, err)
	}
	pts, err := r.Points()
	if err != nil || len(pts) != 1 {
		t.Fatalf("Points with leftovers: %v %v", pts, err)
	}
	if rep := checkOK(t, r, true); len(rep.Warnings) != 0 || rep.Packs != 1 {
		t.Fatalf("Check with leftovers: %+v", rep)
	}
	pr, err := r.Prune(PruneOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if pr.TmpRemoved != 2 {
		t.Errorf("prune reports %d temp files removed, want 2", pr.TmpRemoved)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("prune left the stale point temp file: %v", err)
	}
	if tmp := tmpFiles(t, r); len(tmp) != 0 {
		t.Errorf("prune left %v", tmp)
	}
	assertDisk(t, r, p.ID, "sda", img)
}

func TestRepairIndexAfterDeletion(t *testing.T) {
	r := newTestRepo(t, false)
	a := imageFromSeeds(seedRange(10, 300), 0)
	b := imageFromSeeds(seedRange(500, 20), 0)
	pa := commitPoint(t, r, "a", diskImage{name: "sda", img: a})
	pb := commitPoint(t, r, "b", diskImage{name: "sda", img: b})
	if err := os.RemoveAll(r.indexDir()); err != nil {
		t.Fatal(err)
	}
	rep, err := r.Check(CheckOptions{})
	if err != nil || !rep.OK() || !containsAny(rep.Warnings, "index not checked") {
		t.Fatalf("Check without index: %v %+v", err, rep)
	}
	sr, err := r.RepairIndex()
	if err != nil {
		t.Fatal(err)
	}
	packs := packIDs(t, r)
	if sr.Added != len(packs) || sr.Removed != 0 || len(sr.Damaged) != 0 {
		t.Fatalf("RepairIndex report %+v for %d packs", sr, len(packs))
	}
	assertIndexMatchesPacks(t, r)
	// Every block can be looked up, at the location its table records.
	_, blobs := indexState(t, r)
	for _, pc := range []struct {
		p   *RestorePoint
		img []byte
	}{{pa, a}, {pb, b}} {
		dr, err := r.OpenDisk(pc.p, "sda", 0)
		if err != nil {
			t.Fatal(err)
		}
		for blk := int64(0); blk < pc.p.Disks[0].Blocks(); blk++ {
			e, err := dr.Entry(blk)
			if err != nil {
				t.Fatal(err)
			}
			if got, ok := blobs[e.ID]; !ok || got.Location != e.Location || got.Type != BlobData {
				t.Fatalf("index after repair: block %d: %+v %v, want %+v", blk, got, ok, e.Location)
			}
		}
	}
	if old, _ := filepath.Glob(r.indexDir() + ".old-*"); len(old) != 0 {
		t.Errorf("old index left behind: %v", old)
	}
	checkOK(t, r, false)
}

// TestRepairIndexStale: the index still lists a pack someone removed.
func TestRepairIndexStale(t *testing.T) {
	r := newTestRepo(t, true)
	a := imageFromSeeds(seedRange(10, 30), 0)
	b := imageFromSeeds(seedRange(500, 30), 0)
	pa := commitPoint(t, r, "a", diskImage{name: "sda", img: a})
	pb := commitPoint(t, r, "b", diskImage{name: "sda", img: b})
	gone := blockEntry(t, r, pa, "sda", 0).Pack
	if err := r.DeletePoint(pa.ID); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(packPath(r.Dir(), gone)); err != nil {
		t.Fatal(err)
	}
	rep, err := r.Check(CheckOptions{ReadData: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Errors) != 1 || !strings.Contains(rep.Errors[0], "records point at missing packs") {
		t.Fatalf("Check with a stale index: %q", rep.Errors)
	}
	sr, err := r.RepairIndex()
	if err != nil {
		t.Fatal(err)
	}
	if sr.Added != 1 || len(sr.Damaged) != 0 {
		t.Errorf("repair report %+v", sr)
	}
	checkOK(t, r, true)
	assertIndexMatchesPacks(t, r)
	_, blobs := indexState(t, r)
	for id := range blobsOf(r, a) {
		if e, ok := blobs[id]; ok {
			t.Fatalf("block of the removed pack still indexed at %+v", e)
		}
	}
	for id := range blobsOf(r, b) {
		if _, ok := blobs[id]; !ok {
			t.Fatal("block of the surviving point not indexed")
		}
	}
	assertDisk(t, r, pb.ID, "sda", b)
}

func TestRepairIndexDamagedPack(t *testing.T) {
	r := newTestRepo(t, false)
	commitPoint(t, r, "a", diskImage{name: "sda", img: imageFromSeeds(seedRange(1, 5), 0)})
	commitPoint(t, r, "b", diskImage{name: "sda", img: imageFromSeeds(seedRange(100, 5), 0)})
	packs := packIDs(t, r)
	if len(packs) != 2 {
		t.Fatalf("%d packs", len(packs))
	}
	path := packPath(r.Dir(), packs[0])
	st, _ := os.Stat(path)
	flipByte(t, path, st.Size()-1) // footer magic
	sr, err := r.RepairIndex()
	if err != nil {
		t.Fatal(err)
	}
	if sr.Added != 1 || len(sr.Damaged) != 1 || !strings.Contains(sr.Damaged[0].Error(), packs[0].String()) {
		t.Fatalf("repair report %+v", sr)
	}
	ip, _ := indexState(t, r)
	if _, ok := ip[packs[1]]; !ok || len(ip) != 1 {
		t.Fatalf("index packs after repair: %v", ip)
	}
}
