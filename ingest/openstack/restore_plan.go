package openstack

import (
	"context"
	"fmt"
	"net/url"
	"regexp"
	"sort"
	"strings"
)

// RestorePlan is what a restore will create. --dry-run prints it; the
// restore executes it.
type RestorePlan struct {
	ServerName       string            `json:"server_name"`
	Project          string            `json:"project_id"`
	Flavor           PlannedFlavor     `json:"flavor"`
	AvailabilityZone string            `json:"availability_zone,omitempty"`
	KeyName          string            `json:"key_name,omitempty"`
	KeypairAction    string            `json:"keypair_action"` // "use", "create", "none"
	SecurityGroups   []PlannedSG       `json:"security_groups"`
	Networks         []PlannedNIC      `json:"networks"`
	Volumes          []PlannedVolume   `json:"volumes"`
	Metadata         map[string]string `json:"metadata,omitempty"`
	Tags             []string          `json:"tags,omitempty"`
	PowerOn          bool              `json:"power_on"`
	Checks           []string          `json:"checks"`
	Warnings         []string          `json:"warnings,omitempty"`

	publicKey, keyType string
}

// PlannedFlavor is the flavor the server gets and why.
type PlannedFlavor struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	VCPUs int    `json:"vcpus"`
	RAM   int    `json:"ram_mib"`
	Disk  int    `json:"disk_gb"`
	Why   string `json:"why"`
}

// PlannedSG is a security group of the target project.
type PlannedSG struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// PlannedNIC is one network interface, in the original order.
type PlannedNIC struct {
	NetworkID    string `json:"network_id"`
	NetworkName  string `json:"network_name"`
	FixedIP      string `json:"fixed_ip,omitempty"`
	PortSecurity bool   `json:"port_security"`
	// OwnPort: cairn creates the port itself, with the planned security
	// groups, or without any when port security is disabled (Nova refuses
	// a server whose requested groups cannot apply to one of its ports).
	OwnPort bool `json:"own_port"`
}

// PlannedVolume is one volume with its place in the server.
type PlannedVolume struct {
	VolumeSpec
	BootIndex    int    `json:"boot_index"` // 0 boots, -1 none
	Device       string `json:"device,omitempty"`
	DeleteOnTerm bool   `json:"delete_on_termination"`
	Bytes        int64  `json:"bytes"`
}

// plan resolves everything against the target cloud without creating
// anything. Problems that make the restore impossible are errors.
func (rs *restorer) plan(ctx context.Context) (*RestorePlan, error) {
	cl := rs.cloud
	if cl.Compute == nil || cl.Volume == nil {
		return nil, fmt.Errorf("the cloud's catalog lacks compute (Nova) or volume (Cinder v3): both are needed to restore a server")
	}
	pl := &RestorePlan{Project: cl.ProjectID(), Metadata: map[string]string{}}
	pl.ServerName = rs.opts.Name
	if pl.ServerName == "" {
		pl.ServerName = rs.point.VM
		if rs.def != nil {
			pl.ServerName = rs.def.Server.Name
		}
	}
	if rs.def != nil {
		for k, v := range rs.def.Server.Metadata {
			pl.Metadata[k] = v
		}
		pl.Tags = append(pl.Tags, rs.def.Server.Tags...)
		pl.AvailabilityZone = rs.def.Server.AZ
		pl.PowerOn = rs.def.Server.Status != "SHUTOFF" && rs.def.Server.Status != "STOPPED"
	} else {
		pl.PowerOn = true
		if rs.opts.Flavor == "" {
			return nil, fmt.Errorf("restore point %s was made from local image files (source %q) and holds no server definition: pass --flavor (and --network NET, or --no-network)", rs.point.ID, rs.point.Source)
		}
	}
	if rs.opts.AvailabilityZone != "" {
		pl.AvailabilityZone = rs.opts.AvailabilityZone
	}
	if rs.opts.PowerOn != nil {
		pl.PowerOn = *rs.opts.PowerOn
	}
	steps := []func(context.Context, *RestorePlan) error{
		rs.planVolumes, rs.planFlavor, rs.planKeypair, rs.planSecurityGroups, rs.planNetworks, rs.planAZ, rs.checkName, rs.checkQuotas,
	}
	for _, step := range steps {
		if err := step(ctx, pl); err != nil {
			return nil, err
		}
	}
	return pl, nil
}

