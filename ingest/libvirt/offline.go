package libvirt

import (
	"context"
	"encoding/json"
	"fmt"
	"path"
	"slices"
	"strings"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
	"libvirt.org/go/libvirtxml"

	"github.com/cairn-backup/cairn/ingest"
)

// offline backs up a shut-off domain from its disk files: qemu-nbd on the
// hypervisor exports each disk read-only, with the base checkpoint's
// persistent bitmap (qemu:dirty-bitmap:<checkpoint>) for qcow2 disks, so
// running and stopped domains share one reader. Raw disks are read in full.
func (j *job) offline(ctx context.Context) error {
	for _, d := range j.disks {
		if d.Path == "" {
			return fmt.Errorf("domain %s disk %s is not a file or block device: back it up while the domain runs", j.name, d.Target)
		}
	}
	j.res.Consistency = "shutoff"
	inc := map[string]bool{}
	if j.baseCP != "" {
		for _, d := range j.disks {
			if !d.checkpointable() {
				continue
			}
			if err := j.bitmapUsable(ctx, d, j.baseCP); err != nil {
				j.note("%v: taking a full backup and starting a new checkpoint chain", err)
				j.deleteCheckpoints("")
				inc, j.base, j.baseCP = map[string]bool{}, nil, ""
				break
			}
			inc[d.Target] = true
		}
	}
	cp := ""
	if slices.ContainsFunc(j.disks, disk.checkpointable) {
		name, err := j.offlineCheckpoint(ctx)
		if err != nil {
			j.note("cannot create a checkpoint on the shut-off domain (%v): the next backup is full", firstLine(err))
		} else {
			cp = name
		}
	}
	ok := false
	defer func() {
		if !ok && cp != "" {
			j.deleteCheckpoint(cp)
		}
	}()
	var sds []ingest.SourceDisk
	var stops []func()
	defer func() {
		for _, sd := range sds {
			sd.Source.Close()
		}
		for _, stop := range stops {
			stop()
		}
	}()
	for _, d := range j.disks {
		bitmap := ""
		if inc[d.Target] {
			bitmap = j.baseCP
		}
		sock, stop, err := j.serveFile(ctx, d, bitmap, false)
		if err != nil {
			return err
		}
		stops = append(stops, stop)
		ctxName := ""
		if bitmap != "" {
			ctxName = "qemu:dirty-bitmap:" + bitmap
		}
		sd, err := j.openDisk(d, sock, d.Target, ctxName)
		if err != nil {
			return err
		}
		if ctxName != "" {
			if err := ingest.CheckBase(j.r, j.base, d.Target, sd.Source.Size()); err != nil {
				sd.Incremental, sd.Changed = false, nil
				j.note("disk %s: %v: read in full", d.Target, err)
			}
		}
		sds = append(sds, sd)
	}
	return j.ingest(ctx, sds, cp, func() { ok = true })
}

// bitmapUsable checks that a qcow2 disk carries bitmap name in a
// consistent state (a killed QEMU leaves it "in-use").
func (j *job) bitmapUsable(ctx context.Context, d disk, name string) error {
	out, err := j.c.host.Run(ctx, "qemu-img", "info", "-U", "--output=json", d.Path)
	if err != nil {
		return fmt.Errorf("disk %s: %w", d.Target, err)
	}
	var info struct {
		Spec struct {
			Data struct {
				Bitmaps []struct {
					Name  string   `json:"name"`
					Flags []string `json:"flags"`
				} `json:"bitmaps"`
			} `json:"data"`
		} `json:"format-specific"`
	}
	if err := json.Unmarshal(out, &info); err != nil {
		return fmt.Errorf("disk %s: qemu-img info: %w", d.Target, err)
	}
	for _, b := range info.Spec.Data.Bitmaps {
		if b.Name == name {
			if slices.Contains(b.Flags, "in-use") {
				return fmt.Errorf("disk %s: the bitmap of checkpoint %s is inconsistent (QEMU was killed?)", d.Target, name)
			}
			return nil
		}
	}
	return fmt.Errorf("disk %s: the bitmap of checkpoint %s is missing", d.Target, name)
}

