package libvirt

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairn-backup/cairn/ingest"
	"github.com/cairn-backup/cairn/repo"
)

func qemuTool(t *testing.T, name string, args ...string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		if os.Getenv("CAIRN_REQUIRE_TOOLS") == "1" {
			t.Fatalf("%s not installed", name)
		}
		t.Skipf("%s not installed", name)
	}
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// TestQemuNBDBitmapIncremental: the shut-off-domain reader without
// libvirt: qemu-nbd exports a qcow2 with a persistent bitmap, the NBD
// client reads its allocation and dirty extents, and the incremental
// restore point reads only the dirty blocks and restores byte-exact.
func TestQemuNBDBitmapIncremental(t *testing.T) {
	qemuTool(t, "qemu-nbd", "--version")
	dir := t.TempDir()
	img := filepath.Join(dir, "d.qcow2")
	qemuTool(t, "qemu-img", "create", "-q", "-f", "qcow2", img, "64M")
	qemuTool(t, "qemu-io", "-f", "qcow2", "-c", "write -P 0x11 0 1M", "-c", "write -P 0x22 30M 1M", img)
	r, err := repo.Init(filepath.Join(dir, "repo"), repo.InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	j := &job{c: &Conn{host: localHost{}}, o: Options{SocketDir: dir}, name: "t", res: &Result{}}
	d := disk{Target: "vda", Path: img, Format: "qcow2"}
	backupOnce := func(bitmap string, base *repo.RestorePoint) (*repo.RestorePoint, ingest.Summary) {
		t.Helper()
		sock, stop, err := j.serveFile(context.Background(), d, bitmap, false)
		if err != nil {
			t.Fatal(err)
		}
		defer stop()
		mc := ""
		if bitmap != "" {
			mc = "qemu:dirty-bitmap:" + bitmap
		}
		sd, err := j.openDisk(d, sock, "vda", mc)
		if err != nil {
			t.Fatal(err)
		}
		defer sd.Source.Close()
		p, sum, err := ingest.BackupSources(context.Background(), r, ingest.BackupOptions{VM: "t"}, base, []ingest.SourceDisk{sd})
		if err != nil {
			t.Fatal(err)
		}
		return p, sum
	}
	check := func(p *repo.RestorePoint) {
		t.Helper()
		out := filepath.Join(t.TempDir(), "r.raw")
		if _, err := ingest.RestoreDisk(context.Background(), r, p, "vda", out, ingest.RestoreOptions{Format: "raw"}); err != nil {
			t.Fatal(err)
		}
		qemuTool(t, "qemu-img", "compare", "-U", "-f", "raw", "-F", "qcow2", out, img)
	}
	full, sum := backupOnce("", nil)
	if sum.BytesRead != 2<<20 {
		t.Fatalf("full read %d bytes, want the 2 MiB allocated", sum.BytesRead)
	}
	check(full)

	qemuTool(t, "qemu-img", "bitmap", "--add", img, "b1")
	qemuTool(t, "qemu-io", "-f", "qcow2", "-c", "write -P 0x33 5M 100k", "-c", "write -P 0x44 40M 4k", "-c", "write -z 30M 64k", img)
	inc, sum := backupOnce("b1", full)
	if want := int64(4 * 64 << 10); sum.BytesRead != want || inc.Parent != full.ID {
		t.Fatalf("incremental read %d bytes (want %d), parent %s", sum.BytesRead, want, inc.Parent)
	}
	check(inc)
}
