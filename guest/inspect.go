package guest

import (
	"errors"
	"fmt"
	"io"

	"github.com/cairn-backup/cairn/guest/part"
	"github.com/cairn-backup/cairn/guest/vfs"
)

// Disk is one disk of a machine, as Inspect reads it.
type Disk struct {
	Name string
	R    io.ReaderAt
	Size int64
}

// Machine is what Inspect found on the disks of one machine.
type Machine struct {
	Disks []*DiskLayout
	// LVMErr is set when the LVM metadata of the physical volumes found
	// could not be assembled into logical volumes (some of them may still
	// be listed).
	LVMErr error
	// Notes are things worth logging that did not stop Inspect: volumes
	// not probed or logical volumes not listed because of the limits.
	Notes []string
}

// DiskLayout is one disk: its partition table and the volumes on it.
type DiskLayout struct {
	Name string
	// Table is "gpt", "mbr" or "" (none, or one cairn does not know).
	Table      string
	Partitions []part.Partition
	// Err is a partition table that could not be read: it wraps
	// part.ErrMalformed for a damaged or crafted one, or is the error of
	// reading the disk. Volumes then holds no partitions.
	Err error
	// Volumes holds, in this order: the disk itself when it has no
	// partition table but a file system or physical volume; each
	// partition (recognised or not); the logical volumes of the volume
	// groups whose first physical volume is on this disk.
	Volumes []*Volume
}

// Options tune Inspect.
type Options struct {
	// Readers are the file system readers to probe with (nil: Readers()).
	Readers []Reader
	// MaxProbe bounds how many volumes of a machine are probed for a file
	// system (0: DefaultMaxProbe); the rest are listed as raw volumes.
	MaxProbe int
	// MaxLogicalVolumes bounds how many logical volumes are listed (0:
	// DefaultMaxLogicalVolumes).
	MaxLogicalVolumes int
}

// Limits that keep a crafted machine (a GPT with 16384 entries, LVM
// metadata listing a million volumes) from costing unbounded time or
// memory.
const (
	DefaultMaxProbe          = 1024
	DefaultMaxLogicalVolumes = 4096
)

// Inspect reads the partition tables of a machine's disks, finds the LVM
// physical volumes (on whole disks and in partitions), assembles their
// logical volumes (a volume group may span several disks, which is why
// Inspect takes them all), and probes every volume with every reader.
// File systems are opened lazily, by Volume.FS.
//
// It reads little: the first sectors of each disk, the partition
// tables, the LVM labels and metadata, and at most 64 KiB per volume and
// reader to probe. A malformed partition table is reported on its disk
// (DiskLayout.Err) and does not stop the others. The returned error is
// only for a failed read of a disk, which the caller may retry.
func Inspect(disks []Disk, o Options) (*Machine, error) {
	if o.Readers == nil {
		o.Readers = Readers()
	}
	if o.MaxProbe <= 0 {
		o.MaxProbe = DefaultMaxProbe
	}
	if o.MaxLogicalVolumes <= 0 {
		o.MaxLogicalVolumes = DefaultMaxLogicalVolumes
	}
	m := &Machine{}
	in := &inspector{o: o, m: m}
	var pvs []physicalVolume
	for i, d := range disks {
		dl := &DiskLayout{Name: d.Name}
		m.Disks = append(m.Disks, dl)
		table, err := part.Read(d.R, d.Size)
		if err != nil {
			if !errors.Is(err, part.ErrMalformed) {
				return nil, fmt.Errorf("disk %s: reading the partition table: %w", d.Name, err)
			}
			dl.Err = err
			continue
		}
		dl.Table, dl.Partitions = table.Kind, table.Partitions
		if table.Kind == "" {
			v := &Volume{Kind: WholeDisk, Disk: d.Name, Offset: 0, Size: d.Size, r: d.R}
			pv, err := in.classify(v)
			if err != nil {
				return nil, fmt.Errorf("disk %s: %w", d.Name, err)
			}
			if v.PV || v.reader != nil {
				dl.Volumes = append(dl.Volumes, v)
			}
			if pv != nil {
				pv.disk = i
				pvs = append(pvs, *pv)
			}
			continue
		}
		for _, p := range table.Partitions {
			v := &Volume{Kind: Partition, Disk: d.Name, Number: p.Number, Offset: p.Start, Size: p.Size,
				r: newSection(d.R, p.Start, p.Size)}
			pv, err := in.classify(v)
			if err != nil {
				return nil, fmt.Errorf("disk %s partition %d: %w", d.Name, p.Number, err)
			}
			dl.Volumes = append(dl.Volumes, v)
			if pv != nil {
				pv.disk = i
				pvs = append(pvs, *pv)
			}
		}
	}
	if len(pvs) > 0 {
		lvs, err := assembleLVs(pvs)
		m.LVMErr = err
		if len(lvs) > o.MaxLogicalVolumes {
			m.Notes = append(m.Notes, fmt.Sprintf("LVM metadata lists %d logical volumes; only the first %d are shown", len(lvs), o.MaxLogicalVolumes))
			lvs = lvs[:o.MaxLogicalVolumes]
		}
		for _, lv := range lvs {
			v := &Volume{Kind: LogicalVolume, Disk: disks[lv.disk].Name, VG: lv.vg, LV: lv.name, Offset: -1,
				Size: lv.size, r: lv.r}
			if _, err := in.classify(v); err != nil {
				return nil, fmt.Errorf("logical volume %s/%s: %w", lv.vg, lv.name, err)
			}
			m.Disks[lv.disk].Volumes = append(m.Disks[lv.disk].Volumes, v)
		}
	}
	return m, nil
}

