package libvirt_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/ingest/libvirt"
)

// TestBenchVsVirtnbdbackup (CAIRN_BENCH=1, not part of `make test`): cairn
// and virtnbdbackup (Debian's package, installed here on demand) back up
// the same running 8 GiB domain, full and then incremental after ~100 MB
// of scattered random writes. Figures, side by side in one run:
//   - the incremental reads at most 1.2× the changed bytes and takes at
//     most half of virtnbdbackup's time;
//   - the full backup is at least as fast as virtnbdbackup's.
func TestBenchVsVirtnbdbackup(t *testing.T) {
	if os.Getenv("CAIRN_BENCH") != "1" {
		t.Skip("benchmark: set CAIRN_BENCH=1")
	}
	if _, err := exec.LookPath("virtnbdbackup"); err != nil {
		out, err := exec.Command("apt-get", "install", "-y", "-q", "-o", "DPkg::Lock::Timeout=600", "--no-install-recommends", "virtnbdbackup").CombinedOutput()
		if err != nil {
			t.Fatalf("install virtnbdbackup: %v\n%s", err, out)
		}
	}
	c := connect(t)
	r := newRepo(t)
	const size = 8 << 30
	const dataGiB = 2
	// virtnbdbackup refuses domains with checkpoints it did not create, so
	// each tool gets its own domain: same image contents, same writes.
	d := newDomain(t, c, "qcow2", size)
	v := newDomain(t, c, "qcow2", size)
	// 2 GiB of incompressible data in 64 MiB runs across the disk, put in
	// through qemu-io on the image before the domain starts.
	rng := rand.NewChaCha8([32]byte{7})
	chunk := filepath.Join(t.TempDir(), "chunk")
	buf := make([]byte, 64<<20)
	for i := 0; i < dataGiB*16; i++ {
		rng.Read(buf)
		if err := os.WriteFile(chunk, buf, 0o600); err != nil {
			t.Fatal(err)
		}
		off := int64(i) * (size / (dataGiB * 16))
		for _, img := range []string{d.disk, v.disk} {
			run(t, "qemu-io", "-f", "qcow2", "-c", fmt.Sprintf("write -s %s %d %d", chunk, off, len(buf)), img)
		}
	}
	d.start()
	v.start()
	vdir := t.TempDir()

	t0 := time.Now()
	full := backup(t, c, r, d.name, libvirt.Options{})
	cairnFull := time.Since(t0)
	t0 = time.Now()
	run(t, "virtnbdbackup", "-U", "qemu:///system", "-d", v.name, "-l", "full", "-o", filepath.Join(vdir, "b"))
	vFull := time.Since(t0)

	// ~100 MB of random data in 50 writes of 2 MiB, spread over the disk.
	sdir := t.TempDir()
	b2 := make([]byte, 2<<20)
	changed := int64(0)
	for i := 0; i < 50; i++ {
		small := filepath.Join(sdir, fmt.Sprint(i)) // distinct data: no dedup between writes
		rng.Read(b2)
		if err := os.WriteFile(small, b2, 0o600); err != nil {
			t.Fatal(err)
		}
		off := (int64(i)*163 + 7) * (size / (50 * 163)) &^ 4095
		cmd := fmt.Sprintf(`qemu-io -d /machine/peripheral/virtio-disk0/virtio-backend "write -s %s %d %d"`, small, off, len(b2))
		for _, dom := range []*testDomain{d, v} {
			if out, err := c.L.QEMUDomainMonitorCommand(dom.dom, cmd, 1); err != nil || strings.TrimSpace(out) != "" {
				t.Fatalf("qemu-io: %v %s", err, out)
			}
		}
		changed += int64(len(b2))
	}

	t0 = time.Now()
	inc := backup(t, c, r, d.name, libvirt.Options{})
	cairnInc := time.Since(t0)
	t0 = time.Now()
	run(t, "virtnbdbackup", "-U", "qemu:///system", "-d", v.name, "-l", "inc", "-o", filepath.Join(vdir, "b"))
	vInc := time.Since(t0)
	if inc.Kind != "incremental" {
		t.Fatalf("second backup: %+v", inc)
	}
	readRatio := float64(inc.Summary.BytesRead) / float64(changed)
	t.Logf("FIGURE full: cairn %.2f s (read %d MiB), virtnbdbackup %.2f s: ratio %.2f",
		cairnFull.Seconds(), full.Summary.BytesRead>>20, vFull.Seconds(), cairnFull.Seconds()/vFull.Seconds())
	t.Logf("FIGURE incremental: changed %d MiB, cairn read %d MiB (%.2fx) in %.2f s, virtnbdbackup %.2f s: time ratio %.2f",
		changed>>20, inc.Summary.BytesRead>>20, readRatio, cairnInc.Seconds(), vInc.Seconds(), cairnInc.Seconds()/vInc.Seconds())
	if readRatio > 1.2 {
		t.Errorf("incremental read %.2fx the changed bytes, want <= 1.2", readRatio)
	}
	if cairnInc > vInc/2 {
		t.Errorf("incremental took %.2f s, more than half of virtnbdbackup's %.2f s", cairnInc.Seconds(), vInc.Seconds())
	}
	if cairnFull > vFull {
		t.Errorf("full backup took %.2f s, slower than virtnbdbackup's %.2f s", cairnFull.Seconds(), vFull.Seconds())
	}
	assertPoint(t, r, inc.Summary.PointID, exportDisk(t, c, d))
}

// exportDisk copies the live disk after a graceful shutdown (bitmaps and
// data flushed) to a raw file.
func exportDisk(t *testing.T, c *libvirt.Conn, d *testDomain) string {
	t.Helper()
	d.shutdown()
	out := filepath.Join(t.TempDir(), "live.raw")
	run(t, "qemu-img", "convert", "-U", "-f", "qcow2", "-O", "raw", d.disk, out)
	return out
}
