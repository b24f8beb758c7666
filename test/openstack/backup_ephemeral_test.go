package openstack

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/imagedata"

	ops "github.com/cairn-backup/cairn/ingest/openstack"
)

// snapshotsUpload reports whether the test cloud's virt driver uploads
// image snapshots (scripts/openstack/cairn_fakevirt.py); Nova's stock
// fake driver leaves them empty.
func snapshotsUpload() bool {
	state := rsEnv("CAIRN_OS_STATE", "/var/lib/openstack-lite")
	b, _ := os.ReadFile(filepath.Join(state, "etc", "nova", "nova.conf"))
	return strings.Contains(string(b), "cairn_fakevirt")
}

// TestBackupEphemeralRoot: a server whose root disk comes from an image
// (not a volume), with a volume attached. The root disk is read through a
// Nova image snapshot, the volume through a Cinder snapshot. With Nova's
// stock fake driver the snapshot never receives data: then the backup
// must fail clearly at the snapshot step and leave nothing behind.
func TestBackupEphemeralRoot(t *testing.T) {
	cl := rsConnect(t, "", nil)
	a := api{t, cl}
	sfx := rsSuffix()
	dir := t.TempDir()
	const rootSize = 256 << 20
	rootImg := rsDiskImage(t, dir, "root", rootSize, 99, 0, 64<<20, rootSize-(4<<20))
	rootSHA := fileSHA(t, rootImg)
	var im struct{ ID string }
	a.must("POST", "image", "images", map[string]any{"name": "bk-eph-" + sfx, "disk_format": "raw", "container_format": "bare"}, &im)
	t.Cleanup(func() { a.do("DELETE", "image", "images/"+im.ID, nil, nil) })
	f, err := os.Open(rootImg)
	if err != nil {
		t.Fatal(err)
	}
	if err := imagedata.Upload(context.Background(), cl.Image, im.ID, f).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	a.wait("image active", 5*time.Minute, func() (bool, error) {
		var b struct{ Status string }
		err := a.do("GET", "image", "images/"+im.ID, nil, &b)
		return b.Status == "active", err
	})
	var vo struct {
		Volume struct{ ID string } `json:"volume"`
	}
	a.must("POST", "volume", "volumes", map[string]any{"volume": map[string]any{"name": "bk-eph-" + sfx, "size": 1, "volume_type": "rbd"}}, &vo)
	vol := bkVolume{ID: vo.Volume.ID, Size: 1 << 30}
	t.Cleanup(func() { a.volumeGone(vol.ID) })
	a.wait("volume available", 5*time.Minute, func() (bool, error) { st, err := a.volumeStatus(vol.ID); return st == "available", err })
	vol.Image = rsDiskImage(t, dir, "vol", vol.Size, 98, 1<<20, 500<<20)
	rbdWrite(t, vol.ID, vol.Image)
	vol.SHA = fileSHA(t, vol.Image)
	srvID := createServer(t, a, map[string]any{"name": "bk-eph-" + sfx, "flavorRef": flavorID(t, a, "cairn.tiny"), "imageRef": im.ID, "networks": "none",
		"block_device_mapping_v2": []map[string]any{
			{"boot_index": 0, "uuid": im.ID, "source_type": "image", "destination_type": "local"},
			{"boot_index": -1, "uuid": vol.ID, "source_type": "volume", "destination_type": "volume"},
		}})
	watched := map[string]bool{srvID: true, vol.ID: true}
	repoDir, journal := bkRepo(t)
	before := a.leakSet()
	so, se, err := runCairn(t, cloudEnv(journal), "backup", "openstack", "--repo", repoDir, "--server", srvID, "--json")
	var run bkRun
	if jerr := json.Unmarshal([]byte(so), &run); jerr != nil || len(run.Servers) != 1 {
		t.Fatalf("backup: %v / %v\n%s\n%s", err, jerr, so, se)
	}
	res := run.Servers[0]
	defer noLeaks(t, a, before, watched)
	if !snapshotsUpload() {
		t.Logf("stock fake virt driver: %s", res.Error)
		if err == nil || res.Step != "snapshot" || !strings.Contains(res.Error, "never received data") || !strings.Contains(res.Error, srvID) {
			t.Fatalf("want a clear failure at the snapshot step, got %v: %+v", err, res)
		}
		return
	}
	if err != nil || res.Error != "" {
		t.Fatalf("backup: %v %s\n%s", err, res.Error, se)
	}
	if res.Method != ops.MethodNovaImage {
		t.Errorf("method %s, want %s", res.Method, ops.MethodNovaImage)
	}
	r, p, def := loadPoint(t, repoDir, res.PointID)
	for _, d := range def.Disks {
		sum, size := diskSHA(t, r, p, d.Name)
		switch {
		case d.VolumeID == vol.ID:
			if sum != vol.SHA || size != vol.Size {
				t.Errorf("volume disk %s differs", d.Name)
			}
		case d.BootIndex == 0:
			if sum != rootSHA || size != rootSize {
				t.Errorf("root disk %s: %d bytes %s, want %d %s", d.Name, size, sum, int64(rootSize), rootSHA)
			}
		default:
			t.Errorf("unexpected disk %+v", d)
		}
	}
	if len(def.Disks) != 2 || def.Server.BootFromVolume || def.Server.ImageID != im.ID {
		t.Errorf("definition: disks %+v, server %+v", def.Disks, def.Server)
	}
}
