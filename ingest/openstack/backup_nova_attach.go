package openstack

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cairn-backup/cairn/ingest/source"
)

// With --transfer attach on a Nova server of the cloud (the "cairn host"),
// the temporary volume is attached to that server through Nova
// (POST /servers/{host}/os-volume_attachments), like any data volume: the
// hypervisor connects it, whatever the backend (iSCSI, FC, RBD, NFS), and
// it appears in the guest as a block device that cairn reads. Nova's
// attachment is a temporary (KindServerAttachment, id "<host>/<volume>"),
// journaled before the request and detached (DELETE
// os-volume_attachments/{volume}, then the volume back to "available")
// before the volume is deleted. Deleting a temporary volume that is still
// in use detaches its Nova attachments through Nova too, so a killed run
// whose answer was lost is cleaned up all the same.
//
// Which server cairn runs on (BackupOptions.AttachTo):
//   - an id: that server, confirmed with GET /servers/{id};
//   - "self": detected from the SMBIOS system UUID
//     (/sys/class/dmi/id/product_uuid: Nova's libvirt driver sets it to the
//     instance UUID), else cloud-init's instance id
//     (/var/lib/cloud/data/instance-id), then confirmed in the cloud;
//   - "none": the Cinder host attachment (backup_attach.go);
//   - "" (auto): "self" when this host is confirmed to be an ACTIVE server
//     of the scoped project, else the Cinder host attachment. The cloud's
//     confirmation is what makes it safe: a UUID that names no server of
//     this cloud, or one of another project, never gets a volume attached.
//
// The block device is found by its serial: Nova gives a virtio disk the
// volume id as serial, which the guest truncates to 20 characters
// (/dev/disk/by-id/virtio-<id[:20]>, /sys/block/*/serial), and virtio-scsi
// disks keep the whole id (/dev/disk/by-id/scsi-0QEMU_QEMU_HARDDISK_<id>).
// CAIRN_DISK_BY_ID_DIR replaces /dev/disk/by-id, for hosts whose udev
// links elsewhere and for the test cloud, whose fake hypervisor links
// loop devices there.

// Attach targets of BackupOptions.AttachTo besides a server id.
const (
	AttachAuto = ""
	AttachSelf = "self"
	AttachNone = "none"
)

// attachHost is the Nova server cairn runs on.
type attachHost struct {
	ID, Name string
	Source   string // how it was found: "--attach-to-server", SMBIOS, cloud-init
}

// sysRoot prefixes the host files cairn reads to know which server it
// runs on (unit tests point it at a fake tree); diskByIDDir is where
// udev links block devices by serial.
var sysRoot = "/"

func diskByIDDir() string {
	if d := os.Getenv("CAIRN_DISK_BY_ID_DIR"); d != "" {
		return d
	}
	return "/dev/disk/by-id"
}

// selfCandidate is one server id this host may be, with where it came from.
type selfCandidate struct{ ID, Source string }

// selfCandidates reads the ids this host may have as a Nova server: the
// SMBIOS UUID (as the kernel prints it, then with the first three fields
// byte-swapped, as firmware before SMBIOS 2.6 stored them), then
// cloud-init's instance id.
func selfCandidates(root string) []selfCandidate {
	var out []selfCandidate
	seen := map[string]bool{}
	add := func(id, src string) {
		id = strings.ToLower(strings.TrimSpace(id))
		if !isUUID(id) || seen[id] || id == "00000000-0000-0000-0000-000000000000" {
			return
		}
		seen[id] = true
		out = append(out, selfCandidate{id, src})
	}
	if b, err := os.ReadFile(filepath.Join(root, "sys/class/dmi/id/product_uuid")); err == nil {
		u := strings.ToLower(strings.TrimSpace(string(b)))
		add(u, "SMBIOS system UUID")
		if isUUID(u) {
			add(swapUUID(u), "SMBIOS system UUID (byte-swapped)")
		}
	}
	if b, err := os.ReadFile(filepath.Join(root, "var/lib/cloud/data/instance-id")); err == nil {
		add(string(b), "cloud-init instance id")
	}
	return out
}

