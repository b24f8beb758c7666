package openstack

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"time"
)

// DefinitionVersion is bumped when Definition changes incompatibly.
const DefinitionVersion = 1

// Definition is everything needed to recreate a server, stored as JSON in
// the restore point (Source "openstack"). Restore reads it back.
type Definition struct {
	Version     int       `json:"version"`
	CapturedAt  time.Time `json:"captured_at"`
	Cloud       string    `json:"cloud,omitempty"` // Keystone URL
	Region      string    `json:"region,omitempty"`
	Consistency string    `json:"consistency"` // "application", "filesystem", "crash"
	Method      string    `json:"method"`      // "nova-quiesced-snapshot", "cinder-snapshots", "nova-image-snapshot"

	Server          ServerDef         `json:"server"`
	Flavor          FlavorDef         `json:"flavor"`
	Volumes         []Volume          `json:"volumes"`
	Ports           []PortDef         `json:"ports"`
	SecurityGroups  []SecurityGroup   `json:"security_groups"`
	Keypair         *KeypairDef       `json:"keypair,omitempty"`
	ImageProperties map[string]string `json:"image_properties,omitempty"`
	// Disks maps each restore point disk name to what it was read from.
	Disks []DiskDef `json:"disks"`
}

// ServerDef is the server itself.
type ServerDef struct {
	ID             string            `json:"id"`
	Name           string            `json:"name"`
	Status         string            `json:"status"`
	ProjectID      string            `json:"project_id"`
	UserID         string            `json:"user_id"`
	AZ             string            `json:"availability_zone,omitempty"`
	KeyName        string            `json:"key_name,omitempty"`
	Tags           []string          `json:"tags"`
	Metadata       map[string]string `json:"metadata"`
	ImageID        string            `json:"image_id,omitempty"`
	BootFromVolume bool              `json:"boot_from_volume"`
	RootDevice     string            `json:"root_device_name,omitempty"`
	// Raw is Nova's full server body (microversion 2.79), for anything
	// the typed fields leave out.
	Raw map[string]json.RawMessage `json:"raw"`
}

// FlavorDef is the flavor embedded in the server (2.47+).
type FlavorDef struct {
	Name       string            `json:"original_name"`
	VCPUs      int               `json:"vcpus"`
	RAM        int               `json:"ram"`
	Disk       int               `json:"disk"`
	Ephemeral  int               `json:"ephemeral"`
	Swap       int               `json:"swap"`
	ExtraSpecs map[string]string `json:"extra_specs"`
}

// PortDef is a Neutron port of the server.
type PortDef struct {
	ID                  string    `json:"id"`
	Name                string    `json:"name"`
	NetworkID           string    `json:"network_id"`
	NetworkName         string    `json:"network_name,omitempty"`
	MAC                 string    `json:"mac_address"`
	FixedIPs            []FixedIP `json:"fixed_ips"`
	PortSecurityEnabled *bool     `json:"port_security_enabled,omitempty"`
	SecurityGroupIDs    []string  `json:"security_groups"`
	DeviceOwner         string    `json:"device_owner,omitempty"`
}

// FixedIP is one address of a port.
type FixedIP struct {
	SubnetID  string `json:"subnet_id"`
	IPAddress string `json:"ip_address"`
}

// SecurityGroup is a group with its rules.
type SecurityGroup struct {
	ID          string            `json:"id,omitempty"`
	Name        string            `json:"name"`
	Description string            `json:"description,omitempty"`
	Rules       []json.RawMessage `json:"rules,omitempty"`
}

// KeypairDef is the server's key pair with its public key.
type KeypairDef struct {
	Name      string `json:"name"`
	Type      string `json:"type,omitempty"`
	PublicKey string `json:"public_key"`
	// Missing is set when the key pair no longer exists (only the name is known).
	Missing bool `json:"missing,omitempty"`
}

// DiskDef links a restore point disk to its origin.
type DiskDef struct {
	Name       string `json:"name"`                  // disk name in the restore point
	VolumeID   string `json:"volume_id,omitempty"`   // source volume
	SnapshotID string `json:"snapshot_id,omitempty"` // snapshot it was read from
	ImageID    string `json:"image_id,omitempty"`    // root image (image-backed servers)
	Device     string `json:"device,omitempty"`
	BootIndex  int    `json:"boot_index"`
	Size       int64  `json:"size"`
}

