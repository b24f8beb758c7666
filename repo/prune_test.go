package repo

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// pruneScenario builds two points that share 100 blocks:
//
//	A: 300 A-only blocks, 100 shared, 20 A-only
//	B: the 100 shared blocks, 100 B-only, short tail
//
// With 1 MiB packs, A's session fills one pack with A-only blocks only and
// a second one mixing A-only and shared blocks; B's session writes only
// B-only blocks (the shared ones are deduplicated).
type pruneScenario struct {
	r            *Repository
	a, b         *RestorePoint
	imgA, imgB   []byte
	aOnly, bOnly map[ID]bool
	shared       map[ID]bool
}

func newPruneScenario(t *testing.T, enc bool) *pruneScenario {
	sc := &pruneScenario{r: newTestRepo(t, enc)}
	shared := seedRange(10001, 100)
	sc.imgA = imageFromSeeds(append(append(seedRange(1, 300), shared...), seedRange(301, 20)...), 0)
	sc.imgB = imageFromSeeds(append(shared, seedRange(20001, 100)...), 777)
	sc.a = commitPoint(t, sc.r, "vm-a", diskImage{name: "sda", img: sc.imgA})
	sc.b = commitPoint(t, sc.r, "vm-b", diskImage{name: "sda", img: sc.imgB})
	sc.aOnly, sc.bOnly, sc.shared = make(map[ID]bool), make(map[ID]bool), make(map[ID]bool)
	inB := blobsOf(sc.r, sc.imgB)
	for id := range blobsOf(sc.r, sc.imgA) {
		if inB[id] != nil {
			sc.shared[id] = true
		} else {
			sc.aOnly[id] = true
		}
	}
	for id := range inB {
		if !sc.shared[id] {
			sc.bOnly[id] = true
		}
	}
	if len(sc.shared) != 100 || len(sc.aOnly) != 320 || len(sc.bOnly) != 100 {
		t.Fatalf("scenario: %d shared, %d A-only, %d B-only", len(sc.shared), len(sc.aOnly), len(sc.bOnly))
	}
	return sc
}

// packClasses sorts the packs by what they hold of the scenario's blocks.
func (sc *pruneScenario) packClasses(t *testing.T) (onlyA, mixed, other []PackID) {
	t.Helper()
	for _, id := range packIDs(t, sc.r) {
		entries, _, err := sc.r.loadTrailer(id)
		if err != nil {
			t.Fatal(err)
		}
		var a, s, b int
		for _, e := range entries {
			switch {
			case sc.aOnly[e.ID]:
				a++
			case sc.shared[e.ID]:
				s++
			case sc.bOnly[e.ID]:
				b++
			}
		}
		switch {
		case a > 0 && s == 0 && b == 0:
			onlyA = append(onlyA, id)
		case a > 0 && s > 0:
			mixed = append(mixed, id)
		default:
			other = append(other, id)
		}
	}
	return
}

func TestPruneAfterForget(t *testing.T) {
	for _, enc := range []bool{false, true} {
		t.Run(fmt.Sprintf("encrypted=%v", enc), func(t *testing.T) { testPruneAfterForget(t, enc) })
	}
}

