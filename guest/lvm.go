package guest

import (
	"errors"
	"fmt"
	"io"

	"github.com/cairn-backup/cairn/guest/lvm"
)

// physicalVolume is an LVM2 physical volume found by probePV.
type physicalVolume struct {
	disk int // index of the disk it is on
	pv   *lvm.PV
}

// logicalVolume is one assembled logical volume.
type logicalVolume struct {
	disk     int // the first disk holding a physical volume of its group
	vg, name string
	size     int64
	r        io.ReaderAt
}

// probePV reads the LVM2 label and metadata of r. It returns nil and no
// error when r is no physical volume, and an error wrapping
// vfs.ErrMalformed for a damaged one.
func probePV(r io.ReaderAt, size int64) (*physicalVolume, error) {
	if !lvm.Probe(r, size) {
		return nil, nil
	}
	pv, err := lvm.ReadPV(r, size)
	if errors.Is(err, lvm.ErrNotPV) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &physicalVolume{pv: pv}, nil
}

// maxLVErrors bounds how many logical volumes that cannot be read are
// named in the error.
const maxLVErrors = 16

// assembleLVs groups physical volumes by volume group and returns the
// logical volumes that can be read, groups sorted by name. Those that
// cannot (a physical volume missing, a type that needs device-mapper) are
// left out and named in the error.
func assembleLVs(pvs []physicalVolume) ([]logicalVolume, error) {
	list := make([]*lvm.PV, len(pvs))
	diskOf := make(map[string]int, len(pvs)) // PV UUID → disk
	for i, p := range pvs {
		list[i] = p.pv
		if d, ok := diskOf[p.pv.UUID]; !ok || p.disk < d {
			diskOf[p.pv.UUID] = p.disk
		}
	}
	vgDisk := map[string]int{} // VG name → first disk holding one of its PVs
	for _, p := range pvs {
		m := p.pv.Metadata
		if m == nil {
			continue
		}
		for _, ref := range m.PVs {
			if d, ok := diskOf[ref.UUID]; ok {
				if cur, have := vgDisk[m.Name]; !have || d < cur {
					vgDisk[m.Name] = d
				}
			}
		}
	}
	vols, err := lvm.Assemble(list)
	if err != nil {
		return nil, err
	}
	var out []logicalVolume
	var errs []error
	for _, v := range vols {
		if v.Err != nil {
			if len(errs) < maxLVErrors {
				errs = append(errs, fmt.Errorf("logical volume %s/%s is not shown: %w", v.VG, v.Name, v.Err))
			}
			continue
		}
		d, ok := vgDisk[v.VG]
		if !ok || v.ReaderAt == nil {
			continue
		}
		out = append(out, logicalVolume{disk: d, vg: v.VG, name: v.Name, size: v.Size, r: v.ReaderAt})
	}
	return out, errors.Join(errs...)
}
