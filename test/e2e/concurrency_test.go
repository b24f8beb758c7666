package e2e

import (
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// startHolding starts cairn ARGS and stops it (SIGSTOP) as soon as it has
// taken the repository lock (its record appears in REPO/locks), so that it
// holds the lock for as long as the test wants. A run that finishes before
// it can be caught is retried.
func startHolding(t *testing.T, r *repoEnv, args ...string) *proc {
	t.Helper()
	for try := 0; try < 5; try++ {
		p := r.start(args...)
		held := waitFor(time.Minute, func() bool { return len(r.lockHolders()) > 0 || p.exited() })
		if held && !p.exited() {
			p.signal(t, syscall.SIGSTOP)
			if !p.exited() && len(r.lockHolders()) > 0 {
				return p
			}
			p.signal(t, syscall.SIGCONT)
		}
		if res := p.wait(); res.code != 0 {
			t.Fatalf("%v", res)
		}
		t.Logf("`cairn %s` finished before it could be stopped holding its lock; again", strings.Join(args, " "))
	}
	t.Fatalf("could not catch `cairn %s` holding the lock", strings.Join(args, " "))
	return nil
}

// TestConcurrency runs two backups of different VMs into one repository
// at once, and checks that prune and backups exclude each other through the
// repository lock.
func TestConcurrency(t *testing.T) {
	dir := t.TempDir()
	r := initKeyRepo(t)

	// Two VMs with 112 MiB of data each, 16 MiB of it identical (the same
	// template), so both backups store some of the same blocks at once.
	img1, img2 := filepath.Join(dir, "vm1.img"), filepath.Join(dir, "vm2.img")
	newImage(t, img1, 192*MiB).mbr().random(1*MiB, 64*MiB, 1000).random(96*MiB, 16*MiB, 1100).text(128*MiB, 32*MiB, 1001).close()
	newImage(t, img2, 160*MiB).mbr().random(8*MiB, 64*MiB, 2000).random(96*MiB, 16*MiB, 1100).text(120*MiB, 32*MiB, 2001).close()

	p1 := r.start("backup", "--json", "--vm", "vm1", "--disk", "vda="+img1)
	p2 := r.start("backup", "--json", "--vm", "vm2", "--disk", "vda="+img2)
	res1, res2 := p1.wait(), p2.wait()
	if res1.code != 0 || res2.code != 0 {
		t.Fatalf("concurrent backups:\n%v\n%v", res1, res2)
	}
	end1, end2 := p1.start.Add(res1.dur), p2.start.Add(res2.dur)
	firstEnd, lastStart := end1, p2.start
	if end2.Before(end1) {
		firstEnd = end2
	}
	if p1.start.After(p2.start) {
		lastStart = p1.start
	}
	overlap := firstEnd.Sub(lastStart)
	t.Logf("backups took %s and %s, overlapping %s", res1.dur.Round(time.Millisecond), res2.dur.Round(time.Millisecond), overlap.Round(time.Millisecond))
	var s1, s2 backupSummary
	decodeJSON(t, res1, &s1)
	decodeJSON(t, res2, &s2)
	if s1.ID == s2.ID || s1.VM != "vm1" || s2.VM != "vm2" {
		t.Fatalf("summaries: %+v %+v", s1, s2)
	}
	if pts := r.points(); len(pts) != 2 {
		t.Fatalf("list shows %d points, want 2: %+v", len(pts), pts)
	}
	for _, c := range []struct{ id, img string }{{s1.ID, img1}, {s2.ID, img2}} {
		out := filepath.Join(t.TempDir(), "out.raw")
		r.restore(c.id, "vda", out)
		sameBytes(t, c.img, out)
	}
	r.check("--read-data")

	// A backup holds the shared lock: prune with --lock-wait 1s gives up
	// with exit 11 naming the backup.
	openImage(t, img1).random(100*MiB, 4*MiB, 1200).close()
	b := startHolding(t, r, "backup", "--json", "--vm", "vm1", "--disk", "vda="+img1)
	res := r.run("prune", "--lock-wait", "1s")
	if res.code != 11 {
		t.Errorf("prune while a backup holds the lock: want exit 11:\n%v", res)
	}
	if res.dur < time.Second || !strings.Contains(res.stderr, "lock") || !strings.Contains(res.stderr, "backup") {
		t.Errorf("prune gave up after %s; want >= 1s and a message naming the backup that holds the lock:\n%v", res.dur, res)
	}
	// With a longer --lock-wait, prune waits for the backup to finish.
	pr := r.start("prune", "--lock-wait", "2m")
	time.Sleep(1500 * time.Millisecond)
	if pr.exited() {
		t.Errorf("prune did not wait for the backup's lock:\n%v", pr.wait())
	}
	b.signal(t, syscall.SIGCONT)
	bres := b.wait()
	if bres.code != 0 {
		t.Fatalf("stopped backup, continued:\n%v", bres)
	}
	if res := pr.wait(); res.code != 0 {
		t.Fatalf("prune after waiting for the lock:\n%v", res)
	}
	var s3 backupSummary
	decodeJSON(t, bres, &s3)
	if s3.Parent != s1.ID {
		t.Errorf("third backup's parent %q, want %s", s3.Parent, s1.ID)
	}

	// prune holds the exclusive lock: backup and restore give up with exit
	// 11; list needs no lock.
	pp := startHolding(t, r, "prune")
	for _, args := range [][]string{
		{"backup", "--lock-wait", "1s", "--vm", "vm2", "--disk", "vda=" + img2},
		{"restore", "disk", s2.ID, "vda", "--lock-wait", "1s", "--to", filepath.Join(t.TempDir(), "x.raw")},
	} {
		if res := r.run(args...); res.code != 11 || !strings.Contains(res.stderr, "prune") {
			t.Errorf("%s while prune holds the lock: want exit 11 naming prune:\n%v", args[0], res)
		}
	}
	if pts := r.points(); len(pts) != 3 {
		t.Errorf("list during prune shows %d points, want 3", len(pts))
	}
	pp.signal(t, syscall.SIGCONT)
	if res := pp.wait(); res.code != 0 {
		t.Fatalf("prune, continued:\n%v", res)
	}

	r.check()
	for _, c := range []struct{ id, img string }{{s3.ID, img1}, {s2.ID, img2}} {
		out := filepath.Join(t.TempDir(), "out.raw")
		r.restore(c.id, "vda", out)
		sameBytes(t, c.img, out)
	}
}