func testPruneAfterForget(t *testing.T, enc bool) {
	sc := newPruneScenario(t, enc)
	r := sc.r
	onlyA, mixed, _ := sc.packClasses(t)
	if len(onlyA) == 0 || len(mixed) == 0 {
		t.Fatalf("scenario needs a pack of A-only blocks and a mixed one: %d, %d", len(onlyA), len(mixed))
	}
	if err := r.DeletePoint(sc.a.ID); err != nil {
		t.Fatal(err)
	}
	packsBefore := dirBytes(t, filepath.Join(r.Dir(), "packs"))

	// Dry run: reports, changes nothing.
	files := repoFiles(t, r.Dir(), "index", "locks")
	dry, err := r.Prune(PruneOptions{DryRun: true, MaxUnusedPercent: 5})
	if err != nil {
		t.Fatal(err)
	}
	if after := repoFiles(t, r.Dir(), "index", "locks"); fmt.Sprint(after) != fmt.Sprint(files) {
		t.Fatal("dry-run prune changed the repository")
	}
	if !dry.DryRun || dry.PacksDeleted != len(onlyA) || dry.PacksRepacked != len(mixed) || dry.BytesFreed <= 0 || dry.Points != 1 {
		t.Fatalf("dry run report %+v (A-only packs %d, mixed %d)", dry, len(onlyA), len(mixed))
	}

	rep, err := r.Prune(PruneOptions{MaxUnusedPercent: 5})
	if err != nil {
		t.Fatal(err)
	}
	if rep.DryRun || rep.PacksDeleted != dry.PacksDeleted || rep.PacksRepacked != dry.PacksRepacked || rep.BytesFreed != dry.BytesFreed {
		t.Errorf("prune report %+v differs from its dry run %+v", rep, dry)
	}
	if rep.BlobsMoved != len(sc.shared) || rep.PointsRewritten != 1 {
		t.Errorf("prune moved %d blobs (want %d shared blocks), rewrote %d points (want 1)", rep.BlobsMoved, len(sc.shared), rep.PointsRewritten)
	}
	for _, id := range append(onlyA, mixed...) {
		if _, err := os.Stat(packPath(r.Dir(), id)); !os.IsNotExist(err) {
			t.Errorf("pack %s should be gone: %v", id, err)
		}
	}
	packsAfter := dirBytes(t, filepath.Join(r.Dir(), "packs"))
	if packsAfter >= packsBefore || packsBefore-packsAfter < rep.BytesFreed*9/10 {
		t.Errorf("packs: %d bytes before, %d after; prune claims %d freed", packsBefore, packsAfter, rep.BytesFreed)
	}

	// The surviving point is intact, through this handle and a fresh one.
	assertDisk(t, r, sc.b.ID, "sda", sc.imgB)
	r2 := reopen(t, r)
	assertDisk(t, r2, sc.b.ID, "sda", sc.imgB)
	if rep := checkOK(t, r2, true); len(rep.Warnings) != 0 || rep.Points != 1 {
		t.Errorf("check after prune: %+v", rep)
	}
	assertIndexMatchesPacks(t, r2)

	// The index forgot A's blocks but knows B's at their new places.
	s, err := r2.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	for id := range sc.aOnly {
		if _, ok, err := s.Find(id); ok || err != nil {
			t.Fatalf("pruned block still found: %v %v", ok, err)
		}
	}
	lb, err := r2.LoadPoint(sc.b.ID)
	if err != nil {
		t.Fatal(err)
	}
	dr, err := r2.OpenDisk(lb, "sda", 0)
	if err != nil {
		t.Fatal(err)
	}
	for blk := int64(0); blk < lb.Disks[0].Blocks(); blk++ {
		e, err := dr.Entry(blk)
		if err != nil {
			t.Fatal(err)
		}
		loc, ok, err := s.Find(e.ID)
		if !ok || err != nil || loc != e.Location {
			t.Fatalf("block %d: Find = %v %v %v, table says %v", blk, loc, ok, err, e.Location)
		}
	}
	s.Abort()

	// Nothing left to do.
	again, err := r2.Prune(PruneOptions{MaxUnusedPercent: 5})
	if err != nil {
		t.Fatal(err)
	}
	if again.PacksDeleted != 0 || again.PacksRepacked != 0 || again.PointsRewritten != 0 {
		t.Errorf("second prune still found work: %+v", again)
	}
	assertDisk(t, r2, sc.b.ID, "sda", sc.imgB)
	assertIndexMatchesPacks(t, r2)
}

