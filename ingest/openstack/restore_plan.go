package openstack

import (
	"context"
	"fmt"
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

// PlannedSG is a security group of the target project: an existing one
// ("use"), or one recreated from the rules the restore point captured
// ("create": the group is gone, or the target is another project).
type PlannedSG struct {
	ID     string `json:"id,omitempty"` // empty until a recreated group exists
	Name   string `json:"name"`
	Action string `json:"action"` // "use" or "create"
	Rules  int    `json:"rules,omitempty"`
	Why    string `json:"why,omitempty"`

	source   *SecurityGroup // captured group, for "create"
	sourceID string         // its ID in the captured project
	rules    []sgRule       // the captured rules it gets back
	defaults []sgRuleID     // rules Neutron gave the recreated group
}

// PlannedNIC is one network interface, in the original order.
type PlannedNIC struct {
	NetworkID    string `json:"network_id"`
	NetworkName  string `json:"network_name"`
	FixedIP      string `json:"fixed_ip,omitempty"`
	MAC          string `json:"mac_address,omitempty"` // kept from the captured port
	PortSecurity bool   `json:"port_security"`
	// OwnPort: cairn creates the port itself (to set its MAC address, or
	// without security groups on a network without port security while the
	// server has groups); otherwise Nova creates it from the server request.
	OwnPort bool `json:"own_port"`
	// DeletedWithServer: Nova deletes the port when the server is deleted
	// (only ports Nova created itself).
	DeletedWithServer bool   `json:"deleted_with_server"`
	PortWhy           string `json:"port_why,omitempty"`
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
