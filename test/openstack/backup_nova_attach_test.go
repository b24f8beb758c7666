package openstack

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/imagedata"

	ops "github.com/cairn-backup/cairn/ingest/openstack"
)

// TestBackupTransferAttachNova: --transfer attach when cairn runs on a
// Nova server of the cloud. The test creates a "cairn host" server whose
// metadata asks the test cloud's virt driver (cairn_fakevirt.py) to play
// the hypervisor: a volume Nova attaches to it becomes a read-only loop
// device linked as $CAIRN_DISK_BY_ID_DIR/virtio-<id[:20]>, as udev links
// a virtio disk in a guest. cairn attaches each temporary volume to that
// server through Nova, reads the block device, and detaches it before
// deleting the volume: the restore point must hold the written bytes, and
// no attachment (Nova's or Cinder's), loop device, link, volume or
// snapshot may be left, also after SIGTERM while reading, after SIGKILL
// and `cairn openstack cleanup`, and when the device never appears.
func TestBackupTransferAttachNova(t *testing.T) {
	// The test cloud's directory of by-id links (openstack-up.sh's
	// $STATE/disk-by-id); the cairn processes the test runs inherit it.
	byID := rsEnv("CAIRN_DISK_BY_ID_DIR", "/var/lib/openstack-lite/disk-by-id")
	if st, err := os.Stat(byID); err != nil || !st.IsDir() {
		t.Fatalf("the test cloud's by-id directory %s is missing (%v): start the cloud with scripts/openstack-up.sh", byID, err)
	}
	t.Setenv("CAIRN_DISK_BY_ID_DIR", byID)
	cl := rsConnect(t, "", nil)
	a := api{t, cl}
	srv := newBFVServer(t, a, bkOptions{NoNet: true})
	host := newCairnHost(t, a, "cairn-host-", true)
	watched := map[string]bool{srv.ID: true, srv.Volumes[0].ID: true, srv.Volumes[1].ID: true}
	repoDir, journal := bkRepo(t)
	before := a.leakSet()
	loopsBefore := localDisks(t, byID)

	t.Run("backup", func(t *testing.T) {
		so, se, err := runCairn(t, cloudEnv(journal), "backup", "openstack", "--repo", repoDir, "--server", srv.ID, "--json",
			"--transfer", "attach", "--attach-to-server", host)
		var run bkRun
		if jerr := json.Unmarshal([]byte(so), &run); err != nil || jerr != nil || len(run.Servers) != 1 || run.Servers[0].Error != "" {
			t.Fatalf("backup: %v / %v\nstdout:\n%s\nstderr:\n%s", err, jerr, so, se)
		}
		if n := strings.Count(se, "attached to this host as /dev/"); n != 2 || strings.Count(se, "("+byID+"/virtio-") != 2 {
			t.Errorf("want both disks read through a local block device in %s, saw %d:\n%s", byID, n, se)
		}
		if !strings.Contains(se, "Nova attachment to server") {
			t.Errorf("the run does not say it attaches through Nova:\n%s", se)
		}
		noLeaks(t, a, before, watched)
		journalEmpty(t, journal)
		noHostLeftovers(t, a, host, byID, loopsBefore)
		r, p, def := loadPoint(t, repoDir, run.Servers[0].PointID)
		checkDisks(t, r, p, def, srv)
	})

	t.Run("SIGTERM while reading", func(t *testing.T) {
		killAt(t, repoDir, journal, srv.ID, "attached to this host as", syscall.SIGTERM, "--transfer", "attach", "--attach-to-server", host)
		noLeaks(t, a, before, watched)
		journalEmpty(t, journal)
		noHostLeftovers(t, a, host, byID, loopsBefore)
	})

	t.Run("SIGKILL while reading, then cleanup", func(t *testing.T) {
		// The journal of the killed run holds the Nova attachment: cleanup
		// detaches it through Nova before deleting the volume.
		killAt(t, repoDir, journal, srv.ID, "attached to this host as", syscall.SIGKILL, "--transfer", "attach", "--attach-to-server", host)
		so, se, err := runCairn(t, cloudEnv(journal), "openstack", "cleanup", "--json")
		var rep ops.CleanupReport
		if err != nil || json.Unmarshal([]byte(so), &rep) != nil || rep.Journals != 1 || rep.Deleted == 0 {
			t.Fatalf("cleanup: %v\n%s\n%s", err, so, se)
		}
		t.Logf("cleanup after SIGKILL: %d temporaries deleted", rep.Deleted)
		noLeaks(t, a, before, watched)
		journalEmpty(t, journal)
		noHostLeftovers(t, a, host, byID, loopsBefore)
	})

	t.Run("device never appears", func(t *testing.T) {
		// A server whose hypervisor connects nothing to this host: Nova
		// attaches, no device appears; cairn must say what it looked for
		// and detach before deleting.
		other := newCairnHost(t, a, "not-cairn-host-", false)
		so, se, err := runCairn(t, cloudEnv(journal), "backup", "openstack", "--repo", repoDir, "--server", srv.ID, "--json",
			"--transfer", "attach", "--attach-to-server", other, "--device-timeout", "5s")
		var run bkRun
		json.Unmarshal([]byte(so), &run)
		if err == nil || len(run.Servers) != 1 || !strings.Contains(run.Servers[0].Error, "no block device appeared") ||
			!strings.Contains(run.Servers[0].Error, "virtio-") || !strings.Contains(run.Servers[0].Error, other) {
			t.Fatalf("want a failure naming the volume, the server and the device looked for; got %v\nstdout:\n%s\nstderr:\n%s", err, so, se)
		}
		t.Logf("error: %s", run.Servers[0].Error)
		noLeaks(t, a, before, watched)
		journalEmpty(t, journal)
		noHostLeftovers(t, a, other, byID, loopsBefore)
	})

	t.Run("not a server of this cloud", func(t *testing.T) {
		_, se, err := runCairn(t, cloudEnv(journal), "backup", "openstack", "--repo", repoDir, "--server", srv.ID,
			"--transfer", "attach", "--attach-to-server", "00000000-1111-2222-3333-444444444444")
		if err == nil || !strings.Contains(se, "no such server in this cloud") {
			t.Errorf("want a clear error for an unknown server; got %v\n%s", err, se)
		}
		_, se, err = runCairn(t, cloudEnv(journal), "backup", "openstack", "--repo", repoDir, "--server", srv.ID,
			"--attach-to-server", host)
		if err == nil || !strings.Contains(se, "needs --transfer attach") {
			t.Errorf("want --attach-to-server refused without --transfer attach; got %v\n%s", err, se)
		}
		noLeaks(t, a, before, watched)
	})
}

