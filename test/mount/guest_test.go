package mount

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/fs/testimg"
)

// guestFixture is a repository holding one restore point of VM "guest":
// a disk made by scripts/mkdisk.sh with p1 ext4 boot, p2 ext4 root (real
// files, hard links, symlinks, sparse files), p3 XFS and p4 FAT32, and
// the manifests mkdisk wrote.
type guestFixture struct {
	dir, repo, image, manifest string
	parts                      []testimg.Part
}

func newGuestFixture(t *testing.T) *guestFixture {
	t.Helper()
	for _, tool := range []string{"sfdisk", "mkfs.ext4", "mkfs.xfs", "mkfs.vfat", "mcopy", "e2fsck", "qemu-img", "perl"} {
		testimg.RequireTool(t, tool)
	}
	requireFUSE(t)
	t.Setenv("CAIRN_PASSWORD", password)
	f := &guestFixture{dir: t.TempDir()}
	f.repo = filepath.Join(f.dir, "repo")
	f.image = filepath.Join(f.dir, "guest.raw")
	f.manifest = filepath.Join(f.dir, "files.sha256")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "../../scripts/mkdisk.sh", "--out", f.image, "--size", "1000M", "--data", "40M",
		"--xfs", "300M", "--fat", "40M", "--many", "600", "--manifest", f.manifest, "--seed", "5", "--tmpdir", f.dir, "-q")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mkdisk.sh: %v\n%s", err, out)
	}
	f.parts = testimg.Layout(t, f.image)
	if len(f.parts) != 4 {
		t.Fatalf("mkdisk made partitions %+v", f.parts)
	}
	cairn(t, f.repo, "init", "-q")
	cairn(t, f.repo, "backup", "-q", "--vm", "guest", "--disk", "vda="+f.image)
	return f
}

// loopMount mounts an image (or a byte range of it) read-only with the
// kernel, as root; it skips (or fails with CAIRN_REQUIRE_TOOLS=1) when not
// root.
func loopMount(t *testing.T, image string, offset, size int64, fstype string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		if testimg.Required() {
			t.Fatal("mount -o loop needs root, and CAIRN_REQUIRE_TOOLS=1 requires this check")
		}
		t.Skip("skipping: mount -o loop needs root")
	}
	dir := t.TempDir()
	opts := "loop,ro"
	if fstype == "ext4" {
		opts += ",noload" // never replay a journal, even on a copy
	} else if fstype == "xfs" {
		opts += ",norecovery"
	}
	if size > 0 {
		opts += fmt.Sprintf(",offset=%d,sizelimit=%d", offset, size)
	}
	run(t, "mount", "-t", fstype, "-o", opts, image, dir)
	t.Cleanup(func() { exec.Command("umount", dir).Run() })
	return dir
}

// latest is the ID of VM guest's newest restore point.
func (f *guestFixture) latest(t *testing.T) string {
	t.Helper()
	var points []struct{ ID, VM string }
	if err := json.Unmarshal([]byte(cairn(t, f.repo, "list", "--json", "--vm", "guest")), &points); err != nil || len(points) == 0 {
		t.Fatalf("cairn list: %v", err)
	}
	return points[len(points)-1].ID
}

func (f *guestFixture) part(n int) testimg.Part {
	for _, p := range f.parts {
		if p.Number == n {
			return p
		}
	}
	panic("no partition " + strconv.Itoa(n))
}

