package libvirt

import (
	"context"
	"fmt"
	"path"
	"strings"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
	"libvirt.org/go/libvirtxml"

	"github.com/cairn-backup/cairn/ingest"
)

// snapshot backs up a running domain without the backup API: an atomic,
// disk-only external snapshot (no metadata) puts an overlay on every
// disk, the now frozen base files are read through qemu-nbd, and
// blockcommit --active --pivot merges the overlays back. Always a full
// read (deduplicated against the previous restore point); the checkpoint
// chain of the backup API survives it and is left as it is.
func (j *job) snapshot(ctx context.Context) error {
	for _, d := range j.disks {
		if d.Path == "" {
			return fmt.Errorf("domain %s disk %s is not a file or block device: the snapshot method cannot read it", j.name, d.Target)
		}
	}
	overlays := map[string]string{}
	snap := libvirtxml.DomainSnapshot{Name: newName("cairn-snap-"), Disks: &libvirtxml.DomainSnapshotDisks{}}
	for _, d := range j.disks {
		ov := path.Join(path.Dir(d.Path), path.Base(d.Path)+"."+snap.Name+".overlay.qcow2")
		overlays[d.Target] = ov
		snap.Disks.Disks = append(snap.Disks.Disks, libvirtxml.DomainSnapshotDisk{
			Name: d.Target, Snapshot: "external",
			Driver: &libvirtxml.DomainDiskDriver{Type: "qcow2"},
			Source: &libvirtxml.DomainDiskSource{File: &libvirtxml.DomainDiskSourceFile{File: ov}},
		})
	}
	x, err := snap.Marshal()
	if err != nil {
		return err
	}
	flags := uint32(golibvirt.DomainSnapshotCreateDiskOnly | golibvirt.DomainSnapshotCreateAtomic | golibvirt.DomainSnapshotCreateNoMetadata)
	err = j.atPointInTime(ctx, func() error {
		return retry(ctx, j.o.Retries, func() error {
			_, err := j.c.L.DomainSnapshotCreateXML(j.dom, x, flags)
			return err
		})
	})
	if err != nil {
		return fmt.Errorf("domain %s: disk-only snapshot: %w", j.name, err)
	}
	defer j.commitBack(overlays)

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
		sock, stop, err := j.serveFile(ctx, d, "", true)
		if err != nil {
			return err
		}
		stops = append(stops, stop)
		sd, err := j.openDisk(d, sock, d.Target, "")
		if err != nil {
			return err
		}
		sds = append(sds, sd)
	}
	j.base, j.baseCP = nil, ""
	return j.ingest(ctx, sds, "", func() {})
}

// commitBack merges every overlay into its base with an active
// blockcommit, pivots, and deletes the overlay file. It runs even when
// the backup failed or was interrupted: the domain must not stay on the
// overlays.
func (j *job) commitBack(overlays map[string]string) {
	for target, ov := range overlays {
		if err := j.commitDisk(target); err != nil {
			j.note("disk %s still runs on the overlay %s: %v; merge it with `virsh blockcommit %s %s --active --pivot`", target, ov, err, j.name, target)
			continue
		}
		if _, err := j.c.host.Run(context.Background(), "rm", "-f", ov); err != nil {
			j.note("could not delete the merged overlay %s: %v", ov, err)
		}
	}
}

func (j *job) commitDisk(target string) error {
	flags := golibvirt.DomainBlockCommitActive
	err := retry(context.Background(), j.o.Retries, func() error {
		return j.c.L.DomainBlockCommit(j.dom, target, nil, nil, 0, flags)
	})
	if err != nil {
		return err
	}
	deadline := time.Now().Add(10 * time.Minute)
	for {
		found, _, _, cur, end, err := j.c.L.DomainGetBlockJobInfo(j.dom, target, 0)
		if err != nil {
			return err
		}
		if found == 0 {
			return fmt.Errorf("the commit job disappeared")
		}
		if cur == end { // ready; the pivot below waits if it is not quite
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the commit job did not reach the ready phase in 10 min")
		}
		time.Sleep(50 * time.Millisecond)
	}
	for i := 0; ; i++ {
		err := j.c.L.DomainBlockJobAbort(j.dom, target, golibvirt.DomainBlockJobAbortPivot)
		if err == nil {
			break
		}
		// "not ready for pivot yet": the job reports cur == end a moment early
		if i >= 100 || !strings.Contains(err.Error(), "ready") {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
	// the pivot completes asynchronously
	for i := 0; i < 200; i++ {
		found, _, _, _, _, err := j.c.L.DomainGetBlockJobInfo(j.dom, target, 0)
		if err != nil || found == 0 {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("the pivot did not finish in 10 s")
}
