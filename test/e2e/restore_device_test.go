package e2e

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestRestoreToBlockDevice restores onto a loop device larger than the
// disk and filled with garbage: every byte of the disk is written, zeros
// included (a device has no holes to leave), and nothing past the disk's
// end is touched.
func TestRestoreToBlockDevice(t *testing.T) {
	requireTool(t, "losetup")
	if os.Geteuid() != 0 {
		if toolsRequired() {
			t.Fatal("a loop device needs root, and CAIRN_REQUIRE_TOOLS=1 requires this check")
		}
		t.Skip("skipping: a loop device needs root")
	}
	dir := t.TempDir()
	r := initRepo(t)

	// 48 MiB + 3 sectors: data, holes, and a tail that is not a whole page.
	size := 48*MiB + 3*512
	src := filepath.Join(dir, "vda.raw")
	newImage(t, src, size).random(0, 3*MiB, 1).text(20*MiB, 1*MiB, 2).random(size-5000, 5000, 3).close()
	sum := r.backupWith("dev1", nil, "vda="+src)

	// The device's backing file: 64 MiB of 0xee, so leftovers would show.
	backing := filepath.Join(dir, "device.img")
	newImage(t, backing, 64*MiB).fill(0, 64*MiB, 0xee).close()
	out, err := exec.Command("losetup", "--find", "--show", backing).CombinedOutput()
	if err != nil {
		t.Fatalf("losetup: %v: %s", err, out)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command("losetup", "-d", dev).Run() })

	r.restore(sum.ID, "vda", dev)

	got, err := os.Open(dev)
	if err != nil {
		t.Fatal(err)
	}
	defer got.Close()
	want, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	head := make([]byte, size)
	if _, err := io.ReadFull(got, head); err != nil {
		t.Fatal(err)
	}
	if i := firstDiff(head, want); i >= 0 {
		t.Fatalf("device differs from the disk at byte %d: %#x, want %#x", i, head[i], want[i])
	}
	rest, err := io.ReadAll(got)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(rest)) != 64*MiB-size || len(bytes.Trim(rest, "\xee")) != 0 {
		t.Errorf("restore touched the device past the disk's end (%d bytes after it, want %d of 0xee)", len(rest), 64*MiB-size)
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	if len(a) != len(b) {
		return min(len(a), len(b))
	}
	return -1
}
