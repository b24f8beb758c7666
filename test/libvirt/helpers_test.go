package libvirt_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"

	"github.com/cairn-backup/cairn/ingest"
	"github.com/cairn-backup/cairn/ingest/libvirt"
	"github.com/cairn-backup/cairn/repo"
)

const MiB = 1 << 20

// connect reaches the libvirtd that scripts/libvirt-up.sh starts. With
// CAIRN_REQUIRE_LIBVIRT=1 an unreachable daemon fails the test.
func connect(t *testing.T) *libvirt.Conn {
	t.Helper()
	require := os.Getenv("CAIRN_REQUIRE_LIBVIRT") == "1"
	fail := t.Skipf
	if require {
		fail = t.Fatalf
	}
	if os.Getuid() != 0 {
		fail("libvirt tests need root (start libvirtd with scripts/libvirt-up.sh)")
	}
	for _, tool := range []string{"qemu-img", "qemu-nbd"} {
		if _, err := exec.LookPath(tool); err != nil {
			fail("%s not installed (scripts/libvirt-up.sh installs it)", tool)
		}
	}
	c, err := libvirt.Connect("qemu:///system")
	if err != nil {
		fail("libvirtd unreachable (run scripts/libvirt-up.sh as root): %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// testDomain is a TCG domain without an OS (SeaBIOS idles) and a
// reference image that follows every write made into its disk.
type testDomain struct {
	t    *testing.T
	c    *libvirt.Conn
	dom  golibvirt.Domain
	name string
	disk string // image file
	ref  string // raw file with the bytes the disk must hold
	size int64
}

func newDomain(t *testing.T, c *libvirt.Conn, format string, size int64) *testDomain {
	t.Helper()
	dir := t.TempDir()
	var b [4]byte
	rand.Read(b[:])
	d := &testDomain{t: t, c: c, name: "cairn-test-" + hex.EncodeToString(b[:]), size: size,
		disk: filepath.Join(dir, "disk."+format), ref: filepath.Join(dir, "ref.raw")}
	run(t, "qemu-img", "create", "-q", "-f", format, d.disk, fmt.Sprint(size))
	if err := os.WriteFile(d.ref, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(d.ref, size); err != nil {
		t.Fatal(err)
	}
	x := fmt.Sprintf(`<domain type='qemu'>
  <name>%s</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <on_poweroff>destroy</on_poweroff>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='%s' cache='none'/>
      <source file='%s'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <interface type='user'><mac address='52:54:00:12:34:56'/><model type='virtio'/></interface>
    <controller type='usb' model='none'/>
    <memballoon model='none'/>
  </devices>
</domain>`, d.name, format, d.disk)
	dom, err := c.L.DomainDefineXML(x)
	if err != nil {
		t.Fatalf("define %s: %v", d.name, err)
	}
	d.dom = dom
	t.Cleanup(func() { removeDomain(c, d.name) })
	return d
}

// removeDomain stops and undefines a domain with its checkpoints.
func removeDomain(c *libvirt.Conn, name string) {
	dom, err := c.L.DomainLookupByName(name)
	if err != nil {
		return
	}
	c.L.DomainAbortJob(dom)
	c.L.DomainDestroy(dom)
	c.L.DomainUndefineFlags(dom, golibvirt.DomainUndefineCheckpointsMetadata|golibvirt.DomainUndefineSnapshotsMetadata|golibvirt.DomainUndefineNvram)
}

func (d *testDomain) start() {
	d.t.Helper()
	if err := d.c.L.DomainCreate(d.dom); err != nil {
		d.t.Fatalf("start %s: %v", d.name, err)
	}
}

// shutdown stops QEMU with SIGTERM, which writes the persistent bitmaps
// back into the qcow2 file.
func (d *testDomain) shutdown() {
	d.t.Helper()
	if err := d.c.L.DomainDestroyFlags(d.dom, golibvirt.DomainDestroyGraceful); err != nil {
		d.t.Fatalf("destroy --graceful %s: %v", d.name, err)
	}
}

// write writes pattern bytes into the running disk through HMP qemu-io
// (on the virtio backend: the node name has a permission conflict) and
// into the reference. qemu-io's own errors do not come back; a lost write
// shows up as a difference from the reference.
func (d *testDomain) write(off, length int64, pattern byte) {
	d.t.Helper()
	cmd := fmt.Sprintf(`qemu-io -d /machine/peripheral/virtio-disk0/virtio-backend "write -P 0x%02x %d %d"`, pattern, off, length)
	out, err := d.c.L.QEMUDomainMonitorCommand(d.dom, cmd, 1) // 1: HMP
	if err != nil || strings.TrimSpace(out) != "" {
		d.t.Fatalf("qemu-io write into %s: %v %s", d.name, err, out)
	}
	d.refWrite(off, length, pattern)
}

// writeOffline writes into the image file of the shut-off domain.
func (d *testDomain) writeOffline(off, length int64, pattern byte, format string) {
	d.t.Helper()
	run(d.t, "qemu-io", "-f", format, "-c", fmt.Sprintf("write -P 0x%02x %d %d", pattern, off, length), d.disk)
	d.refWrite(off, length, pattern)
}

func (d *testDomain) refWrite(off, length int64, pattern byte) {
	d.t.Helper()
	f, err := os.OpenFile(d.ref, os.O_WRONLY, 0)
	if err != nil {
		d.t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(bytes.Repeat([]byte{pattern}, int(length)), off); err != nil {
		d.t.Fatal(err)
	}
}

// snapshotRef copies the reference as it is now.
func (d *testDomain) snapshotRef() string {
	d.t.Helper()
	b, err := os.ReadFile(d.ref)
	if err != nil {
		d.t.Fatal(err)
	}
	p := filepath.Join(d.t.TempDir(), "ref-copy.raw")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		d.t.Fatal(err)
	}
	return p
}

func (d *testDomain) checkpoints() []string {
	d.t.Helper()
	cps, _, err := d.c.L.DomainListAllCheckpoints(d.dom, 1, 0)
	if err != nil {
		d.t.Fatal(err)
	}
	var names []string
	for _, c := range cps {
		names = append(names, c.Name)
	}
	return names
}

func newRepo(t *testing.T) *repo.Repository {
	t.Helper()
	r, err := repo.Init(filepath.Join(t.TempDir(), "repo"), repo.InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func backup(t *testing.T, c *libvirt.Conn, r *repo.Repository, name string, o libvirt.Options) *libvirt.Result {
	t.Helper()
	o.Warn = func(msg string) { t.Log("note: " + msg) }
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	res, err := c.Backup(ctx, r, name, o)
	if err != nil {
		t.Fatalf("backup of %s: %v", name, err)
	}
	t.Logf("%s backup via %s: read %d bytes, changed %d, %s", res.Kind, res.Method, res.Summary.BytesRead, res.ChangedRead, res.Consistency)
	return res
}

// assertPoint restores disk vda of restore point id and compares it with want.
func assertPoint(t *testing.T, r *repo.Repository, id, want string) {
	t.Helper()
	p, err := r.LoadPoint(id)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "restored.raw")
	if _, err := ingest.RestoreDisk(context.Background(), r, p, "vda", out, ingest.RestoreOptions{Format: "raw"}); err != nil {
		t.Fatal(err)
	}
	sameImage(t, out, "raw", want, "raw")
}

func sameImage(t *testing.T, a, fa, b, fb string) {
	t.Helper()
	out, err := exec.Command("qemu-img", "compare", "-U", "-f", fa, "-F", fb, a, b).CombinedOutput()
	if err != nil {
		t.Fatalf("%s and %s differ: %v: %s", a, b, err, out)
	}
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}