func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, c := range s {
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !strings.ContainsRune("0123456789abcdef", c) {
				return false
			}
		}
	}
	return true
}

// swapUUID reverses the bytes of the first three fields of a UUID.
func swapUUID(u string) string {
	rev := func(h string) string {
		var b strings.Builder
		for i := len(h) - 2; i >= 0; i -= 2 {
			b.WriteString(h[i : i+2])
		}
		return b.String()
	}
	return rev(u[0:8]) + "-" + rev(u[9:13]) + "-" + rev(u[14:18]) + u[18:]
}

// hostServer is what cairn checks of the server it attaches volumes to.
type hostServer struct {
	ID      string `json:"id"`
	Name    string `json:"name"`
	Status  string `json:"status"`
	Project string `json:"tenant_id"`
}

func (cl *Cloud) getHostServer(ctx context.Context, id string) (*hostServer, error) {
	var b struct {
		Server hostServer `json:"server"`
	}
	err := getJSON(ctx, cl.Compute, "servers/"+id, &b)
	return &b.Server, err
}

// checkHost confirms that server h can take cairn's temporary volumes:
// it is ACTIVE and in the project the volumes are created in.
func (cl *Cloud) checkHost(h *hostServer, src string) error {
	if p := cl.ProjectID(); p != "" && h.Project != p {
		return fmt.Errorf("server %s (%s, %s) is in project %s, but cairn's temporary volumes are created in project %s: "+
			"Nova attaches volumes of the server's own project only; use credentials scoped to project %s, or --attach-to-server none",
			h.Name, h.ID, src, h.Project, p, h.Project)
	}
	if h.Status != "ACTIVE" {
		return fmt.Errorf("server %s (%s, %s) is %s, not ACTIVE: volumes can be attached to a running server only", h.Name, h.ID, src, h.Status)
	}
	return nil
}

// resolveAttachHost decides where --transfer attach attaches volumes:
// a Nova server (non-nil) or this host through Cinder (nil). why says
// what was decided and why, for the progress output.
func (cl *Cloud) resolveAttachHost(ctx context.Context, to string) (host *attachHost, why string, err error) {
	switch to {
	case AttachNone:
		return nil, "Cinder host attachment (--attach-to-server none)", nil
	case AttachSelf, AttachAuto:
		cands := selfCandidates(sysRoot)
		if len(cands) == 0 {
			msg := "this host has no SMBIOS system UUID (/sys/class/dmi/id/product_uuid) nor cloud-init instance id to tell which Nova server it is"
			if to == AttachSelf {
				return nil, "", fmt.Errorf("--attach-to-server self: %s: name the server with --attach-to-server ID", msg)
			}
			return nil, "Cinder host attachment (" + msg + ")", nil
		}
		var tried []string
		for _, c := range cands {
			h, err := cl.getHostServer(ctx, c.ID)
			if isNotFound(err) {
				tried = append(tried, c.ID+" ("+c.Source+")")
				continue
			}
			if err != nil {
				return nil, "", fmt.Errorf("look up this host's server %s (%s): %s", c.ID, c.Source, apiMessage(err))
			}
			if err := cl.checkHost(h, c.Source); err != nil {
				if to == AttachSelf {
					return nil, "", fmt.Errorf("--attach-to-server self: %w", err)
				}
				return nil, "Cinder host attachment (this host is a Nova server, but " + err.Error() + ")", nil
			}
			return &attachHost{ID: h.ID, Name: h.Name, Source: c.Source},
				fmt.Sprintf("Nova attachment to server %s (%s), this host by its %s", h.Name, h.ID, c.Source), nil
		}
		msg := "no server of this cloud visible to these credentials has this host's id " + strings.Join(tried, " or ")
		if to == AttachSelf {
			return nil, "", fmt.Errorf("--attach-to-server self: %s: this host is not a Nova server of this cloud (or of this project); "+
				"name the server with --attach-to-server ID or use --attach-to-server none", msg)
		}
		return nil, "Cinder host attachment (" + msg + ")", nil
	}
	h, err := cl.getHostServer(ctx, to)
	if isNotFound(err) {
		return nil, "", fmt.Errorf("--attach-to-server %s: no such server in this cloud visible to these credentials", to)
	}
	if err != nil {
		return nil, "", fmt.Errorf("--attach-to-server %s: %s", to, apiMessage(err))
	}
	if err := cl.checkHost(h, "--attach-to-server"); err != nil {
		return nil, "", err
	}
	return &attachHost{ID: h.ID, Name: h.Name, Source: "--attach-to-server"},
		fmt.Sprintf("Nova attachment to server %s (%s)", h.Name, h.ID), nil
}

