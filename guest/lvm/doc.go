// Package lvm reads LVM2 physical volumes and maps linear and striped
// logical volumes in pure Go, without device-mapper: a VM disk's LVs become
// io.ReaderAts that the file system readers open like partitions.
//
// # Vocabulary
//
//   - PV (physical volume): a disk or partition with an LVM2 label
//     ("LABELONE", type "LVM2 001") in one of its first four sectors. The
//     PV header after the label gives the PV UUID, its data area and up to
//     a few metadata areas (mda: one near the start, optionally one at the
//     end).
//   - Metadata area: a 512-byte header (magic " LVM2 x[5A%r0N*>") and a
//     circular buffer holding the VG metadata as text; raw_locns[0] points
//     at the committed copy, which may wrap around the end of the buffer.
//     The label, the header and the text each carry LVM's CRC-32 (initial
//     value 0xf597a6cf), checked here.
//   - VG (volume group): extent size, the PVs by UUID with pe_start and
//     pe_count, and LVs made of segments; seqno grows with every change,
//     and the copy with the highest seqno across all PVs and areas wins.
//   - LV segment: start_extent and extent_count in the LV, and stripes =
//     [PV name, first extent] pairs. A linear segment is a striped one
//     with one stripe; with N stripes the segment is interleaved in
//     stripe_size chunks.
//
// # API
//
// ReadPV(r, size) reads one device's label and newest metadata. Assemble
// groups PVs by VG UUID, picks the newest metadata and returns one Volume
// per visible LV: VG, Name, UUID, Size, and an io.ReaderAt that maps LV
// offsets by binary search over the segments and arithmetic within them.
// An LV that needs a PV missing from the set has Err wrapping ErrMissingPV
// and names the PV's UUID, metadata name and last device path. Thin pools
// and thin LVs, snapshots (origin is readable, the COW store is not),
// raid, mirror, cache, vdo and other segment types have Err wrapping
// ErrUnsupported with the segment type. Hidden LVs (pool data, raid
// images, logs) are not returned.
//
// # Hostile input
//
// The metadata text parser is a small recursive descent parser with
// bounds on nesting (32), items (2^20) and text size (16 MiB); numbers are
// range-checked before use, extents are checked against each PV's
// pe_count and the device size, and segments must tile the LV without
// gaps. Damage is reported as an error wrapping vfs.ErrMalformed.
//
// Not read: lvmlockd/shared VGs are read like any other (no locking is
// needed to read), the PV header extension (bootloader area) is ignored,
// and VGs in the old LVM1 or pool formats are not recognised.
package lvm