// serveFile exports a disk file read-only with qemu-nbd on the hypervisor
// and waits for its socket. forceShare reads a file that a running QEMU
// holds (the frozen base of a snapshot).
func (j *job) serveFile(ctx context.Context, d disk, bitmap string, forceShare bool) (string, func(), error) {
	sock := path.Join(j.o.SocketDir, newName("cairn-qemu-nbd-")+".sock")
	// Not --persistent: qemu-nbd exits when its last client leaves, so
	// none is left behind on the hypervisor if cairn dies.
	args := []string{"--read-only", "--shared=16", "--socket=" + sock, "--export-name=" + d.Target}
	if bitmap != "" {
		args = append(args, "--bitmap="+bitmap)
	}
	if forceShare {
		// qemu-nbd 7.2 has no --force-share; the block layer option does it.
		proto := "file"
		if strings.HasPrefix(d.Path, "/dev/") {
			proto = "host_device"
		}
		args = append(args, "--image-opts", "driver="+d.Format+",file.driver="+proto+
			",file.filename="+strings.ReplaceAll(d.Path, ",", ",,")+",force-share=on")
	} else {
		args = append(args, "--format="+d.Format, d.Path)
	}
	stop, err := j.c.host.Start("qemu-nbd", args...)
	if err != nil {
		return "", nil, err
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, err := j.c.host.Run(ctx, "test", "-S", sock)
		if err == nil {
			return sock, func() { stop(); j.c.host.Run(context.Background(), "rm", "-f", sock) }, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			stop()
			return "", nil, fmt.Errorf("domain %s disk %s: qemu-nbd did not serve %s: %v (is qemu-utils installed on the hypervisor?)", j.name, d.Target, d.Path, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// offlineCheckpoint starts a checkpoint on a shut-off domain. libvirt
// creates checkpoints of running domains only, so when it refuses, the
// bitmaps are added to the qcow2 files with qemu-img and the checkpoint's
// metadata is redefined to match (what libvirt itself would have done).
func (j *job) offlineCheckpoint(ctx context.Context) (string, error) {
	name := newName(checkpointPrefix)
	x, err := checkpointXML(name, j.disks)
	if err != nil {
		return "", err
	}
	if _, err := j.c.L.DomainCheckpointCreateXML(j.dom, x, 0); err == nil {
		return name, nil
	}
	var added []disk
	undo := func() {
		for _, d := range added {
			j.c.host.Run(context.WithoutCancel(ctx), "qemu-img", "bitmap", "--remove", d.Path, name)
		}
	}
	cx := libvirtxml.DomainCheckpoint{Name: name, CreationTime: fmt.Sprint(time.Now().Unix()), Disks: &libvirtxml.DomainCheckpointDisks{}}
	for _, d := range j.disks {
		if !d.checkpointable() {
			cx.Disks.Disks = append(cx.Disks.Disks, libvirtxml.DomainCheckpointDisk{Name: d.Target, Checkpoint: "no"})
			continue
		}
		if _, err := j.c.host.Run(ctx, "qemu-img", "bitmap", "--add", d.Path, name); err != nil {
			undo()
			return "", err
		}
		added = append(added, d)
		cx.Disks.Disks = append(cx.Disks.Disks, libvirtxml.DomainCheckpointDisk{Name: d.Target, Checkpoint: "bitmap", Bitmap: name})
	}
	rx, err := cx.Marshal()
	if err == nil {
		_, err = j.c.L.DomainCheckpointCreateXML(j.dom, rx, uint32(golibvirt.DomainCheckpointCreateRedefine))
	}
	if err != nil {
		undo()
		return "", fmt.Errorf("redefine checkpoint %s: %w", name, err)
	}
	return name, nil
}

// removeOfflineBitmaps deletes a checkpoint's bitmaps from the qcow2 files
// of a shut-off domain, after libvirt dropped only its metadata.
func (j *job) removeOfflineBitmaps(name string) {
	for _, d := range j.disks {
		if d.checkpointable() && d.Path != "" {
			j.c.host.Run(context.Background(), "qemu-img", "bitmap", "--remove", d.Path, name)
		}
	}
}