func TestGuestFiles(t *testing.T) {
	f := newGuestFixture(t)
	m := startMount(t, f.repo)
	vda := m.path("guest", "latest", "vda")

	t.Run("layout", func(t *testing.T) {
		want := []string{"p1", "p1.raw", "p2", "p2.raw", "p3", "p3.raw", "p4", "p4.raw"}
		if got := listDir(t, vda); !slices.Equal(got, want) {
			t.Fatalf("vda/ lists %v, want %v", got, want)
		}
		host, err := os.ReadFile(filepath.Join(vda, "p2", "etc", "hostname"))
		if err != nil || string(host) != "cairn-test-5\n" {
			t.Fatalf("p2/etc/hostname: %q %v", host, err)
		}
		st, err := os.Lstat(filepath.Join(vda, "p2", "home", "alice", "latest.jpg"))
		if err != nil || st.Mode()&os.ModeSymlink == 0 {
			t.Fatalf("symlink: %v %v", st, err)
		}
		var a, b syscall.Stat_t
		syscall.Stat(filepath.Join(vda, "p2", "home", "alice", "notes-hardlink.txt"), &a)
		syscall.Stat(filepath.Join(vda, "p2", "srv", "notes.txt"), &b)
		if a.Ino != b.Ino || a.Nlink != 3 {
			t.Fatalf("hard links: inodes %d/%d, nlink %d", a.Ino, b.Ino, a.Nlink)
		}
		if len(listDir(t, filepath.Join(vda, "p2", "srv", "many"))) != 600 {
			t.Fatal("srv/many should hold 600 entries")
		}
	})

	t.Run("cp -a vs manifest", func(t *testing.T) {
		out := t.TempDir()
		run(t, "cp", "-a", filepath.Join(vda, "p2", "etc"), filepath.Join(vda, "p2", "home"), out)
		n := checkManifest(t, f.manifest, "etc", filepath.Join(out, "etc"))
		n += checkManifest(t, f.manifest, "home", filepath.Join(out, "home"))
		t.Logf("%d files match the manifest", n)
		checkManifest(t, f.manifest+".xfs", "", copyOut(t, filepath.Join(vda, "p3")))
		checkManifest(t, f.manifest+".fat", "", copyOut(t, filepath.Join(vda, "p4")))
		// Modes, times, owners, symlinks, hard links, sparseness: against
		// the kernel's view of the same partition.
		p2 := f.part(2)
		ref := loopMount(t, f.image, p2.Start, p2.Size, "ext4")
		treeDiff(t, filepath.Join(ref, "home"), filepath.Join(out, "home"), metaOpts{owners: os.Geteuid() == 0, times: true})
		treeDiff(t, filepath.Join(ref, "etc"), filepath.Join(out, "etc"), metaOpts{owners: os.Geteuid() == 0, times: true})
	})

	t.Run("guest tree vs kernel mount", func(t *testing.T) {
		for _, c := range []struct {
			n      int
			fstype string
		}{{2, "ext4"}, {1, "ext4"}, {3, "xfs"}} {
			p := f.part(c.n)
			ref := loopMount(t, f.image, p.Start, p.Size, c.fstype)
			treeDiff(t, ref, filepath.Join(vda, "p"+strconv.Itoa(c.n)), metaOpts{owners: true, times: true, nlink: true})
		}
	})

	t.Run("restore files", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "out")
		res := cairn(t, f.repo, "restore", "files", "--json", "-q", f.latest(t), "vda/p2:/home/alice", "--to", out)
		var sum struct {
			Files, Bytes, Errors, HardLinks int64 `json:",omitempty"`
		}
		if err := json.Unmarshal([]byte(res[strings.Index(res, "{"):]), &sum); err != nil || sum.Files == 0 || sum.Errors != 0 || sum.Bytes == 0 {
			t.Fatalf("restore files --json: %v\n%s", err, res)
		}
		p2 := f.part(2)
		ref := loopMount(t, f.image, p2.Start, p2.Size, "ext4")
		treeDiff(t, filepath.Join(ref, "home", "alice"), filepath.Join(out, "alice"), metaOpts{owners: os.Geteuid() == 0, times: true})
		out2 := filepath.Join(t.TempDir(), "xfs")
		cairn(t, f.repo, "restore", "files", "-q", f.latest(t), "vda/p3:/", "--to", out2)
		checkManifest(t, f.manifest+".xfs", "", out2)
	})

	t.Run("e2fsck and loop mounts of the images", func(t *testing.T) {
		run(t, "e2fsck", "-fn", filepath.Join(vda, "p2.raw"))
		run(t, "e2fsck", "-fn", filepath.Join(vda, "p1.raw"))
		n := checkManifest(t, f.manifest, "", loopMount(t, filepath.Join(vda, "p2.raw"), 0, 0, "ext4"))
		n += checkManifest(t, f.manifest+".xfs", "", loopMount(t, filepath.Join(vda, "p3.raw"), 0, 0, "xfs"))
		t.Logf("%d files read through kernel loop mounts of the FUSE images match the manifests", n)
	})

	t.Run("qemu-img overlay", func(t *testing.T) {
		img := m.path("guest", "latest", "vda.raw")
		info := run(t, "qemu-img", "info", "--output=json", img)
		if !strings.Contains(info, `"format": "raw"`) {
			t.Fatalf("qemu-img info:\n%s", info)
		}
		overlay := filepath.Join(t.TempDir(), "overlay.qcow2")
		run(t, "qemu-img", "create", "-f", "qcow2", "-b", img, "-F", "raw", overlay)
		run(t, "qemu-img", "info", overlay)
		run(t, "qemu-img", "compare", overlay, f.image)
	})

	t.Run("guestfish", func(t *testing.T) {
		// libguestfs boots its appliance under TCG (no nested KVM here):
		// slow, so one call, with a generous timeout.
		testimg.RequireTool(t, "guestfish")
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "guestfish", "--ro", "-a", m.path("guest", "latest", "vda.raw"), "-i", "ls", "/")
		cmd.Env = append(os.Environ(), "LIBGUESTFS_BACKEND=direct", "LIBGUESTFS_BACKEND_SETTINGS=force_tcg")
		start := time.Now()
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("guestfish --ro -a vda.raw -i ls /: %v\n%s", err, out)
		}
		names := strings.Fields(string(out))
		for _, want := range []string{"etc", "home", "srv", "usr", "var"} {
			if !slices.Contains(names, want) {
				t.Fatalf("guestfish ls / lists %v, want %s in it", names, want)
			}
		}
		t.Logf("guestfish inspected the image through the mount in %s", time.Since(start).Round(time.Second))
	})

	t.Run("backup while mounted and copying", func(t *testing.T) {
		before, _ := os.Readlink(m.path("guest", "latest"))
		testimg.WriteAt(t, f.image, bytes.Repeat([]byte("new data"), 8192), f.part(2).Start+f.part(2).Size-MiB)
		backup := exec.Command(cairnBin, "backup", "-q", "--vm", "guest", "--disk", "vda="+f.image)
		backup.Env = append(os.Environ(), "CAIRN_REPO="+f.repo)
		var bout bytes.Buffer
		backup.Stdout, backup.Stderr = &bout, &bout
		if err := backup.Start(); err != nil {
			t.Fatal(err)
		}
		out := t.TempDir()
		run(t, "cp", "-a", filepath.Join(m.path("guest", before), "vda", "p2", "usr"), out)
		if err := backup.Wait(); err != nil {
			t.Fatalf("backup while mounted: %v\n%s", err, bout.String())
		}
		checkManifest(t, f.manifest, "usr", filepath.Join(out, "usr"))
		eventually(t, 5*time.Second, func() error {
			after, _ := os.Readlink(m.path("guest", "latest"))
			if after == before {
				return errors.New("the new restore point did not show up")
			}
			if _, err := os.Stat(m.path("guest", after, "vda", "p2", "etc", "hostname")); err != nil {
				return err
			}
			return nil
		})
	})

	m.stop(syscall.SIGTERM)
}