// planVolumes maps each disk of the restore point to a volume.
func (rs *restorer) planVolumes(ctx context.Context, pl *RestorePlan) error {
	types, err := rs.volumeTypes(ctx)
	if err != nil {
		return err
	}
	for i, d := range rs.point.Disks {
		v := PlannedVolume{VolumeSpec: VolumeSpec{Disk: d.Name, SizeGB: restoreGiB(d.Size)}, BootIndex: -1, Bytes: d.Size}
		v.Name = pl.ServerName + "-" + d.Name
		v.Description = fmt.Sprintf("restored by cairn from restore point %s disk %s", rs.point.ID, d.Name)
		if rs.def == nil {
			if i == 0 {
				v.BootIndex, v.Bootable = 0, true
			}
		} else if err := rs.fromCaptured(&v, pl); err != nil {
			return err
		}
		switch {
		case rs.opts.VolumeType != "":
			if !types[rs.opts.VolumeType] {
				return fmt.Errorf("--volume-type %q does not exist in the target cloud (types: %s)", rs.opts.VolumeType, keys(types))
			}
			v.VolumeType = rs.opts.VolumeType
		case v.VolumeType != "" && !types[v.VolumeType]:
			pl.Warnings = append(pl.Warnings, fmt.Sprintf("volume type %q of disk %s does not exist here; the default type is used (or pass --volume-type)", v.VolumeType, d.Name))
			v.VolumeType = ""
		}
		pl.Volumes = append(pl.Volumes, v)
	}
	sort.SliceStable(pl.Volumes, func(i, j int) bool { return bootOrder(pl.Volumes[i].BootIndex) < bootOrder(pl.Volumes[j].BootIndex) })
	if len(pl.Volumes) == 0 || pl.Volumes[0].BootIndex != 0 {
		return fmt.Errorf("restore point %s has no boot disk", rs.point.ID)
	}
	return nil
}

func bootOrder(i int) int {
	if i < 0 {
		return 1 << 30
	}
	return i
}

// fromCaptured fills a planned volume from the captured definition.
func (rs *restorer) fromCaptured(v *PlannedVolume, pl *RestorePlan) error {
	var dd *DiskDef
	for i := range rs.def.Disks {
		if rs.def.Disks[i].Name == v.Disk {
			dd = &rs.def.Disks[i]
		}
	}
	if dd == nil {
		return fmt.Errorf("restore point %s: disk %s is not described in its definition", rs.point.ID, v.Disk)
	}
	v.BootIndex, v.Device = dd.BootIndex, dd.Device
	if dd.ImageID != "" { // image-backed root: comes back as a boot volume
		v.Bootable, v.BootIndex = true, 0
		v.SizeGB = max(v.SizeGB, rs.def.Flavor.Disk)
		v.ImageMetadata = rs.def.ImageProperties
		v.DeleteOnTerm = true
		pl.Warnings = append(pl.Warnings, fmt.Sprintf("disk %s was the server's image-backed root disk; it comes back as a boot volume", v.Disk))
		return nil
	}
	for _, cv := range rs.def.Volumes {
		if cv.ID == dd.VolumeID {
			v.SizeGB = max(v.SizeGB, cv.Size)
			v.VolumeType, v.Bootable = cv.Type, cv.Bootable || dd.BootIndex == 0
			v.ImageMetadata, v.DeleteOnTerm = cv.ImageMetadata, cv.DeleteOnTerm
			if cv.Name != "" {
				v.Name = cv.Name
			}
			v.Metadata = map[string]string{}
			for k, val := range cv.Metadata {
				if !strings.HasPrefix(k, "cairn_") {
					v.Metadata[k] = val
				}
			}
			if v.Device == "" {
				v.Device = cv.Device
			}
		}
	}
	return nil
}

