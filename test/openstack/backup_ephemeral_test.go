package openstack

import (
	"context"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/imagedata"

	ops "github.com/cairn-backup/cairn/ingest/openstack"
)

// TestBackupEphemeralRoot: a server whose root disk comes from an image
// (not a volume), with a volume attached, a key pair, tags, metadata and
// a port. The root disk is read through a Nova image snapshot (the test
// cloud's virt driver, scripts/openstack/cairn_fakevirt.py, uploads the
// root disk, which for a fake server is its base image), the volume
// through a Cinder snapshot. The restore point's root disk must hold the
// base image's bytes and its volume disk the bytes written through Ceph;
// the definition must match what Nova, Cinder and Neutron report; no
// temporary may be left. The restore point then comes back through
// `restore vm` as a boot-from-volume server (restoreEphemeral).
func TestBackupEphemeralRoot(t *testing.T) {
	cl := rsConnect(t, "", nil)
	a := api{t, cl}
	sfx := rsSuffix()
	dir := t.TempDir()
	const rootSize = 256 << 20
	rootImg := rsDiskImage(t, dir, "root", rootSize, 99, 0, 64<<20, rootSize-(4<<20))
	rootSHA := fileSHA(t, rootImg)
	props := map[string]string{"os_distro": "cairntest", "hw_disk_bus": "virtio"}
	var im struct{ ID string }
	req := map[string]any{"name": "bk-eph-" + sfx, "disk_format": "raw", "container_format": "bare"}
	for k, v := range props {
		req[k] = v
	}
	a.must("POST", "image", "images", req, &im)
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
	key, pub := newKeypair(t, a, "bk-eph-"+sfx)
	netID := networkID(t, a, "cairn-net")
	tags := []string{"cairn-eph", "daily"}
	md := map[string]string{"backup": "yes", "role": "ephemeral"}
	srvID := createServer(t, a, map[string]any{"name": "bk-eph-" + sfx, "flavorRef": flavorID(t, a, "cairn.tiny"), "imageRef": im.ID,
		"key_name": key, "tags": tags, "metadata": md, "networks": []map[string]any{{"uuid": netID}},
		"block_device_mapping_v2": []map[string]any{
			{"boot_index": 0, "uuid": im.ID, "source_type": "image", "destination_type": "local"},
			{"boot_index": -1, "uuid": vol.ID, "source_type": "volume", "destination_type": "volume", "delete_on_termination": false},
		}})
	watched := map[string]bool{srvID: true, vol.ID: true}
	repoDir, journal := bkRepo(t)
	before := a.leakSet()

	res := backupServer(t, repoDir, journal, srvID)
	if res.Method != ops.MethodNovaImage || res.Consistency != ops.ConsistencyCrash || res.Summary == nil {
		t.Errorf("result %+v; want crash consistency via %s", res, ops.MethodNovaImage)
	}
	noLeaks(t, a, before, watched)
	journalEmpty(t, journal)

	r, p, def := loadPoint(t, repoDir, res.PointID)
	if p.Source != "openstack" || p.Consistency != ops.ConsistencyCrash || p.VM != "bk-eph-"+sfx {
		t.Errorf("restore point: source %q consistency %q vm %q", p.Source, p.Consistency, p.VM)
	}
	if len(p.Disks) != 2 || len(def.Disks) != 2 {
		t.Fatalf("restore point has %d disks (definition %+v), want the root disk and the volume", len(p.Disks), def.Disks)
	}
	var sawRoot, sawVol bool
	for _, d := range def.Disks {
		sum, size := diskSHA(t, r, p, d.Name)
		switch {
		case d.VolumeID == vol.ID:
			sawVol = true
			if sum != vol.SHA || size != vol.Size {
				t.Errorf("volume disk %s: %d bytes sha256 %s, want %d %s", d.Name, size, sum, vol.Size, vol.SHA)
			}
			if d.ImageID != "" || d.BootIndex == 0 {
				t.Errorf("volume disk %+v is described as the image-backed root (restore would boot from it)", d)
			}
		case d.VolumeID == "" && d.BootIndex == 0:
			sawRoot = true
			if sum != rootSHA || size != rootSize {
				t.Errorf("root disk %s: %d bytes sha256 %s, want the base image's %d bytes %s", d.Name, size, sum, int64(rootSize), rootSHA)
			}
			if d.ImageID != im.ID {
				t.Errorf("root disk %s: image %q, want %s", d.Name, d.ImageID, im.ID)
			}
		default:
			t.Errorf("unexpected disk %+v", d)
		}
	}
	if !sawRoot || !sawVol {
		t.Errorf("disks %+v: root disk found %v, volume disk found %v", def.Disks, sawRoot, sawVol)
	}
	checkEphemeralDefinition(t, a, def, srvID, im.ID, props, vol.ID, netID, key, pub, tags, md)
	restoreEphemeral(t, a, r, p, "bk-eph-"+sfx+"-restored", rootSHA, rootSize, vol)
}

