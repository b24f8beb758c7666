package openstack

import (
	"context"
	"fmt"
	"net/url"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/v3/volumes"

	"github.com/cairn-backup/cairn/ingest"
	"github.com/cairn-backup/cairn/repo"
)

// RestoreVolumeOptions shape the restore of one disk as a new volume.
type RestoreVolumeOptions struct {
	Name          string // default: "<vm>-<disk>-restored"
	VolumeType    string // default: captured type when it exists here
	SizeGB        int    // default: the captured size (at least the disk's)
	AttachTo      string // server name or ID to attach the volume to
	DryRun        bool
	KeepOnFailure bool
	Transfer      string // "glance" (default) or "attach"
	CephConf      string
	Workers       int
	Progress      *ingest.Progress
	Note          func(string)
}

// RestoreVolume restores disk of p as a new volume in the project cl is
// scoped to, and attaches it to o.AttachTo if set.
func RestoreVolume(ctx context.Context, cl *Cloud, r *repo.Repository, p *repo.RestorePoint, disk string, o RestoreVolumeOptions) (*RestoreResult, error) {
	t0 := time.Now()
	rs, err := newRestorer(cl, r, p, RestoreVMOptions{
		KeepOnFailure: o.KeepOnFailure, Transfer: o.Transfer, CephConf: o.CephConf, Workers: o.Workers,
		Progress: o.Progress, Note: o.Note, VolumeType: o.VolumeType, DryRun: o.DryRun,
	})
	if err != nil {
		return nil, err
	}
	if cl.Volume == nil || cl.Image == nil {
		return nil, fmt.Errorf("the cloud's catalog lacks volume (Cinder v3) or image (Glance): both are needed to restore a volume")
	}
	d, err := p.Disk(disk)
	if err != nil {
		return nil, err
	}
	pl := &RestorePlan{Project: cl.ProjectID(), ServerName: p.VM}
	if rs.def != nil {
		pl.ServerName = rs.def.Server.Name
	}
	if err := rs.planVolumes(ctx, pl); err != nil && rs.def != nil {
		return nil, err
	}
	v := PlannedVolume{VolumeSpec: VolumeSpec{Disk: disk, SizeGB: restoreGiB(d.Size), VolumeType: o.VolumeType}, Bytes: d.Size, BootIndex: -1}
	for _, pv := range pl.Volumes {
		if pv.Disk == disk {
			v = pv
		}
	}
	v.Name = o.Name
	if v.Name == "" {
		v.Name = pl.ServerName + "-" + disk + "-restored"
	}
	v.Description = fmt.Sprintf("restored by cairn from restore point %s disk %s", p.ID, disk)
	if o.SizeGB > 0 {
		if int64(o.SizeGB)<<30 < d.Size {
			return nil, fmt.Errorf("--size %d GiB is smaller than disk %s (%s)", o.SizeGB, disk, restoreSize(d.Size))
		}
		v.SizeGB = o.SizeGB
	}
	pl.Volumes = []PlannedVolume{v}
	pl.KeypairAction = "none"
	var serverID string
	if o.AttachTo != "" {
		if serverID, err = rs.findServer(ctx, o.AttachTo); err != nil {
			return nil, err
		}
	}
	if err := rs.checkVolumeQuota(ctx, pl); err != nil {
		return nil, err
	}
	rs.result.Plan = pl
	rs.result.Notes = append(rs.result.Notes, pl.Warnings...)
	if o.DryRun {
		return rs.result, nil
	}
	rs.progress.Total.Add(d.Size)
	err = rs.finish(ctx, func() error {
		vol, err := rs.fillVolume(ctx, v.VolumeSpec)
		if err != nil {
			return err
		}
		rs.result.Volumes = append(rs.result.Volumes, CreatedVolume{Disk: disk, ID: vol.ID, Name: v.Name, SizeGB: vol.Size, Type: vol.VolumeType, Bootable: v.Bootable})
		if serverID != "" {
			return rs.attachVolume(ctx, serverID, vol.ID)
		}
		return nil
	}())
	rs.result.Duration = time.Since(t0).Seconds()
	return rs.result, err
}

