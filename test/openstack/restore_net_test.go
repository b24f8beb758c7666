package openstack

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/cli"
	"github.com/cairn-backup/cairn/ingest"
	"github.com/cairn-backup/cairn/ingest/openstack"
	"github.com/cairn-backup/cairn/repo"
)

// netSource is a server whose network identity a restore must bring back:
// a port on cairn-net (MAC and address chosen by Neutron) and a security
// group of its own with rules, one of them referring to the group itself.
type netSource struct {
	name, serverID, sgID, sgName, mac, ip string
	rules                                 []string // the group's rules, normalized (see ruleSet)
	point                                 *repo.RestorePoint
	r                                     *repo.Repository
}

func makeNetSource(t *testing.T, a api) *netSource {
	sfx := rsSuffix()
	src := &netSource{name: "cairn-osr-" + sfx, sgName: "cairn-osr-sg-" + sfx}
	var sg struct {
		SG struct{ ID string } `json:"security_group"`
	}
	a.must("POST", "network", "security-groups", map[string]any{"security_group": map[string]any{"name": src.sgName, "description": "restore test " + sfx}}, &sg)
	src.sgID = sg.SG.ID
	t.Cleanup(func() { a.do("DELETE", "network", "security-groups/"+src.sgID, nil, nil) })
	for _, r := range []map[string]any{
		{"direction": "ingress", "ethertype": "IPv4", "protocol": "tcp", "port_range_min": 22, "port_range_max": 22, "remote_ip_prefix": "10.0.0.0/8"},
		{"direction": "ingress", "ethertype": "IPv4", "protocol": "icmp"},
		{"direction": "ingress", "ethertype": "IPv4", "protocol": "tcp", "port_range_min": 8000, "port_range_max": 8100, "remote_group_id": src.sgID},
	} {
		r["security_group_id"] = src.sgID
		a.must("POST", "network", "security-group-rules", map[string]any{"security_group_rule": r}, nil)
	}
	src.rules = ruleSet(t, a, src.sgID)

	var v struct {
		Volume struct{ ID string } `json:"volume"`
	}
	a.must("POST", "volume", "volumes", map[string]any{"volume": map[string]any{"name": src.name + "-vda", "size": 1}}, &v)
	t.Cleanup(func() { a.volumeGone(v.Volume.ID) })
	a.wait("volume available", 5*time.Minute, func() (bool, error) {
		st, err := a.volumeStatus(v.Volume.ID)
		return st == "available", err
	})
	a.must("POST", "volume", "volumes/"+v.Volume.ID+"/action", map[string]any{"os-set_bootable": map[string]any{"bootable": true}}, nil)
	src.serverID = createServer(t, a, map[string]any{
		"name": src.name, "flavorRef": flavorID(t, a, "cairn.tiny"),
		"block_device_mapping_v2": []map[string]any{{"uuid": v.Volume.ID, "source_type": "volume", "destination_type": "volume", "boot_index": 0, "delete_on_termination": false}},
		"networks":                []map[string]any{{"uuid": networkID(t, a, "cairn-net")}},
		"security_groups":         []map[string]string{{"name": src.sgID}},
	})
	ctx := context.Background()
	s, err := a.cl.GetServer(ctx, src.serverID)
	if err != nil {
		t.Fatal(err)
	}
	def, err := a.cl.CaptureDefinition(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	if len(def.Ports) != 1 || def.Ports[0].MAC == "" || len(def.Ports[0].FixedIPs) != 1 || len(def.SecurityGroups) != 1 || len(def.SecurityGroups[0].Rules) != len(src.rules) {
		t.Fatalf("captured definition: ports %+v groups %+v", def.Ports, def.SecurityGroups)
	}
	src.mac, src.ip = def.Ports[0].MAC, def.Ports[0].FixedIPs[0].IPAddress
	img := rsDiskImage(t, t.TempDir(), "vda", rsDiskSize, 31, 0)
	def.Disks = []openstack.DiskDef{{Name: "vda", VolumeID: v.Volume.ID, Device: s.Volumes[0].Device, BootIndex: 0, Size: rsDiskSize}}
	src.r = rsRepo(t)
	p, _, err := ingest.Backup(ctx, src.r, ingest.BackupOptions{VM: src.name, Disks: []ingest.DiskSpec{{Name: "vda", Path: img}},
		Source: "openstack", Consistency: "crash", Definition: mustJSON(t, def)})
	if err != nil {
		t.Fatal(err)
	}
	src.point = p
	return src
}

// ruleSet is a group's rules as comparable strings; a reference to the
// group itself reads "self", so that a recreated group compares equal.
func ruleSet(t testing.TB, a api, sgID string) []string {
	var b struct {
		SG struct {
			Rules []map[string]any `json:"security_group_rules"`
		} `json:"security_group"`
	}
	a.must("GET", "network", "security-groups/"+sgID, nil, &b)
	var out []string
	for _, r := range b.SG.Rules {
		rg := fmt.Sprint(r["remote_group_id"])
		if rg == sgID {
			rg = "self"
		}
		out = append(out, fmt.Sprintf("%v %v %v %v-%v ip=%v group=%s", r["direction"], r["ethertype"], r["protocol"], r["port_range_min"], r["port_range_max"], r["remote_ip_prefix"], rg))
	}
	sort.Strings(out)
	return out
}

// groupsNamed lists the project's security groups of that name.
func groupsNamed(a api, name string) []string {
	var b struct {
		SGs []struct{ ID string } `json:"security_groups"`
	}
	a.must("GET", "network", "security-groups?project_id="+a.cl.ProjectID()+"&name="+name, nil, &b)
	var out []string
	for _, g := range b.SGs {
		out = append(out, g.ID)
	}
	return out
}

type portInfo struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	MAC      string `json:"mac_address"`
	DeviceID string `json:"device_id"`
	FixedIPs []struct {
		IP string `json:"ip_address"`
	} `json:"fixed_ips"`
	SGs []string `json:"security_groups"`
}

