package openstack

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gophercloud/gophercloud/v2"

	"github.com/cairn-backup/cairn/repo"
)

// fakeCloud answers the read-only calls a restore plan makes, from maps
// the test fills; unknown paths are 404.
type fakeCloud struct {
	t       *testing.T
	answers map[string]any // "METHOD path?query" or "METHOD path" -> JSON body
}

func (f *fakeCloud) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	key := r.Method + " " + strings.TrimPrefix(r.URL.Path, "/")
	body, ok := f.answers[key+"?"+r.URL.RawQuery]
	if !ok {
		body, ok = f.answers[key]
	}
	if !ok {
		w.WriteHeader(404)
		w.Write([]byte(`{"itemNotFound": {"message": "not found"}}`))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(body)
}

func newPlanCloud(t *testing.T, f *fakeCloud) *Cloud {
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	pc := &gophercloud.ProviderClient{HTTPClient: *srv.Client()}
	sc := func(path string) *gophercloud.ServiceClient {
		return &gophercloud.ServiceClient{ProviderClient: pc, Endpoint: srv.URL + "/" + path, ResourceBase: srv.URL + "/" + path}
	}
	cl := &Cloud{Provider: pc, Compute: sc("compute/"), Volume: sc("volume/"), Image: sc("image/"), Network: sc("network/")}
	cl.Project = nil
	return cl
}

// baseAnswers is a cloud where the captured server restores unchanged.
func baseAnswers() map[string]any {
	lim := func(kv ...any) map[string]any {
		abs := map[string]int{}
		for i := 0; i < len(kv); i += 2 {
			abs[kv[i].(string)] = kv[i+1].(int)
		}
		return map[string]any{"limits": map[string]any{"absolute": abs}}
	}
	return map[string]any{
		"GET volume/types": map[string]any{"volume_types": []map[string]string{{"name": "rbd"}, {"name": "nfs"}}},
		"GET compute/flavors/detail": map[string]any{"flavors": []map[string]any{
			{"id": "f1", "name": "m1.small", "vcpus": 1, "ram": 512, "disk": 10},
			{"id": "f2", "name": "m1.other", "vcpus": 2, "ram": 1024, "disk": 20},
		}},
		"GET compute/os-keypairs/key1":     map[string]any{"keypair": map[string]string{"name": "key1", "public_key": "ssh-ed25519 AAAAkey1 me"}},
		"GET network/security-groups":      map[string]any{"security_groups": []map[string]string{{"id": "sg-1", "name": "web"}, {"id": "sg-d", "name": "default"}}},
		"GET network/networks/net-1":       map[string]any{"network": map[string]any{"id": "net-1", "name": "prod", "port_security_enabled": true}},
		"GET network/ports":                map[string]any{"ports": []any{}},
		"GET compute/os-availability-zone": map[string]any{"availabilityZoneInfo": []map[string]any{{"zoneName": "nova", "zoneState": map[string]bool{"available": true}}}},
		"GET compute/servers":              map[string]any{"servers": []any{}},
		"GET compute/limits":               lim("maxTotalInstances", 10, "totalInstancesUsed", 1, "maxTotalCores", 20, "totalCoresUsed", 1, "maxTotalRAMSize", 51200, "totalRAMUsed", 512),
		"GET volume/limits":                lim("maxTotalVolumes", 10, "totalVolumesUsed", 2, "maxTotalVolumeGigabytes", 1000, "totalGigabytesUsed", 20),
	}
}

