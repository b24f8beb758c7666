package openstack

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	ops "github.com/cairn-backup/cairn/ingest/openstack"
	"github.com/cairn-backup/cairn/repo"
)

// bkRun is what `cairn backup openstack --json` prints.
type bkRun struct {
	Servers []ops.ServerResult `json:"servers"`
	OK      bool               `json:"ok"`
}

// bkRepo initialises an unencrypted repository for the binary.
func bkRepo(t *testing.T) (dir, journal string) {
	t.Helper()
	base := t.TempDir()
	dir, journal = filepath.Join(base, "repo"), filepath.Join(base, "journal")
	if _, se, err := runCairn(t, nil, "init", "--repo", dir, "--encryption", "none"); err != nil {
		t.Fatalf("cairn init: %v: %s", err, se)
	}
	return dir, journal
}

// backupServer runs `cairn backup openstack --server ID --json` and
// returns the one server's result.
func backupServer(t *testing.T, repoDir, journal, server string, extra ...string) ops.ServerResult {
	t.Helper()
	args := append([]string{"backup", "openstack", "--repo", repoDir, "--server", server, "--json"}, extra...)
	so, se, err := runCairn(t, cloudEnv(journal), args...)
	var run bkRun
	if jerr := json.Unmarshal([]byte(so), &run); jerr != nil || len(run.Servers) != 1 {
		t.Fatalf("backup: %v / %v\nstdout:\n%s\nstderr:\n%s", err, jerr, so, se)
	}
	if err != nil || run.Servers[0].Error != "" {
		t.Fatalf("backup failed: %v: %s\nstderr:\n%s", err, run.Servers[0].Error, se)
	}
	t.Logf("backup of %s: %s via %s, timings %v", server, run.Servers[0].Consistency, run.Servers[0].Method, run.Servers[0].Timings)
	return run.Servers[0]
}

