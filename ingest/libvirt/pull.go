package libvirt

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strings"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
	"libvirt.org/go/libvirtxml"

	"github.com/cairn-backup/cairn/ingest"
)

// pull backs up a running domain through libvirt's backup API in pull
// mode: one backup job exports every disk over NBD on a unix socket at a
// fixed point in time, a new checkpoint starts at that point, and the
// previous checkpoint's dirty bitmap (qemu:dirty-bitmap:backup-<disk>)
// says which extents changed since the base restore point.
func (j *job) pull(ctx context.Context) error {
	sizes := map[string]int64{}
	for _, d := range j.disks {
		_, capacity, _, err := j.c.L.DomainGetBlockInfo(j.dom, d.Target, 0)
		if err != nil {
			return fmt.Errorf("domain %s disk %s: %w", j.name, d.Target, err)
		}
		sizes[d.Target] = int64(capacity)
	}
	cp := ""
	for _, d := range j.disks {
		if d.checkpointable() {
			cp = newName(checkpointPrefix)
			break
		}
	}
	if cp == "" {
		j.note("no disk can carry a checkpoint (raw disks): every backup is full")
	}
	inc := map[string]bool{} // disks read as changes to the base
	if j.baseCP != "" {
		for _, d := range j.disks {
			if d.checkpointable() && ingest.CheckBase(j.r, j.base, d.Target, sizes[d.Target]) == nil {
				inc[d.Target] = true
			}
		}
	}
	sock := path.Join(j.o.SocketDir, newName("cairn-nbd-")+".sock")
	begin := func() error {
		bx, err := backupXML(sock, j.disks, j.baseCP, inc)
		if err != nil {
			return err
		}
		cx := golibvirt.OptString{}
		if cp != "" {
			x, err := checkpointXML(cp, j.disks)
			if err != nil {
				return err
			}
			cx = golibvirt.OptString{x}
		}
		return retry(ctx, j.o.Retries, func() error { return j.c.L.DomainBackupBegin(j.dom, bx, cx, 0) })
	}
	err := j.atPointInTime(ctx, begin)
	if err != nil && len(inc) > 0 && brokenCheckpoint(err) {
		j.note("the checkpoint chain is broken (%s), probably because QEMU was killed: taking a full backup and starting a new chain", firstLine(err))
		j.deleteCheckpoints("")
		j.base, j.baseCP, inc = nil, "", map[string]bool{}
		err = j.atPointInTime(ctx, begin)
	}
	if err != nil {
		return fmt.Errorf("domain %s: start backup job: %w", j.name, err)
	}
	ok := false
	defer func() {
		j.endJob()
		if !ok && cp != "" {
			j.deleteCheckpoint(cp) // the next backup continues from the base again
		}
	}()
	exports, err := j.backupExports()
	if err != nil {
		return err
	}
	var sds []ingest.SourceDisk
	defer func() {
		for _, sd := range sds {
			sd.Source.Close()
		}
	}()
	for _, d := range j.disks {
		ex, ok := exports[d.Target]
		if !ok {
			return fmt.Errorf("domain %s: the backup job exports no disk %s", j.name, d.Target)
		}
		bitmap := ""
		if inc[d.Target] {
			if ex.ExportBitmap == "" {
				return fmt.Errorf("domain %s disk %s: incremental backup job without a dirty bitmap", j.name, d.Target)
			}
			bitmap = "qemu:dirty-bitmap:" + ex.ExportBitmap
		}
		sd, err := j.openDisk(d, sock, ex.ExportName, bitmap)
		if err != nil {
			return err
		}
		sds = append(sds, sd)
	}
	return j.ingest(ctx, sds, cp, func() { ok = true })
}

// ingest stores the disks as one restore point and, on success, drops
// the checkpoints older than cp.
func (j *job) ingest(ctx context.Context, sds []ingest.SourceDisk, cp string, success func()) error {
	kind := "full"
	for _, sd := range sds {
		if sd.Incremental {
			kind = "incremental"
			j.res.ChangedRead += extentBytes(sd.Changed)
		}
	}
	base := j.base
	if kind == "full" {
		base = nil // hints come from the newest restore point
	} else {
		j.res.Base = base.ID
	}
	j.res.Kind, j.res.Checkpoint = kind, cp
	_, sum, err := ingest.BackupSources(ctx, j.r, j.pointOptions(cp, kind), base, sds)
	if err != nil {
		return fmt.Errorf("domain %s: %w", j.name, err)
	}
	j.res.Summary = sum
	success()
	if cp != "" {
		j.deleteCheckpoints(cp)
	}
	return nil
}

func extentBytes(ext []ingest.Extent) int64 {
	var n int64
	for _, e := range ext {
		n += e.Len
	}
	return n
}