// CaptureDefinition reads the server's definition from Nova, Cinder,
// Neutron and Glance. s comes from ListServers/GetServer.
func (cl *Cloud) CaptureDefinition(ctx context.Context, s *Server) (*Definition, error) {
	d := &Definition{
		Version: DefinitionVersion, CapturedAt: time.Now().UTC(), Region: cl.Region,
		Server: ServerDef{
			ID: s.ID, Name: s.Name, Status: s.Status, ProjectID: s.ProjectID, UserID: s.UserID,
			AZ: s.AZ, KeyName: s.KeyName, Tags: s.Tags, Metadata: s.Metadata, ImageID: s.ImageID,
			BootFromVolume: s.BootFromVolume, RootDevice: s.RootDevice, Raw: s.raw,
		},
		Volumes: s.Volumes, ImageProperties: s.ImageProperties,
	}
	if d.Server.Tags == nil {
		d.Server.Tags = []string{}
	}
	if cl.Identity != nil {
		d.Cloud = cl.Identity.IdentityBase
	}
	if raw, ok := s.raw["flavor"]; ok {
		if err := json.Unmarshal(raw, &d.Flavor); err != nil {
			return nil, fmt.Errorf("flavor of server %s: %w", s.Name, err)
		}
	}
	var err error
	if cl.Network != nil {
		if d.Ports, err = cl.serverPorts(ctx, s.ID); err != nil {
			return nil, fmt.Errorf("ports of server %s: %s", s.Name, apiMessage(err))
		}
	}
	if d.SecurityGroups, err = cl.securityGroups(ctx, s, d.Ports); err != nil {
		return nil, fmt.Errorf("security groups of server %s: %s", s.Name, apiMessage(err))
	}
	if s.KeyName != "" {
		if d.Keypair, err = cl.keypair(ctx, s.KeyName, s.UserID); err != nil {
			return nil, fmt.Errorf("key pair %s of server %s: %s", s.KeyName, s.Name, apiMessage(err))
		}
	}
	return d, nil
}

func (cl *Cloud) serverPorts(ctx context.Context, serverID string) ([]PortDef, error) {
	var body struct {
		Ports []PortDef `json:"ports"`
	}
	if err := getJSON(ctx, cl.Network, "ports?device_id="+url.QueryEscape(serverID), &body); err != nil {
		return nil, err
	}
	names := map[string]string{}
	for i, p := range body.Ports {
		if _, ok := names[p.NetworkID]; !ok {
			var n struct {
				Network struct {
					Name string `json:"name"`
				} `json:"network"`
			}
			if err := getJSON(ctx, cl.Network, "networks/"+p.NetworkID, &n); err == nil {
				names[p.NetworkID] = n.Network.Name
			}
		}
		body.Ports[i].NetworkName = names[p.NetworkID]
	}
	if body.Ports == nil {
		body.Ports = []PortDef{}
	}
	return body.Ports, nil
}

// securityGroups resolves the groups of the server's ports (with rules),
// and falls back to the names Nova reports for servers without ports.
func (cl *Cloud) securityGroups(ctx context.Context, s *Server, ports []PortDef) ([]SecurityGroup, error) {
	out := []SecurityGroup{}
	seen := map[string]bool{}
	for _, p := range ports {
		for _, id := range p.SecurityGroupIDs {
			if seen[id] || cl.Network == nil {
				continue
			}
			seen[id] = true
			var body struct {
				SG struct {
					SecurityGroup
					NeutronRules []json.RawMessage `json:"security_group_rules"`
				} `json:"security_group"`
			}
			if err := getJSON(ctx, cl.Network, "security-groups/"+id, &body); err != nil {
				if isNotFound(err) {
					continue
				}
				return nil, err
			}
			sg := body.SG.SecurityGroup
			sg.Rules = body.SG.NeutronRules
			out = append(out, sg)
		}
	}
	if len(out) > 0 {
		return out, nil
	}
	var names []struct {
		Name string `json:"name"`
	}
	if raw, ok := s.raw["security_groups"]; ok {
		json.Unmarshal(raw, &names)
	}
	for _, n := range names {
		if !seen[n.Name] {
			seen[n.Name] = true
			out = append(out, SecurityGroup{Name: n.Name})
		}
	}
	return out, nil
}

func (cl *Cloud) keypair(ctx context.Context, name, userID string) (*KeypairDef, error) {
	var body struct {
		Keypair KeypairDef `json:"keypair"`
	}
	p := "os-keypairs/" + url.PathEscape(name)
	if userID != "" && userID != cl.User.ID && (cl.IsAdmin() || cl.System) {
		p += "?user_id=" + url.QueryEscape(userID)
	}
	err := getJSON(ctx, cl.Compute, p, &body)
	if isNotFound(err) {
		return &KeypairDef{Name: name, Missing: true}, nil
	}
	if err != nil {
		return nil, err
	}
	return &body.Keypair, nil
}