func loadPoint(t *testing.T, repoDir, id string) (*repo.Repository, *repo.RestorePoint, *ops.Definition) {
	t.Helper()
	r, err := repo.Open(repoDir, repo.Credentials{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	p, err := r.LoadPoint(id)
	if err != nil {
		t.Fatal(err)
	}
	var def ops.Definition
	if err := json.Unmarshal(p.Definition, &def); err != nil {
		t.Fatalf("definition: %v", err)
	}
	return r, p, &def
}

// checkDisks compares every restore point disk with the bytes written
// into its volume.
func checkDisks(t *testing.T, r *repo.Repository, p *repo.RestorePoint, def *ops.Definition, srv *bkServer) {
	t.Helper()
	if len(p.Disks) != len(srv.Volumes) || len(def.Disks) != len(srv.Volumes) {
		t.Fatalf("restore point has %d disks (definition %d), want %d", len(p.Disks), len(def.Disks), len(srv.Volumes))
	}
	for _, v := range srv.Volumes {
		var name string
		for _, d := range def.Disks {
			if d.VolumeID == v.ID {
				name = d.Name
			}
		}
		if name == "" {
			t.Fatalf("volume %s is not in the restore point's disks %+v", v.ID, def.Disks)
		}
		sum, size := diskSHA(t, r, p, name)
		if size != v.Size || sum != v.SHA {
			t.Errorf("disk %s (volume %s): %d bytes sha256 %s, want %d bytes %s", name, v.ID, size, sum, v.Size, v.SHA)
		}
	}
}

// checkDefinition compares the captured definition with what Nova,
// Cinder and Neutron report now.
func checkDefinition(t *testing.T, a api, def *ops.Definition, srv *bkServer, tags []string, md map[string]string) {
	t.Helper()
	var sb struct {
		Server struct {
			ID, Name, KeyName string
			Status            string            `json:"status"`
			AZ                string            `json:"OS-EXT-AZ:availability_zone"`
			Tags              []string          `json:"tags"`
			Metadata          map[string]string `json:"metadata"`
			Flavor            struct {
				Name       string            `json:"original_name"`
				VCPUs      int               `json:"vcpus"`
				RAM        int               `json:"ram"`
				ExtraSpecs map[string]string `json:"extra_specs"`
			} `json:"flavor"`
		} `json:"server"`
	}
	a.cl.Compute.Microversion = ops.NovaMicroversion
	a.must("GET", "compute", "servers/"+srv.ID, nil, &sb)
	s := sb.Server
	if def.Server.ID != srv.ID || def.Server.Name != s.Name || !def.Server.BootFromVolume || def.Server.AZ != s.AZ {
		t.Errorf("server: got %+v, Nova says id %s name %s az %s (boot from volume)", def.Server, srv.ID, s.Name, s.AZ)
	}
	if def.Flavor.Name != s.Flavor.Name || def.Flavor.VCPUs != s.Flavor.VCPUs || def.Flavor.RAM != s.Flavor.RAM || len(def.Flavor.ExtraSpecs) != len(s.Flavor.ExtraSpecs) {
		t.Errorf("flavor: got %+v, Nova says %+v", def.Flavor, s.Flavor)
	}
	sort.Strings(def.Server.Tags)
	sort.Strings(tags)
	if strings.Join(def.Server.Tags, ",") != strings.Join(tags, ",") {
		t.Errorf("tags: got %v want %v", def.Server.Tags, tags)
	}
	for k, v := range md {
		if def.Server.Metadata[k] != v {
			t.Errorf("metadata %s: got %q want %q", k, def.Server.Metadata[k], v)
		}
	}
	if def.Keypair == nil || def.Keypair.Name != srv.Keypair || strings.TrimSpace(def.Keypair.PublicKey) != srv.PubKey {
		t.Errorf("keypair: got %+v, want %s with key %s", def.Keypair, srv.Keypair, srv.PubKey)
	}
	if len(def.Volumes) != 2 {
		t.Fatalf("volumes: got %d, want 2", len(def.Volumes))
	}
	for _, dv := range def.Volumes {
		var vb struct {
			Volume struct {
				Size        int    `json:"size"`
				Type        string `json:"volume_type"`
				Bootable    string `json:"bootable"`
				Attachments []struct {
					Device string `json:"device"`
				} `json:"attachments"`
				ImageMeta map[string]string `json:"volume_image_metadata"`
			} `json:"volume"`
		}
		a.must("GET", "volume", "volumes/"+dv.ID, nil, &vb)
		v := vb.Volume
		boot := dv.ID == srv.Volumes[0].ID
		if dv.Size != v.Size || dv.Type != v.Type || dv.Bootable != (v.Bootable == "true") || len(v.Attachments) != 1 ||
			dv.Device != v.Attachments[0].Device || (dv.BootIndex == 0) != boot || len(dv.ImageMetadata) != len(v.ImageMeta) {
			t.Errorf("volume %s: got %+v, Cinder says %+v (boot volume: %v)", dv.ID, dv, v, boot)
		}
	}
	if srv.NetID != "" {
		var pb struct {
			Ports []struct {
				ID, MACAddress string
				Mac            string `json:"mac_address"`
				FixedIPs       []struct {
					IP string `json:"ip_address"`
				} `json:"fixed_ips"`
				SecurityGroups []string `json:"security_groups"`
				PortSecurity   *bool    `json:"port_security_enabled"`
			} `json:"ports"`
		}
		a.must("GET", "network", "ports?device_id="+srv.ID, nil, &pb)
		if len(pb.Ports) == 0 || len(def.Ports) != len(pb.Ports) {
			t.Fatalf("ports: got %d, Neutron has %d", len(def.Ports), len(pb.Ports))
		}
		for i, p := range pb.Ports {
			dp := def.Ports[i]
			if dp.ID != p.ID || dp.MAC != p.Mac || len(dp.FixedIPs) != len(p.FixedIPs) || dp.FixedIPs[0].IPAddress != p.FixedIPs[0].IP ||
				dp.NetworkID != srv.NetID || len(dp.SecurityGroupIDs) != len(p.SecurityGroups) {
				t.Errorf("port: got %+v, Neutron says %+v", dp, p)
			}
			if (dp.PortSecurityEnabled == nil) != (p.PortSecurity == nil) {
				t.Errorf("port security: got %v, Neutron says %v", dp.PortSecurityEnabled, p.PortSecurity)
			}
		}
		if len(def.SecurityGroups) == 0 || def.SecurityGroups[0].Name == "" || len(def.SecurityGroups[0].Rules) == 0 {
			t.Errorf("security groups: got %+v", def.SecurityGroups)
		}
	}
}

func journalEmpty(t *testing.T, dir string) {
	t.Helper()
	left, _ := filepath.Glob(filepath.Join(dir, "*.journal"))
	for _, f := range left {
		b, _ := os.ReadFile(f)
		t.Errorf("journal %s left after a clean run:\n%s", f, b)
	}
}

// TestBackupBootFromVolume: a server booted from a volume, with a second
// volume, tags, metadata, a key pair and a port: two backups (the second
// deduplicated against the first), bytes and definition checked, nothing
// left behind.
func TestBackupBootFromVolume(t *testing.T) {
	cl := rsConnect(t, "", nil)
	a := api{t, cl}
	tags := []string{"cairn-bk", "daily"}
	md := map[string]string{"backup": "yes", "owner": "ops"}
	srv := newBFVServer(t, a, bkOptions{Tags: tags, Metadata: md})
	watched := map[string]bool{srv.ID: true, srv.Volumes[0].ID: true, srv.Volumes[1].ID: true}
	repoDir, journal := bkRepo(t)
	before := a.leakSet()

	res := backupServer(t, repoDir, journal, srv.ID)
	if res.Consistency != ops.ConsistencyCrash || res.Method != ops.MethodCinder || res.Summary == nil {
		t.Errorf("result: %+v; want crash consistency through Cinder snapshots", res)
	}
	noLeaks(t, a, before, watched)
	journalEmpty(t, journal)
	r, p, def := loadPoint(t, repoDir, res.PointID)
	if p.Source != "openstack" || p.Consistency != ops.ConsistencyCrash || p.VM != srv.Name {
		t.Errorf("restore point: source %q consistency %q vm %q", p.Source, p.Consistency, p.VM)
	}
	checkDisks(t, r, p, def, srv)
	checkDefinition(t, a, def, srv, tags, md)

	// Selection by tag and metadata finds it; the second backup reads the
	// same bytes and stores nothing new.
	res2 := backupServer(t, repoDir, journal, srv.Name)
	if res2.Summary.NewBytes != 0 || res2.Summary.Parent != res.PointID {
		t.Errorf("second backup: new %d bytes, parent %q; want 0 and %s", res2.Summary.NewBytes, res2.Summary.Parent, res.PointID)
	}
	noLeaks(t, a, before, watched)
	r2, p2, def2 := loadPoint(t, repoDir, res2.PointID)
	checkDisks(t, r2, p2, def2, srv)
}

// TestBackupTransferAttach: --transfer attach, a Cinder attachment of the
// temporary volume to this host whose RBD connection info is read with
// `rbd export` (librbd in user space, no kernel module).
func TestBackupTransferAttach(t *testing.T) {
	cl := rsConnect(t, "", nil)
	a := api{t, cl}
	srv := newBFVServer(t, a, bkOptions{NoNet: true})
	watched := map[string]bool{srv.ID: true, srv.Volumes[0].ID: true, srv.Volumes[1].ID: true}
	repoDir, journal := bkRepo(t)
	before := a.leakSet()
	res := backupServer(t, repoDir, journal, srv.ID, "--transfer", "attach")
	noLeaks(t, a, before, watched)
	r, p, def := loadPoint(t, repoDir, res.PointID)
	checkDisks(t, r, p, def, srv)
}

// TestBackupQuiesced: the boot volume's image metadata asks for a
// quiesced snapshot, so cairn snapshots through Nova (createImage on the
// volume-backed server) and records file-system consistency; a server
// with a guest agent but no os_require_quiesce gets crash consistency and
// a warning.
func TestBackupQuiesced(t *testing.T) {
	cl := rsConnect(t, "", nil)
	a := api{t, cl}
	srv := newBFVServer(t, a, bkOptions{Agent: true, Quiesce: true, NoNet: true})
	watched := map[string]bool{srv.ID: true, srv.Volumes[0].ID: true, srv.Volumes[1].ID: true}
	repoDir, journal := bkRepo(t)
	before := a.leakSet()
	res := backupServer(t, repoDir, journal, srv.ID)
	if res.Consistency != ops.ConsistencyFilesystem || res.Method != ops.MethodNovaQuiesced {
		t.Errorf("got %s via %s, want filesystem via %s (warnings %v)", res.Consistency, res.Method, ops.MethodNovaQuiesced, res.Warnings)
	}
	noLeaks(t, a, before, watched)
	journalEmpty(t, journal)
	r, p, def := loadPoint(t, repoDir, res.PointID)
	checkDisks(t, r, p, def, srv)

	// Could be quiesced, is not configured for it: warned.
	volumeAction(t, a, srv.Volumes[0].ID, map[string]any{"os-unset_image_metadata": map[string]any{"key": "os_require_quiesce"}})
	so, se, err := runCairn(t, cloudEnv(journal), "openstack", "list", "--server", srv.ID)
	if err != nil || !strings.Contains(so, "os_require_quiesce") {
		t.Errorf("list does not advise os_require_quiesce: %v\n%s\n%s", err, so, se)
	}
	res2 := backupServer(t, repoDir, journal, srv.ID)
	if res2.Consistency != ops.ConsistencyCrash || !strings.Contains(strings.Join(res2.Warnings, "\n"), "os_require_quiesce") {
		t.Errorf("got %s with warnings %v; want crash and advice about os_require_quiesce", res2.Consistency, res2.Warnings)
	}
	noLeaks(t, a, before, watched)
}
