package guest

import (
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/cairn-backup/cairn/guest/vfs"
)

// Kind says what a Volume is.
type Kind int

const (
	// WholeDisk is a disk without a partition table that holds a file
	// system (or an LVM physical volume) directly.
	WholeDisk Kind = iota
	// Partition is one partition of a partition table.
	Partition
	// LogicalVolume is an LVM2 logical volume.
	LogicalVolume
)

func (k Kind) String() string {
	switch k {
	case WholeDisk:
		return "disk"
	case Partition:
		return "partition"
	case LogicalVolume:
		return "logical volume"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// ErrNoFileSystem is returned by Volume.FS for a volume in which no reader
// recognised a file system.
var ErrNoFileSystem = errors.New("no known file system")

// Volume is a byte range that may hold a file system: a whole disk, a
// partition or a logical volume.
type Volume struct {
	Kind Kind
	// Disk is the disk the volume is on; for a logical volume, the first
	// disk (in the order given to Inspect) holding a physical volume of its
	// volume group: a group spanning vda and vdb shows under vda.
	Disk string
	// Number is the partition number (Partition only).
	Number int
	// VG and LV name a logical volume (LogicalVolume only), as the LVM
	// metadata spells them.
	VG, LV string
	// Offset is where the volume starts on Disk (WholeDisk and Partition;
	// a logical volume may be spread over several disks: -1).
	Offset int64
	// Size is the volume's length in bytes.
	Size int64
	// PV reports that the volume is an LVM2 physical volume: its logical
	// volumes are listed as volumes of their own, and it holds no file
	// system.
	PV bool

	r      io.ReaderAt
	reader *Reader // the reader whose Probe matched, nil when none did

	mu     sync.Mutex
	opened bool // fs or a malformed-image err is final
	fs     vfs.FS
	err    error
}

// ReaderAt reads the volume's bytes: offset 0 is its first byte. Reads
// past Size return io.EOF.
func (v *Volume) ReaderAt() io.ReaderAt { return v.r }

// FSType names the reader that recognised the volume's file system
// ("ext", "xfs", "ntfs", "fat"), or "" when none did. The opened FS's
// Type() is more precise.
func (v *Volume) FSType() string {
	if v.reader == nil {
		return ""
	}
	return v.reader.Name
}

// FS opens the volume's file system on first use and returns it from then
// on (restore points are immutable, so is what they hold). It returns
// ErrNoFileSystem when no reader recognised one, and the reader's error
// (wrapping vfs.ErrMalformed for a damaged one) when opening failed; an
// error that is not about the image (a failed read of the repository) is
// not remembered, so the next call tries again.
func (v *Volume) FS() (vfs.FS, error) {
	if v.reader == nil {
		return nil, ErrNoFileSystem
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.opened {
		return v.fs, v.err
	}
	fs, err := v.open()
	if err == nil || errors.Is(err, vfs.ErrMalformed) {
		v.opened, v.fs, v.err = true, fs, err
	}
	return fs, err
}

func (v *Volume) open() (fs vfs.FS, err error) {
	defer func() {
		if p := recover(); p != nil { // a reader bug must not take the mount down
			fs, err = nil, fmt.Errorf("%w: %s reader panicked: %v", vfs.ErrMalformed, v.reader.Name, p)
		}
	}()
	return v.reader.Open(v.r, v.Size)
}

// String describes the volume for log lines: "partition 2 of vda",
// "logical volume vg0/root".
func (v *Volume) String() string {
	switch v.Kind {
	case Partition:
		return fmt.Sprintf("partition %d of %s", v.Number, v.Disk)
	case LogicalVolume:
		return fmt.Sprintf("logical volume %s/%s", v.VG, v.LV)
	}
	return "disk " + v.Disk
}