type inspector struct {
	o      Options
	m      *Machine
	probed int
}

// classify probes v: an LVM physical volume (returned, to be assembled),
// or a file system (v.reader set), or neither. It stops probing after
// MaxProbe volumes.
func (in *inspector) classify(v *Volume) (*physicalVolume, error) {
	if in.probed >= in.o.MaxProbe {
		if in.probed == in.o.MaxProbe {
			in.m.Notes = append(in.m.Notes, fmt.Sprintf("more than %d volumes: %s and the volumes after it are not probed for file systems", in.o.MaxProbe, v))
			in.probed++
		}
		return nil, nil
	}
	in.probed++
	r := &errReader{r: v.r}
	if v.Kind != LogicalVolume { // no LVM on LVM
		pv, err := probePV(v.r, v.Size)
		if err != nil && !errors.Is(err, vfs.ErrMalformed) {
			return nil, err
		}
		if err != nil {
			v.PV = true // a damaged one: its raw image stays
			in.m.Notes = append(in.m.Notes, fmt.Sprintf("%s: LVM physical volume: %v", v, err))
			return nil, nil
		}
		if pv != nil {
			v.PV = true
			return pv, nil
		}
	}
	for i := range in.o.Readers {
		rd := &in.o.Readers[i]
		ok := safeProbe(rd, r, v.Size)
		if r.err != nil {
			return nil, r.err
		}
		if ok {
			v.reader = rd
			return nil, nil
		}
	}
	return nil, nil
}

// safeProbe runs a reader's Probe; a panic counts as "not this file system".
func safeProbe(rd *Reader, r io.ReaderAt, size int64) (ok bool) {
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	return rd.Probe(r, size)
}

// errReader remembers the first read error that is not io.EOF, so that a
// probe that said "no" because the disk could not be read is told apart
// from one that looked and found nothing.
type errReader struct {
	r   io.ReaderAt
	err error
}

func (e *errReader) ReadAt(p []byte, off int64) (int, error) {
	n, err := e.r.ReadAt(p, off)
	if err != nil && err != io.EOF && !errors.Is(err, vfs.ErrMalformed) && e.err == nil {
		e.err = err
	}
	return n, err
}
