package ingest

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/cairn-backup/cairn/ingest/source"
	"github.com/cairn-backup/cairn/repo"
)

// DiskSpec names one disk of a VM and the image to read it from.
type DiskSpec struct {
	Name string // guest device name, e.g. "vda"
	Path string // raw image, block device or qcow2 image
	// Open, when set, opens the disk instead of Path (which then only
	// names the source in the restore point), e.g. a source.Stream.
	Open func() (source.Source, error)
}

// BackupOptions describe one backup of one VM.
type BackupOptions struct {
	VM          string
	Disks       []DiskSpec
	Tags        map[string]string
	Source      string          // "image", "openstack", "libvirt"
	Consistency string          // "crash", "filesystem", "application"
	Definition  json.RawMessage // VM definition to store with the restore point
	Workers     int             // 0: two per CPU
	Progress    *Progress       // optional
}

// Summary is what a backup did.
type Summary struct {
	PointID     string        `json:"id"`
	VM          string        `json:"vm"`
	Parent      string        `json:"parent,omitempty"`
	LogicalSize int64         `json:"logical_size"`
	BytesRead   int64         `json:"bytes_read"`
	DataBytes   int64         `json:"data_bytes"` // non-zero blocks
	NewBytes    int64         `json:"new_bytes"`
	StoredBytes int64         `json:"stored_bytes"`
	Duration    time.Duration `json:"duration_ns"`
}

// DedupRatio is data bytes per new byte (how much deduplication saved).
func (s Summary) DedupRatio() float64 { return ratio(s.DataBytes, s.NewBytes) }

// CompressionRatio is new bytes per stored byte.
func (s Summary) CompressionRatio() float64 { return ratio(s.NewBytes, s.StoredBytes) }

// Throughput is logical bytes per second.
func (s Summary) Throughput() float64 {
	if s.Duration <= 0 {
		return 0
	}
	return float64(s.LogicalSize) / s.Duration.Seconds()
}

func ratio(a, b int64) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// Backup reads every disk of a VM into the repository and commits one
// restore point. Blocks the repository already has are not stored again;
// the newest earlier restore point of the same VM is used to skip index
// lookups for unchanged blocks. The caller holds a shared lock.
func Backup(ctx context.Context, r *repo.Repository, o BackupOptions) (*repo.RestorePoint, Summary, error) {
	if o.VM == "" || len(o.Disks) == 0 {
		return nil, Summary{}, fmt.Errorf("a backup needs a VM name and at least one disk")
	}
	srcs, err := openSources(o.Disks)
	if err != nil {
		return nil, Summary{}, err
	}
	defer func() {
		for _, s := range srcs {
			s.Close()
		}
	}()
	disks := make([]SourceDisk, len(srcs))
	for i, spec := range o.Disks {
		disks[i] = SourceDisk{Name: spec.Name, Label: spec.Path, Source: srcs[i]}
	}
	return BackupSources(ctx, r, o, nil, disks)
}

func openSources(specs []DiskSpec) ([]source.Source, error) {
	seen := make(map[string]bool)
	var out []source.Source
	for _, d := range specs {
		if d.Name == "" || seen[d.Name] {
			for _, s := range out {
				s.Close()
			}
			return nil, fmt.Errorf("disk names must be unique and non-empty (got %q twice or empty)", d.Name)
		}
		seen[d.Name] = true
		open := d.Open
		if open == nil {
			open = func() (source.Source, error) { return source.Open(d.Path) }
		}
		s, err := open()
		if err != nil {
			for _, s := range out {
				s.Close()
			}
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// latestPoint returns the newest restore point of vm, or nil.
func latestPoint(r *repo.Repository, vm string) (*repo.RestorePoint, error) {
	pts, err := r.Points()
	if err != nil {
		return nil, err
	}
	for i := len(pts) - 1; i >= 0; i-- {
		if pts[i].VM == vm {
			return pts[i], nil
		}
	}
	return nil, nil
}
