// Package qcow2 reads qcow2 disk images for backup and plans and writes
// qcow2 images on restore.
//
// # What it owns
//
// Reading: [Open] parses a qcow2 image (version 2 or 3) and its backing
// chain and returns an [Image], an [io.ReaderAt] over the virtual disk whose
// bytes are exactly those `qemu-img convert -O raw` produces, and
// [Image.Extents], which lists the ranges that may hold non-zero data so
// that a backup can skip the rest. [Sniff] recognises the qcow2 magic.
//
// Writing: [PlanLayout] computes, up front and without the data, where
// every metadata structure and every allocated guest cluster of a new
// qcow2 v3 image goes; [Layout.WriteMetadata] writes all metadata and the
// caller writes the data clusters, in any order and in parallel, at
// [Layout.DataOffset]. The result passes `qemu-img check` with no errors
// and no leaks.
//
// # Supported
//
//   - Header versions 2 and 3, header_length beyond 104 bytes, header
//     extensions (backing file format and feature name table are used,
//     everything else is skipped), cluster sizes 512 B to 2 MiB.
//   - L1/L2 tables, standard, all-zero (zero flag) and preallocated zero
//     clusters, extended L2 entries (subclusters, incompatible bit 4).
//   - Compressed clusters: deflate, and zstd (compression_type 1). As in
//     QEMU, a compressed cluster must inflate to a whole cluster and bytes
//     after its stream are ignored.
//   - The dirty bit (lazy refcounts); refcounts are never needed to read.
//   - Images with internal snapshots or persistent bitmaps (the active
//     L1 table is read; snapshots and bitmaps are ignored).
//   - Backing files, raw or qcow2, declared or probed, resolved relative
//     to the directory of the image that names them. Reads past a backing
//     file's end return zeros. Chains are at most 16 backing files deep
//     and loops (by file identity, so symlinks count) are rejected.
//
// A virtual size that is not a multiple of 512 is rounded down, because
// QEMU ignores a partial last sector.
//
// # Rejected
//
// Open fails with an error wrapping [ErrUnsupported] for encryption
// (crypt_method != 0), external data files (incompatible bit 2), unknown
// incompatible features, unknown compression types, version other than 2
// or 3, backing files given as protocols (nbd:, json:, ...) or in formats
// other than raw and qcow2, and non-regular files (pipes, character
// devices). It fails with [ErrCorrupt] for the corrupt bit (incompatible
// bit 1) and inconsistent metadata, and with [ErrTruncated] when metadata
// lies past the end of the file. Backing chain problems wrap
// [ErrBackingChain]. The L1 table and every L2 table it references are
// checked at Open (alignment, within the file, L1 large enough for the
// virtual size); L2 entries are checked when used (ReadAt, Extents):
// misaligned offsets, data clusters starting past the end of the file,
// compressed data starting past the end of the file, invalid subcluster
// bitmaps and (as in QEMU) zero flags in version 2 images are errors.
//
// # Limits and resource use
//
// Nothing allocated depends on header fields beyond what the file can back:
// the L1 table must lie within the file (and QEMU's 32 MiB limit), L2
// tables are cached in a bounded LRU (at most 64 tables and 16 MiB), a few
// decompressed clusters are cached (at most 8 MiB), and zstd windows are
// limited to 8 MiB. ReadAt maps each request to runs of contiguous host
// clusters and reads each run with a single pread, so sequential reads of
// an allocated image run at nearly the speed of a raw file. An Image is
// safe for concurrent use.
//
// Layouts are version 3 images with 16-bit refcounts, no compression, no
// extended L2 entries and no backing file. The host file holds, in order:
// the header cluster, the refcount table, the refcount blocks, the L1
// table, one L2 table per L1 entry that maps data, then the data clusters
// in guest order, so contiguous guest runs are contiguous on the host.
// Memory use is O(allocated clusters); WriteMetadata streams the tables
// through a 1 MiB buffer. The virtual size must be a multiple of 512 and
// the L1 table must fit QEMU's 32 MiB limit (so 512-byte clusters cap the
// disk at 128 GiB; 64 KiB clusters at 2 PiB).
package qcow2
