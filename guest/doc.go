// Package guest understands what lives inside a VM disk: partition tables,
// LVM2 physical volumes and logical volumes, and the guest file systems
// (ext2/3/4, XFS, FAT, NTFS), all read in Go from an io.ReaderAt over a
// disk image. Nothing here touches the kernel: no loop devices, no
// device-mapper, no file system drivers.
//
// Everything read here comes from the guest and may be hostile. Every
// reader bounds what it allocates and how deep it recurses by the sizes it
// has checked, never by counts it read from the image, and reports a
// malformed structure as an error wrapping vfs.ErrMalformed — never a
// panic, a hang or unbounded memory.
//
// Sub-packages:
//
//   - vfs: the read-only file system contract every reader implements.
//   - ext, xfs, fat, ntfs: the file system readers.
//   - lvm: LVM2 metadata and linear logical volumes.
package guest