// newCairnHost boots a small image-backed server that stands for the
// machine cairn runs on; with localDisks the test cloud's virt driver
// turns the RBD volumes attached to it into local block devices.
func newCairnHost(t *testing.T, a api, prefix string, localDisks bool) string {
	t.Helper()
	sfx := rsSuffix()
	img := rsDiskImage(t, t.TempDir(), "host", 1<<20, 5, 0)
	var im struct{ ID string }
	a.must("POST", "image", "images", map[string]any{"name": prefix + sfx, "disk_format": "raw", "container_format": "bare"}, &im)
	t.Cleanup(func() { a.do("DELETE", "image", "images/"+im.ID, nil, nil) })
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := imagedata.Upload(context.Background(), a.cl.Image, im.ID, f).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	a.wait("host image active", 2*time.Minute, func() (bool, error) {
		var b struct{ Status string }
		err := a.do("GET", "image", "images/"+im.ID, nil, &b)
		return b.Status == "active", err
	})
	md := map[string]string{"role": "cairn-host"}
	if localDisks {
		md["cairn_test_local_disks"] = "yes"
	}
	return createServer(t, a, map[string]any{"name": prefix + sfx, "flavorRef": flavorID(t, a, "cairn.tiny"),
		"imageRef": im.ID, "networks": "none", "metadata": md})
}

// localDisks lists the loop devices the test cloud's virt driver made
// (their backing files are its cairn-disk-<volume>.raw).
func localDisks(t *testing.T, byID string) []string {
	t.Helper()
	out, err := exec.Command("losetup", "-l", "-n", "-O", "NAME,BACK-FILE").Output()
	if err != nil {
		t.Fatalf("losetup: %v", err)
	}
	var ds []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, "cairn-disk-") {
			ds = append(ds, strings.Join(strings.Fields(l), " "))
		}
	}
	return ds
}

// noHostLeftovers checks that the cairn host has no volume attached and
// that no loop device or by-id link of the virt driver is left.
func noHostLeftovers(t *testing.T, a api, host, byID string, loopsBefore []string) {
	t.Helper()
	var b struct {
		Attachments []struct{ VolumeID string } `json:"volumeAttachments"`
	}
	a.must("GET", "compute", "servers/"+host+"/os-volume_attachments", nil, &b)
	if len(b.Attachments) != 0 {
		t.Errorf("volumes still attached to the cairn host %s: %+v", host, b.Attachments)
	}
	if got := localDisks(t, byID); strings.Join(got, ",") != strings.Join(loopsBefore, ",") {
		t.Errorf("loop devices of attached volumes left: %v (before: %v)", got, loopsBefore)
	}
	links, _ := filepath.Glob(filepath.Join(byID, "virtio-*"))
	if len(links) != 0 {
		t.Errorf("by-id links left in %s: %v", byID, links)
	}
}
