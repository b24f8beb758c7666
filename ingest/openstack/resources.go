package openstack

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"time"
)

// Timeouts bound the waits for a status.
type Timeouts struct {
	Snapshot time.Duration // snapshot to become available
	Volume   time.Duration // volume from snapshot or image
	Upload   time.Duration // upload of a volume to an image
	Delete   time.Duration // a deleted resource to disappear
	Device   time.Duration // an attached volume's block device to appear on this host
}

// DefaultTimeouts suit a busy production cloud.
var DefaultTimeouts = Timeouts{Snapshot: 30 * time.Minute, Volume: 30 * time.Minute, Upload: 2 * time.Hour, Delete: 15 * time.Minute, Device: 2 * time.Minute}

type snapshotBody struct {
	ID       string            `json:"id"`
	Name     string            `json:"name"`
	Status   string            `json:"status"`
	VolumeID string            `json:"volume_id"`
	Size     int               `json:"size"`
	Metadata map[string]string `json:"metadata"`
}

func (cl *Cloud) getSnapshot(ctx context.Context, id string) (*snapshotBody, error) {
	var b struct {
		Snapshot snapshotBody `json:"snapshot"`
	}
	err := getJSON(ctx, cl.Volume, "snapshots/"+id, &b)
	return &b.Snapshot, err
}

// createSnapshot asks Cinder for a snapshot (forced: the volume may be in
// use) and returns its id; the journal knows its name before the call.
func (cl *Cloud) createSnapshot(ctx context.Context, volumeID, name string, meta map[string]string) (string, error) {
	req := map[string]any{"snapshot": map[string]any{
		"volume_id": volumeID, "force": true, "name": name, "metadata": meta,
		"description": "temporary snapshot of cairn backup; safe to delete when no cairn backup runs",
	}}
	var b struct {
		Snapshot snapshotBody `json:"snapshot"`
	}
	if err := postJSON(ctx, cl.Volume, "snapshots", req, &b); err != nil {
		return "", err
	}
	return b.Snapshot.ID, nil
}

func (cl *Cloud) waitSnapshot(ctx context.Context, id string, timeout time.Duration) error {
	_, err := waitFor(ctx, "snapshot "+id, timeout, func(ctx context.Context) (string, error) {
		s, err := cl.getSnapshot(ctx, id)
		return s.Status, err
	}, []string{"available"}, []string{"error", "error_deleting"})
	return err
}

type volumeStatus struct {
	ID     string `json:"id"`
	Status string `json:"status"`
	Size   int    `json:"size"`
}

// createVolume creates a volume from a snapshot or an image.
func (cl *Cloud) createVolume(ctx context.Context, name string, size int, snapshotID, imageID, volType string, meta map[string]string) (string, error) {
	v := map[string]any{"name": name, "size": size, "metadata": meta,
		"description": "temporary volume of cairn backup; safe to delete when no cairn backup runs"}
	if snapshotID != "" {
		v["snapshot_id"] = snapshotID
	}
	if imageID != "" {
		v["imageRef"] = imageID
	}
	if volType != "" {
		v["volume_type"] = volType
	}
	var b struct {
		Volume volumeStatus `json:"volume"`
	}
	if err := postJSON(ctx, cl.Volume, "volumes", map[string]any{"volume": v}, &b); err != nil {
		return "", err
	}
	return b.Volume.ID, nil
}

func (cl *Cloud) volumeStatus(ctx context.Context, id string) (string, error) {
	var b struct {
		Volume volumeStatus `json:"volume"`
	}
	err := getJSON(ctx, cl.Volume, "volumes/"+id, &b)
	return b.Volume.Status, err
}

func (cl *Cloud) waitVolume(ctx context.Context, id string, timeout time.Duration) error {
	_, err := waitFor(ctx, "volume "+id, timeout, func(ctx context.Context) (string, error) {
		return cl.volumeStatus(ctx, id)
	}, []string{"available"}, []string{"error", "error_deleting", "error_restoring", "error_extending"})
	return err
}

// uploadToImage starts os-volume_upload_image (raw, bare) and returns the
// new image's id.
func (cl *Cloud) uploadToImage(ctx context.Context, volumeID, name string) (string, error) {
	req := map[string]any{"os-volume_upload_image": map[string]any{
		"image_name": name, "disk_format": "raw", "container_format": "bare", "force": false, "visibility": "private",
	}}
	var b struct {
		Upload struct {
			ImageID string `json:"image_id"`
		} `json:"os-volume_upload_image"`
	}
	if err := postJSON(ctx, cl.Volume, "volumes/"+volumeID+"/action", req, &b); err != nil {
		return "", err
	}
	if b.Upload.ImageID == "" {
		return "", fmt.Errorf("upload of volume %s returned no image id", volumeID)
	}
	return b.Upload.ImageID, nil
}

