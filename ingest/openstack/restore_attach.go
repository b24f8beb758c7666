package openstack

import (
	"bufio"
	"context"
	"crypto/md5"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/v3/volumes"

	"github.com/cairn-backup/cairn/repo"
)

// connectionInfo is what Cinder returns for an attachment: how a host
// reaches the volume's bytes. The attachments API returns it flat (the
// driver's data beside driver_volume_type); os-initialize_connection nests
// the data under "data". Both decode.
type connectionInfo struct {
	DriverVolumeType string             `json:"driver_volume_type"`
	Data             connectionInfoData `json:"data"`
}

func (ci *connectionInfo) UnmarshalJSON(b []byte) error {
	var nested struct {
		DriverVolumeType string             `json:"driver_volume_type"`
		Data             connectionInfoData `json:"data"`
	}
	if err := json.Unmarshal(b, &nested); err != nil {
		return err
	}
	ci.DriverVolumeType, ci.Data = nested.DriverVolumeType, nested.Data
	if ci.Data.Name == "" && ci.Data.DevicePath == "" {
		return json.Unmarshal(b, &ci.Data)
	}
	return nil
}

type connectionInfoData struct {
	Name           string   `json:"name"`
	Hosts          []string `json:"hosts"`
	Ports          []string `json:"ports"`
	AuthEnabled    bool     `json:"auth_enabled"`
	AuthUsername   string   `json:"auth_username"`
	ClusterName    string   `json:"cluster_name"`
	Export         string   `json:"export"`
	MountPointBase string   `json:"mount_point_base"`
	DevicePath     string   `json:"device_path"`
}

// fillVolumeAttach creates an empty volume, attaches it to this host through
// the Cinder attachments API (no server: a host-only attachment) and writes
// the disk's data blocks straight into it, by the connection type:
//   - rbd: `rbd import-diff` of a diff stream cairn writes (only non-zero
//     blocks travel), with the monitors and user Cinder reports; needs the
//     rbd tool and, with cephx, a keyring for that user on this host;
//   - nfs: the volume file under the share, when it is mounted here;
//   - a local block device path (e.g. iSCSI already logged in).
//
// The attachment is a temporary and is always deleted.
func (rs *restorer) fillVolumeAttach(ctx context.Context, dr *repo.DiskReader, spec VolumeSpec) (*volumes.Volume, error) {
	vol, err := rs.createVolume(ctx, spec, "")
	if err != nil {
		return nil, err
	}
	host, _ := os.Hostname()
	connector := map[string]any{"host": host, "ip": "127.0.0.1", "platform": "x86_64", "os_type": "linux", "multipath": false, "do_local_attach": false}
	var body struct {
		Attachment struct {
			ID             string         `json:"id"`
			ConnectionInfo connectionInfo `json:"connection_info"`
		} `json:"attachment"`
	}
	req := map[string]any{"attachment": map[string]any{"volume_uuid": vol.ID, "connector": connector}}
	if err := postJSON(ctx, rs.cloud.Volume, "attachments", req, &body); err != nil {
		return nil, fmt.Errorf("attach volume %s to this host: %s", vol.ID, apiMessage(err))
	}
	attID := body.Attachment.ID
	detach := func(ctx context.Context) error { return deleteURL(ctx, rs.cloud.Volume, "attachments/"+attID) }
	rs.undo.add("attachment", attID, "volume "+vol.ID, true, detach)
	t0 := time.Now()
	ci := body.Attachment.ConnectionInfo
	sizeBytes := int64(vol.Size) << 30
	switch ci.DriverVolumeType {
	case "rbd":
		err = writeRBD(ctx, dr, ci, sizeBytes, rs.opts.CephConf)
	case "nfs":
		err = writeLocalPath(ctx, dr, nfsVolumePath(ci))
	default:
		if ci.Data.DevicePath != "" {
			err = writeLocalPath(ctx, dr, ci.Data.DevicePath)
		} else {
			err = fmt.Errorf("connection type %q cannot be written from this host; use --transfer glance", ci.DriverVolumeType)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("write disk %s into volume %s (%s): %w", spec.Disk, vol.ID, ci.DriverVolumeType, err)
	}
	rs.progress.Done.Add(dr.Size())
	rs.timing("attach_write", time.Since(t0))
	if err := detach(ctx); err != nil {
		return nil, fmt.Errorf("detach volume %s from this host: %s", vol.ID, apiMessage(err))
	}
	rs.undo.done("attachment", attID)
	if err := restoreWait(ctx, "volume "+vol.ID+" to be detached", restoreDeleteTimeout, func(ctx context.Context) (bool, error) {
		v, err := volumes.Get(ctx, rs.cloud.Volume, vol.ID).Extract()
		if err == nil {
			vol = v
		}
		return err == nil && v.Status == "available", err
	}); err != nil {
		return nil, err
	}
	return vol, rs.finishVolume(ctx, vol, spec)
}

// nfsVolumePath is where the NFS driver keeps the volume file: under
// mount_point_base, in a directory named by the md5 of the export.
func nfsVolumePath(ci connectionInfo) string {
	sum := md5.Sum([]byte(ci.Data.Export))
	return filepath.Join(ci.Data.MountPointBase, hex.EncodeToString(sum[:]), ci.Data.Name)
}

// writeLocalPath writes every non-zero block of the disk into an existing
// file or device that already reads as zeros (a new volume).
func writeLocalPath(ctx context.Context, dr *repo.DiskReader, path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("the volume is not reachable from this host: %w", err)
	}
	defer f.Close()
	err = eachDataRun(ctx, dr, func(off int64, data []byte) error {
		_, err := f.WriteAt(data, off)
		return err
	})
	if err != nil {
		return err
	}
	return f.Sync()
}

