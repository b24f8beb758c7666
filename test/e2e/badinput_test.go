package e2e

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBadInput: backups of unreadable images fail with a message naming the
// file, leave no restore point and no damage.
func TestBadInput(t *testing.T) {
	requireTool(t, "qemu-img")
	dir := t.TempDir()
	r := initKeyRepo(t)

	// A good point first, so that "no new point" is not "no point at all".
	good := filepath.Join(dir, "good.img")
	newImage(t, good, 64*MiB).mbr().random(1*MiB, 4*MiB, 500).close()
	first := r.backup("vm1", "vda="+good)

	// The qcow2 images to damage: 64 MiB with 24 MiB of data.
	ref := filepath.Join(dir, "content.raw")
	newImage(t, ref, 64*MiB).random(0, 8*MiB, 501).text(16*MiB, 8*MiB, 502).random(48*MiB, 8*MiB, 503).close()
	mkQcow := func(name string) string {
		p := filepath.Join(dir, name)
		qemuImg(t, "convert", "-f", "raw", "-O", "qcow2", "-o", "compat=1.1", ref, p)
		return p
	}
	patch := func(path string, off int64, b []byte) {
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteAt(b, off); err != nil {
			t.Fatal(err)
		}
	}
	be64 := func(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

	truncated := mkQcow("truncated.qcow2")
	if err := os.Truncate(truncated, fileSize(t, truncated)/2); err != nil {
		t.Fatal(err)
	}
	l1PastEnd := mkQcow("l1-past-end.qcow2")
	patch(l1PastEnd, 40, be64(1<<40)) // header field l1_table_offset
	l1Unaligned := mkQcow("l1-unaligned.qcow2")
	patch(l1Unaligned, 40, be64(0x30000+24))
	// L1 pointing at a data cluster full of 0xab: its "entries" are garbage.
	l1OnData := mkQcow("l1-on-data.qcow2")
	var dataCluster int64 = -1
	{
		m := qemuImg(t, "map", "--output=json", l1OnData)
		var ext []struct {
			Start  int64  `json:"start"`
			Length int64  `json:"length"`
			Data   bool   `json:"data"`
			Offset *int64 `json:"offset"`
		}
		decodeJSON(t, m, &ext)
		for _, e := range ext {
			if e.Data && e.Offset != nil {
				dataCluster = *e.Offset
				break
			}
		}
		if dataCluster < 0 {
			t.Fatalf("qemu-img map found no data cluster in %s:\n%v", l1OnData, m)
		}
		patch(l1OnData, dataCluster, []byte(strings.Repeat("\xab", 64*1024)))
		patch(l1OnData, 40, be64(uint64(dataCluster)))
	}
	missing := filepath.Join(dir, "does-not-exist.qcow2")
	aDir := filepath.Join(dir, "a-directory.img")
	if err := os.Mkdir(aDir, 0o755); err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name, path string
	}{
		{"truncated qcow2", truncated},
		{"L1 table past the end", l1PastEnd},
		{"L1 table unaligned", l1Unaligned},
		{"L1 table on a data cluster", l1OnData},
		{"missing file", missing},
		{"directory", aDir},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// The bad disk comes second, after a good one, so that the
			// backup has stored data before it fails.
			res := r.run("backup", "--vm", "broken", "--disk", "vda="+good, "--disk", "vdb="+c.path)
			if res.code == 0 {
				t.Fatalf("backup of %s succeeded:\n%v", c.path, res)
			}
			if !strings.Contains(res.stderr, c.path) {
				t.Errorf("stderr does not name %s:\n%v", c.path, res)
			}
			if strings.Contains(res.stderr, "panic") || strings.Contains(res.stderr, "goroutine ") {
				t.Errorf("cairn panicked:\n%v", res)
			}
			if pts := r.points(); len(pts) != 1 || pts[0].ID != first.ID {
				t.Errorf("after a failed backup, list shows %v, want only %s", pointIDs(pts), first.ID)
			}
			r.check()
		})
	}

	// A later backup is unaffected.
	r.backup("vm1", "vda="+good)
	r.check("--read-data")

	t.Run("missing repository", func(t *testing.T) {
		for _, repoDir := range []string{filepath.Join(dir, "no-such-repo"), t.TempDir()} {
			nr := *r
			nr.dir = repoDir
			for _, args := range [][]string{{"list"}, {"backup", "--vm", "x", "--disk", "vda=" + good}, {"check"}, {"restore", "disk", first.ID, "vda", "--to", filepath.Join(dir, "x.raw")}} {
				res := nr.run(args...)
				if res.code != 10 || !strings.Contains(res.stderr, "cairn init") {
					t.Errorf("want exit 10 and a hint to run `cairn init`:\n%v", res)
				}
			}
		}
		res := runTool(t, cairnBin, "list")
		if res.code != 2 || !strings.Contains(res.stderr, "--repo") {
			t.Errorf("no --repo at all: want exit 2 (usage) naming --repo:\n%v", res)
		}
	})

	t.Run("wrong password", func(t *testing.T) {
		pr := initRepo(t)
		pr.backup("vm1", "vda="+good)
		bad := pr.withoutEnv("CAIRN_PASSWORD").withEnv("CAIRN_PASSWORD=not the password")
		for _, args := range [][]string{{"list"}, {"backup", "--vm", "vm1", "--disk", "vda=" + good}, {"check"}} {
			if res := bad.run(args...); res.code != 12 {
				t.Errorf("wrong password: want exit 12:\n%v", res)
			}
		}
		if res := pr.withoutEnv("CAIRN_PASSWORD").run("list"); res.code != 12 || !strings.Contains(res.stderr, "CAIRN_PASSWORD") {
			t.Errorf("no password: want exit 12 and a hint to set CAIRN_PASSWORD:\n%v", res)
		}
		// A key file cannot open a password-only repository either.
		kf := filepath.Join(dir, "other.key")
		if err := os.WriteFile(kf, []byte(strings.Repeat("k", 32)), 0o600); err != nil {
			t.Fatal(err)
		}
		if res := pr.withoutEnv("CAIRN_PASSWORD").run("list", "--key-file", kf); res.code != 12 {
			t.Errorf("foreign key file: want exit 12:\n%v", res)
		}
		pwFile := filepath.Join(dir, "pw")
		if err := os.WriteFile(pwFile, []byte(testPassword+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if pts := pr.withoutEnv("CAIRN_PASSWORD").withEnv("CAIRN_PASSWORD_FILE=" + pwFile); len(pts.points()) != 1 {
			t.Errorf("password file: want one point")
		}
	})
}
