package openstack

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/cli"
	"github.com/cairn-backup/cairn/ingest"
	"github.com/cairn-backup/cairn/ingest/openstack"
	"github.com/cairn-backup/cairn/repo"
)

const rsDiskSize = 1 << 30 // every test volume: 1 GiB

// rsSource is a server the round-trip tests back up and then delete.
type rsSource struct {
	name, flavor, keyName, publicKey, sg, fixedIP, mac string
	images                                             map[string]string // disk -> local image
	devices                                            map[string]string // disk -> device in the original server
	sums                                               map[string]string // disk -> sha256 of the image
	point                                              *repo.RestorePoint
	r                                                  *repo.Repository
}

// makeSource builds a boot-from-volume server with two volumes of known
// content (written through Ceph), its own flavor, key pair and security
// group, on cairn-net with a fixed address, with metadata and tags;
// captures its definition the way `cairn backup openstack` does, backs its
// disks up from the same bytes, and deletes server and volumes again.
func makeSource(t *testing.T, a api) *rsSource {
	sfx := rsSuffix()
	src := &rsSource{name: "cairn-rt-" + sfx, flavor: "cairn-rt-flavor-" + sfx, keyName: "cairn-rt-key-" + sfx,
		sg: "cairn-rt-sg-" + sfx, fixedIP: fmt.Sprintf("10.66.0.%d", 130+time.Now().UnixNano()%120), images: map[string]string{}, sums: map[string]string{}, devices: map[string]string{}}
	dir := t.TempDir()
	src.images["vda"] = rsDiskImage(t, dir, "vda", rsDiskSize, 11, 0, 300<<20, rsDiskSize-(4<<20))
	src.images["vdb"] = rsDiskImage(t, dir, "vdb", rsDiskSize, 12, 64<<20, 512<<20)
	for d, p := range src.images {
		src.sums[d] = fileSHA(t, p)
	}
	// a flavor of its own (same size as cairn.tiny), deleted later to test a missing flavor
	var fl struct {
		Flavor struct{ ID string } `json:"flavor"`
	}
	a.must("POST", "compute", "flavors", map[string]any{"flavor": map[string]any{"name": src.flavor, "vcpus": 1, "ram": 256, "disk": 1}}, &fl)
	t.Cleanup(func() { a.do("DELETE", "compute", "flavors/"+fl.Flavor.ID, nil, nil) })
	var kp struct {
		Keypair struct {
			PublicKey string `json:"public_key"`
		} `json:"keypair"`
	}
	a.must("POST", "compute", "os-keypairs", map[string]any{"keypair": map[string]any{"name": src.keyName}}, &kp)
	src.publicKey = kp.Keypair.PublicKey
	t.Cleanup(func() { a.do("DELETE", "compute", "os-keypairs/"+src.keyName, nil, nil) })
	var sg struct {
		SG struct{ ID string } `json:"security_group"`
	}
	a.must("POST", "network", "security-groups", map[string]any{"security_group": map[string]any{"name": src.sg}}, &sg)
	t.Cleanup(func() { a.do("DELETE", "network", "security-groups/"+sg.SG.ID, nil, nil) })

	vols := map[string]string{}
	for _, d := range []string{"vda", "vdb"} {
		var v struct {
			Volume struct{ ID string } `json:"volume"`
		}
		a.must("POST", "volume", "volumes", map[string]any{"volume": map[string]any{"name": src.name + "-" + d, "size": 1,
			"metadata": map[string]string{"purpose": "cairn test " + d}}}, &v)
		vols[d] = v.Volume.ID
		a.wait("volume available", 5*time.Minute, func() (bool, error) {
			st, err := a.volumeStatus(v.Volume.ID)
			return st == "available", err
		})
		rbdWrite(t, v.Volume.ID, src.images[d])
	}
	a.must("POST", "volume", "volumes/"+vols["vda"]+"/action", map[string]any{"os-set_bootable": map[string]any{"bootable": true}}, nil)
	var netw struct {
		Networks []struct{ ID string } `json:"networks"`
	}
	a.must("GET", "network", "networks?name=cairn-net", nil, &netw)
	if len(netw.Networks) != 1 {
		t.Fatalf("network cairn-net missing: was the cloud started by scripts/openstack-up.sh?")
	}
	var srv struct {
		Server struct{ ID string } `json:"server"`
	}
	a.must("POST", "compute", "servers", map[string]any{"server": map[string]any{
		"name": src.name, "flavorRef": fl.Flavor.ID, "key_name": src.keyName,
		"block_device_mapping_v2": []map[string]any{
			{"uuid": vols["vda"], "source_type": "volume", "destination_type": "volume", "boot_index": 0, "delete_on_termination": false},
			{"uuid": vols["vdb"], "source_type": "volume", "destination_type": "volume", "boot_index": -1, "delete_on_termination": false},
		},
		"networks":        []map[string]any{{"uuid": netw.Networks[0].ID, "fixed_ip": src.fixedIP}},
		"security_groups": []map[string]string{{"name": src.sg}},
		"metadata":        map[string]string{"role": "web", "owner": "cairn-test"},
		"tags":            []string{"cairn-test", "tier-1"},
	}}, &srv)
	a.wait("source server ACTIVE", 5*time.Minute, func() (bool, error) {
		st := serverStatus(t, a, srv.Server.ID)
		if st == "ERROR" {
			t.Fatalf("source server went to ERROR: %s", serverFault(a, srv.Server.ID))
		}
		return st == "ACTIVE", nil
	})

	// capture the definition exactly as the backup does, then back up the same bytes
	ctx := context.Background()
	s, err := a.cl.GetServer(ctx, srv.Server.ID)
	if err != nil {
		t.Fatal(err)
	}
	def, err := a.cl.CaptureDefinition(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	if len(def.Ports) == 1 {
		src.mac = def.Ports[0].MAC
	}
	var specs []ingest.DiskSpec
	byID := map[string]string{}
	for d, id := range vols {
		byID[id] = d
	}
	for _, v := range s.Volumes {
		d := byID[v.ID]
		src.devices[d] = v.Device
		def.Disks = append(def.Disks, openstack.DiskDef{Name: d, VolumeID: v.ID, Device: v.Device, BootIndex: v.BootIndex, Size: rsDiskSize})
		specs = append(specs, ingest.DiskSpec{Name: d, Path: src.images[d]})
	}
	if len(specs) != 2 || src.images[specs[0].Name] == "" || src.images[specs[1].Name] == "" {
		t.Fatalf("source server volumes: %+v", s.Volumes)
	}
	src.r = rsRepo(t)
	p, _, err := ingest.Backup(ctx, src.r, ingest.BackupOptions{VM: src.name, Disks: specs, Source: "openstack",
		Consistency: "crash", Definition: mustJSON(t, def)})
	if err != nil {
		t.Fatal(err)
	}
	src.point = p
	// the disaster: server and volumes are gone
	a.serverGone(srv.Server.ID)
	for _, id := range vols {
		a.volumeGone(id)
	}
	return src
}

func serverStatus(t testing.TB, a api, id string) string {
	var s struct {
		Server struct{ Status string } `json:"server"`
	}
	a.must("GET", "compute", "servers/"+id, nil, &s)
	return s.Server.Status
}

// serverFault is Nova's fault message for a server in ERROR, so a failure
// says why (no valid host, port binding, fixed IP taken) instead of only that.
func serverFault(a api, id string) string {
	var s struct {
		Server struct {
			Fault struct {
				Code    int    `json:"code"`
				Message string `json:"message"`
				Details string `json:"details"`
			} `json:"fault"`
		} `json:"server"`
	}
	if err := a.do("GET", "compute", "servers/"+id, nil, &s); err != nil {
		return "fault unknown: " + err.Error()
	}
	f := s.Server.Fault
	return fmt.Sprintf("%d %s %.300s", f.Code, f.Message, f.Details)
}

// restoredServer is what Nova and Cinder report about a restored server.
type restoredServer struct {
	Status   string            `json:"status"`
	KeyName  string            `json:"key_name"`
	Metadata map[string]string `json:"metadata"`
	Tags     []string          `json:"tags"`
	Flavor   struct {
		Name string `json:"original_name"`
	} `json:"flavor"`
	SGs []struct {
		Name string `json:"name"`
	} `json:"security_groups"`
	Addresses map[string][]struct {
		Addr string `json:"addr"`
	} `json:"addresses"`
	RootDevice string `json:"OS-EXT-SRV-ATTR:root_device_name"`
}

func getRestored(t testing.TB, a api, id string) (restoredServer, map[string]string) {
	var s struct {
		Server restoredServer `json:"server"`
	}
	a.must("GET", "compute", "servers/"+id, nil, &s)
	var atts struct {
		VolumeAttachments []struct {
			Device   string `json:"device"`
			VolumeID string `json:"volumeId"`
		} `json:"volumeAttachments"`
	}
	a.must("GET", "compute", "servers/"+id+"/os-volume_attachments", nil, &atts)
	dev := map[string]string{}
	for _, x := range atts.VolumeAttachments {
		dev[x.VolumeID] = x.Device
	}
	return s.Server, dev
}

// removeRestored deletes what a restore created.
func removeRestored(a api, res *openstack.RestoreResult) {
	if res == nil {
		return
	}
	if res.Server != nil {
		a.serverGone(res.Server.ID)
	}
	for _, v := range res.Volumes {
		a.volumeGone(v.ID)
	}
	for _, p := range res.Ports {
		a.do("DELETE", "network", "ports/"+p.ID, nil, nil)
	}
	for _, g := range res.Groups {
		a.do("DELETE", "network", "security-groups/"+g.ID, nil, nil)
	}
	if res.Keypair != "" {
		a.do("DELETE", "compute", "os-keypairs/"+res.Keypair, nil, nil)
	}
}

func TestRestoreVM(t *testing.T) {
	cl := rsConnect(t, "", nil)
	a := api{t, cl}
	src := makeSource(t, a)
	ctx := context.Background()

	t.Run("round trip", func(t *testing.T) {
		a := api{t, cl}
		before := a.inventory()
		res, err := openstack.RestoreVM(ctx, cl, src.r, src.point, openstack.RestoreVMOptions{Note: func(s string) { t.Log(s) }})
		if err != nil {
			t.Fatal(err)
		}
		s, dev := getRestored(t, a, res.Server.ID)
		checkVolumes(t, src, res, dev)
		if s.Status != "ACTIVE" || s.Flavor.Name != src.flavor || s.KeyName != src.keyName {
			t.Errorf("server: status %s flavor %s key %s; want ACTIVE %s %s", s.Status, s.Flavor.Name, s.KeyName, src.flavor, src.keyName)
		}
		if s.Metadata["role"] != "web" || s.Metadata["owner"] != "cairn-test" || len(s.Metadata) != 2 {
			t.Errorf("metadata %v", s.Metadata)
		}
		sort.Strings(s.Tags)
		if strings.Join(s.Tags, ",") != "cairn-test,tier-1" {
			t.Errorf("tags %v", s.Tags)
		}
		if len(s.SGs) != 1 || s.SGs[0].Name != src.sg {
			t.Errorf("security groups %+v, want %s", s.SGs, src.sg)
		}
		if ips := s.Addresses["cairn-net"]; len(ips) != 1 || ips[0].Addr != src.fixedIP {
			t.Errorf("addresses %+v, want %s on cairn-net", s.Addresses, src.fixedIP)
		}
		if res.Keypair != "" {
			t.Errorf("the existing key pair was recreated as %s", res.Keypair)
		}
		if len(res.Ports) != 1 || res.Ports[0].MAC != src.mac || src.mac == "" {
			t.Errorf("ports %+v: want one port with the original MAC address %s", res.Ports, src.mac)
		}
		removeRestored(a, res)
		noOwnLeaks(t, a, before, src.name, res)
	})

	t.Run("dry run creates nothing", func(t *testing.T) {
		a := api{t, cl}
		before := a.inventory()
		res, err := openstack.RestoreVM(ctx, cl, src.r, src.point, openstack.RestoreVMOptions{DryRun: true, Name: src.name + "-dry"})
		if err != nil {
			t.Fatal(err)
		}
		pl := res.Plan
		if pl.Flavor.Name != src.flavor || len(pl.Volumes) != 2 || pl.Volumes[0].Disk != "vda" || pl.Volumes[0].BootIndex != 0 ||
			pl.KeypairAction != "use" || len(pl.Networks) != 1 || pl.Networks[0].FixedIP != src.fixedIP || len(pl.Checks) == 0 {
			t.Errorf("plan %+v", pl)
		}
		noOwnLeaks(t, a, before, src.name, nil)
	})

	t.Run("cli dry run with json", func(t *testing.T) {
		var out, errOut bytes.Buffer
		code := cli.Main([]string{"cairn", "restore", "vm", src.point.ID[:8], "--repo", src.r.Dir(), "--os-cloud", rsCloudName,
			"--name", src.name + "-cli", "--network", "cairn-net2=10.67.0.199", "--dry-run", "--json"}, &out, &errOut)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errOut.String())
		}
		var res openstack.RestoreResult
		if err := json.Unmarshal(out.Bytes(), &res); err != nil {
			t.Fatalf("--json output does not decode: %v\n%s", err, out.String())
		}
		if !res.DryRun || res.Plan.ServerName != src.name+"-cli" || len(res.Plan.Networks) != 1 ||
			res.Plan.Networks[0].NetworkName != "cairn-net2" || res.Plan.Networks[0].FixedIP != "10.67.0.199" || res.Server != nil {
			t.Errorf("dry-run plan: %s", out.String())
		}
		code = cli.Main([]string{"cairn", "restore", "vm", src.point.ID[:8], "--repo", src.r.Dir(), "--os-cloud", rsCloudName,
			"--network", "no-such-net", "--dry-run"}, &out, &errOut)
		if code == 0 || !strings.Contains(errOut.String(), "no-such-net") {
			t.Errorf("unknown network: exit %d, %s", code, errOut.String())
		}
	})

	t.Run("second project with network mapping", func(t *testing.T) {
		alt := rsConnect(t, rsAltProject, nil)
		a := api{t, alt}
		before := a.inventory()
		res, err := openstack.RestoreVM(ctx, alt, src.r, src.point, openstack.RestoreVMOptions{
			Networks:       []openstack.NetworkChoice{{Network: "cairn-net2", FixedIP: "10.67.0.177"}, {Network: "cairn-nosec"}},
			SecurityGroups: []string{"default"}, Note: func(s string) { t.Log(s) },
		})
		if err != nil {
			t.Fatal(err)
		}
		defer removeRestored(a, res)
		s, dev := getRestored(t, a, res.Server.ID)
		checkVolumes(t, src, res, dev)
		if s.Status != "ACTIVE" {
			t.Errorf("status %s", s.Status)
		}
		if ips := s.Addresses["cairn-net2"]; len(ips) != 1 || ips[0].Addr != "10.67.0.177" {
			t.Errorf("addresses %+v, want 10.67.0.177 on cairn-net2", s.Addresses)
		}
		if len(s.Addresses["cairn-nosec"]) != 1 || len(res.Ports) != 2 {
			t.Errorf("want a port on each network: addresses %+v ports %v", s.Addresses, res.Ports)
		}
		open := 0
		for _, rp := range res.Ports {
			id := rp.ID
			var port struct {
				Port struct {
					PortSecurity bool     `json:"port_security_enabled"`
					SGs          []string `json:"security_groups"`
					ProjectID    string   `json:"project_id"`
				} `json:"port"`
			}
			a.must("GET", "network", "ports/"+id, nil, &port)
			if port.Port.ProjectID != alt.ProjectID() {
				t.Errorf("port %s in project %s", id, port.Port.ProjectID)
			}
			if !port.Port.PortSecurity {
				open++
				if len(port.Port.SGs) != 0 {
					t.Errorf("port without port security has groups %v", port.Port.SGs)
				}
			} else if len(port.Port.SGs) != 1 {
				t.Errorf("port on cairn-net2 has groups %v, want default", port.Port.SGs)
			}
		}
		if open != 1 {
			t.Errorf("%d ports without port security, want 1", open)
		}
		if !strings.Contains(strings.Join(res.Notes, "\n"), "port security disabled") {
			t.Errorf("the restore did not say that a port has no security groups: %v", res.Notes)
		}
		var vol struct {
			Volume struct {
				Project string `json:"os-vol-tenant-attr:tenant_id"`
			} `json:"volume"`
		}
		a.must("GET", "volume", "volumes/"+res.Volumes[0].ID, nil, &vol)
		if vol.Volume.Project != alt.ProjectID() {
			t.Errorf("volume in project %s, want %s", vol.Volume.Project, alt.ProjectID())
		}
		removeRestored(a, res)
		done := res
		res = nil
		noOwnLeaks(t, a, before, src.name, done)
	})

	t.Run("missing flavor and deleted key pair", func(t *testing.T) {
		a := api{t, cl}
		var fl struct {
			Flavors []struct{ ID, Name string } `json:"flavors"`
		}
		a.must("GET", "compute", "flavors", nil, &fl)
		for _, f := range fl.Flavors {
			if f.Name == src.flavor {
				a.must("DELETE", "compute", "flavors/"+f.ID, nil, nil)
			}
		}
		a.must("DELETE", "compute", "os-keypairs/"+src.keyName, nil, nil)
		res, err := openstack.RestoreVM(ctx, cl, src.r, src.point, openstack.RestoreVMOptions{Name: src.name + "-b", PowerOn: new(false)})
		if err != nil {
			t.Fatal(err)
		}
		defer removeRestored(a, res)
		s, dev := getRestored(t, a, res.Server.ID)
		checkVolumes(t, src, res, dev)
		if s.Flavor.Name != "cairn.tiny" || s.KeyName != src.keyName || s.Status != "SHUTOFF" {
			t.Errorf("flavor %s key %s status %s; want cairn.tiny (same size), %s, SHUTOFF", s.Flavor.Name, s.KeyName, s.Status, src.keyName)
		}
		if res.Keypair != src.keyName {
			t.Errorf("key pair not recreated: %q", res.Keypair)
		}
		var kp struct {
			Keypair struct {
				PublicKey string `json:"public_key"`
			} `json:"keypair"`
		}
		a.must("GET", "compute", "os-keypairs/"+src.keyName, nil, &kp)
		if strings.TrimSpace(kp.Keypair.PublicKey) != strings.TrimSpace(src.publicKey) {
			t.Errorf("recreated public key differs")
		}
	})

	t.Run("single volume attached to a server, through an attachment", func(t *testing.T) {
		a := api{t, cl}
		res, err := openstack.RestoreVM(ctx, cl, src.r, src.point, openstack.RestoreVMOptions{Name: src.name + "-c", NoNetwork: true})
		if err != nil {
			t.Fatal(err)
		}
		defer removeRestored(a, res)
		before := a.inventory()
		vr, err := openstack.RestoreVolume(ctx, cl, src.r, src.point, "vdb", openstack.RestoreVolumeOptions{
			AttachTo: res.Server.ID, Transfer: "attach", CephConf: os.Getenv("CAIRN_TEST_RESTORE_CEPH_CONF"),
		})
		if err != nil {
			t.Fatal(err)
		}
		if got := rbdSHA(t, vr.Volumes[0].ID, rsDiskSize); got != src.sums["vdb"] {
			t.Errorf("volume restored through an RBD attachment differs from the backup")
		}
		_, dev := getRestored(t, a, res.Server.ID)
		if dev[vr.Volumes[0].ID] == "" {
			t.Errorf("restored volume not attached to the server: %v", dev)
		}
		// exactly one new volume of ours and no temporary (others' tests
		// create and delete on the same cloud meanwhile)
		after := a.inventory()
		var ours []string
		for _, x := range addedItems(before["volume"], after["volume"]) {
			if strings.Contains(x, src.name) || strings.Contains(x, "cairn-tmp-restore-") {
				ours = append(ours, x)
			}
		}
		for _, x := range addedItems(before["image"], after["image"]) {
			if strings.Contains(x, "cairn-tmp-restore-") {
				ours = append(ours, x)
			}
		}
		if len(ours) != 1 || !strings.HasPrefix(ours[0], vr.Volumes[0].ID+" ") {
			t.Errorf("new volumes and images of the restore: %v; want only volume %s", ours, vr.Volumes[0].ID)
		}
		a.must("DELETE", "compute", "servers/"+res.Server.ID+"/os-volume_attachments/"+vr.Volumes[0].ID, nil, nil)
		a.volumeGone(vr.Volumes[0].ID)
	})

	t.Run("restore point of local image files", func(t *testing.T) {
		a := api{t, cl}
		r := rsRepo(t)
		p := rsImagePoint(t, r, "cairn-img-"+rsSuffix(), ingest.DiskSpec{Name: "vda", Path: src.images["vda"]})
		if _, err := openstack.RestoreVM(ctx, cl, r, p, openstack.RestoreVMOptions{DryRun: true}); err == nil || !strings.Contains(err.Error(), "--flavor") {
			t.Fatalf("restore of an image restore point without --flavor: %v", err)
		}
		res, err := openstack.RestoreVM(ctx, cl, r, p, openstack.RestoreVMOptions{Flavor: "cairn.small", Networks: []openstack.NetworkChoice{{Network: "cairn-net"}}})
		if err != nil {
			t.Fatal(err)
		}
		defer removeRestored(a, res)
		s, _ := getRestored(t, a, res.Server.ID)
		if s.Status != "ACTIVE" || s.Flavor.Name != "cairn.small" || len(s.Addresses["cairn-net"]) != 1 {
			t.Errorf("server %+v", s)
		}
		if got := rbdSHA(t, res.Volumes[0].ID, rsDiskSize); got != src.sums["vda"] {
			t.Errorf("volume bytes differ from the image")
		}
	})
}

// checkVolumes compares the restored volumes' bytes (read through Ceph)
// with the backed-up images, and their place in the server.
func checkVolumes(t *testing.T, src *rsSource, res *openstack.RestoreResult, dev map[string]string) {
	t.Helper()
	if len(res.Volumes) != 2 {
		t.Fatalf("%d volumes restored, want 2", len(res.Volumes))
	}
	for _, v := range res.Volumes {
		if got := rbdSHA(t, v.ID, rsDiskSize); got != src.sums[v.Disk] {
			t.Errorf("disk %s: restored volume %s has sha256 %s, the backup %s", v.Disk, v.ID, got, src.sums[v.Disk])
		}
		if want := src.devices[v.Disk]; dev[v.ID] != want || want == "" {
			t.Errorf("disk %s: volume %s at %q in the server, want %s (boot order/device layout)", v.Disk, v.ID, dev[v.ID], want)
		}
		if v.Bootable != (v.Disk == "vda") {
			t.Errorf("disk %s bootable=%v", v.Disk, v.Bootable)
		}
	}
}
