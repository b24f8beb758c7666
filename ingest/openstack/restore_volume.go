package openstack

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/v3/volumes"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/imagedata"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"

	"github.com/cairn-backup/cairn/repo"
)

// VolumeSpec is one volume a restore creates and fills with a disk.
type VolumeSpec struct {
	Disk             string            `json:"disk"` // disk of the restore point
	Name             string            `json:"name"`
	SizeGB           int               `json:"size_gb"`
	VolumeType       string            `json:"volume_type,omitempty"`
	AvailabilityZone string            `json:"availability_zone,omitempty"`
	Bootable         bool              `json:"bootable"`
	Description      string            `json:"-"`
	Metadata         map[string]string `json:"metadata,omitempty"`
	ImageMetadata    map[string]string `json:"-"` // volume image metadata to restore
}

// Timeouts of the restore's waits; generous because the cloud's own copy
// (image to volume) runs at the backend's speed.
var (
	restoreVolumeTimeout = 2 * time.Hour
	restoreServerTimeout = 30 * time.Minute
	restoreDeleteTimeout = 10 * time.Minute
)

const restoreTempPrefix = "cairn-tmp-restore-"

// restoreGiB is the size in whole GiB that holds n bytes.
func restoreGiB(n int64) int { return int((n + (1<<30 - 1)) >> 30) }

// fillVolumeGlance creates spec's volume holding the bytes of the disk that
// dr reads, without a proxy VM: a temporary raw Glance image is uploaded
// straight from the repository, its size and checksums are checked against
// what was sent, a volume is created from it, and the image is deleted.
// The volume is recorded in undo; the image is a temporary.
func (rs *restorer) fillVolumeGlance(ctx context.Context, dr *repo.DiskReader, spec VolumeSpec) (*volumes.Volume, error) {
	cl := rs.cloud
	if cl.Image == nil || cl.Volume == nil {
		return nil, fmt.Errorf("the cloud's catalog has no image (Glance) or volume (Cinder v3) service; both are needed to restore volumes")
	}
	priv := images.ImageVisibilityPrivate
	hidden := true
	img, err := images.Create(ctx, cl.Image, images.CreateOpts{
		Name:            restoreTempPrefix + rs.point.ID[:8] + "-" + spec.Disk,
		ContainerFormat: "bare", DiskFormat: "raw", Visibility: &priv, Hidden: &hidden,
		Properties: map[string]string{"cairn_temporary": "restore", "cairn_point": rs.point.ID, "cairn_disk": spec.Disk},
	}).Extract()
	if err != nil {
		return nil, fmt.Errorf("create temporary Glance image for disk %s: %w", spec.Disk, apiErr(err))
	}
	imageID := img.ID
	removeImage := func(ctx context.Context) error { return images.Delete(ctx, cl.Image, imageID).ExtractErr() }
	rs.undo.add("image", imageID, img.Name, true, removeImage)
	rs.note("uploading disk %s (%s) to temporary image %s", spec.Disk, restoreSize(dr.Size()), imageID)

	t0 := time.Now()
	stream := newRestoreStream(ctx, dr, rs.opts.Workers, rs.progress)
	err = imagedata.Upload(ctx, cl.Image, imageID, stream).ExtractErr()
	complete := stream.Complete()
	stream.Close()
	if err == nil && !complete {
		err = errors.New("the upload ended before the whole disk was sent")
	}
	if err != nil {
		return nil, fmt.Errorf("upload disk %s to Glance image %s: %w", spec.Disk, imageID, apiErr(err))
	}
	md5hex, sha512hex := stream.Sums()
	if err := rs.checkImage(ctx, imageID, dr.Size(), md5hex, sha512hex); err != nil {
		return nil, fmt.Errorf("disk %s: %w", spec.Disk, err)
	}
	rs.timing("upload", time.Since(t0))

	t1 := time.Now()
	vol, err := rs.createVolume(ctx, spec, imageID)
	if err != nil {
		return nil, err
	}
	rs.timing("volume_from_image", time.Since(t1))
	if err := removeImage(ctx); err != nil && !isNotFound(err) {
		return nil, fmt.Errorf("delete temporary image %s: %w", imageID, apiErr(err))
	}
	rs.undo.done("image", imageID)
	return vol, rs.finishVolume(ctx, vol, spec)
}

// checkImage proves Glance stored exactly the bytes sent.
func (rs *restorer) checkImage(ctx context.Context, id string, size int64, md5hex, sha512hex string) error {
	img, err := images.Get(ctx, rs.cloud.Image, id).Extract()
	if err != nil {
		return fmt.Errorf("read back temporary image %s: %w", id, err)
	}
	if img.Status != images.ImageStatusActive {
		return fmt.Errorf("temporary image %s is %q after the upload, not active", id, img.Status)
	}
	if img.SizeBytes != size {
		return fmt.Errorf("temporary image %s holds %d bytes, the disk has %d: the upload was cut", id, img.SizeBytes, size)
	}
	if img.Checksum != "" && img.Checksum != md5hex {
		return fmt.Errorf("temporary image %s has md5 %s, cairn sent %s: the bytes were altered in transit", id, img.Checksum, md5hex)
	}
	if algo, _ := img.Properties["os_hash_algo"].(string); algo == "sha512" {
		if v, _ := img.Properties["os_hash_value"].(string); v != "" && v != sha512hex {
			return fmt.Errorf("temporary image %s has sha512 %s, cairn sent %s: the bytes were altered in transit", id, v, sha512hex)
		}
	}
	return nil
}

