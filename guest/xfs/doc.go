// Package xfs reads XFS file systems in pure Go, read-only, from an
// io.ReaderAt over the volume (a partition or a logical volume). It
// implements vfs.FS for cairn's restore browser and `restore files`.
//
// # What is read
//
//   - Superblock v4 and v5 (CRC): block sizes 512 B to 64 KiB, sector and
//     inode sizes, directory block size (-n size), AG geometry. An inode
//     number is decoded as AG number | AG block (sb_agblklog bits) | index
//     in block (sb_inopblog bits); a file system block number as AG number |
//     AG block. Unknown incompatible v5 features refuse to open.
//   - Inodes v1, v2 and v3, with bigtime timestamps (nanoseconds since
//     1901) and large extent counters (nrext64); nanosecond times; creation
//     time on v3; device numbers; di_nblocks as Blocks, so sparse files
//     report what they really allocate.
//   - Data forks: local (short-form directories, inline symlinks), extent
//     lists (packed 128-bit records; unwritten extents read as zeros, holes
//     as zeros) and block-map btrees (root in the inode, long-format v4 and
//     v5 blocks, at most 10 levels, every block visited once).
//   - Directories: short-form, block, leaf, node and btree-format. Entries
//     are read from the data blocks below the 32 GiB leaf offset, skipping
//     unused regions, so the hash index is never needed; with and without
//     file types in entries (ftype). A bounded cache of parsed directories
//     (32 directories, 2^20 entries) serves Lookup.
//   - Remote symlinks, with the v5 per-extent header checked.
//   - On v5 every metadata block read is checked against its CRC-32C and
//     its owner; on v4 against magic numbers and geometry.
//
// # What is not
//
//   - The log is never replayed. The reader shows the on-disk state; a
//     file system that was not cleanly unmounted (a crashed or running
//     guest) may lack its last changes. LogClean reports whether the log
//     ends with an unmount record, for the caller to warn about.
//   - Realtime subvolume files, extended attributes, quotas, reflink
//     sharing (shared blocks are simply read) and the reverse-map and
//     free-space btrees, which a reader does not need.
//
// # Limits against hostile images
//
// Every offset is checked against the AG geometry and the volume size
// before it is read; extent maps are sorted and non-overlapping, at most
// 2^21 extents per file; directories hold at most 2^20 entries in at most
// 2^18 blocks; names containing '/' or NUL are rejected. Errors wrap
// vfs.ErrMalformed and name the inode and structure.
//
// # Why not github.com/masahiro331/go-xfs-filesystem
//
// Trivy's reader (pseudo-versions only) was evaluated: it walks only v5
// bmbt blocks (BMA3), decodes interior btree nodes with the in-inode
// root's record count, supports neither remote symlinks nor device
// numbers, allocates buffers from sizes read off the image, logs through a
// global logger, and has no bound on btree depth or loops. Fixing that
// meant rewriting most of it, so this package is written from the XFS
// on-disk format documentation instead.
package xfs
