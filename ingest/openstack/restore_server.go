package openstack

import (
	"context"
	"fmt"
	"net/url"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/v3/volumes"

	"github.com/cairn-backup/cairn/repo"
)

// RestoreVM brings restore point p back as a new boot-from-volume server in
// the project cl is scoped to: one volume per disk, filled without a proxy
// VM, then the server with the captured (or given) flavor, device layout,
// key pair, security groups, networks, metadata, tags and power state.
// On failure (and on ctx cancellation) it removes everything it created,
// unless o.KeepOnFailure; temporaries are always removed. With o.DryRun
// it only plans and checks.
func RestoreVM(ctx context.Context, cl *Cloud, r *repo.Repository, p *repo.RestorePoint, o RestoreVMOptions) (*RestoreResult, error) {
	t0 := time.Now()
	rs, err := newRestorer(cl, r, p, o)
	if err != nil {
		return nil, err
	}
	pl, err := rs.plan(ctx)
	if err != nil {
		return nil, fmt.Errorf("restore of %s into project %s: %w", p.ID, cl.ProjectID(), err)
	}
	rs.result.Plan = pl
	rs.result.Notes = append(rs.result.Notes, pl.Warnings...)
	if o.DryRun {
		return rs.result, nil
	}
	for _, w := range pl.Warnings {
		if o.Note != nil {
			o.Note("note: " + w)
		}
	}
	err = rs.finish(ctx, rs.execute(ctx, pl))
	rs.result.Duration = time.Since(t0).Seconds()
	return rs.result, err
}

func (rs *restorer) execute(ctx context.Context, pl *RestorePlan) error {
	for _, v := range pl.Volumes {
		rs.progress.Total.Add(v.Bytes)
	}
	if err := rs.createKeypair(ctx, pl); err != nil {
		return err
	}
	if err := rs.createSecurityGroups(ctx, pl); err != nil {
		return err
	}
	// ports before volumes: a refused MAC address fails in seconds
	nets, err := rs.networks(ctx, pl)
	if err != nil {
		return err
	}
	var bdm []map[string]any
	for _, v := range pl.Volumes {
		vol, err := rs.fillVolume(ctx, v.VolumeSpec)
		if err != nil {
			return err
		}
		rs.result.Volumes = append(rs.result.Volumes, CreatedVolume{Disk: v.Disk, ID: vol.ID, Name: v.Name, SizeGB: vol.Size, Type: vol.VolumeType, Bootable: v.Bootable})
		m := map[string]any{"uuid": vol.ID, "source_type": "volume", "destination_type": "volume", "delete_on_termination": v.DeleteOnTerm}
		if v.BootIndex >= 0 {
			m["boot_index"] = v.BootIndex
		}
		if v.Device != "" {
			m["device_name"] = v.Device
		}
		bdm = append(bdm, m)
	}
	return rs.createServer(ctx, pl, bdm, nets)
}

// fillVolume creates and fills the volume of one disk by the chosen transfer.
func (rs *restorer) fillVolume(ctx context.Context, spec VolumeSpec) (*volumes.Volume, error) {
	dr, err := rs.repo.OpenDisk(rs.point, spec.Disk, 1)
	if err != nil {
		return nil, err
	}
	rs.progress.Disk.Store(spec.Disk)
	if rs.opts.Transfer == "attach" {
		return rs.fillVolumeAttach(ctx, dr, spec)
	}
	return rs.fillVolumeGlance(ctx, dr, spec)
}

func (rs *restorer) createKeypair(ctx context.Context, pl *RestorePlan) error {
	if pl.KeypairAction != "create" {
		return nil
	}
	kp := map[string]any{"name": pl.KeyName, "public_key": pl.publicKey}
	if pl.keyType != "" {
		kp["type"] = pl.keyType
	}
	if err := postJSON(ctx, rs.cloud.Compute, "os-keypairs", map[string]any{"keypair": kp}, nil); err != nil {
		return fmt.Errorf("recreate key pair %q from the stored public key: %s", pl.KeyName, apiMessage(err))
	}
	name := pl.KeyName
	rs.undo.add("keypair", name, name, false, func(ctx context.Context) error {
		return deleteURL(ctx, rs.cloud.Compute, "os-keypairs/"+url.PathEscape(name))
	})
	rs.result.Keypair = name
	rs.created("keypair", name, "from the stored public key")
	return nil
}

