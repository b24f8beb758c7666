package guest

import "io"

// physicalVolume is an LVM2 physical volume found by probePV.
type physicalVolume struct {
	disk int // index of the disk it is on
	r    io.ReaderAt
	size int64
}

// logicalVolume is one assembled logical volume.
type logicalVolume struct {
	disk     int // disk of the first physical volume of its group
	vg, name string
	size     int64
	r        io.ReaderAt
}

// probePV reports whether r starts with an LVM2 label.
// TODO(integration): wire guest/lvm in when it lands.
func probePV(r io.ReaderAt, size int64) (*physicalVolume, bool) { return nil, false }

// assembleLVs groups physical volumes by volume group and returns the
// logical volumes, ordered by group and name.
func assembleLVs(pvs []physicalVolume) ([]logicalVolume, error) { return nil, nil }
