package e2e

import (
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestForget: --dry-run changes nothing; --prune deletes the forgotten
// points, frees their space, and the kept points still restore.
func TestForget(t *testing.T) {
	dir := t.TempDir()
	r := initPlainRepo(t) // unencrypted, for variety

	// VM db: three points; each later one overwrites 16 MiB with new data,
	// so the older points own data nobody else uses.
	db := filepath.Join(dir, "db.img")
	newImage(t, db, 128*MiB).mbr().random(1*MiB, 48*MiB, 3000).text(64*MiB, 8*MiB, 3001).close()
	var dbPoints []string
	for gen := 0; gen < 3; gen++ {
		if gen > 0 {
			openImage(t, db).random(int64(1+16*(gen-1))*MiB, 16*MiB, uint64(3100+gen)).close()
		}
		dbPoints = append(dbPoints, r.backup("db", "vda="+db).ID)
	}
	web := filepath.Join(dir, "web.img")
	newImage(t, web, 32*MiB).random(0, 4*MiB, 3200).close()
	webPoint := r.backup("web", "vda="+web).ID
	all := sorted(append(slices.Clone(dbPoints), webPoint))

	// --dry-run: a report, no change.
	packsBefore, pointsBefore := treeState(t, filepath.Join(r.dir, "packs")), treeState(t, filepath.Join(r.dir, "points"))
	res := r.mustRun("forget", "--keep-last", "1", "--dry-run")
	if strings.Count(res.stdout, "would remove") != 2 || !strings.Contains(res.stdout, "2 restore point(s) removed, 2 kept") {
		t.Errorf("forget --dry-run output: want two 'would remove' lines:\n%v", res)
	}
	var decisions []struct {
		Point struct{ ID, VM string }
		Keep  bool
	}
	decodeJSON(t, r.mustRun("forget", "--keep-last", "1", "--dry-run", "--json"), &decisions)
	var wouldRemove []string
	for _, d := range decisions {
		if !d.Keep {
			wouldRemove = append(wouldRemove, d.Point.ID)
		}
	}
	if want := sorted(dbPoints[:2]); !slices.Equal(sorted(wouldRemove), want) {
		t.Errorf("forget --dry-run --json would remove %v, want %v", wouldRemove, want)
	}
	if got := sorted(pointIDs(r.points())); !slices.Equal(got, all) {
		t.Errorf("after --dry-run, list shows %v, want %v", got, all)
	}
	if !maps.Equal(packsBefore, treeState(t, filepath.Join(r.dir, "packs"))) || !maps.Equal(pointsBefore, treeState(t, filepath.Join(r.dir, "points"))) {
		t.Errorf("forget --dry-run changed files in the repository")
	}

	// --prune: the two old db points go, their space is freed.
	sizeBefore, packBytesBefore := duBytes(t, r.dir), r.packBytes()
	res = r.mustRun("forget", "--keep-last", "1", "--prune")
	sizeAfter, packBytesAfter := duBytes(t, r.dir), r.packBytes()
	t.Logf("repository: %d -> %d bytes on disk, packs %d -> %d bytes\n%s", sizeBefore, sizeAfter, packBytesBefore, packBytesAfter, res.stdout)
	if got, want := sorted(pointIDs(r.points())), sorted([]string{dbPoints[2], webPoint}); !slices.Equal(got, want) {
		t.Fatalf("after forget --keep-last 1 --prune, list shows %v, want %v", got, want)
	}
	// The forgotten points alone held the 32 MiB the later points overwrote.
	if freed := packBytesBefore - packBytesAfter; freed < 30*MiB || sizeAfter >= sizeBefore-30*MiB {
		t.Errorf("prune freed %d bytes of packs (%d on disk), want at least 30 MiB", freed, sizeBefore-sizeAfter)
	}
	if pts := validPointFiles(t, r); len(pts) != 2 {
		t.Errorf("points directory holds %v", pts)
	}
	rep := r.check("--read-data")
	if len(rep.Warnings) != 0 {
		t.Errorf("check after forget --prune warns: %v", rep.Warnings)
	}
	for _, c := range []struct{ id, img string }{{dbPoints[2], db}, {webPoint, web}} {
		out := filepath.Join(t.TempDir(), "out.raw")
		r.restore(c.id, "vda", out)
		sameBytes(t, c.img, out)
	}
	// The next backup still deduplicates against what prune kept.
	s := r.backup("db", "vda="+db)
	if s.NewBytes != 0 {
		t.Errorf("backup of an unchanged disk after prune stored %d new bytes (the index lost track of kept blocks?)", s.NewBytes)
	}
	r.check()
}

// TestPruneLeavesNoUnusedPacks: after one prune, check finds no unused pack.
// Prune repacks the forgotten point's half-used packs, so it rewrites the
// kept point's block tables into a new pack; the kept point's old tables
// were alone in a pack (its 32 MiB of new blocks filled one pack), and that
// pack is left behind unused until the next prune.
func TestPruneLeavesNoUnusedPacks(t *testing.T) {
	dir := t.TempDir()
	r := initKeyRepo(t)
	img := filepath.Join(dir, "vm.img")
	newImage(t, img, 128*MiB).random(0, 128*MiB, 3300).close()
	r.backup("vm", "vda="+img)
	im := openImage(t, img)
	for c := int64(0); c < 128; c += 4 { // 32 MiB of new blocks, spread out
		im.random(c*MiB, MiB, 3400+uint64(c))
	}
	im.close()
	kept := r.backup("vm", "vda="+img)
	r.mustRun("forget", "--keep-last", "1")
	var pr struct {
		Repacked int `json:"packs_repacked"`
		Rewrote  int `json:"points_rewritten"`
	}
	decodeJSON(t, r.mustRun("prune", "--json"), &pr)
	if pr.Repacked == 0 || pr.Rewrote == 0 {
		t.Fatalf("set-up: prune repacked %d packs and rewrote %d points; want both > 0", pr.Repacked, pr.Rewrote)
	}
	if rep := r.check(); len(rep.Warnings) != 0 {
		t.Errorf("check right after prune: %v (a second prune removes them)", rep.Warnings)
	}
	out := filepath.Join(dir, "out.raw")
	r.restore(kept.ID, "vda", out)
	sameBytes(t, img, out)
}