func (rs *restorer) createServer(ctx context.Context, pl *RestorePlan, bdm []map[string]any, nets any) error {
	s := map[string]any{
		"name": pl.ServerName, "flavorRef": pl.Flavor.ID, "block_device_mapping_v2": bdm,
		"networks": nets, "metadata": pl.Metadata,
	}
	if len(pl.Tags) > 0 {
		s["tags"] = pl.Tags
	}
	if pl.KeyName != "" {
		s["key_name"] = pl.KeyName
	}
	if pl.AvailabilityZone != "" {
		s["availability_zone"] = pl.AvailabilityZone
	}
	novaPorts := false
	for _, n := range pl.Networks {
		novaPorts = novaPorts || !n.OwnPort
	}
	if novaPorts && len(pl.SecurityGroups) > 0 {
		var sgs []map[string]string
		for _, sg := range pl.SecurityGroups {
			sgs = append(sgs, map[string]string{"name": sg.ID})
		}
		s["security_groups"] = sgs
	}
	var body struct {
		Server struct {
			ID string `json:"id"`
		} `json:"server"`
	}
	t0 := time.Now()
	if err := postJSON(ctx, rs.cloud.Compute, "servers", map[string]any{"server": s}, &body); err != nil {
		return fmt.Errorf("create server %q: %s", pl.ServerName, apiMessage(err))
	}
	id := body.Server.ID
	rs.undo.add("server", id, pl.ServerName, false, func(ctx context.Context) error { return rs.deleteServer(ctx, id) })
	rs.created("server", id, pl.ServerName)
	rs.result.Server = &CreatedServer{ID: id, Name: pl.ServerName, Flavor: pl.Flavor.Name}
	if err := rs.waitServer(ctx, id, "ACTIVE"); err != nil {
		return err
	}
	rs.result.Server.Status = "ACTIVE"
	rs.timing("server_create", time.Since(t0))
	if err := rs.recordPorts(ctx, pl, id); err != nil {
		return err
	}
	if !pl.PowerOn {
		if err := postJSON(ctx, rs.cloud.Compute, "servers/"+id+"/action", map[string]any{"os-stop": nil}, nil); err != nil {
			return fmt.Errorf("stop server %s: %s", id, apiMessage(err))
		}
		if err := rs.waitServer(ctx, id, "SHUTOFF"); err != nil {
			return err
		}
		rs.result.Server.Status = "SHUTOFF"
	}
	return nil
}

func (rs *restorer) waitServer(ctx context.Context, id, want string) error {
	return restoreWait(ctx, "server "+id+" to become "+want, restoreServerTimeout, func(ctx context.Context) (bool, error) {
		var body struct {
			Server struct {
				Status string `json:"status"`
				Task   string `json:"OS-EXT-STS:task_state"`
				Fault  struct {
					Message string `json:"message"`
				} `json:"fault"`
			} `json:"server"`
		}
		if err := getJSON(ctx, rs.cloud.Compute, "servers/"+id, &body); err != nil {
			return false, fmt.Errorf("server %s: %s", id, apiMessage(err))
		}
		if body.Server.Status == "ERROR" {
			return false, fmt.Errorf("server %s went to ERROR: %s", id, body.Server.Fault.Message)
		}
		return body.Server.Status == want && body.Server.Task == "", nil
	})
}

func (rs *restorer) deleteServer(ctx context.Context, id string) error {
	if err := deleteURL(ctx, rs.cloud.Compute, "servers/"+id); err != nil {
		return err
	}
	err := restoreWait(ctx, "server "+id+" to be deleted", restoreDeleteTimeout, func(ctx context.Context) (bool, error) {
		var body map[string]any
		err := getJSON(ctx, rs.cloud.Compute, "servers/"+id, &body)
		if isNotFound(err) {
			return true, nil
		}
		return false, err
	})
	if err != nil {
		return err
	}
	return rs.deletePortsOf(ctx, id)
}
