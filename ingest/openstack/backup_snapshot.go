package openstack

import (
	"context"
	"fmt"
	"time"

	"github.com/cairn-backup/cairn/ingest/source"
)

// Methods of taking a server's snapshot (Definition.Method).
const (
	MethodNovaQuiesced = "nova-quiesced-snapshot" // createImage on a volume-backed server
	MethodCinder       = "cinder-snapshots"       // one forced snapshot per volume
	MethodNovaImage    = "nova-image-snapshot"    // image-backed root (+ Cinder snapshots of volumes)
)

// Consistency levels (repo.RestorePoint.Consistency).
const (
	ConsistencyApplication = "application"
	ConsistencyFilesystem  = "filesystem"
	ConsistencyCrash       = "crash"
)

// diskJob is one disk of the server on its way into the repository.
type diskJob struct {
	name       string
	vol        *Volume // nil for an image-backed root disk
	snapshot   Temp    // Cinder snapshot (volumes)
	rootImage  Temp    // Nova image snapshot (image-backed root)
	size       int64   // bytes
	bootIndex  int
	ready      chan struct{}
	img        *imageInfo // raw image to download, once ready
	err        error
	releaseXfr func()
	local      func(context.Context) (source.Source, error) // --transfer attach
}

// snapshot takes the server's snapshots, between the pre and post hooks.
func (sj *serverJob) snapshot(ctx context.Context) error {
	b, s := sj.b, sj.s
	if err := runHook(ctx, "pre", b.o.Pre, s, b.o.HookTimeout); err != nil {
		return err
	}
	err := sj.takeSnapshots(ctx)
	if b.o.Pre != "" || b.o.Post != "" {
		if perr := runHook(ctx, "post", b.o.Post, s, b.o.HookTimeout); perr != nil {
			if err == nil {
				err = perr
			}
		} else if err == nil && b.o.Pre != "" {
			sj.res.Consistency = ConsistencyApplication
		}
	}
	if err != nil {
		return err
	}
	sj.def.Consistency, sj.def.Method = sj.res.Consistency, sj.res.Method
	return nil
}

func (sj *serverJob) takeSnapshots(ctx context.Context) error {
	s, o := sj.s, sj.b.o
	if !s.BootFromVolume {
		sj.res.Method, sj.res.Consistency = MethodNovaImage, ConsistencyCrash
		if err := sj.novaImageSnapshot(ctx); err != nil {
			return err
		}
		return sj.cinderSnapshots(ctx)
	}
	quiesce := o.Quiesce == "require" || (o.Quiesce == "auto" && s.Quiesce.Requested)
	if quiesce {
		err := sj.novaQuiescedSnapshot(ctx)
		if err == nil {
			sj.res.Method, sj.res.Consistency = MethodNovaQuiesced, ConsistencyFilesystem
			return nil
		}
		if o.Quiesce == "require" || !errRefused(err) {
			return fmt.Errorf("quiesced snapshot through Nova: %w", err)
		}
		w := fmt.Sprintf("Nova refused a quiesced snapshot (%s); fell back to crash-consistent Cinder snapshots", apiMessage(err))
		sj.res.Warnings = append(sj.res.Warnings, w)
		sj.b.event(s, "snapshot", w)
		if err := sj.b.tm.releaseServer(ctx, s.ID); err != nil {
			return err
		}
	}
	sj.res.Method, sj.res.Consistency = MethodCinder, ConsistencyCrash
	return sj.cinderSnapshots(ctx)
}

// errRefused reports whether Nova refused the request before doing
// anything (so a fallback is safe).
func errRefused(err error) bool {
	switch httpStatus(err) {
	case 400, 409, 501:
		return true
	}
	return false
}