func (rs *restorer) volumeTypes(ctx context.Context) (map[string]bool, error) {
	var body struct {
		Types []struct {
			Name string `json:"name"`
		} `json:"volume_types"`
	}
	if err := getJSON(ctx, rs.cloud.Volume, "types", &body); err != nil {
		return nil, fmt.Errorf("list volume types: %s", apiMessage(err))
	}
	out := map[string]bool{}
	for _, t := range body.Types {
		out[t.Name] = true
	}
	return out, nil
}

type novaFlavor struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	VCPUs     int    `json:"vcpus"`
	RAM       int    `json:"ram"`
	Disk      int    `json:"disk"`
	Ephemeral int    `json:"OS-FLV-EXT-DATA:ephemeral"`
	Swap      any    `json:"swap"` // "" or a number
	Disabled  bool   `json:"OS-FLV-DISABLED:disabled"`
}

// planFlavor picks --flavor, the captured flavor by name when it still has
// the same size, or else a flavor of the same vCPUs, RAM and disk.
func (rs *restorer) planFlavor(ctx context.Context, pl *RestorePlan) error {
	var body struct {
		Flavors []novaFlavor `json:"flavors"`
	}
	if err := getJSON(ctx, rs.cloud.Compute, "flavors/detail?is_public=None", &body); err != nil {
		return fmt.Errorf("list flavors: %s", apiMessage(err))
	}
	pick := func(f novaFlavor, why string) {
		pl.Flavor = PlannedFlavor{ID: f.ID, Name: f.Name, VCPUs: f.VCPUs, RAM: f.RAM, Disk: f.Disk, Why: why}
	}
	if want := rs.opts.Flavor; want != "" {
		for _, f := range body.Flavors {
			if f.ID == want || f.Name == want {
				pick(f, "--flavor")
				return nil
			}
		}
		return fmt.Errorf("--flavor %q: no such flavor visible to this project", want)
	}
	c := rs.def.Flavor
	same := func(f novaFlavor) bool {
		return f.VCPUs == c.VCPUs && f.RAM == c.RAM && f.Disk == c.Disk && f.Ephemeral == c.Ephemeral
	}
	for _, f := range body.Flavors {
		if f.Name == c.Name && same(f) && !f.Disabled {
			pick(f, "captured flavor")
			return nil
		}
	}
	for _, f := range body.Flavors {
		if same(f) && !f.Disabled {
			pick(f, fmt.Sprintf("captured flavor %q is gone or changed; %q has the same vCPUs, RAM and disk", c.Name, f.Name))
			pl.Warnings = append(pl.Warnings, "flavor: "+pl.Flavor.Why)
			return nil
		}
	}
	return fmt.Errorf("flavor %q (%d vCPU, %d MiB RAM, %d GB disk) no longer exists and no flavor has the same size: pass --flavor NAME", c.Name, c.VCPUs, c.RAM, c.Disk)
}

// planKeypair uses --keypair, the captured key pair when the restoring user
// has it with the same public key, or recreates it from the stored key.
func (rs *restorer) planKeypair(ctx context.Context, pl *RestorePlan) error {
	if rs.opts.Keypair != "" {
		if _, err := rs.getKeypair(ctx, rs.opts.Keypair); err != nil {
			return fmt.Errorf("--keypair %q: %s", rs.opts.Keypair, apiMessage(err))
		}
		pl.KeyName, pl.KeypairAction = rs.opts.Keypair, "use"
		return nil
	}
	pl.KeypairAction = "none"
	if rs.def == nil || rs.def.Keypair == nil || rs.def.Server.KeyName == "" {
		return nil
	}
	k := rs.def.Keypair
	if k.Missing || k.PublicKey == "" {
		have, err := rs.getKeypair(ctx, k.Name)
		if err == nil && have != nil {
			pl.KeyName, pl.KeypairAction = k.Name, "use"
			pl.Warnings = append(pl.Warnings, fmt.Sprintf("key pair %q was already gone at backup time; using the restoring user's key pair of that name", k.Name))
			return nil
		}
		pl.Warnings = append(pl.Warnings, fmt.Sprintf("key pair %q was gone at backup time and its public key is unknown: the server is created without a key pair (or pass --keypair)", k.Name))
		return nil
	}
	pl.publicKey, pl.keyType = k.PublicKey, k.Type
	for _, name := range []string{k.Name, k.Name + "-restored"} {
		have, err := rs.getKeypair(ctx, name)
		switch {
		case isNotFound(err):
			pl.KeyName, pl.KeypairAction = name, "create"
			if name != k.Name {
				pl.Warnings = append(pl.Warnings, fmt.Sprintf("the restoring user has a different key pair named %q; the stored public key is recreated as %q", k.Name, name))
			}
			return nil
		case err != nil:
			return fmt.Errorf("key pair %q: %s", name, apiMessage(err))
		case sameKey(have.PublicKey, k.PublicKey):
			pl.KeyName, pl.KeypairAction = name, "use"
			return nil
		}
	}
	return fmt.Errorf("key pairs %q and %q of the restoring user both hold other public keys: pass --keypair NAME", k.Name, k.Name+"-restored")
}