// imageInfo is the part of a Glance image cairn reads.
type imageInfo struct {
	ID          string          `json:"id"`
	Name        string          `json:"name"`
	Status      string          `json:"status"`
	Size        *int64          `json:"size"`
	DiskFormat  string          `json:"disk_format"`
	Checksum    string          `json:"checksum"`
	HashAlgo    string          `json:"os_hash_algo"`
	HashValue   string          `json:"os_hash_value"`
	BDM         json.RawMessage `json:"block_device_mapping"`
	MinDisk     int             `json:"min_disk"`
	VirtualSize *int64          `json:"virtual_size"`
}

func (cl *Cloud) getImage(ctx context.Context, id string) (*imageInfo, error) {
	var im imageInfo
	err := getJSON(ctx, cl.Image, "images/"+id, &im)
	return &im, err
}

func (cl *Cloud) waitImage(ctx context.Context, id string, timeout time.Duration) (*imageInfo, error) {
	var im *imageInfo
	_, err := waitFor(ctx, "image "+id, timeout, func(ctx context.Context) (string, error) {
		var err error
		im, err = cl.getImage(ctx, id)
		return im.Status, err
	}, []string{"active"}, []string{"killed", "deleted", "deactivated"})
	return im, err
}

// markImage adds cairn's marker properties to an image it created.
func (cl *Cloud) markImage(ctx context.Context, id string, meta map[string]string) error {
	var ops []map[string]any
	for k, v := range meta {
		ops = append(ops, map[string]any{"op": "add", "path": "/" + k, "value": v})
	}
	_, err := cl.Image.Patch(ctx, cl.Image.ServiceURL("images", id), ops, nil, gophercloudOpts{
		"Content-Type": "application/openstack-images-v2.1-json-patch",
	}.opts())
	return err
}

// deleteAndWait deletes a temporary and waits until it is gone.
func (cl *Cloud) deleteAndWait(ctx context.Context, t Temp, to Timeouts) error {
	switch t.Kind {
	case KindImage:
		return deleteURL(ctx, cl.Image, "images/"+t.ID)
	case KindAttachment:
		return deleteURL(ctx, cl.Volume, "attachments/"+t.ID)
	case KindServerAttachment:
		server, vol, err := splitServerAttachment(t.ID)
		if err != nil {
			return err
		}
		return cl.novaDetach(ctx, server, vol, to.Delete)
	case KindVolume:
		// A volume still being created or uploaded cannot be deleted yet.
		st, err := waitFor(ctx, "volume "+t.ID, to.Delete, func(ctx context.Context) (string, error) {
			st, err := cl.volumeStatus(ctx, t.ID)
			if isNotFound(err) {
				return "gone", nil
			}
			return st, err
		}, []string{"gone", "available", "error", "in-use", "reserved", "error_restoring", "error_extending"}, nil)
		if err != nil || st == "gone" {
			return err
		}
		if st == "in-use" || st == "reserved" {
			// Only cairn attaches its temporary volumes: drop the
			// attachments whose ids a killed run never recorded.
			if err := cl.detachAll(ctx, t.ID, to.Delete); err != nil {
				return err
			}
			if _, err := waitFor(ctx, "volume "+t.ID+" to detach", to.Delete, func(ctx context.Context) (string, error) {
				return cl.volumeStatus(ctx, t.ID)
			}, []string{"available"}, []string{"error"}); err != nil {
				return err
			}
		}
		if err := deleteURL(ctx, cl.Volume, "volumes/"+t.ID); err != nil {
			return err
		}
		return cl.waitGone(ctx, "volume "+t.ID, "volumes/"+t.ID, to.Delete)
	case KindSnapshot:
		st, err := waitFor(ctx, "snapshot "+t.ID, to.Delete, func(ctx context.Context) (string, error) {
			s, err := cl.getSnapshot(ctx, t.ID)
			if isNotFound(err) {
				return "gone", nil
			}
			return s.Status, err
		}, []string{"gone", "available", "error"}, nil)
		if err != nil || st == "gone" {
			return err
		}
		if err := deleteURL(ctx, cl.Volume, "snapshots/"+t.ID); err != nil {
			return err
		}
		return cl.waitGone(ctx, "snapshot "+t.ID, "snapshots/"+t.ID, to.Delete)
	}
	return fmt.Errorf("unknown temporary kind %q", t.Kind)
}