func TestPruneNothingForgotten(t *testing.T) {
	sc := newPruneScenario(t, false)
	files := repoFiles(t, sc.r.Dir(), "index", "locks")
	rep, err := sc.r.Prune(PruneOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.PacksDeleted != 0 || rep.PacksRepacked != 0 || rep.BytesFreed != 0 || rep.Points != 2 {
		t.Fatalf("prune with every blob in use: %+v", rep)
	}
	if after := repoFiles(t, sc.r.Dir(), "index", "locks"); fmt.Sprint(after) != fmt.Sprint(files) {
		t.Fatal("prune with nothing to do changed the repository")
	}
	assertDisk(t, sc.r, sc.a.ID, "sda", sc.imgA)
	assertDisk(t, sc.r, sc.b.ID, "sda", sc.imgB)
}

func TestPruneDefaultThresholdKeepsMixedPack(t *testing.T) {
	// With the default 10% threshold, a pack with few unused bytes stays.
	r := newTestRepo(t, false)
	base := seedRange(1, 100)
	a := commitPoint(t, r, "a", diskImage{name: "sda", img: imageFromSeeds(append(base, 5000), 0)})
	b := commitPoint(t, r, "b", diskImage{name: "sda", img: imageFromSeeds(base, 0)})
	if err := r.DeletePoint(a.ID); err != nil {
		t.Fatal(err)
	}
	rep, err := r.Prune(PruneOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// A's pack now holds one unused block and A's tables (~2% unused); B's
	// pack holds only B's tables.
	if rep.PacksRepacked != 0 || rep.PacksDeleted != 0 {
		t.Fatalf("prune: %+v", rep)
	}
	assertDisk(t, r, b.ID, "sda", imageFromSeeds(base, 0))
	// With a tiny threshold the pack is repacked.
	rep, err = r.Prune(PruneOptions{MaxUnusedPercent: 0.01})
	if err != nil {
		t.Fatal(err)
	}
	if rep.PacksRepacked != 1 || rep.BlobsMoved < 100 {
		t.Fatalf("prune with tiny threshold: %+v", rep)
	}
	assertDisk(t, reopen(t, r), b.ID, "sda", imageFromSeeds(base, 0))
	checkOK(t, r, true)
	assertIndexMatchesPacks(t, r)
}

func TestPruneRefusesMissingPack(t *testing.T) {
	r := newTestRepo(t, false)
	a := commitPoint(t, r, "a", diskImage{name: "sda", img: imageFromSeeds(seedRange(1, 10), 0)})
	b := commitPoint(t, r, "b", diskImage{name: "sda", img: imageFromSeeds(seedRange(100, 10), 0)})
	packA := blockEntry(t, r, a, "sda", 0).Pack
	packB := blockEntry(t, r, b, "sda", 0).Pack
	if err := r.DeletePoint(b.ID); err != nil { // B's pack is now unused
		t.Fatal(err)
	}
	if err := os.Remove(packPath(r.Dir(), packA)); err != nil { // A's data is gone
		t.Fatal(err)
	}
	r2 := reopen(t, r)
	if _, err := r2.Prune(PruneOptions{}); err == nil {
		t.Fatal("prune ran although a point references a missing pack")
	}
	if _, err := os.Stat(packPath(r.Dir(), packB)); err != nil {
		t.Fatalf("failed prune deleted a pack: %v", err)
	}
}

func TestForgetPolicy(t *testing.T) {
	r := newTestRepo(t, false)
	base := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	ids := map[string][]string{}
	add := func(vm string, i int, tags map[string]string) {
		s, err := r.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		p := &RestorePoint{VM: vm, Time: base.Add(time.Duration(i) * time.Hour), Tags: tags}
		if err := s.Commit(p); err != nil {
			t.Fatal(err)
		}
		ids[vm] = append(ids[vm], p.ID) // oldest first
	}
	for i := 0; i < 5; i++ {
		var tags map[string]string
		if i == 0 {
			tags = map[string]string{"keep": "yes"}
		}
		add("vm-a", i, tags)
	}
	for i := 0; i < 3; i++ {
		add("vm-b", i, nil)
	}
	remaining := func() map[string]bool {
		got, err := r.PointIDs()
		if err != nil {
			t.Fatal(err)
		}
		m := make(map[string]bool)
		for _, id := range got {
			m[id] = true
		}
		return m
	}

	if _, err := r.Forget(RetentionPolicy{}, nil, false); err == nil {
		t.Fatal("empty policy accepted")
	}
	if len(remaining()) != 8 {
		t.Fatal("invalid policy deleted points")
	}

	ds, err := r.Forget(RetentionPolicy{Last: 2}, []string{"vm-a"}, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 5 || len(remaining()) != 8 {
		t.Fatalf("dry run: %d decisions, %d points left", len(ds), len(remaining()))
	}
	for _, d := range ds {
		if d.Point.VM != "vm-a" {
			t.Fatalf("decision for %s although only vm-a was asked for", d.Point.VM)
		}
	}

	ds, err = r.Forget(RetentionPolicy{Last: 2, Tags: []string{"keep=yes"}}, []string{"vm-a"}, false)
	if err != nil {
		t.Fatal(err)
	}
	left := remaining()
	wantA := map[string]bool{ids["vm-a"][0]: true, ids["vm-a"][3]: true, ids["vm-a"][4]: true}
	for _, id := range ids["vm-a"] {
		if left[id] != wantA[id] {
			t.Errorf("vm-a point %s: present=%v, want %v", id, left[id], wantA[id])
		}
	}
	for _, id := range ids["vm-b"] {
		if !left[id] {
			t.Errorf("vm-b point %s deleted by a vm-a forget", id)
		}
	}
	forgotten := 0
	for _, d := range ds {
		if !d.Keep {
			forgotten++
			if left[d.Point.ID] {
				t.Errorf("decision to forget %s not carried out", d.Point.ID)
			}
		}
	}
	if forgotten != 2 {
		t.Errorf("%d points forgotten, want 2", forgotten)
	}

	if _, err := r.Forget(RetentionPolicy{Last: 1}, []string{"no-such-vm"}, false); err != nil || len(remaining()) != 6 {
		t.Fatalf("forget of an unknown VM: %v, %d left", err, len(remaining()))
	}

	// All VMs: each keeps its newest point.
	if _, err := r.Forget(RetentionPolicy{Last: 1}, nil, false); err != nil {
		t.Fatal(err)
	}
	left = remaining()
	if len(left) != 2 || !left[ids["vm-a"][4]] || !left[ids["vm-b"][2]] {
		t.Fatalf("after keep-last 1 for all VMs: %v", left)
	}
}