func sameKey(a, b string) bool {
	fa, fb := strings.Fields(a), strings.Fields(b)
	return len(fa) >= 2 && len(fb) >= 2 && fa[0] == fb[0] && fa[1] == fb[1]
}

func (rs *restorer) getKeypair(ctx context.Context, name string) (*KeypairDef, error) {
	var body struct {
		Keypair KeypairDef `json:"keypair"`
	}
	if err := getJSON(ctx, rs.cloud.Compute, "os-keypairs/"+url.PathEscape(name), &body); err != nil {
		return nil, err
	}
	return &body.Keypair, nil
}

type neutronSG struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	ProjectID string `json:"project_id"`
}

// planSecurityGroups resolves the groups in the target project: --security-group,
// or the captured ones (same ID when the project is the same, else by name).
func (rs *restorer) planSecurityGroups(ctx context.Context, pl *RestorePlan) error {
	if rs.cloud.Network == nil {
		return nil
	}
	var body struct {
		SGs []neutronSG `json:"security_groups"`
	}
	if err := getJSON(ctx, rs.cloud.Network, "security-groups?project_id="+url.QueryEscape(pl.Project), &body); err != nil {
		return fmt.Errorf("list security groups: %s", apiMessage(err))
	}
	find := func(idOrName string) (neutronSG, error) {
		var hits []neutronSG
		for _, sg := range body.SGs {
			if sg.ID == idOrName {
				return sg, nil
			}
			if sg.Name == idOrName {
				hits = append(hits, sg)
			}
		}
		switch len(hits) {
		case 1:
			return hits[0], nil
		case 0:
			return neutronSG{}, fmt.Errorf("security group %q does not exist in project %s", idOrName, pl.Project)
		}
		return neutronSG{}, fmt.Errorf("security group name %q is ambiguous in project %s: give its ID", idOrName, pl.Project)
	}
	var want []string
	switch {
	case len(rs.opts.SecurityGroups) > 0:
		want = rs.opts.SecurityGroups
	case rs.def != nil:
		for _, sg := range rs.def.SecurityGroups {
			if sg.ID != "" && rs.def.Server.ProjectID == pl.Project {
				want = append(want, sg.ID)
			} else {
				want = append(want, sg.Name)
			}
		}
	}
	seen := map[string]bool{}
	for _, w := range want {
		sg, err := find(w)
		if err != nil {
			return fmt.Errorf("%w: create it first or pass --security-group", err)
		}
		if !seen[sg.ID] {
			seen[sg.ID] = true
			pl.SecurityGroups = append(pl.SecurityGroups, PlannedSG{ID: sg.ID, Name: sg.Name})
		}
	}
	return nil
}

type neutronNet struct {
	ID           string `json:"id"`
	Name         string `json:"name"`
	PortSecurity *bool  `json:"port_security_enabled"`
	Status       string `json:"status"`
}

