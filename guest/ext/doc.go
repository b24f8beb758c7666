// Package ext reads ext2, ext3 and ext4 file systems, read-only, as a
// vfs.FS: the guest file systems inside cairn's restore points.
//
// # What it reads
//
// The superblock of revision 0 (128-byte inodes, first inode 11) and of
// the dynamic revision; block sizes 1 KiB to 64 KiB; 32- and 64-byte
// group descriptors, with or without meta_bg (descriptors then live in
// the first group of each meta group); flex_bg, sparse_super and
// sparse_super2 need nothing special because the descriptors say where
// every inode table is. Inodes of any size from 128 bytes, with the extra
// fields when i_extra_isize covers them: nanoseconds and the two epoch
// bits of each timestamp, and the creation time. huge_file i_blocks.
//
// File content comes from an extent tree (header magic, entry counts and
// depth ≤ 5 are checked on every node; uninitialised extents read as
// zeros) or from the ext2/ext3 block map (twelve direct pointers, then
// single, double and triple indirect blocks; a zero pointer is a hole),
// or, with inline_data, from i_block and the system.data attribute. A
// file's map is resolved once per Open into runs of contiguous blocks,
// so a read is a binary search and one read of the image per run.
//
// Directories are read linearly, htree or not: htree index blocks look
// like empty directory blocks to a linear reader, and the metadata_csum
// tail is an entry with inode 0. Names are up to 255 bytes; directories
// with and without the filetype feature are understood. Lookup lists a
// directory once and keeps an index by name in a cache bounded by total
// entries, so lookups in a 5,000-entry directory are map lookups (the
// htree index itself is not used).
// Symlinks are fast (target in i_block, the kernel's rule: no data
// blocks) or slow. Device numbers are decoded from the old 16-bit and the
// new 32-bit encodings into the Linux st_rdev encoding.
//
// Checksums (metadata_csum, gdt_csum) are not verified, and their fields
// are skipped, never mistaken for data.
//
// # The journal
//
// A crash-consistent snapshot of a mounted ext3/ext4 has needs_recovery
// set and metadata that is only in the journal. When the journal is
// internal (s_journal_inum, normally inode 8), Open replays it in memory
// the way jbd2's recovery does — a scan pass that finds the end of the
// log (the first block whose magic or sequence is not the next expected
// transaction's, or a commit block whose checksum fails under journal
// checksum v2/v3), a revoke pass, and a replay pass — and the result is
// an overlay: a map from file system block to the journal block that
// holds its newest copy. Every block this package reads goes through the
// overlay, superblock included. Journal superblocks v1 and v2, tag
// formats of 32- and 64-bit block numbers and checksum v2/v3, escaped
// blocks, same-UUID tags, revoke records and sequence wrap are handled.
// Not done: data-block tag checksums and descriptor checksums are not
// verified (the kernel, too, replays a committed transaction whose commit
// block is valid), the v1 "checksum" compat feature is ignored, and the
// fast-commit area is not replayed (ext4 replays it at the file system
// level; mke2fs does not enable fast_commit by default). Orphan inodes
// are not processed; they are unreachable from the tree anyway.
//
// A journal on another device cannot be replayed: Open then reads the
// file system as it is on disk and logs nothing; (*FS).JournalWarning
// returns ErrExternalJournal so the caller can log it, and
// (*FS).Recovery says what was done.
//
// # Hostile images
//
// Every count, offset and length from the image is checked before use,
// errors wrap vfs.ErrMalformed and name the structure ("ext: inode 12:
// extent header magic 0x0000"). A superblock whose block count exceeds
// the volume is refused, as the kernel refuses to mount it. An indirect
// block or extent tree node met twice within one file is malformed. Memory is bounded
// whatever the image says: a 16 MiB metadata block cache, a directory
// cache of 2^18 entries, at most 2^20 entries and 1 GiB per directory,
// 2^21 runs per open file, extent walks of at most 2^20 nodes, a replayed
// log of at most 2^23 blocks. Extent trees cannot loop (depth must
// decrease by one per level, logical ranges must increase) and block maps
// have a fixed depth.
//
// # Why not a library
//
// github.com/diskfs/go-diskfs's ext4 fails on sparse files, long names,
// ext2/ext3 and pre-1.43 ext4. github.com/masahiro331/go-ext4-filesystem
// (Trivy's reader, pseudo-versions only) was judged from its source: its
// indirect-block walk stops at the first zero pointer (so every hole in
// a block-mapped file truncates or shifts the file), it reads through a
// shared io.Seeker (not safe for concurrent use), and it has neither
// inline data nor any journal replay. Fixing those would have meant
// rewriting most of it, so this package is written from the on-disk
// format (the kernel's Documentation/filesystems/ext4 and jbd2 recovery).
package ext
