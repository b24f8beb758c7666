package openstack

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"path"
	"sort"
	"strings"
)

// Selection picks servers. Empty fields match everything; set fields must
// all match. Servers names or IDs are matched exactly.
type Selection struct {
	Servers     []string          // name or ID (repeatable)
	Tags        []string          // server must carry every tag
	Metadata    map[string]string // server metadata key=value, all must match
	NamePattern string            // glob, as path.Match
	Project     string            // project ID (admin, with AllProjects implied)
	AllProjects bool
}

// Volume is one attached volume as cairn sees it.
type Volume struct {
	ID            string            `json:"id"`
	Name          string            `json:"name"`
	Size          int               `json:"size_gib"`
	Type          string            `json:"volume_type"`
	Bootable      bool              `json:"bootable"`
	Status        string            `json:"status"`
	Device        string            `json:"device"`
	BootIndex     int               `json:"boot_index"` // 0 for the root volume, -1 otherwise
	Multiattach   bool              `json:"multiattach,omitempty"`
	Encrypted     bool              `json:"encrypted,omitempty"`
	AZ            string            `json:"availability_zone,omitempty"`
	Metadata      map[string]string `json:"metadata,omitempty"`
	ImageMetadata map[string]string `json:"volume_image_metadata,omitempty"`
	DeleteOnTerm  bool              `json:"delete_on_termination"`
}

// Server is a Nova server with what cairn needs to decide how to protect it.
type Server struct {
	ID             string            `json:"id"`
	Name           string            `json:"name"`
	Status         string            `json:"status"`
	ProjectID      string            `json:"project_id"`
	UserID         string            `json:"user_id"`
	Tags           []string          `json:"tags"`
	Metadata       map[string]string `json:"metadata"`
	ImageID        string            `json:"image_id,omitempty"` // image-backed root disk
	BootFromVolume bool              `json:"boot_from_volume"`
	RootDevice     string            `json:"root_device_name,omitempty"`
	AZ             string            `json:"availability_zone,omitempty"`
	KeyName        string            `json:"key_name,omitempty"`
	Volumes        []Volume          `json:"volumes"`
	// ImageProperties are those of the image behind the root disk: the
	// boot volume's volume_image_metadata, or the Glance image's.
	ImageProperties map[string]string `json:"image_properties,omitempty"`
	Quiesce         QuiesceInfo       `json:"quiesce"`
	Problems        []string          `json:"problems,omitempty"` // why it cannot be protected
	Warnings        []string          `json:"warnings,omitempty"`

	raw map[string]json.RawMessage
}

// Protectable reports whether cairn can back the server up.
func (s *Server) Protectable() bool { return len(s.Problems) == 0 }

// novaServer is the part of Nova's server body (2.79) cairn decodes.
type novaServer struct {
	ID        string            `json:"id"`
	Name      string            `json:"name"`
	Status    string            `json:"status"`
	TenantID  string            `json:"tenant_id"`
	UserID    string            `json:"user_id"`
	Tags      []string          `json:"tags"`
	Metadata  map[string]string `json:"metadata"`
	Image     json.RawMessage   `json:"image"` // "" or {"id": ...}
	KeyName   string            `json:"key_name"`
	AZ        string            `json:"OS-EXT-AZ:availability_zone"`
	RootDev   string            `json:"OS-EXT-SRV-ATTR:root_device_name"`
	TaskState *string           `json:"OS-EXT-STS:task_state"`
	Volumes   []struct {
		ID           string `json:"id"`
		DeleteOnTerm bool   `json:"delete_on_termination"`
	} `json:"os-extended-volumes:volumes_attached"`
}

// cinderVolume is the part of Cinder's volume body cairn decodes.
type cinderVolume struct {
	ID            string            `json:"id"`
	Name          string            `json:"name"`
	Size          int               `json:"size"`
	Type          string            `json:"volume_type"`
	Bootable      string            `json:"bootable"`
	Status        string            `json:"status"`
	Multiattach   bool              `json:"multiattach"`
	Encrypted     bool              `json:"encrypted"`
	AZ            string            `json:"availability_zone"`
	Metadata      map[string]string `json:"metadata"`
	ImageMetadata map[string]string `json:"volume_image_metadata"`
	Attachments   []struct {
		ServerID     string `json:"server_id"`
		Device       string `json:"device"`
		AttachmentID string `json:"attachment_id"`
	} `json:"attachments"`
}