// cinderSnapshots takes one forced snapshot per attached volume, all
// requested back to back, and waits for them.
func (sj *serverJob) cinderSnapshots(ctx context.Context) error {
	b, s := sj.b, sj.s
	for i := range s.Volumes {
		v := &s.Volumes[i]
		t := Temp{Kind: KindSnapshot, Name: b.tm.j.TempName(s.ID, "snap-"+short(v.ID)), Server: s.ID, Project: s.ProjectID}
		t, err := b.tm.create(ctx, t, func(ctx context.Context) (string, error) {
			return b.cl.createSnapshot(ctx, v.ID, t.Name, b.tm.j.Metadata(s.ID))
		})
		if err != nil {
			return fmt.Errorf("snapshot of volume %s (%s): %s%s", v.Name, v.ID, apiMessage(err), quotaHint(err))
		}
		sj.disks = append(sj.disks, &diskJob{name: diskName(v.Device, i), vol: v, snapshot: t,
			size: int64(v.Size) << 30, bootIndex: v.BootIndex})
	}
	return sj.waitSnapshots(ctx)
}

func (sj *serverJob) waitSnapshots(ctx context.Context) error {
	for _, d := range sj.disks {
		if d.vol == nil {
			continue
		}
		start := time.Now()
		if err := sj.b.cl.waitSnapshot(ctx, d.snapshot.ID, sj.b.o.Timeouts.Snapshot); err != nil {
			return fmt.Errorf("snapshot of volume %s (%s): %w%s", d.vol.Name, d.vol.ID, err, sj.b.cl.cinderMessages(ctx, d.snapshot.ID))
		}
		sj.b.event(sj.s, "snapshot", fmt.Sprintf("%s: snapshot %s of volume %s available after %s", d.name, d.snapshot.ID, d.vol.ID, time.Since(start).Round(time.Millisecond)))
	}
	return nil
}

func quotaHint(err error) string {
	if httpStatus(err) == 413 {
		return " (the project's snapshot or gigabyte quota is exhausted: raise it or delete old snapshots)"
	}
	return ""
}

// createServerImage asks Nova for an image snapshot of the server and
// returns the image's id (microversion 2.45+ returns it in the body).
func (cl *Cloud) createServerImage(ctx context.Context, serverID, name string, meta map[string]string) (string, error) {
	req := map[string]any{"createImage": map[string]any{"name": name, "metadata": meta}}
	var b struct {
		ImageID string `json:"image_id"`
	}
	if err := postJSON(ctx, cl.Compute, "servers/"+serverID+"/action", req, &b); err != nil {
		return "", err
	}
	if b.ImageID == "" {
		return "", fmt.Errorf("nova returned no image id for the snapshot of server %s", serverID)
	}
	return b.ImageID, nil
}

// novaQuiescedSnapshot has Nova freeze the guest and snapshot every
// volume of the volume-backed server; the Cinder snapshots are found in
// the resulting image's block_device_mapping.
func (sj *serverJob) novaQuiescedSnapshot(ctx context.Context) error {
	b, s := sj.b, sj.s
	t := Temp{Kind: KindImage, Name: b.tm.j.TempName(s.ID, "quiesced"), Server: s.ID, Project: s.ProjectID}
	t, err := b.tm.create(ctx, t, func(ctx context.Context) (string, error) {
		return b.cl.createServerImage(ctx, s.ID, t.Name, b.tm.j.Metadata(s.ID))
	})
	if err != nil {
		return err
	}
	im, err := b.cl.waitImage(ctx, t.ID, b.o.Timeouts.Snapshot)
	if err != nil {
		return err
	}
	bdms, err := im.bdms()
	if err != nil {
		return err
	}
	byVolume := map[string]string{}
	for _, m := range bdms {
		if m.SnapshotID == "" {
			continue
		}
		st := Temp{Kind: KindSnapshot, Name: "snapshot for " + t.Name, ID: m.SnapshotID, Server: s.ID, Project: s.ProjectID}
		if err := b.tm.adopt(st); err != nil {
			return err
		}
		snap, err := b.cl.getSnapshot(ctx, m.SnapshotID)
		if err != nil {
			return fmt.Errorf("snapshot %s of the Nova image: %s", m.SnapshotID, apiMessage(err))
		}
		byVolume[snap.VolumeID] = m.SnapshotID
	}
	for i := range s.Volumes {
		v := &s.Volumes[i]
		id, ok := byVolume[v.ID]
		if !ok {
			return fmt.Errorf("nova's snapshot image %s has no snapshot of volume %s (%s)", t.ID, v.Name, v.ID)
		}
		sj.disks = append(sj.disks, &diskJob{name: diskName(v.Device, i), vol: v,
			snapshot: Temp{Kind: KindSnapshot, Name: "snapshot for " + t.Name, ID: id, Server: s.ID, Project: s.ProjectID},
			size:     int64(v.Size) << 30, bootIndex: v.BootIndex})
	}
	// The image only lists the snapshots; it is no longer needed.
	if err := b.tm.release(ctx, Temp{Kind: KindImage, Name: t.Name, ID: t.ID, Server: s.ID, Project: s.ProjectID}); err != nil {
		return err
	}
	for _, d := range sj.disks { // releasing the image adopted them again
		b.tm.adopt(d.snapshot)
	}
	return sj.waitSnapshots(ctx)
}

