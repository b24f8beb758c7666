package ingest

import (
	"context"
	"fmt"
	"time"

	"github.com/cairn-backup/cairn/ingest/source"
	"github.com/cairn-backup/cairn/repo"
)

// SourceDisk is one disk to back up from a source the caller opened (and
// closes), such as an NBD export of a running VM's disk.
type SourceDisk struct {
	Name   string
	Label  string        // recorded as the disk's source: a path or a URI
	Source source.Source // Extents must report every range that may hold data
	// Incremental: read only Changed and take every other block from the
	// same disk of the base restore point, unread. Changed must cover
	// every byte that may differ from the base (a dirty bitmap does).
	Incremental bool
	Changed     []Extent
}

// BackupSources is Backup for disks the caller opened (Backup opens its
// DiskSpecs and calls it). base, when not nil,
// is the restore point the new one continues (its Parent): incremental
// disks are deltas against it, the others use it for hints only. With no
// base, the newest restore point of the VM gives hints, as in Backup, and
// no disk may be incremental. o.Disks is ignored. Every restore point is a
// complete disk image, whichever way its blocks were found.
func BackupSources(ctx context.Context, r *repo.Repository, o BackupOptions, base *repo.RestorePoint, disks []SourceDisk) (*repo.RestorePoint, Summary, error) {
	start := time.Now()
	if o.VM == "" || len(disks) == 0 {
		return nil, Summary{}, fmt.Errorf("a backup needs a VM name and at least one disk")
	}
	seen := make(map[string]bool)
	for _, d := range disks {
		if d.Name == "" || seen[d.Name] {
			return nil, Summary{}, fmt.Errorf("disk names must be unique and non-empty (got %q twice or empty)", d.Name)
		}
		seen[d.Name] = true
		if d.Incremental {
			if err := CheckBase(r, base, d.Name, d.Source.Size()); err != nil {
				return nil, Summary{}, err
			}
		}
	}
	if o.Progress == nil {
		o.Progress = &Progress{}
	}
	o.Progress.StartTime = start
	for _, d := range disks {
		o.Progress.Total.Add(d.Source.Size())
	}
	parent := base
	if parent == nil {
		var err error
		if parent, err = latestPoint(r, o.VM); err != nil {
			return nil, Summary{}, err
		}
	}
	sess, err := r.NewSession()
	if err != nil {
		return nil, Summary{}, err
	}
	p := &repo.RestorePoint{VM: o.VM, Tags: o.Tags, Source: o.Source, Consistency: o.Consistency, Definition: o.Definition}
	if p.Source == "" {
		p.Source = "image"
	}
	if p.Consistency == "" {
		p.Consistency = "crash"
	}
	if parent != nil {
		p.Parent = parent.ID
	}
	sum := Summary{VM: o.VM}
	for _, sd := range disks {
		d, err := ingestSourceDisk(ctx, r, sess, parent, sd, o)
		if err != nil {
			sess.Abort()
			return nil, Summary{}, fmt.Errorf("disk %s (%s): %w", sd.Name, sd.Label, err)
		}
		d.Name, d.Source = sd.Name, sd.Label
		p.Disks = append(p.Disks, *d)
		sum.LogicalSize += d.Size
		sum.BytesRead += d.Stats.BytesRead
		sum.DataBytes += d.Stats.DataBlocks * int64(d.BlockSize)
		sum.NewBytes += d.Stats.NewBytes
		sum.StoredBytes += d.Stats.StoredBytes
	}
	if err := ctx.Err(); err != nil {
		sess.Abort()
		return nil, Summary{}, err
	}
	if err := sess.Commit(p); err != nil {
		return nil, Summary{}, err
	}
	sum.PointID, sum.Parent, sum.Duration = p.ID, p.Parent, time.Since(start)
	return p, sum, nil
}

// ingestSourceDisk stores one disk, in full or as changes to parent.
func ingestSourceDisk(ctx context.Context, r *repo.Repository, sess *repo.Session, parent *repo.RestorePoint, sd SourceDisk, o BackupOptions) (*repo.Disk, error) {
	var prev *repo.DiskReader
	if parent != nil {
		prev, _ = r.OpenDisk(parent, sd.Name, 1) // absent disk: no hints
	}
	o.Progress.Disk.Store(sd.Name)
	if !sd.Incremental {
		return ingestDisk(ctx, r, sess, sd.Source, prev, o)
	}
	if prev == nil {
		return nil, fmt.Errorf("%w: no disk %s", ErrNoBase, sd.Name)
	}
	cfg := r.Config()
	di := &diskIngest{
		r: r, sess: sess, src: sd.Source, prog: o.Progress, prev: prev,
		bs: int64(cfg.BlockSize), ts: int64(cfg.TableSize), size: sd.Source.Size(),
		zero: make([]byte, cfg.BlockSize),
	}
	return di.run(ctx, o, di.produceChanged(sd.Changed, prev))
}
