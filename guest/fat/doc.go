// Package fat reads FAT12, FAT16 and FAT32 volumes (type "vfat") in Go,
// read-only, through an io.ReaderAt, and serves them as a vfs.FS.
//
// Vocabulary: the boot sector's BIOS parameter block (BPB) gives the
// geometry; the file allocation table (FAT) links clusters into chains; a
// directory is an array of 32-byte entries, each file having one 8.3 entry
// optionally preceded by VFAT long-file-name (LFN) entries.
//
// Choices a consumer should know:
//
//   - The FAT variant is decided by the cluster count, as the Microsoft
//     specification says (< 4085 FAT12, < 65525 FAT16, else FAT32), never
//     by the "FAT12   " label string. FSInfo is ignored; FAT32's root
//     directory starts at the BPB's root cluster. Only the first FAT copy
//     is read.
//   - Inode numbers are the byte offset on the volume of a file's 8.3
//     directory entry (a multiple of 32, never below the reserved sectors);
//     the root directory is inode 1. They are stable for a given image and
//     decodable: Stat, ReadDir and Open read the entry back from the
//     volume, so no table of inodes is kept. An entry that is deleted,
//     a long-name slot or the volume label is not an inode (ErrNotFound).
//   - Names: the long name when its LFN set is consistent (order numbers
//     descending from a 0x40-flagged last slot to 1, every slot's checksum
//     equal to the 8.3 entry's); otherwise the 8.3 name, with the Windows
//     NT lower-case flags (0x08 base, 0x10 extension) applied and bytes
//     above 0x7F decoded as code page 437. 0x05 as first byte stands for
//     0xE5. Names that cannot be a POSIX name ("/" or NUL) make the
//     directory malformed. Lookup matches exactly first, then
//     case-insensitively on the long or the short name, as Windows would.
//   - Modes: directories 0755, files 0644, read-only files 0444; UID and
//     GID 0; Nlink 1 for files, 2 + subdirectories for directories. The
//     hidden, system and archive attributes hide nothing (as Linux's vfat).
//   - A directory ends at its first entry whose name starts with 0x00, as
//     the specification says; entries starting with 0xE5 are deleted.
//   - Times: FAT stores local time with no zone; this package reports it as
//     if it were UTC (the restored file keeps the wall-clock digits the
//     guest showed). Mtime = Ctime = write time (2 s resolution), Btime =
//     creation time (10 ms resolution), Atime = access date at midnight. A
//     zero date gives the zero time.Time. The root has no times.
//   - Sizes: a file's chain must cover its size (shorter is malformed);
//     clusters chained beyond the size are ignored, as fsck would trim
//     them. A directory's size is its chain length in bytes (the FAT12/16
//     root: its fixed region). Blocks count allocated clusters.
//   - Hostile input: chains are bounded by the cluster count, every link
//     is range-checked, a chain that revisits a cluster is malformed, and a
//     directory is at most 65536 entries (2 MiB) as the specification
//     allows. A directory whose chain is another directory's shows the same
//     inode numbers again, so a walker detects the cycle by inode.
//
// Speed: an open File keeps its cluster chain as runs of contiguous
// clusters and serves ReadAt with one read of the underlying image per run
// touched. FAT12/16 tables are held in memory (≤ 128 KiB); FAT32 tables are
// read through a small block cache. Parsed directories sit in a bounded
// cache so that Lookup after ReadDir does not reread the directory.
package fat