// openDisk opens a disk's NBD export as a source; with a bitmap context,
// as changes to the base.
func (j *job) openDisk(d disk, sock, exportName, bitmap string) (ingest.SourceDisk, error) {
	contexts := []string{ctxAllocation}
	if bitmap != "" {
		contexts = append(contexts, bitmap)
	}
	open := func() (export, error) { return dialExport(j.c.host, sock, exportName, contexts) }
	first, err := open()
	if err != nil {
		return ingest.SourceDisk{}, fmt.Errorf("domain %s disk %s: NBD export %s on %s: %w", j.name, d.Target, exportName, sock, err)
	}
	src := newExportSource(first, d.Format, open)
	sd := ingest.SourceDisk{Name: d.Target, Label: d.Path, Source: src}
	if bitmap != "" {
		changed, _, err := dirtyExtents(first, bitmap)
		if err != nil {
			src.Close()
			return ingest.SourceDisk{}, fmt.Errorf("domain %s disk %s: dirty bitmap: %w", j.name, d.Target, err)
		}
		sd.Incremental, sd.Changed = true, changed
	}
	return sd, nil
}

func backupXML(sock string, disks []disk, incremental string, inc map[string]bool) (string, error) {
	b := libvirtxml.DomainBackup{
		Incremental: incremental,
		Pull: &libvirtxml.DomainBackupPull{
			Server: &libvirtxml.DomainBackupPullServer{UNIX: &libvirtxml.DomainBackupPullServerUNIX{Socket: sock}},
			Disks:  &libvirtxml.DomainBackupPullDisks{},
		},
	}
	for _, d := range disks {
		// libvirt 9.0 has no default scratch file (it fails with "argument
		// key 'filename' must not have null value"): name one beside the socket.
		pd := libvirtxml.DomainBackupPullDisk{Name: d.Target, Backup: "yes",
			Scratch: &libvirtxml.DomainDiskSource{File: &libvirtxml.DomainDiskSourceFile{File: scratchPath(sock, d.Target)}}}
		if incremental != "" {
			pd.BackupMode = "full"
			if inc[d.Target] {
				pd.BackupMode, pd.Incremental = "incremental", incremental
			}
		}
		b.Pull.Disks.Disks = append(b.Pull.Disks.Disks, pd)
	}
	return b.Marshal()
}

// scratchPath is the file QEMU keeps the job's copy-before-write data in;
// libvirt deletes it when the job ends.
func scratchPath(sock, target string) string {
	return strings.TrimSuffix(sock, ".sock") + "-" + target + ".scratch.qcow2"
}

func checkpointXML(name string, disks []disk) (string, error) {
	c := libvirtxml.DomainCheckpoint{Name: name, Description: "created by cairn; deleted by the next cairn backup", Disks: &libvirtxml.DomainCheckpointDisks{}}
	for _, d := range disks {
		mode := "no"
		if d.checkpointable() {
			mode = "bitmap"
		}
		c.Disks.Disks = append(c.Disks.Disks, libvirtxml.DomainCheckpointDisk{Name: d.Target, Checkpoint: mode})
	}
	return c.Marshal()
}

// backupExports reads the running job's export names and bitmaps.
func (j *job) backupExports() (map[string]libvirtxml.DomainBackupPullDisk, error) {
	x, err := j.c.L.DomainBackupGetXMLDesc(j.dom, 0)
	if err != nil {
		return nil, fmt.Errorf("domain %s: backup job XML: %w", j.name, err)
	}
	var b libvirtxml.DomainBackup
	if err := b.Unmarshal(x); err != nil {
		return nil, fmt.Errorf("domain %s: backup job XML: %w", j.name, err)
	}
	out := map[string]libvirtxml.DomainBackupPullDisk{}
	if b.Pull != nil && b.Pull.Disks != nil {
		for _, d := range b.Pull.Disks.Disks {
			if d.ExportName == "" {
				d.ExportName = d.Name
			}
			out[d.Name] = d
		}
	}
	return out, nil
}

// endJob ends the pull-mode job (libvirt has no "backup end": a pull job
// is aborted by design) and waits until it is gone, so that the next job
// does not collide with it.
func (j *job) endJob() {
	if err := j.c.L.DomainAbortJob(j.dom); err != nil && !strings.Contains(err.Error(), "no job") {
		j.note("ending the backup job failed: %v; end it with `virsh domjobabort %s`", err, j.name)
	}
	for i := 0; i < 100; i++ {
		typ, _, _, _, _, _, _, _, _, _, _, _, err := j.c.L.DomainGetJobInfo(j.dom)
		if err != nil || typ == int32(golibvirt.DomainJobNone) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	j.note("the backup job did not end within 5 s")
}

// brokenCheckpoint recognizes libvirt's answer to an incremental backup
// from a checkpoint whose bitmap is missing or inconsistent.
func brokenCheckpoint(err error) bool {
	var le golibvirt.Error
	if errors.As(err, &le) && golibvirt.ErrorNumber(le.Code) == golibvirt.ErrCheckpointInconsistent {
		return true
	}
	s := err.Error()
	return strings.Contains(s, "checkpoint inconsistent") || strings.Contains(s, "bitmap")
}