// novaAttach attaches a volume to a server and returns the device Nova
// reports (a hint only: the guest names devices itself).
func (cl *Cloud) novaAttach(ctx context.Context, server, volumeID string) (string, error) {
	req := map[string]any{"volumeAttachment": map[string]any{"volumeId": volumeID}}
	var b struct {
		VolumeAttachment struct {
			Device string `json:"device"`
		} `json:"volumeAttachment"`
	}
	err := postJSON(ctx, cl.Compute, "servers/"+server+"/os-volume_attachments", req, &b, 200)
	return b.VolumeAttachment.Device, err
}

// novaDetach detaches a volume from a server and waits until Cinder
// reports it available (or gone).
func (cl *Cloud) novaDetach(ctx context.Context, server, volumeID string, timeout time.Duration) error {
	if err := deleteURL(ctx, cl.Compute, "servers/"+server+"/os-volume_attachments/"+volumeID); err != nil {
		return err
	}
	_, err := waitFor(ctx, "volume "+volumeID+" to detach from server "+server, timeout, func(ctx context.Context) (string, error) {
		st, err := cl.volumeStatus(ctx, volumeID)
		if isNotFound(err) {
			return "gone", nil
		}
		return st, err
	}, []string{"available", "gone"}, []string{"error", "error_detaching"})
	return err
}

// splitServerAttachment splits the id of a KindServerAttachment temporary.
func splitServerAttachment(id string) (server, volume string, err error) {
	server, volume, ok := strings.Cut(id, "/")
	if !ok || server == "" || volume == "" {
		return "", "", fmt.Errorf("server attachment id %q is not <server>/<volume>", id)
	}
	return server, volume, nil
}

// prepareNovaAttach attaches the temporary volume to the cairn host,
// waits for Cinder to report it in use and for its block device to
// appear here, and sets the disk's reader to that device.
func (sj *serverJob) prepareNovaAttach(ctx context.Context, d *diskJob, vt Temp) error {
	b, s, h := sj.b, sj.s, sj.b.host
	start := time.Now()
	at := Temp{Kind: KindServerAttachment, Name: b.tm.j.TempName(s.ID, "natt-"+d.name), Server: s.ID, Project: s.ProjectID}
	var dev string
	// One attach at a time per host: Nova picks device names and PCI slots
	// per request, and concurrent attaches to one server can race there.
	b.hostMu.Lock()
	at, err := b.tm.create(ctx, at, func(ctx context.Context) (string, error) {
		var err error
		dev, err = b.cl.novaAttach(ctx, h.ID, vt.ID)
		return h.ID + "/" + vt.ID, err
	})
	if err == nil {
		_, err = waitFor(ctx, "volume "+vt.ID+" to attach to server "+h.ID, b.o.Timeouts.Volume, func(ctx context.Context) (string, error) {
			return b.cl.volumeStatus(ctx, vt.ID)
		}, []string{"in-use"}, []string{"available", "error", "error_attaching"})
		if err != nil {
			err = fmt.Errorf("%w (Nova rolls a failed attach back to available: see the server's instance actions)", err)
		}
	} else {
		err = fmt.Errorf("%s%s", apiMessage(err), quotaHint(err))
	}
	b.hostMu.Unlock()
	if err != nil {
		return fmt.Errorf("attach volume %s to server %s (%s, this host): %w", vt.ID, h.Name, h.ID, err)
	}
	path, via, err := waitLocalDisk(ctx, vt.ID, b.o.Timeouts.Device)
	if err != nil {
		return fmt.Errorf("volume %s is attached to server %s (%s) as %s per Nova, but %w; is cairn running on that server?",
			vt.ID, h.Name, h.ID, dev, err)
	}
	sj.time("attach", time.Since(start))
	b.event(s, "transfer", fmt.Sprintf("%s: volume %s attached to this host as %s (%s) after %s", d.name, vt.ID, path, via, time.Since(start).Round(time.Millisecond)))
	d.local = func(context.Context) (source.Source, error) {
		src, err := source.Open(path)
		if err != nil {
			return nil, fmt.Errorf("attached volume %s: %w", vt.ID, err)
		}
		if src.Size() != d.size {
			src.Close()
			return nil, fmt.Errorf("block device %s of volume %s holds %d bytes, want %d", path, vt.ID, src.Size(), d.size)
		}
		return src, nil
	}
	return nil
}