func getPort(a api, id string) (*portInfo, error) {
	var b struct {
		Port portInfo `json:"port"`
	}
	err := a.do("GET", "network", "ports/"+id, nil, &b)
	return &b.Port, err
}

// TestRestoreNetworkIdentity: MAC addresses (kept, in use, --new-mac,
// refused by policy), ports deleted with the restored server, security
// groups recreated from the restore point, and rollback of both.
func TestRestoreNetworkIdentity(t *testing.T) {
	cl := rsConnect(t, "", nil)
	a := api{t, cl}
	src := makeNetSource(t, a)
	ctx := context.Background()
	note := func(t *testing.T) func(string) { return func(s string) { t.Log(s) } }

	t.Run("MAC in use is a planning error", func(t *testing.T) {
		a := api{t, cl}
		before := a.inventory()
		_, err := openstack.RestoreVM(ctx, cl, src.r, src.point, openstack.RestoreVMOptions{Name: src.name + "-dry", DryRun: true})
		if err == nil || !strings.Contains(err.Error(), src.mac) || !strings.Contains(err.Error(), src.name+" ("+src.serverID+")") || !strings.Contains(err.Error(), "--new-mac") {
			t.Fatalf("want a planning error naming MAC %s, the server %s holding it and --new-mac; got %v", src.mac, src.name, err)
		}
		_, err = openstack.RestoreVM(ctx, cl, src.r, src.point, openstack.RestoreVMOptions{Name: src.name + "-nodry"})
		if err == nil || !strings.Contains(err.Error(), "--new-mac") {
			t.Fatalf("a restore with the MAC in use must fail before creating anything: %v", err)
		}
		var out, errOut bytes.Buffer
		code := cli.Main([]string{"cairn", "restore", "vm", src.point.ID[:8], "--repo", src.r.Dir(), "--os-cloud", rsCloudName,
			"--name", src.name + "-cli", "--new-mac", "--dry-run", "--json"}, &out, &errOut)
		if code != 0 {
			t.Fatalf("--new-mac --dry-run: exit %d: %s", code, errOut.String())
		}
		var res openstack.RestoreResult
		if err := json.Unmarshal(out.Bytes(), &res); err != nil {
			t.Fatalf("--json: %v\n%s", err, out.String())
		}
		if n := res.Plan.Networks; len(n) != 1 || n[0].MAC != "" || n[0].OwnPort || !n[0].DeletedWithServer {
			t.Errorf("--new-mac plan: %s", out.String())
		}
		noOwnLeaks(t, a, before, src.name, nil)
	})

	t.Run("new MAC: Nova owns the port and deletes it with the server", func(t *testing.T) {
		a := api{t, cl}
		before := a.inventory()
		res, err := openstack.RestoreVM(ctx, cl, src.r, src.point, openstack.RestoreVMOptions{Name: src.name + "-newmac", NewMAC: true, Note: note(t)})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Ports) != 1 || res.Ports[0].CreatedBy != "nova" || !res.Ports[0].DeletedWithServer || res.Ports[0].MAC == src.mac {
			removeRestored(a, res)
			t.Fatalf("ports %+v: want one port Nova created, with a new MAC", res.Ports)
		}
		p, err := getPort(a, res.Ports[0].ID)
		if err != nil || p.DeviceID != res.Server.ID || len(p.SGs) != 1 || p.SGs[0] != src.sgID {
			t.Errorf("port %+v (%v): want bound to %s with group %s", p, err, res.Server.ID, src.sgID)
		}
		a.serverGone(res.Server.ID) // as a user would delete it
		if _, err := getPort(a, res.Ports[0].ID); !isGone(err) {
			t.Errorf("port %s is still there after the restored server was deleted (%v)", res.Ports[0].ID, err)
		}
		for _, v := range res.Volumes {
			a.volumeGone(v.ID)
		}
		noOwnLeaks(t, a, before, src.name, res)
	})

	// the disaster: the server and its group are gone
	a.serverGone(src.serverID)
	a.must("DELETE", "network", "security-groups/"+src.sgID, nil, nil)

	t.Run("rollback removes ports and recreated groups", func(t *testing.T) {
		cases := []struct {
			name string
			rule *faultRule
			opts openstack.RestoreVMOptions
			want string
		}{
			{"MAC refused by policy", &faultRule{Method: "POST", Path: regexp.MustCompile(`/v2\.0/ports$`), Status: 403,
				Body: `{"NeutronError": {"type": "PolicyNotAuthorized", "message": "(rule:create_port and (rule:create_port:mac_address)) is disallowed by policy", "detail": ""}}`},
				openstack.RestoreVMOptions{}, "create_port:mac_address"},
			{"server create 5xx after own port", &faultRule{Method: "POST", Path: regexp.MustCompile(`/v2\.1/servers$`), Status: 500,
				Body: `{"computeFault": {"code": 500, "message": "injected fault"}}`}, openstack.RestoreVMOptions{}, "create server"},
			{"failure after Nova created the port", &faultRule{Method: "POST", Path: regexp.MustCompile(`/v2\.1/servers/[0-9a-f-]{36}/action$`), Status: 500,
				Body: `{"computeFault": {"code": 500, "message": "injected fault"}}`}, openstack.RestoreVMOptions{NewMAC: true, PowerOn: new(false)}, "injected fault"},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				a := api{t, cl}
				before := a.inventory()
				proxy := newFaultProxy(c.rule)
				fcl := rsConnect(t, "", proxy)
				o := c.opts
				o.Name, o.Note = src.name+"-rb", note(t)
				res, err := openstack.RestoreVM(ctx, fcl, src.r, src.point, o)
				if err == nil {
					removeRestored(a, res)
					t.Fatal("restore succeeded despite the fault")
				}
				t.Logf("error: %v", err)
				if !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "removed") {
					t.Errorf("error does not say what failed (%q) and that the restore cleaned up: %v", c.want, err)
				}
				if c.want == "create_port:mac_address" && !strings.Contains(err.Error(), "--new-mac") {
					t.Errorf("a refused MAC must point at --new-mac: %v", err)
				}
				if !proxy.fired() {
					t.Errorf("the fault was never injected")
				}
				noOwnLeaks(t, a, before, src.name, res)
				for _, p := range res.Ports { // the ports the server had before the rollback
					if _, err := getPort(a, p.ID); !isGone(err) {
						t.Errorf("port %s (created by %s) survived the rollback: %v", p.ID, p.CreatedBy, err)
					}
				}
				if c.opts.NewMAC && len(res.Ports) != 1 {
					t.Errorf("the restore failed before it saw the server's port (%+v): the case tests nothing", res.Ports)
				}
				if g := groupsNamed(a, src.sgName); len(g) != 0 {
					t.Errorf("recreated security group left behind: %v", g)
				}
			})
		}
	})

	t.Run("another user may not set the MAC", func(t *testing.T) {
		alt := os.Getenv("CAIRN_TEST_CLOUD_ALT")
		if alt == "" {
			alt = "openstack-lite-alt"
		}
		ucl, err := openstack.Connect(ctx, openstack.Config{Cloud: alt})
		if err != nil {
			t.Fatalf("connect as %s: %v", alt, err)
		}
		if ucl.IsAdmin() {
			t.Fatalf("cloud %s is expected to be a non-admin user", alt)
		}
		_, err = openstack.RestoreVM(ctx, ucl, src.r, src.point, openstack.RestoreVMOptions{DryRun: true})
		if err == nil || !strings.Contains(err.Error(), "create_port:mac_address") || !strings.Contains(err.Error(), "--new-mac") {
			t.Fatalf("want a planning error about the MAC policy and --new-mac, got %v", err)
		}
		res, err := openstack.RestoreVM(ctx, ucl, src.r, src.point, openstack.RestoreVMOptions{DryRun: true, NewMAC: true})
		if err != nil {
			t.Fatalf("--new-mac as %s: %v", alt, err)
		}
		if sg := res.Plan.SecurityGroups; len(sg) != 1 || sg[0].Action != "create" || sg[0].Rules != len(src.rules) {
			t.Errorf("another project lacks the group: want it recreated with %d rules, plan %+v", len(src.rules), sg)
		}
	})

	t.Run("original MAC and recreated security group", func(t *testing.T) {
		a := api{t, cl}
		before := a.inventory()
		res, err := openstack.RestoreVM(ctx, cl, src.r, src.point, openstack.RestoreVMOptions{Note: note(t)})
		if err != nil {
			t.Fatal(err)
		}
		defer removeRestored(a, res)
		if sg := res.Plan.SecurityGroups; len(sg) != 1 || sg[0].Action != "create" || len(res.Groups) != 1 || res.Groups[0].ID != sg[0].ID {
			t.Fatalf("plan groups %+v, created %+v: want %s recreated", sg, res.Groups, src.sgName)
		}
		raw, _ := json.Marshal(res)
		if !strings.Contains(string(raw), `"security_groups_created"`) || !strings.Contains(string(raw), `"action":"create"`) {
			t.Errorf("--json result does not say the group was recreated: %s", raw)
		}
		newSG := res.Groups[0].ID
		if got := ruleSet(t, a, newSG); strings.Join(got, "\n") != strings.Join(src.rules, "\n") {
			t.Errorf("recreated group's rules:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(src.rules, "\n"))
		}
		s, _ := getRestored(t, a, res.Server.ID)
		if s.Status != "ACTIVE" || len(s.SGs) != 1 || s.SGs[0].Name != src.sgName {
			t.Errorf("server %s, groups %+v: want ACTIVE with %s", s.Status, s.SGs, src.sgName)
		}
		if len(res.Ports) != 1 || res.Ports[0].CreatedBy != "cairn" || res.Ports[0].DeletedWithServer {
			t.Fatalf("ports %+v: want one port cairn created (to set the MAC)", res.Ports)
		}
		p, err := getPort(a, res.Ports[0].ID)
		if err != nil || p.MAC != src.mac || len(p.FixedIPs) != 1 || p.FixedIPs[0].IP != src.ip || len(p.SGs) != 1 || p.SGs[0] != newSG {
			t.Errorf("port %+v (%v): want MAC %s, address %s, group %s", p, err, src.mac, src.ip, newSG)
		}
		// Nova keeps a port it was handed (preserve_on_delete): the result
		// says so, and that is what happens.
		a.serverGone(res.Server.ID)
		p, err = getPort(a, res.Ports[0].ID)
		if err != nil || p.DeviceID != "" {
			t.Errorf("port %s after the server was deleted: %+v %v; want kept and unbound as reported", res.Ports[0].ID, p, err)
		}
		removeRestored(a, res)
		noOwnLeaks(t, a, before, src.name, res)
		if g := groupsNamed(a, src.sgName); len(g) != 0 {
			t.Errorf("groups left: %v", g)
		}
	})
}