func planPoint(t *testing.T) *repo.RestorePoint {
	port := PortDef{NetworkID: "net-1", MAC: "fa:16:3e:00:00:05", FixedIPs: []FixedIP{{IPAddress: "10.0.0.5"}}, SecurityGroupIDs: []string{"sg-1"}}
	def := Definition{Version: DefinitionVersion,
		Server: ServerDef{Name: "web1", Status: "ACTIVE", ProjectID: "p-old", KeyName: "key1", AZ: "nova",
			Metadata: map[string]string{"a": "b"}, Tags: []string{"t"}},
		Flavor:         FlavorDef{Name: "m1.small", VCPUs: 1, RAM: 512, Disk: 10},
		Volumes:        []Volume{{ID: "v-a", Name: "web1-root", Size: 10, Type: "rbd", Bootable: true, BootIndex: 0}, {ID: "v-b", Size: 5, Type: "gold", BootIndex: -1}},
		Ports:          []PortDef{port},
		SecurityGroups: []SecurityGroup{{ID: "sg-old", Name: "web"}},
		Keypair:        &KeypairDef{Name: "key1", PublicKey: "ssh-ed25519 AAAAkey1 me"},
		Disks:          []DiskDef{{Name: "vdb", VolumeID: "v-b", Device: "/dev/vdb", BootIndex: -1}, {Name: "vda", VolumeID: "v-a", Device: "/dev/vda", BootIndex: 0}},
	}
	raw, _ := json.Marshal(def)
	return &repo.RestorePoint{ID: "0123456789abcdef", VM: "web1", Source: "openstack", Definition: raw,
		Disks: []repo.Disk{{Name: "vdb", Size: 5 << 30}, {Name: "vda", Size: 9<<30 + 1}}}
}

func runPlan(t *testing.T, answers map[string]any, p *repo.RestorePoint, o RestoreVMOptions) (*RestorePlan, error) {
	cl := newPlanCloud(t, &fakeCloud{t: t, answers: answers})
	rs, err := newRestorer(cl, nil, p, o)
	if err != nil {
		t.Fatal(err)
	}
	return rs.plan(context.Background())
}