// planNetworks resolves --network choices, or the captured ports' networks
// (keeping each original fixed IP when it is free).
func (rs *restorer) planNetworks(ctx context.Context, pl *RestorePlan) error {
	if rs.opts.NoNetwork {
		return nil
	}
	choices := rs.opts.Networks
	keepIPs := false
	if len(choices) == 0 && rs.def != nil {
		keepIPs = true
		for _, p := range rs.def.Ports {
			c := NetworkChoice{Network: p.NetworkID}
			if len(p.FixedIPs) > 0 {
				c.FixedIP = p.FixedIPs[0].IPAddress
			}
			choices = append(choices, c)
		}
	}
	if len(choices) == 0 {
		if rs.def == nil {
			return fmt.Errorf("restore point %s holds no server definition: pass --network NET (or --no-network)", rs.point.ID)
		}
		return nil
	}
	if rs.cloud.Network == nil {
		return fmt.Errorf("the cloud's catalog has no network (Neutron) endpoint; pass --no-network")
	}
	for _, c := range choices {
		n, err := rs.findNetwork(ctx, c.Network)
		if err != nil {
			return err
		}
		nic := PlannedNIC{NetworkID: n.ID, NetworkName: n.Name, FixedIP: c.FixedIP, PortSecurity: n.PortSecurity == nil || *n.PortSecurity}
		nic.OwnPort = true
		if !nic.PortSecurity {
			pl.Warnings = append(pl.Warnings, fmt.Sprintf("network %s has port security disabled: its port is created without security groups", n.Name))
		}
		if nic.FixedIP != "" {
			used, err := rs.ipInUse(ctx, n.ID, nic.FixedIP)
			if err != nil {
				return err
			}
			if used && keepIPs {
				pl.Warnings = append(pl.Warnings, fmt.Sprintf("original address %s on %s is in use; Neutron picks another", nic.FixedIP, n.Name))
				nic.FixedIP = ""
			} else if used {
				return fmt.Errorf("--network %s=%s: the address is already in use on that network", c.Network, c.FixedIP)
			}
		}
		pl.Networks = append(pl.Networks, nic)
	}
	return nil
}

func (rs *restorer) findNetwork(ctx context.Context, idOrName string) (*neutronNet, error) {
	var one struct {
		Network neutronNet `json:"network"`
	}
	if err := getJSON(ctx, rs.cloud.Network, "networks/"+url.PathEscape(idOrName), &one); err == nil {
		return &one.Network, nil
	} else if !isNotFound(err) {
		return nil, fmt.Errorf("network %s: %s", idOrName, apiMessage(err))
	}
	var list struct {
		Networks []neutronNet `json:"networks"`
	}
	if err := getJSON(ctx, rs.cloud.Network, "networks?name="+url.QueryEscape(idOrName), &list); err != nil {
		return nil, fmt.Errorf("network %s: %s", idOrName, apiMessage(err))
	}
	switch len(list.Networks) {
	case 1:
		return &list.Networks[0], nil
	case 0:
		return nil, fmt.Errorf("network %q does not exist or is not visible to project %s: pass --network NET for a network it can use", idOrName, rs.cloud.ProjectID())
	}
	return nil, fmt.Errorf("network name %q is ambiguous: give its ID", idOrName)
}

func (rs *restorer) ipInUse(ctx context.Context, netID, ip string) (bool, error) {
	var body struct {
		Ports []struct {
			ID string `json:"id"`
		} `json:"ports"`
	}
	q := "ports?network_id=" + url.QueryEscape(netID) + "&fixed_ips=" + url.QueryEscape("ip_address="+ip)
	if err := getJSON(ctx, rs.cloud.Network, q, &body); err != nil {
		return false, fmt.Errorf("look up address %s: %s", ip, apiMessage(err))
	}
	return len(body.Ports) > 0, nil
}

