package mount

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/fs/testimg"
	"github.com/cairn-backup/cairn/repo"
)

const (
	MiB      = testimg.MiB
	password = "mount test password"
)

// fixture is an encrypted repository with one restore point each of:
//
//	web1    GPT disk: p1 ext4, p2 half random, unpartitioned space
//	legacy  MBR disk: p1 primary, p2 extended holding p5 and p6 (random)
//	broken  GPT disk whose two headers fail their checksums
//	victim  4 MiB of random bytes, no partition table
type fixture struct {
	dir, repo                    string
	web1, legacy, broken, victim *testimg.Image
	web1Parts                    []testimg.Part
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	for _, tool := range []string{"sfdisk", "mkfs.ext4", "e2fsck", "qemu-img"} {
		testimg.RequireTool(t, tool)
	}
	requireFUSE(t)
	t.Setenv("CAIRN_PASSWORD", password)
	f := &fixture{dir: t.TempDir()}
	f.repo = filepath.Join(f.dir, "repo")
	f.web1 = testimg.Make(t, filepath.Join(f.dir, "web1.raw"), testimg.Spec{
		Size: 64 * MiB, Label: "gpt", Seed: 1,
		Parts: []testimg.PartSpec{{Size: 24 * MiB, Fill: testimg.Ext4}, {Size: 16 * MiB, Fill: testimg.Random}},
	})
	f.legacy = testimg.Make(t, filepath.Join(f.dir, "legacy.raw"), testimg.Spec{
		Size: 64 * MiB, Script: "label: dos\nstart=2048, size=16384, type=83\nstart=18432, size=81920, type=5\n" +
			"start=20480, size=20480, type=83\nstart=43008, size=20480, type=83\n",
	})
	rng := rand.New(rand.NewPCG(2, 2))
	for _, p := range f.legacy.Parts {
		if p.Number == 2 {
			continue // the extended partition holds the boot records
		}
		b := make([]byte, p.Size)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		testimg.WriteAt(t, f.legacy.Path, b, p.Start)
	}
	f.broken = testimg.Make(t, filepath.Join(f.dir, "broken.raw"), testimg.Spec{
		Size: 16 * MiB, Label: "gpt", Parts: []testimg.PartSpec{{Size: 4 * MiB, Fill: testimg.Random}},
	})
	b := f.broken.Bytes(t)
	for _, off := range []int64{512 + 16, f.broken.Size - 512 + 16} {
		testimg.WriteAt(t, f.broken.Path, []byte{b[off] ^ 0xff}, off)
	}
	victim := make([]byte, 4*MiB)
	for i := range victim {
		victim[i] = byte(rng.Uint32())
	}
	f.victim = &testimg.Image{Path: filepath.Join(f.dir, "victim.raw"), Size: int64(len(victim))}
	os.WriteFile(f.victim.Path, victim, 0o600)

	cairn(t, f.repo, "init", "-q")
	cairn(t, f.repo, "backup", "-q", "--vm", "web1", "--disk", "vda="+f.web1.Path)
	cairn(t, f.repo, "backup", "-q", "--vm", "legacy", "--disk", "vda="+f.legacy.Path)
	cairn(t, f.repo, "backup", "-q", "--vm", "broken", "--disk", "vda="+f.broken.Path)
	cairn(t, f.repo, "backup", "-q", "--vm", "victim", "--disk", "vda="+f.victim.Path)
	return f
}