func TestPlanUnchangedCloud(t *testing.T) {
	pl, err := runPlan(t, baseAnswers(), planPoint(t), RestoreVMOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if pl.Flavor.ID != "f1" || pl.KeypairAction != "use" || pl.KeyName != "key1" || !pl.PowerOn {
		t.Errorf("flavor/key/power: %+v", pl)
	}
	if len(pl.Volumes) != 2 || pl.Volumes[0].Disk != "vda" || pl.Volumes[0].BootIndex != 0 || !pl.Volumes[0].Bootable ||
		pl.Volumes[0].SizeGB != 10 || pl.Volumes[0].Name != "web1-root" || pl.Volumes[1].Device != "/dev/vdb" {
		t.Errorf("volumes: %+v", pl.Volumes)
	}
	if pl.Volumes[1].VolumeType != "" || !strings.Contains(strings.Join(pl.Warnings, ";"), `volume type "gold"`) {
		t.Errorf("a missing volume type must fall back to the default with a warning: %+v %v", pl.Volumes[1], pl.Warnings)
	}
	// another project: security group by name
	if len(pl.SecurityGroups) != 1 || pl.SecurityGroups[0].ID != "sg-1" {
		t.Errorf("security groups %+v", pl.SecurityGroups)
	}
	if n := pl.Networks; len(n) != 1 || n[0].FixedIP != "10.0.0.5" || n[0].MAC != "fa:16:3e:00:00:05" || !n[0].OwnPort || n[0].DeletedWithServer || !n[0].PortSecurity {
		t.Errorf("networks %+v", pl.Networks)
	}
}

func TestPlanMAC(t *testing.T) {
	ans := baseAnswers()
	pl, err := runPlan(t, ans, planPoint(t), RestoreVMOptions{NewMAC: true})
	if n := pl.Networks; err != nil || n[0].MAC != "" || n[0].OwnPort || !n[0].DeletedWithServer || n[0].FixedIP != "10.0.0.5" {
		t.Fatalf("--new-mac: Nova must create the port (with the fixed IP): %v %+v", err, pl.Networks)
	}
	ans["GET network/networks/net-2"] = map[string]any{"network": map[string]any{"id": "net-2", "name": "dr", "port_security_enabled": true}}
	pl, err = runPlan(t, ans, planPoint(t), RestoreVMOptions{Networks: []NetworkChoice{{Network: "net-2"}}})
	if err != nil || pl.Networks[0].MAC != "" || pl.Networks[0].OwnPort {
		t.Fatalf("another network gets a new MAC: %v %+v", err, pl.Networks)
	}
	ans["GET network/ports?network_id=net-1&mac_address=fa%3A16%3A3e%3A00%3A00%3A05"] = map[string]any{"ports": []map[string]string{
		{"id": "p-orig", "device_id": "srv-orig", "device_owner": "compute:nova"}}}
	ans["GET compute/servers/srv-orig"] = map[string]any{"server": map[string]string{"id": "srv-orig", "name": "web1"}}
	_, err = runPlan(t, ans, planPoint(t), RestoreVMOptions{DryRun: true, Name: "web1-copy"})
	if err == nil || !strings.Contains(err.Error(), "p-orig") || !strings.Contains(err.Error(), "web1 (srv-orig)") || !strings.Contains(err.Error(), "--new-mac") {
		t.Fatalf("MAC in use must be a planning error naming the holder and --new-mac: %v", err)
	}
	if _, err := runPlan(t, ans, planPoint(t), RestoreVMOptions{NewMAC: true}); err != nil {
		t.Fatalf("--new-mac with the MAC in use: %v", err)
	}
	ans = baseAnswers()
	ans["GET network/networks/net-1"] = map[string]any{"network": map[string]any{"id": "net-1", "name": "prod", "project_id": "p-other"}}
	if _, err := runPlan(t, ans, planPoint(t), RestoreVMOptions{}); err == nil || !strings.Contains(err.Error(), "create_port:mac_address") || !strings.Contains(err.Error(), "--new-mac") {
		t.Fatalf("a non-admin keeping a MAC on another project's network: %v", err)
	}
}

func TestPlanRecreatesSecurityGroup(t *testing.T) {
	p := planPoint(t)
	var def Definition
	json.Unmarshal(p.Definition, &def)
	def.SecurityGroups = []SecurityGroup{{ID: "sg-old", Name: "app", Description: "app tier", Rules: []json.RawMessage{
		json.RawMessage(`{"direction":"egress","ethertype":"IPv4","protocol":null,"remote_ip_prefix":null,"remote_group_id":null}`),
		json.RawMessage(`{"direction":"ingress","ethertype":"IPv4","protocol":"tcp","port_range_min":22,"port_range_max":22,"remote_ip_prefix":"10.0.0.0/8"}`),
		json.RawMessage(`{"direction":"ingress","ethertype":"IPv4","protocol":null,"remote_group_id":"sg-old"}`),
		json.RawMessage(`{"direction":"ingress","ethertype":"IPv4","protocol":"tcp","remote_group_id":"sg-elsewhere"}`),
	}}}
	p.Definition, _ = json.Marshal(def)
	pl, err := runPlan(t, baseAnswers(), p, RestoreVMOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sg := pl.SecurityGroups
	if len(sg) != 1 || sg[0].Action != "create" || sg[0].Name != "app" || sg[0].Rules != 3 || sg[0].ID != "" {
		t.Fatalf("security groups %+v", sg)
	}
	w := strings.Join(pl.Warnings, ";")
	if !strings.Contains(w, "recreated from its 4 captured rules") || !strings.Contains(w, "sg-elsewhere") {
		t.Errorf("the plan must say the group is recreated and which rule is left out: %v", pl.Warnings)
	}
	raw, _ := json.Marshal(pl)
	if !strings.Contains(string(raw), `"action":"create"`) {
		t.Errorf("--json plan lacks the action: %s", raw)
	}
}

func TestPlanFlavorGoneUsesSameSize(t *testing.T) {
	ans := baseAnswers()
	ans["GET compute/flavors/detail"] = map[string]any{"flavors": []map[string]any{{"id": "f9", "name": "renamed", "vcpus": 1, "ram": 512, "disk": 10}}}
	pl, err := runPlan(t, ans, planPoint(t), RestoreVMOptions{})
	if err != nil || pl.Flavor.ID != "f9" {
		t.Fatalf("%v %+v", err, pl)
	}
	ans["GET compute/flavors/detail"] = map[string]any{"flavors": []map[string]any{{"id": "f9", "name": "big", "vcpus": 4, "ram": 512, "disk": 10}}}
	if _, err := runPlan(t, ans, planPoint(t), RestoreVMOptions{}); err == nil || !strings.Contains(err.Error(), "--flavor") {
		t.Fatalf("no same-size flavor: %v", err)
	}
	if pl, err := runPlan(t, ans, planPoint(t), RestoreVMOptions{Flavor: "big"}); err != nil || pl.Flavor.ID != "f9" {
		t.Fatalf("--flavor: %v", err)
	}
}

func TestPlanKeypair(t *testing.T) {
	ans := baseAnswers()
	delete(ans, "GET compute/os-keypairs/key1")
	pl, err := runPlan(t, ans, planPoint(t), RestoreVMOptions{})
	if err != nil || pl.KeypairAction != "create" || pl.KeyName != "key1" || pl.publicKey == "" {
		t.Fatalf("missing key pair must be recreated: %v %+v", err, pl)
	}
	ans["GET compute/os-keypairs/key1"] = map[string]any{"keypair": map[string]string{"name": "key1", "public_key": "ssh-ed25519 AAAAother x"}}
	pl, err = runPlan(t, ans, planPoint(t), RestoreVMOptions{})
	if err != nil || pl.KeypairAction != "create" || pl.KeyName != "key1-restored" {
		t.Fatalf("someone else's key under the name: %v %+v", err, pl)
	}
	if _, err := runPlan(t, ans, planPoint(t), RestoreVMOptions{Keypair: "nope"}); err == nil {
		t.Fatal("--keypair of a missing key pair accepted")
	}
}

func TestPlanNetworks(t *testing.T) {
	ans := baseAnswers()
	ans["GET network/ports?network_id=net-1&fixed_ips=ip_address%3D10.0.0.5"] = map[string]any{"ports": []map[string]string{{"id": "busy"}}}
	pl, err := runPlan(t, ans, planPoint(t), RestoreVMOptions{})
	if err != nil || pl.Networks[0].FixedIP != "" || !strings.Contains(strings.Join(pl.Warnings, ";"), "in use") {
		t.Fatalf("original address in use must be dropped with a note: %v %+v", err, pl)
	}
	if _, err := runPlan(t, ans, planPoint(t), RestoreVMOptions{Networks: []NetworkChoice{{Network: "net-1", FixedIP: "10.0.0.5"}}}); err == nil {
		t.Fatal("an explicitly requested address in use was accepted")
	}
	ans["GET network/networks/open"] = map[string]any{"network": map[string]any{"id": "open", "name": "open", "port_security_enabled": false}}
	pl, err = runPlan(t, ans, planPoint(t), RestoreVMOptions{Networks: []NetworkChoice{{Network: "open"}}})
	if err != nil || !pl.Networks[0].OwnPort || pl.Networks[0].PortSecurity || !strings.Contains(strings.Join(pl.Warnings, ";"), "port security disabled") {
		t.Fatalf("network without port security: %v %+v", err, pl)
	}
	pl, err = runPlan(t, ans, planPoint(t), RestoreVMOptions{NewMAC: true, Networks: []NetworkChoice{{Network: "net-1"}, {Network: "open"}}})
	if err != nil || len(pl.Networks) != 2 || !pl.Networks[0].OwnPort || pl.Networks[0].DeletedWithServer {
		t.Fatalf("with groups and a network without port security, Nova takes no groups: every port is cairn's: %v %+v", err, pl.Networks)
	}
	pl, err = runPlan(t, ans, planPoint(t), RestoreVMOptions{NewMAC: true})
	if err != nil || pl.Networks[0].OwnPort {
		t.Fatalf("without such a network Nova creates the port: %v %+v", err, pl.Networks)
	}
	if _, err := runPlan(t, ans, planPoint(t), RestoreVMOptions{Networks: []NetworkChoice{{Network: "ghost"}}}); err == nil {
		t.Fatal("unknown network accepted")
	}
}

func TestPlanChecks(t *testing.T) {
	ans := baseAnswers()
	ans["GET compute/servers?name=%5Eweb1%24"] = map[string]any{"servers": []map[string]string{{"id": "s1"}}}
	if _, err := runPlan(t, ans, planPoint(t), RestoreVMOptions{}); err == nil || !strings.Contains(err.Error(), "--name") {
		t.Fatalf("name in use: %v", err)
	}
	ans = baseAnswers()
	ans["GET volume/limits"] = map[string]any{"limits": map[string]any{"absolute": map[string]int{"maxTotalVolumes": 10, "totalVolumesUsed": 9, "maxTotalVolumeGigabytes": -1}}}
	if _, err := runPlan(t, ans, planPoint(t), RestoreVMOptions{}); err == nil || !strings.Contains(err.Error(), "quota exceeded") || !strings.Contains(err.Error(), "volumes (need 2, 9 of 10 used)") {
		t.Fatalf("volume quota: %v", err)
	}
	ans = baseAnswers()
	ans["GET network/security-groups"] = map[string]any{"security_groups": []any{}}
	p := planPoint(t)
	var def Definition
	json.Unmarshal(p.Definition, &def)
	def.SecurityGroups = []SecurityGroup{{Name: "web"}} // known by name only: nothing to recreate from
	p.Definition, _ = json.Marshal(def)
	if _, err := runPlan(t, ans, p, RestoreVMOptions{}); err == nil || !strings.Contains(err.Error(), "--security-group") {
		t.Fatalf("missing security group without captured rules: %v", err)
	}
	if _, err := runPlan(t, ans, planPoint(t), RestoreVMOptions{SecurityGroups: []string{"nope"}}); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Fatalf("missing --security-group: %v", err)
	}
}

func TestPlanImagePointNeedsFlavorAndNetwork(t *testing.T) {
	p := &repo.RestorePoint{ID: "0123456789abcdef", VM: "local", Source: "image", Disks: []repo.Disk{{Name: "vda", Size: 1 << 30}, {Name: "vdb", Size: 1}}}
	if _, err := runPlan(t, baseAnswers(), p, RestoreVMOptions{}); err == nil || !strings.Contains(err.Error(), "--flavor") {
		t.Fatalf("%v", err)
	}
	if _, err := runPlan(t, baseAnswers(), p, RestoreVMOptions{Flavor: "m1.small"}); err == nil || !strings.Contains(err.Error(), "--network") {
		t.Fatalf("%v", err)
	}
	pl, err := runPlan(t, baseAnswers(), p, RestoreVMOptions{Flavor: "m1.small", Networks: []NetworkChoice{{Network: "net-1"}}})
	if err != nil || len(pl.Volumes) != 2 || pl.Volumes[0].BootIndex != 0 || pl.Volumes[1].BootIndex != -1 || pl.Volumes[1].SizeGB != 1 {
		t.Fatalf("%v %+v", err, pl)
	}
}

// TestPlanImageBackedRoot: a restore point of an image-backed server has a
// root disk described by the image it ran from (DiskDef.ImageID) and no
// volume behind it. It comes back as a bootable boot volume at least the
// flavor's disk size, carrying the image properties, deleted with the
// server; the attached volume stays an ordinary data volume.
func TestPlanImageBackedRoot(t *testing.T) {
	p := planPoint(t)
	var def Definition
	json.Unmarshal(p.Definition, &def)
	def.Volumes = def.Volumes[1:] // only the data volume v-b exists
	def.Flavor.Disk = 20
	def.ImageProperties = map[string]string{"hw_qemu_guest_agent": "yes", "os_distro": "debian"}
	def.Disks = []DiskDef{{Name: "vda", ImageID: "img-base", BootIndex: 0}, {Name: "vdb", VolumeID: "v-b", Device: "/dev/vdb", BootIndex: -1}}
	p.Definition, _ = json.Marshal(def)
	ans := baseAnswers()
	ans["GET compute/flavors/detail"] = map[string]any{"flavors": []map[string]any{{"id": "f1", "name": "m1.small", "vcpus": 1, "ram": 512, "disk": 20}}}
	pl, err := runPlan(t, ans, p, RestoreVMOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var root, data *PlannedVolume
	for i := range pl.Volumes {
		switch pl.Volumes[i].Disk {
		case "vda":
			root = &pl.Volumes[i]
		case "vdb":
			data = &pl.Volumes[i]
		}
	}
	if root == nil || data == nil {
		t.Fatalf("volumes %+v", pl.Volumes)
	}
	if !root.Bootable || root.BootIndex != 0 || root.SizeGB != 20 || !root.DeleteOnTerm || root.ImageMetadata["os_distro"] != "debian" {
		t.Errorf("root disk must come back as a 20 GB bootable boot volume with the image properties: %+v", *root)
	}
	if data.Bootable || data.BootIndex != -1 || data.SizeGB != 5 {
		t.Errorf("the attached volume must stay a data volume: %+v", *data)
	}
	if !strings.Contains(strings.Join(pl.Warnings, ";"), "image-backed root disk") {
		t.Errorf("the plan must say the root comes back as a boot volume: %v", pl.Warnings)
	}
}
