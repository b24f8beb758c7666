package repo

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// RestorePoint is one backup of one VM: every disk and the VM's definition.
// It is stored in REPO/points/<ID> and is immutable once written (prune may
// rewrite it with identical content at new locations).
type RestorePoint struct {
	Version     int               `json:"version"`
	ID          string            `json:"id"`
	VM          string            `json:"vm"`
	Time        time.Time         `json:"time"`
	Host        string            `json:"host,omitempty"`
	Tags        map[string]string `json:"tags,omitempty"`
	Parent      string            `json:"parent,omitempty"`      // restore point this one was compared with
	Source      string            `json:"source,omitempty"`      // "image", "openstack", "libvirt"
	Consistency string            `json:"consistency,omitempty"` // "crash", "filesystem", "application"
	Definition  json.RawMessage   `json:"definition,omitempty"`  // the VM definition, as captured
	Disks       []Disk            `json:"disks"`
}

// Disk is one disk of a restore point. Its bytes are Size bytes split into
// blocks of BlockSize; block b is entry b%TableSize of table b/TableSize.
type Disk struct {
	Name      string     `json:"name"`
	Size      int64      `json:"size"`
	BlockSize int        `json:"block_size"`
	TableSize int        `json:"table_size"`
	Format    string     `json:"source_format,omitempty"` // of the backed-up source
	Source    string     `json:"source,omitempty"`
	Tables    []TableRef `json:"tables"` // ascending Index; absent tables are all zeros
	Stats     DiskStats  `json:"stats"`
}

// TableRef locates the block table covering blocks [Index*TableSize, (Index+1)*TableSize).
type TableRef struct {
	Index  uint32 `json:"index"`
	ID     ID     `json:"id"`
	Pack   PackID `json:"pack"`
	Offset uint32 `json:"offset"`
	Length uint32 `json:"length"`
}

func (t TableRef) location() Location {
	return Location{Pack: t.Pack, Offset: t.Offset, Length: t.Length}
}

// DiskStats records what the backup of a disk did.
type DiskStats struct {
	BytesRead   int64 `json:"bytes_read"`   // read from the source
	DataBlocks  int64 `json:"data_blocks"`  // non-zero blocks
	NewBlocks   int64 `json:"new_blocks"`   // blocks the repository did not have
	NewBytes    int64 `json:"new_bytes"`    // their uncompressed size
	StoredBytes int64 `json:"stored_bytes"` // their size in packs
}

// Blocks is the number of blocks of the disk.
func (d *Disk) Blocks() int64 { return (d.Size + int64(d.BlockSize) - 1) / int64(d.BlockSize) }

func (d *Disk) validate() error {
	if d.Size < 0 || d.BlockSize < 512 || d.BlockSize&(d.BlockSize-1) != 0 || d.TableSize <= 0 || d.TableSize > 1<<20 {
		return fmt.Errorf("%w: disk %q geometry", ErrCorrupt, d.Name)
	}
	tables := (d.Blocks() + int64(d.TableSize) - 1) / int64(d.TableSize)
	for i, t := range d.Tables {
		if int64(t.Index) >= tables || (i > 0 && t.Index <= d.Tables[i-1].Index) {
			return fmt.Errorf("%w: disk %q table %d out of order or range", ErrCorrupt, d.Name, t.Index)
		}
	}
	return nil
}

// Disk returns the named disk.
func (p *RestorePoint) Disk(name string) (*Disk, error) {
	for i := range p.Disks {
		if p.Disks[i].Name == name {
			return &p.Disks[i], nil
		}
	}
	var names []string
	for _, d := range p.Disks {
		names = append(names, d.Name)
	}
	return nil, fmt.Errorf("%w: restore point %s has no disk %q (disks: %s)", ErrNotFound, p.ID, name, strings.Join(names, ", "))
}

const pointMagic = "CAIRNRP1"

func pointAAD(id string) []byte { return []byte("point" + id) }

func (r *Repository) pointPath(id string) string { return filepath.Join(r.dir, "points", id) }