func (rs *restorer) findServer(ctx context.Context, idOrName string) (string, error) {
	var one map[string]any
	if err := getJSON(ctx, rs.cloud.Compute, "servers/"+url.PathEscape(idOrName), &one); err == nil {
		return idOrName, nil
	}
	var body struct {
		Servers []struct {
			ID   string `json:"id"`
			Name string `json:"name"`
		} `json:"servers"`
	}
	if err := getJSON(ctx, rs.cloud.Compute, "servers?name="+url.QueryEscape(idOrName), &body); err != nil {
		return "", fmt.Errorf("--attach-to %s: %s", idOrName, apiMessage(err))
	}
	var ids []string
	for _, s := range body.Servers {
		if s.Name == idOrName {
			ids = append(ids, s.ID)
		}
	}
	switch len(ids) {
	case 1:
		return ids[0], nil
	case 0:
		return "", fmt.Errorf("--attach-to %s: no such server in project %s", idOrName, rs.cloud.ProjectID())
	}
	return "", fmt.Errorf("--attach-to %s: %d servers have that name; give the ID", idOrName, len(ids))
}

// attachVolume attaches a restored volume to a server through Nova and
// waits until Cinder shows it in use.
func (rs *restorer) attachVolume(ctx context.Context, serverID, volID string) error {
	req := map[string]any{"volumeAttachment": map[string]any{"volumeId": volID}}
	if err := postJSON(ctx, rs.cloud.Compute, "servers/"+serverID+"/os-volume_attachments", req, nil); err != nil {
		return fmt.Errorf("attach volume %s to server %s: %s", volID, serverID, apiMessage(err))
	}
	rs.undo.add("server attachment", volID, serverID, false, func(ctx context.Context) error {
		if err := deleteURL(ctx, rs.cloud.Compute, "servers/"+serverID+"/os-volume_attachments/"+volID); err != nil {
			return err
		}
		return restoreWait(ctx, "volume "+volID+" to be detached", restoreDeleteTimeout, func(ctx context.Context) (bool, error) {
			v, err := volumes.Get(ctx, rs.cloud.Volume, volID).Extract()
			return err == nil && v.Status == "available", err
		})
	})
	rs.note("attached volume %s to server %s", volID, serverID)
	return restoreWait(ctx, "volume "+volID+" to be attached", restoreServerTimeout, func(ctx context.Context) (bool, error) {
		v, err := volumes.Get(ctx, rs.cloud.Volume, volID).Extract()
		if err != nil {
			return false, err
		}
		if v.Status == "error" || v.Status == "error_attaching" {
			return false, fmt.Errorf("attaching volume %s to server %s failed: volume status %s", volID, serverID, v.Status)
		}
		return v.Status == "in-use", nil
	})
}

// checkVolumeQuota is checkQuotas for volumes only.
func (rs *restorer) checkVolumeQuota(ctx context.Context, pl *RestorePlan) error {
	cinder, err := absoluteLimits(ctx, rs.cloud.Volume, "volume")
	if err != nil {
		return err
	}
	c, v := cinder, pl.Volumes[0]
	if m := c["maxTotalVolumes"]; m >= 0 && c["totalVolumesUsed"]+1 > m {
		return fmt.Errorf("quota exceeded in project %s for volumes (%d of %d used): free some or ask for a higher quota", pl.Project, c["totalVolumesUsed"], m)
	}
	if m := c["maxTotalVolumeGigabytes"]; m >= 0 && c["totalGigabytesUsed"]+v.SizeGB > m {
		return fmt.Errorf("quota exceeded in project %s for volume gigabytes (need %d, %d of %d used): free some or ask for a higher quota", pl.Project, v.SizeGB, c["totalGigabytesUsed"], m)
	}
	pl.Checks = append(pl.Checks, fmt.Sprintf("quota volumes: %d of %d used; gigabytes: need %d, %d of %d used", c["totalVolumesUsed"], c["maxTotalVolumes"], v.SizeGB, c["totalGigabytesUsed"], c["maxTotalVolumeGigabytes"]))
	return nil
}
