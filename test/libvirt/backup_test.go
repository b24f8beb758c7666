package libvirt_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/ingest/libvirt"
)

// TestRunningFullIncrementalOffline: a running qcow2 domain gets a full
// backup, then incrementals that read only what changed (and nothing
// when nothing changed), each restore point byte-exact; after a graceful
// shutdown the live disk file equals the reference, and a backup of the
// shut-off domain continues the chain from its bitmap with qemu-nbd.
func TestRunningFullIncrementalOffline(t *testing.T) {
	c := connect(t)
	r := newRepo(t)
	const size = 256 * MiB
	d := newDomain(t, c, "qcow2", size)
	d.start()
	d.write(0, 2*MiB, 0x11)
	d.write(100*MiB, 3*MiB+512, 0x22)
	d.write(size-64*1024, 64*1024, 0x33)

	full := backup(t, c, r, d.name, libvirt.Options{})
	if full.Kind != "full" || full.Method != libvirt.MethodBackup || full.Checkpoint == "" {
		t.Fatalf("first backup: %+v", full)
	}
	if full.Summary.BytesRead > 8*MiB { // 5 MiB allocated: holes cost nothing
		t.Fatalf("full backup read %d bytes of a disk with ~5 MiB of data", full.Summary.BytesRead)
	}
	fullRef := d.snapshotRef()
	assertPoint(t, r, full.Summary.PointID, fullRef)

	// Unaligned writes in three block tables; one overwrites old data.
	d.write(1*MiB+4096, 8192, 0x44)
	d.write(70*MiB+100*1024, 300*1024, 0x55)
	d.write(200*MiB, 1*MiB, 0x66)
	changed := int64(8192 + 300*1024 + 1*MiB)
	inc := backup(t, c, r, d.name, libvirt.Options{})
	if inc.Kind != "incremental" || inc.Base != full.Summary.PointID {
		t.Fatalf("second backup: %+v", inc)
	}
	// Reads follow the changes: dirty-bitmap granularity and block size are 64 KiB.
	if inc.Summary.BytesRead > changed+4*64*1024 || inc.Summary.BytesRead < changed {
		t.Fatalf("incremental read %d bytes for %d changed", inc.Summary.BytesRead, changed)
	}
	assertPoint(t, r, inc.Summary.PointID, d.snapshotRef())
	if cps := d.checkpoints(); len(cps) != 1 || cps[0] != inc.Checkpoint {
		t.Fatalf("checkpoints %v, want only %s", cps, inc.Checkpoint)
	}
	assertPoint(t, r, full.Summary.PointID, fullRef) // the full point did not change

	none := backup(t, c, r, d.name, libvirt.Options{})
	if none.Kind != "incremental" || none.Summary.BytesRead != 0 {
		t.Fatalf("backup without changes: %+v", none)
	}

	d.shutdown()
	sameImage(t, d.disk, "qcow2", d.ref, "raw") // the reference is the live disk
	d.writeOffline(150*MiB, 256*1024, 0x77, "qcow2")
	off := backup(t, c, r, d.name, libvirt.Options{})
	if off.Method != libvirt.MethodOffline || off.Kind != "incremental" || off.Summary.BytesRead != 256*1024 {
		t.Fatalf("shut-off backup: %+v", off)
	}
	assertPoint(t, r, off.Summary.PointID, d.snapshotRef())
	if cps := d.checkpoints(); len(cps) != 1 || cps[0] != off.Checkpoint {
		t.Fatalf("checkpoints after the offline backup %v, want only %s", cps, off.Checkpoint)
	}
	// and the chain goes on when the domain runs again
	d.start()
	d.write(10*MiB, 64*1024, 0x88)
	again := backup(t, c, r, d.name, libvirt.Options{})
	if again.Kind != "incremental" || again.Summary.BytesRead != 64*1024 {
		t.Fatalf("backup after restart: %+v", again)
	}
	assertPoint(t, r, again.Summary.PointID, d.snapshotRef())
}

// TestKilledQEMUFallsBackToFull: after QEMU is killed its bitmaps are
// inconsistent; the next backup says so, takes a full backup, starts a
// new checkpoint chain, and the one after is incremental again.
func TestKilledQEMUFallsBackToFull(t *testing.T) {
	c := connect(t)
	r := newRepo(t)
	d := newDomain(t, c, "qcow2", 64*MiB)
	d.start()
	d.write(0, 1*MiB, 0x21)
	backup(t, c, r, d.name, libvirt.Options{})
	d.write(5*MiB, 1*MiB, 0x22)
	inc := backup(t, c, r, d.name, libvirt.Options{}) // the bitmap is now in the qcow2 as "in use"
	if inc.Kind != "incremental" {
		t.Fatalf("second backup: %+v", inc)
	}
	d.write(9*MiB, 512*1024, 0x23)
	killQEMU(t, d)
	d.start()
	res := backup(t, c, r, d.name, libvirt.Options{})
	if res.Kind != "full" {
		t.Fatalf("backup after a killed QEMU: %+v", res)
	}
	if !slices.ContainsFunc(res.Notes, func(n string) bool { return strings.Contains(n, "broken") || strings.Contains(n, "inconsistent") }) {
		t.Fatalf("the fallback was not reported: %q", res.Notes)
	}
	// writes after the kill were lost with QEMU's cache? No: cache=none, and
	// qemu-io writes are synchronous; the reference holds.
	assertPoint(t, r, res.Summary.PointID, d.snapshotRef())
	if cps := d.checkpoints(); len(cps) != 1 || cps[0] != res.Checkpoint {
		t.Fatalf("checkpoints %v, want only the new chain's %s", cps, res.Checkpoint)
	}
	d.write(20*MiB, 64*1024, 0x24)
	next := backup(t, c, r, d.name, libvirt.Options{})
	if next.Kind != "incremental" || next.Summary.BytesRead != 64*1024 {
		t.Fatalf("backup on the new chain: %+v", next)
	}
	assertPoint(t, r, next.Summary.PointID, d.snapshotRef())
}