// copyOut copies a directory of the mount with cp -a and returns the copy.
func copyOut(t *testing.T, dir string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "copy")
	run(t, "cp", "-a", dir, out)
	return out
}

// A crafted guest: one partition whose ext4 root inode is garbage, one
// whose group descriptors are. Each gives EIO on its own
// directory and a log line naming the restore point, disk and volume;
// everything else keeps serving.
func TestHostileGuest(t *testing.T) {
	for _, tool := range []string{"sfdisk", "mkfs.ext4", "debugfs"} {
		testimg.RequireTool(t, tool)
	}
	requireFUSE(t)
	t.Setenv("CAIRN_PASSWORD", password)
	dir := t.TempDir()
	repoDir := filepath.Join(dir, "repo")
	img := testimg.Make(t, filepath.Join(dir, "hostile.raw"), testimg.Spec{
		Size: 80 * MiB, Label: "gpt", Seed: 9,
		Parts: []testimg.PartSpec{{Size: 24 * MiB, Fill: testimg.Ext4}, {Size: 24 * MiB, Fill: testimg.Ext4}, {Size: 24 * MiB, Fill: testimg.Ext4}},
	})
	p1, p2 := img.Parts[0], img.Parts[1]
	// The root inode of p1: debugfs says where it is.
	part := filepath.Join(dir, "p1.img")
	os.WriteFile(part, img.Bytes(t)[p1.Start:p1.Start+p1.Size], 0o600)
	imap := run(t, "debugfs", "-R", "imap <2>", part)
	var blk, off int64
	if i := strings.Index(imap, "located at block "); i < 0 {
		t.Fatalf("debugfs imap: %s", imap)
	} else if _, err := fmt.Sscanf(imap[i:], "located at block %d, offset 0x%x", &blk, &off); err != nil {
		t.Fatalf("debugfs imap %q: %v", imap, err)
	}
	stats := run(t, "debugfs", "-R", "stats", part)
	var bs int64
	if i := strings.Index(stats, "Block size:"); i < 0 {
		t.Fatalf("debugfs stats: %s", stats)
	} else {
		fmt.Sscanf(strings.TrimSpace(stats[i+len("Block size:"):]), "%d", &bs)
	}
	testimg.WriteAt(t, img.Path, bytes.Repeat([]byte{0xa5}, 256), p1.Start+blk*bs+off)
	// p2: its first group descriptor (the block after the superblock's)
	// overwritten; the superblock is intact, so it is recognised as ext4.
	gdt := int64(2048)
	if bs > 1024 {
		gdt = bs
	}
	testimg.WriteAt(t, img.Path, bytes.Repeat([]byte{0xa5}, 64), p2.Start+gdt)

	cairn(t, repoDir, "init", "-q")
	cairn(t, repoDir, "backup", "-q", "--vm", "hostile", "--disk", "vda="+img.Path)
	m := startMount(t, repoDir)
	vda := m.path("hostile", "latest", "vda")
	for _, p := range []string{"p1", "p2"} {
		_, err := os.ReadDir(filepath.Join(vda, p))
		if !isErrno(err, syscall.EIO) {
			t.Fatalf("listing the damaged %s/: %v, want EIO", p, err)
		}
	}
	var list []struct{ ID string }
	json.Unmarshal([]byte(cairn(t, repoDir, "list", "--json")), &list)
	for _, vol := range []string{"p1", "p2"} {
		want := fmt.Sprintf("restore point %s disk vda volume %s", list[0].ID, vol)
		eventually(t, 5*time.Second, func() error {
			if !strings.Contains(m.stderr.String(), want) {
				return fmt.Errorf("no log line %q in:\n%s", want, m.stderr)
			}
			return nil
		})
	}
	// The rest still serves: the healthy partition's files, the images.
	if got, err := os.ReadFile(filepath.Join(vda, "p3", "dir3", "text.txt")); err != nil || !bytes.HasPrefix(got, []byte("file 3 of a cairn test file system\n")) {
		t.Fatalf("p3/dir3/text.txt: %v", err)
	}
	if fileSHA(t, m.path("hostile", "latest", "vda.raw")) != fileSHA(t, img.Path) {
		t.Fatal("vda.raw must still read")
	}
	src := img.Bytes(t)
	if got, err := os.ReadFile(filepath.Join(vda, "p1.raw")); err != nil || !bytes.Equal(got, src[p1.Start:p1.Start+p1.Size]) {
		t.Fatalf("p1.raw: %v", err)
	}
	m.stop(syscall.SIGTERM)
}