func listDir(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("readdir %s: %v", dir, err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

func TestMount(t *testing.T) {
	f := newFixture(t)
	m := startMount(t, f.repo)

	t.Run("layout", func(t *testing.T) {
		if got := listDir(t, m.dir); !slices.Equal(got, []string{"broken", "legacy", "victim", "web1"}) {
			t.Fatalf("root lists %v", got)
		}
		target, err := os.Readlink(m.path("web1", "latest"))
		if err != nil || !strings.HasSuffix(target, "Z") || strings.Contains(target, "/") {
			t.Fatalf("web1/latest -> %q, %v", target, err)
		}
		if _, err := time.Parse("2006-01-02T15-04-05Z", target); err != nil {
			t.Fatalf("restore point directory %q: %v", target, err)
		}
		if got := listDir(t, m.path("web1")); !slices.Equal(got, []string{target, "latest"}) {
			t.Fatalf("web1 lists %v", got)
		}
		if got := listDir(t, m.path("web1", "latest")); !slices.Equal(got, []string{"vda", "vda.raw", "vm.json"}) {
			t.Fatalf("restore point lists %v", got)
		}
		// p1 holds ext4, so its files show too; p2 is random bytes.
		if got := listDir(t, m.path("web1", "latest", "vda")); !slices.Equal(got, []string{"p1", "p1.raw", "p2.raw"}) {
			t.Fatalf("web1 vda/ lists %v", got)
		}
		if got := listDir(t, m.path("web1", "latest", "vda", "p1")); !slices.Contains(got, "dir0") || !slices.Contains(got, "lost+found") {
			t.Fatalf("web1 vda/p1/ lists %v", got)
		}
		if got := listDir(t, m.path("victim", "latest", "vda")); len(got) != 0 {
			t.Fatalf("a disk without partition table lists %v", got)
		}
		st, err := os.Stat(m.path("web1", "latest", "vda.raw"))
		if err != nil || st.Size() != f.web1.Size || st.Mode().Perm() != 0o444 {
			t.Fatalf("stat vda.raw: %v %v", st, err)
		}
		sys := st.Sys().(*syscall.Stat_t)
		if sys.Blocks*512 >= f.web1.Size {
			t.Errorf("st_blocks %d: a sparse disk should count only its data", sys.Blocks)
		}
		st2, _ := os.Stat(m.path("web1", target, "vda.raw"))
		if st2.Sys().(*syscall.Stat_t).Ino != sys.Ino {
			t.Error("the same file through latest and by name has two inode numbers")
		}
		raw, err := os.ReadFile(m.path("web1", "latest", "vm.json"))
		if err != nil || !bytes.Contains(raw, []byte(`"vm": "web1"`)) || !bytes.Contains(raw, []byte(`"file": "vda.raw"`)) {
			t.Fatalf("vm.json: %v\n%s", err, raw)
		}
		if _, err := os.Stat(m.path("web1", "nope")); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("stat of a missing name: %v", err)
		}
	})

	t.Run("disk image", func(t *testing.T) {
		img := m.path("web1", "latest", "vda.raw")
		if fileSHA(t, img) != fileSHA(t, f.web1.Path) {
			t.Fatal("sha256 of vda.raw differs from the source image")
		}
		run(t, "cmp", f.web1.Path, img)
		info := run(t, "qemu-img", "info", "--output=json", img)
		if !strings.Contains(info, `"format": "raw"`) || !strings.Contains(info, fmt.Sprintf(`"virtual-size": %d`, f.web1.Size)) {
			t.Fatalf("qemu-img info:\n%s", info)
		}
		run(t, "qemu-img", "compare", f.web1.Path, img)
		// qemu-img map asks SEEK_DATA/SEEK_HOLE: the holes show.
		if mp := run(t, "qemu-img", "map", "--output=json", img); !strings.Contains(mp, `"data": false`) {
			t.Fatalf("qemu-img map shows no holes:\n%s", mp)
		}
	})

	t.Run("partitions", func(t *testing.T) {
		src := f.web1.Bytes(t)
		for _, p := range f.web1.Parts {
			got, err := os.ReadFile(m.path("web1", "latest", "vda", fmt.Sprintf("p%d.raw", p.Number)))
			if err != nil || !bytes.Equal(got, src[p.Start:p.Start+p.Size]) {
				t.Fatalf("p%d.raw differs from the partition's bytes (%v)", p.Number, err)
			}
		}
		out := run(t, "e2fsck", "-fn", m.path("web1", "latest", "vda", "p1.raw"))
		if !strings.Contains(out, "cairntest") && !strings.Contains(out, "files") {
			t.Logf("e2fsck: %s", out)
		}
		legacy := f.legacy.Bytes(t)
		if got := listDir(t, m.path("legacy", "latest", "vda")); !slices.Equal(got, []string{"p1.raw", "p5.raw", "p6.raw"}) {
			t.Fatalf("MBR disk lists %v", got)
		}
		for _, p := range f.legacy.Parts {
			if p.Number == 2 {
				continue
			}
			got, err := os.ReadFile(m.path("legacy", "latest", "vda", fmt.Sprintf("p%d.raw", p.Number)))
			if err != nil || !bytes.Equal(got, legacy[p.Start:p.Start+p.Size]) {
				t.Fatalf("MBR p%d.raw differs from the partition's bytes (%v)", p.Number, err)
			}
		}
	})

	t.Run("malformed partition table", func(t *testing.T) {
		_, err := os.ReadDir(m.path("broken", "latest", "vda"))
		if !isErrno(err, syscall.EIO) {
			t.Fatalf("listing a disk with a broken GPT: %v, want EIO", err)
		}
		if fileSHA(t, m.path("broken", "latest", "vda.raw")) != fileSHA(t, f.broken.Path) {
			t.Fatal("the disk image of a disk with a broken GPT must still read")
		}
		eventually(t, 5*time.Second, func() error {
			if !strings.Contains(m.stderr.String(), "malformed partition table") {
				return fmt.Errorf("no log line about the partition table:\n%s", m.stderr)
			}
			return nil
		})
	})

	t.Run("qcow2 overlay", func(t *testing.T) {
		overlay := filepath.Join(t.TempDir(), "overlay.qcow2")
		run(t, "qemu-img", "create", "-f", "qcow2", "-b", m.path("web1", "latest", "vda.raw"), "-F", "raw", overlay)
		run(t, "qemu-img", "compare", overlay, f.web1.Path)
	})

	t.Run("read-only", func(t *testing.T) {
		_, err := os.OpenFile(m.path("web1", "latest", "vda.raw"), os.O_WRONLY, 0)
		if !isErrno(err, syscall.EROFS) {
			t.Errorf("open for writing: %v, want EROFS", err)
		}
		for what, err := range map[string]error{
			"create": os.WriteFile(m.path("web1", "new"), []byte("x"), 0o644),
			"mkdir":  os.Mkdir(m.path("newdir"), 0o755),
			"remove": os.Remove(m.path("web1", "latest", "vm.json")),
			"rename": os.Rename(m.path("web1", "latest"), m.path("web1", "newest")),
			"chmod":  os.Chmod(m.path("web1", "latest", "vda.raw"), 0o666),
			"link":   os.Symlink("x", m.path("link")),
		} {
			if !isErrno(err, syscall.EROFS) {
				t.Errorf("%s: %v, want EROFS", what, err)
			}
		}
	})

	t.Run("backup while mounted", func(t *testing.T) {
		before, _ := os.Readlink(m.path("web1", "latest"))
		oldSum := fileSHA(t, f.web1.Path)
		testimg.WriteAt(t, f.web1.Path, bytes.Repeat([]byte("changed!"), 100_000), 30*MiB)
		cairn(t, f.repo, "backup", "-q", "--vm", "web1", "--disk", "vda="+f.web1.Path)
		start := time.Now()
		var after string
		eventually(t, 5*time.Second, func() error {
			names, err := os.ReadDir(m.path("web1"))
			if err != nil {
				return err
			}
			after, _ = os.Readlink(m.path("web1", "latest"))
			if len(names) != 3 || after == before {
				return fmt.Errorf("web1 lists %d entries, latest -> %s", len(names), after)
			}
			return nil
		})
		t.Logf("the new restore point showed up %s after the backup finished", time.Since(start).Round(time.Millisecond))
		if fileSHA(t, m.path("web1", "latest", "vda.raw")) != fileSHA(t, f.web1.Path) {
			t.Fatal("the new restore point's vda.raw differs from the changed image")
		}
		if fileSHA(t, m.path("web1", before, "vda.raw")) != oldSum {
			t.Fatal("the old restore point changed")
		}
	})

	t.Run("corrupt pack", func(t *testing.T) {
		// Find where block 20 of victim's disk is stored and damage it.
		r, err := repo.Open(f.repo, repo.Credentials{Password: []byte(password)})
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		var victim *repo.RestorePoint
		points, _ := r.Points()
		for _, p := range points {
			if p.VM == "victim" {
				victim = p
			}
		}
		dr, err := r.OpenDisk(victim, "vda", 0)
		if err != nil {
			t.Fatal(err)
		}
		const bad = 20
		e, err := dr.Entry(bad)
		if err != nil || e.IsZero() {
			t.Fatal(e, err)
		}
		pack := e.Pack.String()
		packPath := filepath.Join(f.repo, "packs", pack[:2], pack+".pack")
		pf, err := os.OpenFile(packPath, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		b := make([]byte, 1)
		off := int64(e.Offset) + int64(e.Length)/2
		pf.ReadAt(b, off)
		pf.WriteAt([]byte{b[0] ^ 0x40}, off)
		pf.Close()

		img := m.path("victim", "latest", "vda.raw")
		_, err = readAt(img, bad*65536, 65536)
		if !isErrno(err, syscall.EIO) {
			t.Fatalf("reading a corrupt block: %v, want EIO", err)
		}
		src, _ := os.ReadFile(f.victim.Path)
		for _, blk := range []int64{0, bad - 1, bad + 1, 63} {
			got, err := readAt(img, blk*65536, 65536)
			if err != nil || !bytes.Equal(got, src[blk*65536:(blk+1)*65536]) {
				t.Fatalf("block %d next to the corrupt one: %v", blk, err)
			}
		}
		if fileSHA(t, m.path("legacy", "latest", "vda.raw")) != fileSHA(t, f.legacy.Path) {
			t.Fatal("other files must still read")
		}
		want := fmt.Sprintf("restore point %s disk vda offset %d", victim.ID, bad*65536)
		eventually(t, 5*time.Second, func() error {
			if !strings.Contains(m.stderr.String(), want) {
				return fmt.Errorf("no log line %q in:\n%s", want, m.stderr)
			}
			return nil
		})
	})

	t.Run("SIGTERM unmounts", func(t *testing.T) {
		m.stop(syscall.SIGTERM)
	})
}

// cairn umount ends a mount; a busy mount is detached on SIGINT and the
// process exits once the last open file is closed.
func TestUmountAndBusyStop(t *testing.T) {
	requireFUSE(t)
	testimg.RequireTool(t, "sfdisk")
	dir := t.TempDir()
	repoDir := filepath.Join(dir, "repo")
	t.Setenv("CAIRN_PASSWORD", password)
	img := filepath.Join(dir, "small.raw")
	os.WriteFile(img, bytes.Repeat([]byte("cairn"), 300_000), 0o600)
	cairn(t, repoDir, "init", "-q")
	cairn(t, repoDir, "backup", "-q", "--vm", "small", "--disk", "vda="+img)

	m := startMount(t, repoDir)
	cairn(t, repoDir, "umount", m.dir)
	m.wait()

	m = startMount(t, repoDir)
	f, err := os.Open(m.path("small", "latest", "vda.raw"))
	if err != nil {
		t.Fatal(err)
	}
	m.cmd.Process.Signal(syscall.SIGINT)
	eventually(t, 5*time.Second, func() error {
		if !strings.Contains(m.stderr.String(), "busy") {
			return fmt.Errorf("no word about the busy mount point:\n%s", m.stderr)
		}
		return nil
	})
	// Still served: the open file reads.
	got := make([]byte, 5)
	if _, err := f.ReadAt(got, 5*1000); err != nil || string(got) != "cairn" {
		t.Fatalf("read from a detached mount: %q, %v", got, err)
	}
	select {
	case <-m.exited:
		t.Fatal("cairn mount exited while a file was open")
	case <-time.After(200 * time.Millisecond):
	}
	f.Close()
	m.wait()
}

// The mount holds a shared lock: prune (exclusive) cannot run meanwhile.
func TestMountHoldsSharedLock(t *testing.T) {
	requireFUSE(t)
	dir := t.TempDir()
	repoDir := filepath.Join(dir, "repo")
	t.Setenv("CAIRN_PASSWORD", password)
	cairn(t, repoDir, "init", "-q")
	m := startMount(t, repoDir)
	if got := listDir(t, m.dir); len(got) != 0 {
		t.Fatalf("an empty repository lists %v", got)
	}
	cmd := exec.Command(cairnBin, "prune", "--lock-wait", "300ms")
	cmd.Env = append(os.Environ(), "CAIRN_REPO="+repoDir)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 11 || !strings.Contains(string(out), "mount") {
		t.Fatalf("prune while mounted: %v\n%s", err, out)
	}
	m.stop(syscall.SIGTERM)
}
