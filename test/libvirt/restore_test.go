package libvirt_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"

	"github.com/cairn-backup/cairn/cli"
	"github.com/cairn-backup/cairn/ingest"
	"github.com/cairn-backup/cairn/ingest/libvirt"
)

func cairn(t *testing.T, args ...string) []byte {
	t.Helper()
	var out, errb bytes.Buffer
	if code := cli.Main(append([]string{"cairn"}, args...), &out, &errb); code != 0 {
		t.Fatalf("cairn %s: exit %d\n%s%s", strings.Join(args, " "), code, out.String(), errb.String())
	}
	return out.Bytes()
}

// TestCLIBackupAndRestoreDomain: `cairn backup libvirt` and `cairn
// restore libvirt --name NEW --start` through the CLI: the copy is
// defined with a new UUID and MAC, its disk in the pool directory holds
// the backed-up bytes, and it runs.
func TestCLIBackupAndRestoreDomain(t *testing.T) {
	c := connect(t)
	d := newDomain(t, c, "qcow2", 64*MiB)
	d.start()
	d.write(2*MiB, 3*MiB, 0x51)
	rdir := filepath.Join(t.TempDir(), "repo")
	cairn(t, "init", "--repo", rdir, "--encryption", "none")
	var res struct {
		Results []libvirt.Result `json:"results"`
	}
	if err := json.Unmarshal(cairn(t, "backup", "libvirt", "--repo", rdir, "--connect", "qemu:///system", "--domain", d.name, "--json", "--quiet"), &res); err != nil {
		t.Fatal(err)
	}
	if len(res.Results) != 1 || res.Results[0].Kind != "full" {
		t.Fatalf("backup results %+v", res.Results)
	}
	id := res.Results[0].Summary.PointID

	pool := t.TempDir()
	newName := d.name + "-copy"
	t.Cleanup(func() { removeDomain(c, newName) })
	var rr libvirt.RestoreResult
	out := cairn(t, "restore", "libvirt", id, "--repo", rdir, "--connect", "qemu:///system", "--name", newName,
		"--pool-dir", pool, "--format", "qcow2", "--start", "--json", "--quiet")
	if err := json.Unmarshal(out, &rr); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	dom, err := c.L.DomainLookupByName(newName)
	if err != nil {
		t.Fatal(err)
	}
	if st, _, _ := c.L.DomainGetState(dom, 0); st != 1 || !rr.Started {
		t.Fatalf("restored domain state %d, want running", st)
	}
	x, _ := c.L.DomainGetXMLDesc(dom, golibvirt.DomainXMLInactive)
	orig, _ := c.L.DomainGetXMLDesc(d.dom, golibvirt.DomainXMLInactive)
	disk := filepath.Join(pool, newName+"-vda.qcow2")
	if !strings.Contains(x, disk) || strings.Contains(x, "52:54:00:12:34:56") || uuidOf(x) == uuidOf(orig) || uuidOf(x) == "" {
		t.Fatalf("restored definition not rewritten:\n%s", x)
	}
	c.L.DomainDestroyFlags(dom, golibvirt.DomainDestroyGraceful)
	sameImage(t, disk, "qcow2", d.ref, "raw")

	// Restoring under a name in use is refused, and writes nothing.
	var o, e bytes.Buffer
	if code := cli.Main([]string{"cairn", "restore", "libvirt", id, "--repo", rdir, "--pool-dir", pool}, &o, &e); code == 0 || !strings.Contains(e.String(), "exists") {
		t.Fatalf("restore over an existing domain: exit %d %s", code, e.String())
	}
}

func uuidOf(x string) string {
	_, rest, ok := strings.Cut(x, "<uuid>")
	if !ok {
		return ""
	}
	u, _, _ := strings.Cut(rest, "</uuid>")
	return u
}

// TestInterruptedBackupKeepsChain: a backup cancelled while it reads ends
// its libvirt job, writes no restore point, drops its new checkpoint, and
// the next backup continues the chain byte-exact.
func TestInterruptedBackupKeepsChain(t *testing.T) {
	c := connect(t)
	r := newRepo(t)
	d := newDomain(t, c, "qcow2", 512*MiB)
	d.start()
	d.write(0, 1*MiB, 0x61)
	first := backup(t, c, r, d.name, libvirt.Options{})
	for i := int64(0); i < 8; i++ {
		d.write(64*MiB+i*48*MiB, 32*MiB, byte(0x70+i))
	}
	ctx, cancel := context.WithCancel(context.Background())
	prog := &ingest.Progress{}
	go func() {
		for prog.Read.Load() == 0 {
			time.Sleep(time.Millisecond)
		}
		cancel()
	}()
	_, err := c.Backup(ctx, r, d.name, libvirt.Options{Progress: prog})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted backup: %v", err)
	}
	if typ, _, _, _, _, _, _, _, _, _, _, _, _ := c.L.DomainGetJobInfo(d.dom); typ != 0 {
		t.Fatalf("job type %d left running", typ)
	}
	if pts, _ := r.Points(); len(pts) != 1 {
		t.Fatalf("%d restore points after an interrupted backup", len(pts))
	}
	if cps := d.checkpoints(); len(cps) != 1 || cps[0] != first.Checkpoint {
		t.Fatalf("checkpoints %v, want only %s", cps, first.Checkpoint)
	}
	next := backup(t, c, r, d.name, libvirt.Options{})
	if next.Kind != "incremental" || next.Base != first.Summary.PointID {
		t.Fatalf("backup after the interruption: %+v", next)
	}
	assertPoint(t, r, next.Summary.PointID, d.snapshotRef())
}