// createVolume creates spec's volume (from imageID when not empty), records
// it in undo and waits until it is available.
func (rs *restorer) createVolume(ctx context.Context, spec VolumeSpec, imageID string) (*volumes.Volume, error) {
	cl := rs.cloud
	meta := map[string]string{"cairn_restored_from": rs.point.ID, "cairn_disk": spec.Disk}
	for k, v := range spec.Metadata {
		meta[k] = v
	}
	vol, err := volumes.Create(ctx, cl.Volume, volumes.CreateOpts{
		Name: spec.Name, Size: spec.SizeGB, VolumeType: spec.VolumeType, ImageID: imageID,
		AvailabilityZone: spec.AvailabilityZone, Metadata: meta, Description: spec.Description,
	}, nil).Extract()
	if err != nil {
		return nil, fmt.Errorf("create volume %q (%d GiB, type %q) for disk %s: %w", spec.Name, spec.SizeGB, spec.VolumeType, spec.Disk, apiErr(err))
	}
	id := vol.ID
	rs.undo.add("volume", id, spec.Name, false, func(ctx context.Context) error { return rs.deleteVolume(ctx, id) })
	rs.created("volume", id, spec.Name)
	err = restoreWait(ctx, "volume "+id+" to become available", restoreVolumeTimeout, func(ctx context.Context) (bool, error) {
		v, err := volumes.Get(ctx, cl.Volume, id).Extract()
		if err != nil {
			return false, err
		}
		vol = v
		switch v.Status {
		case "available":
			return true, nil
		case "error", "error_restoring", "error_extending":
			return false, fmt.Errorf("volume %s went to status %s%s", id, v.Status, rs.volumeMessages(ctx, id))
		}
		return false, nil
	})
	if err != nil {
		return nil, fmt.Errorf("disk %s: %w", spec.Disk, err)
	}
	return vol, nil
}

// finishVolume sets the bootable flag and the captured volume image
// metadata on a filled volume.
func (rs *restorer) finishVolume(ctx context.Context, vol *volumes.Volume, spec VolumeSpec) error {
	cl := rs.cloud
	if (vol.Bootable == "true") != spec.Bootable {
		if err := volumes.SetBootable(ctx, cl.Volume, vol.ID, volumes.BootableOpts{Bootable: spec.Bootable}).ExtractErr(); err != nil {
			return fmt.Errorf("set bootable=%v on volume %s: %w", spec.Bootable, vol.ID, err)
		}
	}
	meta := map[string]string{}
	for k, v := range spec.ImageMetadata {
		if !restoreReservedImageKeys[k] {
			meta[k] = v
		}
	}
	if len(meta) > 0 {
		if err := volumes.SetImageMetadata(ctx, cl.Volume, vol.ID, volumes.ImageMetadataOpts{Metadata: meta}).ExtractErr(); err != nil {
			return fmt.Errorf("restore the image metadata of volume %s: %w", vol.ID, err)
		}
	}
	return nil
}

// restoreReservedImageKeys are volume image metadata keys that describe the image a
// volume was created from, here cairn's temporary image: not restored.
var restoreReservedImageKeys = map[string]bool{"checksum": true, "size": true, "disk_format": true, "container_format": true,
	"image_id": true, "image_name": true, "os_hash_algo": true, "os_hash_value": true, "os_hidden": true,
	"cairn_temporary": true, "cairn_point": true, "cairn_disk": true}

// deleteVolume deletes a volume cairn created, once it has left any
// transitional status, and waits until it is gone.
func (rs *restorer) deleteVolume(ctx context.Context, id string) error {
	cl := rs.cloud
	err := restoreWait(ctx, "volume "+id+" to settle before deletion", restoreDeleteTimeout, func(ctx context.Context) (bool, error) {
		v, err := volumes.Get(ctx, cl.Volume, id).Extract()
		if err != nil {
			return false, err
		}
		switch v.Status {
		case "creating", "downloading", "uploading", "attaching", "detaching", "reserved", "deleting":
			return false, nil
		}
		return true, nil
	})
	if err != nil {
		return err
	}
	if err := volumes.Delete(ctx, cl.Volume, id, volumes.DeleteOpts{Cascade: true}).ExtractErr(); err != nil && !isNotFound(err) {
		return err
	}
	return restoreWait(ctx, "volume "+id+" to be deleted", restoreDeleteTimeout, func(ctx context.Context) (bool, error) {
		v, err := volumes.Get(ctx, cl.Volume, id).Extract()
		if isNotFound(err) {
			return true, nil
		}
		if err == nil && v.Status == "error_deleting" {
			return false, fmt.Errorf("volume %s went to error_deleting", id)
		}
		return false, err
	})
}

// volumeMessages fetches Cinder's user messages about a resource (3.3+),
// which say why a volume went to error (e.g. no valid backend, quota).
func (rs *restorer) volumeMessages(ctx context.Context, id string) string {
	var body struct {
		Messages []struct {
			UserMessage string `json:"user_message"`
		} `json:"messages"`
	}
	url := rs.cloud.Volume.ServiceURL("messages") + "?resource_uuid=" + id
	if _, err := rs.cloud.Volume.Get(ctx, url, &body, &gophercloud.RequestOpts{OkCodes: []int{200}}); err != nil || len(body.Messages) == 0 {
		return ""
	}
	var msgs []string
	for _, m := range body.Messages {
		msgs = append(msgs, m.UserMessage)
	}
	return ": " + strings.Join(msgs, "; ")
}

func restoreSize(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%d B", n)
}