func (cl *Cloud) waitGone(ctx context.Context, what, path string, timeout time.Duration) error {
	_, err := waitFor(ctx, what+" to be deleted", timeout, func(ctx context.Context) (string, error) {
		var b map[string]map[string]any
		err := getJSON(ctx, cl.Volume, path, &b)
		if isNotFound(err) {
			return "gone", nil
		}
		for _, v := range b {
			if s, ok := v["status"].(string); ok {
				return s, err
			}
		}
		return "", err
	}, []string{"gone"}, []string{"error_deleting"})
	return err
}

// findTemp looks a temporary up by its unique name when its id was never
// recorded (the run died between the request and the answer). It returns
// "" when nothing of that name exists.
func (cl *Cloud) findTemp(ctx context.Context, t Temp) (string, error) {
	q := url.Values{"name": {t.Name}}
	if cl.IsAdmin() || cl.System {
		q.Set("all_tenants", "1")
	}
	var ids []string
	switch t.Kind {
	case KindImage:
		var b struct {
			Images []struct {
				ID string `json:"id"`
			} `json:"images"`
		}
		if err := getJSON(ctx, cl.Image, "images?name="+url.QueryEscape(t.Name), &b); err != nil {
			return "", err
		}
		for _, i := range b.Images {
			ids = append(ids, i.ID)
		}
	case KindVolume, KindSnapshot:
		var b map[string][]struct {
			ID   string `json:"id"`
			Name string `json:"name"`
		}
		if err := getJSON(ctx, cl.Volume, t.Kind+"s?"+q.Encode(), &b); err != nil {
			return "", err
		}
		for _, r := range b[t.Kind+"s"] {
			if r.Name == t.Name {
				ids = append(ids, r.ID)
			}
		}
	case KindAttachment, KindServerAttachment:
		// Attachments carry no name; their id is recorded before use, and
		// deleting the volume detaches whatever a lost answer left.
		return "", nil
	}
	switch len(ids) {
	case 0:
		return "", nil
	case 1:
		return ids[0], nil
	}
	return "", fmt.Errorf("%d %ss are named %s; delete them by hand", len(ids), t.Kind, t.Name)
}

// imageSnapshots returns the Cinder snapshots a Nova snapshot image of a
// volume-backed server references (its block_device_mapping property).
func (cl *Cloud) imageSnapshots(ctx context.Context, imageID string) ([]string, error) {
	im, err := cl.getImage(ctx, imageID)
	if err != nil {
		return nil, err
	}
	bdms, err := im.bdms()
	var ids []string
	for _, b := range bdms {
		if b.SnapshotID != "" {
			ids = append(ids, b.SnapshotID)
		}
	}
	return ids, err
}

type imageBDM struct {
	SnapshotID string `json:"snapshot_id"`
	DeviceName string `json:"device_name"`
	BootIndex  *int   `json:"boot_index"`
	VolumeSize int    `json:"volume_size"`
}

// bdms decodes block_device_mapping, which Glance stores as a JSON string.
func (im *imageInfo) bdms() ([]imageBDM, error) {
	if len(im.BDM) == 0 || string(im.BDM) == "null" {
		return nil, nil
	}
	raw := []byte(im.BDM)
	var s string
	if json.Unmarshal(raw, &s) == nil {
		raw = []byte(s)
	}
	var out []imageBDM
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil, fmt.Errorf("image %s: block_device_mapping: %w", im.ID, err)
	}
	return out, nil
}

// detachAll removes every attachment of a (temporary) volume: one to a
// server (cairn's host) through Nova, so that the hypervisor lets go of
// the device and the server forgets it; a host attachment through Cinder.
func (cl *Cloud) detachAll(ctx context.Context, volumeID string, timeout time.Duration) error {
	var b struct {
		Attachments []struct {
			ID       string `json:"id"`
			Instance string `json:"instance"`
		} `json:"attachments"`
	}
	if err := getJSON(ctx, cl.Volume, "attachments?volume_id="+volumeID, &b); err != nil {
		return err
	}
	for _, a := range b.Attachments {
		if a.Instance != "" {
			if err := cl.novaDetach(ctx, a.Instance, volumeID, timeout); err != nil {
				return fmt.Errorf("detach from server %s: %s", a.Instance, apiMessage(err))
			}
			continue
		}
		if err := deleteURL(ctx, cl.Volume, "attachments/"+a.ID); err != nil {
			return err
		}
	}
	return nil
}