// novaImageSnapshot snapshots an image-backed root disk through Nova.
func (sj *serverJob) novaImageSnapshot(ctx context.Context) error {
	b, s := sj.b, sj.s
	t := Temp{Kind: KindImage, Name: b.tm.j.TempName(s.ID, "root"), Server: s.ID, Project: s.ProjectID}
	t, err := b.tm.create(ctx, t, func(ctx context.Context) (string, error) {
		return b.cl.createServerImage(ctx, s.ID, t.Name, b.tm.j.Metadata(s.ID))
	})
	if err != nil {
		return err
	}
	start := time.Now()
	im, err := b.cl.waitServerImage(ctx, s.ID, t.ID, b.o.Timeouts.Upload)
	if err != nil {
		return fmt.Errorf("nova image snapshot of the root disk: %w", err)
	}
	if im.Size == nil || *im.Size == 0 {
		return fmt.Errorf("nova image snapshot %s of the root disk holds no data (the hypervisor driver did not upload the disk)", t.ID)
	}
	b.event(s, "snapshot", fmt.Sprintf("root disk: Nova image snapshot %s active after %s (%s, %d bytes)", t.ID, time.Since(start).Round(time.Millisecond), im.DiskFormat, *im.Size))
	dev := s.RootDevice
	if dev == "" {
		dev = "/dev/vda"
	}
	sj.disks = append(sj.disks, &diskJob{name: diskName(dev, 0), rootImage: t, bootIndex: 0})
	return nil
}

// cinderMessages returns Cinder's user messages about a resource, which
// explain most "error" statuses (e.g. a backend that cannot snapshot).
func (cl *Cloud) cinderMessages(ctx context.Context, resourceID string) string {
	var b struct {
		Messages []struct {
			UserMessage string `json:"user_message"`
		} `json:"messages"`
	}
	if err := getJSON(ctx, cl.Volume, "messages?resource_uuid="+resourceID, &b); err != nil || len(b.Messages) == 0 {
		return ""
	}
	return "; Cinder says: " + b.Messages[0].UserMessage
}

// waitServerImage waits for Nova's image snapshot of a server. An image
// still queued (no data) after the server's snapshot task ended means the
// hypervisor driver uploaded nothing: that is an error, not a wait.
func (cl *Cloud) waitServerImage(ctx context.Context, serverID, imageID string, timeout time.Duration) (*imageInfo, error) {
	var im *imageInfo
	idle := 0
	_, err := waitFor(ctx, "image "+imageID, timeout, func(ctx context.Context) (string, error) {
		var err error
		if im, err = cl.getImage(ctx, imageID); err != nil || im.Status != "queued" {
			return im.Status, err
		}
		var b struct {
			Server struct {
				TaskState *string `json:"OS-EXT-STS:task_state"`
			} `json:"server"`
		}
		if err := getJSON(ctx, cl.Compute, "servers/"+serverID, &b); err != nil {
			return "", err
		}
		if b.Server.TaskState == nil || *b.Server.TaskState == "" {
			if idle++; idle >= 3 {
				return "empty", nil
			}
		}
		return im.Status, nil
	}, []string{"active"}, []string{"killed", "deleted", "deactivated", "empty"})
	if idle >= 3 {
		return im, fmt.Errorf("image %s is still queued though Nova finished the snapshot of server %s: the image never received data (the hypervisor driver does not upload disk snapshots)", imageID, serverID)
	}
	return im, err
}

// short is the first 8 characters of an id, for temporary names.
func short(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}