func newPointID() string { return randomHex(8) }

func validPointID(id string) bool {
	_, err := hex.DecodeString(id)
	return err == nil && len(id) == 16
}

// writePoint stores p atomically: it exists completely or not at all.
func (r *Repository) writePoint(p *RestorePoint) error {
	raw, err := json.Marshal(p)
	if err != nil {
		return err
	}
	data := r.codec.seal.sealMeta([]byte(pointMagic), raw, pointAAD(p.ID))
	return writeFileAtomic(r.pointPath(p.ID), data, 0o600)
}

// LoadPoint reads restore point id (a full ID or a unique prefix).
func (r *Repository) LoadPoint(id string) (*RestorePoint, error) {
	full, err := r.resolvePointID(id)
	if err != nil {
		return nil, err
	}
	raw, err := os.ReadFile(r.pointPath(full))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w: restore point %s", ErrNotFound, id)
		}
		return nil, err
	}
	return r.decodePoint(full, raw)
}

func (r *Repository) decodePoint(id string, raw []byte) (*RestorePoint, error) {
	if len(raw) < len(pointMagic) || string(raw[:len(pointMagic)]) != pointMagic {
		return nil, fmt.Errorf("%w: restore point %s: bad magic", ErrCorrupt, id)
	}
	plain, err := r.codec.seal.openMeta(raw[len(pointMagic):], pointAAD(id))
	if err != nil {
		return nil, fmt.Errorf("restore point %s: %w", id, err)
	}
	var p RestorePoint
	if err := json.Unmarshal(plain, &p); err != nil {
		return nil, fmt.Errorf("%w: restore point %s: %v", ErrCorrupt, id, err)
	}
	if p.Version != FormatVersion || p.ID != id {
		return nil, fmt.Errorf("%w: restore point %s: version %d, id %q", ErrCorrupt, id, p.Version, p.ID)
	}
	for i := range p.Disks {
		if err := p.Disks[i].validate(); err != nil {
			return nil, fmt.Errorf("restore point %s: %w", id, err)
		}
	}
	return &p, nil
}

// PointIDs lists the IDs of all restore points.
func (r *Repository) PointIDs() ([]string, error) {
	ents, err := os.ReadDir(filepath.Join(r.dir, "points"))
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, e := range ents {
		if validPointID(e.Name()) {
			ids = append(ids, e.Name())
		}
	}
	return ids, nil
}

// Points loads every restore point, oldest first.
func (r *Repository) Points() ([]*RestorePoint, error) {
	ids, err := r.PointIDs()
	if err != nil {
		return nil, err
	}
	var out []*RestorePoint
	for _, id := range ids {
		p, err := r.LoadPoint(id)
		if errors.Is(err, ErrNotFound) {
			continue // forgotten meanwhile
		}
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Time.Equal(out[j].Time) {
			return out[i].Time.Before(out[j].Time)
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

func (r *Repository) resolvePointID(prefix string) (string, error) {
	if validPointID(prefix) {
		return prefix, nil
	}
	if prefix == "" {
		return "", fmt.Errorf("%w: empty restore point id", ErrNotFound)
	}
	ids, err := r.PointIDs()
	if err != nil {
		return "", err
	}
	var match []string
	for _, id := range ids {
		if strings.HasPrefix(id, prefix) {
			match = append(match, id)
		}
	}
	switch len(match) {
	case 0:
		return "", fmt.Errorf("%w: no restore point matches %q (see `cairn list`)", ErrNotFound, prefix)
	case 1:
		return match[0], nil
	}
	return "", fmt.Errorf("restore point prefix %q is ambiguous (%d matches); give more digits", prefix, len(match))
}

// DeletePoint removes a restore point. The data it alone referenced is
// freed by the next prune.
func (r *Repository) DeletePoint(id string) error {
	if err := os.Remove(r.pointPath(id)); err != nil {
		return err
	}
	return syncDir(filepath.Join(r.dir, "points"))
}