// planAZ drops a captured availability zone the target cloud lacks.
func (rs *restorer) planAZ(ctx context.Context, pl *RestorePlan) error {
	if pl.AvailabilityZone == "" {
		return nil
	}
	var body struct {
		Zones []struct {
			Name  string `json:"zoneName"`
			State struct {
				Available bool `json:"available"`
			} `json:"zoneState"`
		} `json:"availabilityZoneInfo"`
	}
	if err := getJSON(ctx, rs.cloud.Compute, "os-availability-zone", &body); err != nil {
		return fmt.Errorf("list availability zones: %s", apiMessage(err))
	}
	for _, z := range body.Zones {
		if z.Name == pl.AvailabilityZone && z.State.Available {
			return nil
		}
	}
	if rs.opts.AvailabilityZone != "" {
		return fmt.Errorf("--availability-zone %q is not an available compute zone here", rs.opts.AvailabilityZone)
	}
	pl.Warnings = append(pl.Warnings, fmt.Sprintf("availability zone %q does not exist here; Nova picks one", pl.AvailabilityZone))
	pl.AvailabilityZone = ""
	return nil
}

// checkName refuses a server name already used in the project.
func (rs *restorer) checkName(ctx context.Context, pl *RestorePlan) error {
	var body struct {
		Servers []struct {
			ID string `json:"id"`
		} `json:"servers"`
	}
	q := "servers?name=" + url.QueryEscape("^"+regexp.QuoteMeta(pl.ServerName)+"$")
	if err := getJSON(ctx, rs.cloud.Compute, q, &body); err != nil {
		return fmt.Errorf("look up server name %q: %s", pl.ServerName, apiMessage(err))
	}
	if len(body.Servers) > 0 {
		return fmt.Errorf("a server named %q already exists in project %s (%s): pass --name NEW", pl.ServerName, pl.Project, body.Servers[0].ID)
	}
	pl.Checks = append(pl.Checks, fmt.Sprintf("name %q is free", pl.ServerName))
	return nil
}

// checkQuotas compares what the restore needs with the project's limits.
func (rs *restorer) checkQuotas(ctx context.Context, pl *RestorePlan) error {
	var nova struct {
		Limits struct {
			Absolute map[string]int `json:"absolute"`
		} `json:"limits"`
	}
	if err := getJSON(ctx, rs.cloud.Compute, "limits", &nova); err != nil {
		return fmt.Errorf("read compute limits: %s", apiMessage(err))
	}
	var cinder struct {
		Limits struct {
			Absolute map[string]int `json:"absolute"`
		} `json:"limits"`
	}
	if err := getJSON(ctx, rs.cloud.Volume, "limits", &cinder); err != nil {
		return fmt.Errorf("read volume limits: %s", apiMessage(err))
	}
	gb := 0
	for _, v := range pl.Volumes {
		gb += v.SizeGB
	}
	n, c := nova.Limits.Absolute, cinder.Limits.Absolute
	checks := []struct {
		what            string
		need, max, used int
	}{
		{"instances", 1, n["maxTotalInstances"], n["totalInstancesUsed"]},
		{"cores", pl.Flavor.VCPUs, n["maxTotalCores"], n["totalCoresUsed"]},
		{"RAM (MiB)", pl.Flavor.RAM, n["maxTotalRAMSize"], n["totalRAMUsed"]},
		{"volumes", len(pl.Volumes), c["maxTotalVolumes"], c["totalVolumesUsed"]},
		{"volume gigabytes", gb, c["maxTotalVolumeGigabytes"], c["totalGigabytesUsed"]},
	}
	var short []string
	for _, q := range checks {
		if q.max < 0 {
			pl.Checks = append(pl.Checks, fmt.Sprintf("quota %s: unlimited", q.what))
			continue
		}
		pl.Checks = append(pl.Checks, fmt.Sprintf("quota %s: need %d, %d of %d used", q.what, q.need, q.used, q.max))
		if q.used+q.need > q.max {
			short = append(short, fmt.Sprintf("%s (need %d, %d of %d used)", q.what, q.need, q.used, q.max))
		}
	}
	if len(short) > 0 {
		return fmt.Errorf("quota exceeded in project %s for %s: free some or ask for a higher quota", pl.Project, strings.Join(short, ", "))
	}
	return nil
}

func keys(m map[string]bool) string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}