// eachDataRun calls fn with runs of consecutive non-zero blocks (up to 4 MiB).
func eachDataRun(ctx context.Context, dr *repo.DiskReader, fn func(off int64, data []byte) error) error {
	d := dr.Disk()
	bs := int64(d.BlockSize)
	run := make([]byte, 0, restoreChunkSize)
	runOff := int64(-1)
	flush := func() error {
		if len(run) == 0 {
			return nil
		}
		err := fn(runOff, run)
		run, runOff = run[:0], -1
		return err
	}
	scratch := make([]byte, bs)
	for b := int64(0); b < d.Blocks(); b++ {
		if b%1024 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		data, err := dr.ReadBlockInto(b, scratch)
		if err != nil {
			return err
		}
		if data == nil {
			if err := flush(); err != nil {
				return err
			}
			continue
		}
		if runOff < 0 {
			runOff = b * bs
		}
		run = append(run, data...)
		if len(run) >= restoreChunkSize {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}

// writeRBDDiff writes the disk's non-zero blocks as an "rbd diff v1" stream
// (the format of `rbd export-diff`): header, image size, one 'w' record per
// run of data, 'e'. Zero blocks are left out: a new image reads as zeros.
func writeRBDDiff(ctx context.Context, dr *repo.DiskReader, imageSize int64, w io.Writer) error {
	bw := bufio.NewWriterSize(w, 1<<20)
	var hdr [17]byte
	bw.WriteString("rbd diff v1\n")
	hdr[0] = 's'
	binary.LittleEndian.PutUint64(hdr[1:], uint64(imageSize))
	bw.Write(hdr[:9])
	err := eachDataRun(ctx, dr, func(off int64, data []byte) error {
		hdr[0] = 'w'
		binary.LittleEndian.PutUint64(hdr[1:], uint64(off))
		binary.LittleEndian.PutUint64(hdr[9:], uint64(len(data)))
		bw.Write(hdr[:])
		_, err := bw.Write(data)
		return err
	})
	if err != nil {
		return err
	}
	bw.WriteByte('e')
	return bw.Flush()
}

// writeRBD pipes the diff stream into `rbd import-diff`, pointed at the
// monitors and pool/image Cinder named. cephConf (optional) is a ceph.conf
// with the keyring for cephx.
func writeRBD(ctx context.Context, dr *repo.DiskReader, ci connectionInfo, imageSize int64, cephConf string) error {
	if _, err := exec.LookPath("rbd"); err != nil {
		return fmt.Errorf("the rbd tool (Debian package ceph-common) is needed for --transfer attach on RBD volumes: %w", err)
	}
	var args []string
	if cephConf != "" {
		args = append(args, "-c", cephConf)
	} else {
		var mons []string
		for i, h := range ci.Data.Hosts {
			if i < len(ci.Data.Ports) {
				h += ":" + ci.Data.Ports[i]
			}
			mons = append(mons, h)
		}
		args = append(args, "-c", "/dev/null", "-m", strings.Join(mons, ","))
		if !ci.Data.AuthEnabled {
			args = append(args, "--auth-client-required", "none")
		}
	}
	if ci.Data.AuthEnabled && ci.Data.AuthUsername != "" {
		args = append(args, "--id", ci.Data.AuthUsername)
	}
	args = append(args, "--no-progress", "import-diff", "-", ci.Data.Name)
	cmd := exec.CommandContext(ctx, "rbd", args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	werr := writeRBDDiff(ctx, dr, imageSize, in)
	in.Close()
	cerr := cmd.Wait()
	if cerr != nil { // rbd's own message explains a broken pipe on our side
		return fmt.Errorf("rbd %s: %v: %s", strings.Join(args, " "), cerr, strings.TrimSpace(stderr.String()))
	}
	return werr
}