// checkEphemeralDefinition compares the captured definition of an
// image-backed server with what Nova, Glance, Cinder and Neutron report.
func checkEphemeralDefinition(t *testing.T, a api, def *ops.Definition, srvID, imageID string, props map[string]string,
	volID, netID, key, pub string, tags []string, md map[string]string) {
	t.Helper()
	var sb struct {
		Server struct {
			Name   string `json:"name"`
			AZ     string `json:"OS-EXT-AZ:availability_zone"`
			Flavor struct {
				Name  string `json:"original_name"`
				VCPUs int    `json:"vcpus"`
				RAM   int    `json:"ram"`
				Disk  int    `json:"disk"`
			} `json:"flavor"`
		} `json:"server"`
	}
	a.cl.Compute.Microversion = ops.NovaMicroversion
	a.must("GET", "compute", "servers/"+srvID, nil, &sb)
	s := sb.Server
	if def.Method != ops.MethodNovaImage || def.Consistency != ops.ConsistencyCrash {
		t.Errorf("definition method %q consistency %q", def.Method, def.Consistency)
	}
	if def.Server.ID != srvID || def.Server.Name != s.Name || def.Server.BootFromVolume || def.Server.ImageID != imageID || def.Server.AZ != s.AZ {
		t.Errorf("server: got %+v, Nova says name %s az %s image %s (image-backed)", def.Server, s.Name, s.AZ, imageID)
	}
	if def.Flavor.Name != s.Flavor.Name || def.Flavor.VCPUs != s.Flavor.VCPUs || def.Flavor.RAM != s.Flavor.RAM || def.Flavor.Disk != s.Flavor.Disk {
		t.Errorf("flavor: got %+v, Nova says %+v", def.Flavor, s.Flavor)
	}
	got := append([]string(nil), def.Server.Tags...)
	sort.Strings(got)
	if strings.Join(got, ",") != strings.Join(tags, ",") {
		t.Errorf("tags: got %v want %v", def.Server.Tags, tags)
	}
	for k, v := range md {
		if def.Server.Metadata[k] != v {
			t.Errorf("metadata %s: got %q want %q", k, def.Server.Metadata[k], v)
		}
	}
	for k, v := range props {
		if def.ImageProperties[k] != v {
			t.Errorf("image property %s: got %q want %q (all: %v)", k, def.ImageProperties[k], v, def.ImageProperties)
		}
	}
	if def.Keypair == nil || def.Keypair.Name != key || strings.TrimSpace(def.Keypair.PublicKey) != pub {
		t.Errorf("keypair: got %+v, want %s with key %s", def.Keypair, key, pub)
	}
	if len(def.Volumes) != 1 || def.Volumes[0].ID != volID {
		t.Fatalf("volumes: got %+v, want only %s", def.Volumes, volID)
	}
	var vb struct {
		Volume struct {
			Size        int    `json:"size"`
			Type        string `json:"volume_type"`
			Attachments []struct {
				Device string `json:"device"`
			} `json:"attachments"`
		} `json:"volume"`
	}
	a.must("GET", "volume", "volumes/"+volID, nil, &vb)
	dv, v := def.Volumes[0], vb.Volume
	if dv.Size != v.Size || dv.Type != v.Type || len(v.Attachments) != 1 || dv.Device != v.Attachments[0].Device || dv.BootIndex == 0 {
		t.Errorf("volume: got %+v, Cinder says %+v (not the boot disk)", dv, v)
	}
	var pb struct {
		Ports []struct {
			ID       string `json:"id"`
			Mac      string `json:"mac_address"`
			FixedIPs []struct {
				IP string `json:"ip_address"`
			} `json:"fixed_ips"`
		} `json:"ports"`
	}
	a.must("GET", "network", "ports?device_id="+srvID, nil, &pb)
	if len(pb.Ports) != 1 || len(def.Ports) != 1 {
		t.Fatalf("ports: got %+v, Neutron has %d", def.Ports, len(pb.Ports))
	}
	if dp, np := def.Ports[0], pb.Ports[0]; dp.ID != np.ID || dp.MAC != np.Mac || dp.NetworkID != netID ||
		len(dp.FixedIPs) != 1 || len(np.FixedIPs) != 1 || dp.FixedIPs[0].IPAddress != np.FixedIPs[0].IP {
		t.Errorf("port: got %+v, Neutron says %+v", dp, np)
	}
}