// ListServers returns the selected servers with their volumes, sorted by
// project and name. Unselected servers cost one list entry each.
func (cl *Cloud) ListServers(ctx context.Context, sel Selection) ([]*Server, error) {
	if cl.Compute == nil {
		return nil, fmt.Errorf("the catalog has no compute (Nova) endpoint for these credentials")
	}
	q := url.Values{}
	if sel.AllProjects || sel.Project != "" {
		if !cl.IsAdmin() && !cl.System {
			return nil, fmt.Errorf("--all-projects and --project need the admin role; the token of %s has roles %v", cl.User.Name, cl.Roles)
		}
		q.Set("all_tenants", "1")
		if sel.Project != "" {
			q.Set("project_id", sel.Project)
		}
	}
	if len(sel.Tags) > 0 {
		q.Set("tags", strings.Join(sel.Tags, ","))
	}
	var all []novaServer
	var raws []map[string]json.RawMessage
	marker := ""
	for {
		qq := url.Values{}
		for k, v := range q {
			qq[k] = v
		}
		qq.Set("limit", "200")
		if marker != "" {
			qq.Set("marker", marker)
		}
		var page struct {
			Servers []json.RawMessage `json:"servers"`
		}
		if err := getJSON(ctx, cl.Compute, "servers/detail?"+qq.Encode(), &page); err != nil {
			return nil, fmt.Errorf("list servers: %s", apiMessage(err))
		}
		for _, r := range page.Servers {
			var ns novaServer
			var raw map[string]json.RawMessage
			if err := json.Unmarshal(r, &ns); err != nil {
				return nil, fmt.Errorf("list servers: %w", err)
			}
			json.Unmarshal(r, &raw)
			all, raws = append(all, ns), append(raws, raw)
		}
		if len(page.Servers) < 200 {
			break
		}
		marker = all[len(all)-1].ID
	}
	var out []*Server
	for i, ns := range all {
		if !sel.matches(ns) {
			continue
		}
		s, err := cl.describe(ctx, ns, raws[i])
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	for _, want := range sel.Servers {
		if !foundServer(out, want) {
			return nil, fmt.Errorf("server %q not found (by name or ID) among the servers these credentials see", want)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].ProjectID != out[j].ProjectID {
			return out[i].ProjectID < out[j].ProjectID
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}

func foundServer(list []*Server, want string) bool {
	for _, s := range list {
		if s.ID == want || s.Name == want {
			return true
		}
	}
	return false
}

func (sel Selection) matches(ns novaServer) bool {
	if len(sel.Servers) > 0 {
		ok := false
		for _, w := range sel.Servers {
			ok = ok || w == ns.ID || w == ns.Name
		}
		if !ok {
			return false
		}
	}
	if sel.NamePattern != "" {
		if ok, _ := path.Match(sel.NamePattern, ns.Name); !ok {
			return false
		}
	}
	for _, t := range sel.Tags {
		found := false
		for _, have := range ns.Tags {
			found = found || have == t
		}
		if !found {
			return false
		}
	}
	for k, v := range sel.Metadata {
		if ns.Metadata[k] != v {
			return false
		}
	}
	if sel.Project != "" && ns.TenantID != sel.Project {
		return false
	}
	return true
}

// GetServer describes one server by ID.
func (cl *Cloud) GetServer(ctx context.Context, id string) (*Server, error) {
	var body struct {
		Server json.RawMessage `json:"server"`
	}
	if err := getJSON(ctx, cl.Compute, "servers/"+id, &body); err != nil {
		return nil, fmt.Errorf("server %s: %s", id, apiMessage(err))
	}
	var ns novaServer
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(body.Server, &ns); err != nil {
		return nil, err
	}
	json.Unmarshal(body.Server, &raw)
	return cl.describe(ctx, ns, raw)
}

// describe completes a server with its volumes, image properties and the
// verdict on protecting it.
func (cl *Cloud) describe(ctx context.Context, ns novaServer, raw map[string]json.RawMessage) (*Server, error) {
	s := &Server{
		ID: ns.ID, Name: ns.Name, Status: ns.Status, ProjectID: ns.TenantID, UserID: ns.UserID,
		Tags: ns.Tags, Metadata: ns.Metadata, KeyName: ns.KeyName, AZ: ns.AZ, RootDevice: ns.RootDev, raw: raw,
	}
	var img struct {
		ID string `json:"id"`
	}
	if json.Unmarshal(ns.Image, &img) == nil && img.ID != "" {
		s.ImageID = img.ID
	}
	s.BootFromVolume = s.ImageID == ""
	for _, a := range ns.Volumes {
		v, err := cl.getVolume(ctx, a.ID)
		if err != nil {
			if isNotFound(err) {
				s.Problems = append(s.Problems, fmt.Sprintf("attached volume %s is not visible to these credentials", a.ID))
				continue
			}
			return nil, fmt.Errorf("server %s (%s): volume %s: %s", s.Name, s.ID, a.ID, apiMessage(err))
		}
		vol := v.toVolume(s.ID)
		vol.DeleteOnTerm = a.DeleteOnTerm
		s.Volumes = append(s.Volumes, vol)
	}
	markBootVolume(s)
	if s.BootFromVolume {
		for _, v := range s.Volumes {
			if v.BootIndex == 0 {
				s.ImageProperties = v.ImageMetadata
			}
		}
	} else if cl.Image != nil {
		props, err := cl.imageProperties(ctx, s.ImageID)
		if err != nil && !isNotFound(err) {
			return nil, fmt.Errorf("server %s (%s): image %s: %s", s.Name, s.ID, s.ImageID, apiMessage(err))
		}
		s.ImageProperties = props
	}
	s.Quiesce = quiesceInfo(s.ImageProperties)
	s.judge(ns)
	return s, nil
}

func (v *cinderVolume) toVolume(serverID string) Volume {
	vol := Volume{
		ID: v.ID, Name: v.Name, Size: v.Size, Type: v.Type, Bootable: v.Bootable == "true",
		Status: v.Status, Multiattach: v.Multiattach, Encrypted: v.Encrypted, AZ: v.AZ,
		Metadata: v.Metadata, ImageMetadata: v.ImageMetadata, BootIndex: -1,
	}
	for _, a := range v.Attachments {
		if a.ServerID == serverID {
			vol.Device = a.Device
		}
	}
	return vol
}

// markBootVolume sets BootIndex 0 on the root volume of a volume-backed
// server: the one at the root device name (visible to admins), else the
// bootable volume at the lowest device name.
func markBootVolume(s *Server) {
	if !s.BootFromVolume || len(s.Volumes) == 0 {
		return
	}
	sort.SliceStable(s.Volumes, func(i, j int) bool { return s.Volumes[i].Device < s.Volumes[j].Device })
	root := -1
	for i, v := range s.Volumes {
		if s.RootDevice != "" && v.Device == s.RootDevice {
			root = i
		}
	}
	for i, v := range s.Volumes {
		if root < 0 && v.Bootable {
			root = i
		}
	}
	if root < 0 {
		root = 0
	}
	s.Volumes[root].BootIndex = 0
	if root != 0 {
		s.Volumes[0], s.Volumes[root] = s.Volumes[root], s.Volumes[0]
	}
}

// protectableStates are server states in which a snapshot can be taken.
var protectableStates = map[string]bool{"ACTIVE": true, "SHUTOFF": true, "PAUSED": true, "SUSPENDED": true, "STOPPED": true}

// judge fills Problems and Warnings.
func (s *Server) judge(ns novaServer) {
	if !protectableStates[s.Status] {
		s.Problems = append(s.Problems, fmt.Sprintf("server is %s; cairn backs up servers that are ACTIVE, SHUTOFF, PAUSED or SUSPENDED", s.Status))
	}
	if ns.TaskState != nil && *ns.TaskState != "" {
		s.Warnings = append(s.Warnings, fmt.Sprintf("a %s task is running on the server", *ns.TaskState))
	}
	if s.BootFromVolume && len(s.Volumes) == 0 {
		s.Problems = append(s.Problems, "server has neither an image-backed root disk nor an attached volume: nothing to read")
	}
	for _, v := range s.Volumes {
		switch v.Status {
		case "in-use", "available":
		default:
			s.Problems = append(s.Problems, fmt.Sprintf("volume %s (%s) is %q; a snapshot needs in-use or available", v.Name, v.ID, v.Status))
		}
	}
	if s.Quiesce.CouldQuiesce && !s.Quiesce.Requested {
		s.Warnings = append(s.Warnings, s.Quiesce.Advice)
	}
	if !s.BootFromVolume {
		s.Warnings = append(s.Warnings, "image-backed root disk: read through a Nova image snapshot (ephemeral and swap disks of the flavor are not included)")
	}
}

func (cl *Cloud) getVolume(ctx context.Context, id string) (*cinderVolume, error) {
	if cl.Volume == nil {
		return nil, fmt.Errorf("the catalog has no block-storage (Cinder v3) endpoint")
	}
	var body struct {
		Volume cinderVolume `json:"volume"`
	}
	if err := getJSON(ctx, cl.Volume, "volumes/"+id, &body); err != nil {
		return nil, err
	}
	return &body.Volume, nil
}

// imageProperties returns a Glance image's extra properties as strings.
func (cl *Cloud) imageProperties(ctx context.Context, id string) (map[string]string, error) {
	var body map[string]any
	if err := getJSON(ctx, cl.Image, "images/"+id, &body); err != nil {
		return nil, err
	}
	core := map[string]bool{"id": true, "name": true, "status": true, "visibility": true, "protected": true,
		"checksum": true, "os_hash_algo": true, "os_hash_value": true, "owner": true, "size": true,
		"virtual_size": true, "min_ram": true, "min_disk": true, "created_at": true, "updated_at": true,
		"tags": true, "self": true, "file": true, "schema": true, "locations": true, "direct_url": true,
		"os_hidden": true, "stores": true}
	out := make(map[string]string)
	for k, v := range body {
		if core[k] || v == nil {
			continue
		}
		switch t := v.(type) {
		case string:
			out[k] = t
		default:
			b, _ := json.Marshal(t)
			out[k] = string(b)
		}
	}
	return out, nil
}