func killQEMU(t *testing.T, d *testDomain) {
	t.Helper()
	raw, err := os.ReadFile("/run/libvirt/qemu/" + d.name + ".pid")
	if err != nil {
		t.Fatal(err)
	}
	var pid int
	for _, ch := range strings.TrimSpace(string(raw)) {
		pid = pid*10 + int(ch-'0')
	}
	cmdline, _ := os.ReadFile("/proc/" + strings.TrimSpace(string(raw)) + "/cmdline")
	if !strings.Contains(string(cmdline), "guest="+d.name) {
		t.Fatalf("pid %d is not the QEMU of %s", pid, d.name)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100; i++ {
		if st, _, err := d.c.L.DomainGetState(d.dom, 0); err == nil && st == 5 { // shut off
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("libvirt did not notice the killed QEMU")
}

// TestRawDisk: raw disks carry no checkpoints, so every backup is full
// and still byte-exact; --quiesce without a guest agent is
// crash-consistent and says so; --suspend pauses within its bound.
func TestRawDisk(t *testing.T) {
	c := connect(t)
	r := newRepo(t)
	d := newDomain(t, c, "raw", 64*MiB)
	d.start()
	d.write(3*MiB, 1*MiB, 0x31)
	res := backup(t, c, r, d.name, libvirt.Options{Quiesce: true})
	if res.Kind != "full" || res.Checkpoint != "" || res.Consistency != "crash" {
		t.Fatalf("raw backup: %+v", res)
	}
	if !slices.ContainsFunc(res.Notes, func(n string) bool { return strings.Contains(n, "quiesce") }) {
		t.Fatalf("no note about the missing guest agent: %q", res.Notes)
	}
	assertPoint(t, r, res.Summary.PointID, d.snapshotRef())
	d.write(30*MiB, 1*MiB, 0x32)
	res = backup(t, c, r, d.name, libvirt.Options{Suspend: true, MaxSuspend: 5 * time.Second})
	if res.Kind != "full" || res.Consistency != "suspended" {
		t.Fatalf("second raw backup: %+v", res)
	}
	if st, _, _ := c.L.DomainGetState(d.dom, 0); st != 1 {
		t.Fatalf("domain state %d after a suspended backup, want running", st)
	}
	assertPoint(t, r, res.Summary.PointID, d.snapshotRef())
	if len(d.checkpoints()) != 0 {
		t.Fatal("checkpoint on a raw disk")
	}
}

// TestSnapshotMethod: the path for hypervisors without the backup API
// reads the frozen base, merges the overlay back (the domain runs on its
// original file again, no overlay file is left) and leaves the checkpoint
// chain of the backup API usable.
func TestSnapshotMethod(t *testing.T) {
	c := connect(t)
	r := newRepo(t)
	d := newDomain(t, c, "qcow2", 64*MiB)
	d.start()
	d.write(0, 1*MiB, 0x41)
	first := backup(t, c, r, d.name, libvirt.Options{})
	d.write(8*MiB, 2*MiB, 0x42)
	snap := backup(t, c, r, d.name, libvirt.Options{Method: libvirt.MethodSnapshot})
	if snap.Method != libvirt.MethodSnapshot || snap.Kind != "full" {
		t.Fatalf("snapshot backup: %+v", snap)
	}
	assertPoint(t, r, snap.Summary.PointID, d.snapshotRef())
	x, err := c.L.DomainGetXMLDesc(d.dom, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(x, "file='"+d.disk+"'") || strings.Contains(x, "overlay") || strings.Contains(x, "<backingStore type") {
		t.Fatalf("the domain does not run on its own disk again:\n%s", x)
	}
	if left, _ := filepath.Glob(d.disk + ".*overlay*"); len(left) > 0 {
		t.Fatalf("overlay files left: %v", left)
	}
	d.write(12*MiB, 64*1024, 0x43)
	// the checkpoint of the first backup saw the writes through the overlay
	inc := backup(t, c, r, d.name, libvirt.Options{})
	if inc.Kind != "incremental" || inc.Base != first.Summary.PointID {
		t.Fatalf("backup after the snapshot method: %+v (first %s)", inc, first.Summary.PointID)
	}
	assertPoint(t, r, inc.Summary.PointID, d.snapshotRef())
}