// isBlockDevice reports whether fi is a block device (tests replace it).
var isBlockDevice = func(fi os.FileInfo) bool {
	return fi.Mode()&os.ModeDevice != 0 && fi.Mode()&os.ModeCharDevice == 0
}

// localDiskNames are the by-id names a disk with the volume's serial gets.
func localDiskNames(volumeID string) []string {
	id20 := volumeID
	if len(id20) > 20 {
		id20 = id20[:20]
	}
	return []string{"virtio-" + id20, "scsi-0QEMU_QEMU_HARDDISK_" + volumeID, "scsi-SQEMU_QEMU_HARDDISK_" + volumeID}
}

// findLocalDisk looks once for the block device of a volume: its by-id
// links, then the serial of every disk in /sys/block. It returns the
// device and the name that led to it, or "" when there is none (yet) and
// what it looked for.
func findLocalDisk(volumeID string) (path, via string) {
	dir := diskByIDDir()
	names := localDiskNames(volumeID)
	for _, n := range names {
		p := filepath.Join(dir, n)
		if real, err := filepath.EvalSymlinks(p); err == nil {
			if fi, err := os.Stat(real); err == nil && isBlockDevice(fi) {
				return real, p
			}
		}
	}
	serials, _ := filepath.Glob(filepath.Join(sysRoot, "sys/block/*/serial"))
	for _, f := range serials {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if s := strings.TrimSpace(string(b)); s != "" && (s == volumeID || s == names[0][len("virtio-"):]) {
			p := filepath.Join(sysRoot, "dev", filepath.Base(filepath.Dir(f)))
			if fi, err := os.Stat(p); err == nil && isBlockDevice(fi) {
				return p, f
			}
		}
	}
	return "", fmt.Sprintf("%s/{%s} and a disk in %s with serial %s",
		dir, strings.Join(names, ","), filepath.Join(sysRoot, "sys/block/*/serial"), names[0][len("virtio-"):])
}

// devicePoll is how often waitLocalDisk looks (tests shorten it).
var devicePoll = 250 * time.Millisecond

// waitLocalDisk waits until the block device of a volume appears and
// returns it with the name that found it.
func waitLocalDisk(ctx context.Context, volumeID string, timeout time.Duration) (dev, via string, err error) {
	deadline := time.Now().Add(timeout)
	for {
		p, looked := findLocalDisk(volumeID)
		if p != "" {
			return p, looked, nil
		}
		if time.Now().After(deadline) {
			return "", "", fmt.Errorf("no block device appeared on this host within %s: looked for %s (CAIRN_DISK_BY_ID_DIR replaces /dev/disk/by-id)",
				timeout, looked)
		}
		select {
		case <-ctx.Done():
			return "", "", ctx.Err()
		case <-time.After(devicePoll):
		}
	}
}
