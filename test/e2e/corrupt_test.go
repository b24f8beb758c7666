package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCorruptPack flips bytes in the middle of a pack: restore fails and
// leaves nothing behind, check --read-data exits 3 naming the restore point.
func TestCorruptPack(t *testing.T) {
	dir := t.TempDir()
	r := initRepo(t) // password-encrypted: the damage must fail authentication

	vda := filepath.Join(dir, "app1-vda.img")
	newImage(t, vda, 128*MiB).mbr().random(1*MiB, 40*MiB, 600).text(64*MiB, 16*MiB, 601).close()
	p := r.backup("app1", "vda="+vda)
	other := filepath.Join(dir, "app2-vda.img")
	newImage(t, other, 32*MiB).random(0, 2*MiB, 602).close()
	q := r.backup("app2", "vda="+other) // a second VM whose packs stay intact
	r.check("--read-data")

	// The largest pack holds app1's blocks (packs are about 32 MiB).
	var victim string
	var biggest int64
	for _, pk := range r.packFiles() {
		if sz := fileSize(t, pk); sz > biggest {
			victim, biggest = pk, sz
		}
	}
	if biggest < 8*MiB {
		t.Fatalf("no pack of app1's data found (largest %d bytes)", biggest)
	}
	f, err := os.OpenFile(victim, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	mid := biggest / 2
	buf := make([]byte, 16)
	if _, err := f.ReadAt(buf, mid); err != nil {
		t.Fatal(err)
	}
	for i := range buf {
		buf[i] ^= 0xff
	}
	if _, err := f.WriteAt(buf, mid); err != nil {
		t.Fatal(err)
	}
	f.Close()
	t.Logf("flipped 16 bytes at offset %d of %s (%d bytes)", mid, filepath.Base(victim), biggest)

	for _, format := range []string{"raw", "qcow2"} {
		out := t.TempDir()
		target := filepath.Join(out, "app1-vda."+format)
		res := r.run("restore", "disk", p.ID, "vda", "--to", target)
		if res.code == 0 {
			t.Errorf("restore as %s from a corrupt pack succeeded:\n%v", format, res)
		}
		if left := dirEntries(t, out); len(left) != 0 {
			t.Errorf("failed restore as %s left files behind in %s: %v", format, out, left)
		}
		if !strings.Contains(res.stderr, p.ID) {
			t.Errorf("restore error does not name the restore point %s:\n%v", p.ID, res)
		}
	}

	res := r.run("check", "--read-data")
	if res.code != 3 {
		t.Errorf("check --read-data: want exit 3:\n%v", res)
	}
	if !strings.Contains(res.stdout+res.stderr, p.ID) {
		t.Errorf("check --read-data does not name the damaged restore point %s:\n%v", p.ID, res)
	}
	if strings.Contains(res.stdout+res.stderr, q.ID) {
		t.Errorf("check --read-data blames the intact restore point %s:\n%v", q.ID, res)
	}
	var rep checkReport
	res = r.run("check", "--read-data", "--json")
	decodeJSON(t, res, &rep)
	if res.code != 3 || len(rep.Errors) == 0 {
		t.Errorf("check --read-data --json: want exit 3 and errors:\n%v", res)
	}

	// The other VM still restores.
	out := filepath.Join(t.TempDir(), "app2.raw")
	r.restore(q.ID, "vda", out)
	sameBytes(t, other, out)
}

// TestMissingPack: a pack file is lost. Restore fails with the exit code of
// damage (3), not the one of a missing repository (10, "run cairn init"),
// and leaves nothing behind; check exits 3 naming the restore point.
func TestMissingPack(t *testing.T) {
	dir := t.TempDir()
	r := initKeyRepo(t)
	vda := filepath.Join(dir, "vda.img")
	newImage(t, vda, 96*MiB).random(0, 48*MiB, 650).close()
	p := r.backup("app1", "vda="+vda)
	var victim string
	var biggest int64
	for _, pk := range r.packFiles() {
		if sz := fileSize(t, pk); sz > biggest {
			victim, biggest = pk, sz
		}
	}
	if err := os.Remove(victim); err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	res := r.run("restore", "disk", p.ID, "vda", "--to", filepath.Join(out, "vda.raw"))
	if res.code == 0 {
		t.Fatalf("restore without one of its packs succeeded:\n%v", res)
	}
	if left := dirEntries(t, out); len(left) != 0 {
		t.Errorf("failed restore left files behind: %v", left)
	}
	if res.code != 3 {
		t.Errorf("restore from a repository missing a pack exits %d, want 3 (damage); 10 means \"no repository, run cairn init\":\n%v", res.code, res)
	}
	res = r.run("check")
	if res.code != 3 || !strings.Contains(res.stdout, p.ID) {
		t.Errorf("check: want exit 3 naming %s:\n%v", p.ID, res)
	}
}
