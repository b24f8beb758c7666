// Package repo owns cairn's repository: where VM disks live once backed up.
//
// # Vocabulary
//
//   - Block: a fixed-size, aligned piece of a disk (Config.BlockSize, 64 KiB by
//     default). Blocks are the unit of deduplication. All-zero blocks are never
//     stored.
//   - Blob: a stored block or block table, named by its ID: the BLAKE3-256 hash
//     of its plaintext (keyed with the repository's hash key when encrypted).
//     Blobs are lz4-compressed when that saves space, then sealed (AES-256-GCM
//     when encrypted). Every read re-hashes the plaintext; a mismatch is
//     ErrCorrupt and the bytes are never returned.
//   - Pack: an immutable file of many blobs followed by a sealed trailer that
//     lists them. A pack is written to tmp/, fsynced, then renamed into
//     packs/; a visible pack is complete.
//   - Block table: the locations (ID, pack, offset, length) of TableSize
//     consecutive blocks of a disk, itself stored as a blob.
//   - Restore point: one backup of one VM: its disks (size, block tables) and
//     its definition, sealed in points/<id>. Written last, atomically (temp
//     file, fsync, rename): until then it does not exist.
//   - Index: a badger database mapping blob ID to location, used by backups to
//     find blocks the repository already has. It is derived data: pack
//     trailers hold the same facts, and RepairIndex rebuilds it.
//
// # Reading needs no index
//
// Block tables carry each block's pack location, so reading any offset of a
// disk is arithmetic (block = offset/BlockSize, table = block/TableSize) plus
// one table lookup and one positional read. Restores and mounts never open
// the index and never scan anything proportional to the disk size. A mostly
// empty disk has few tables: absent tables are all zeros.
//
// # Concurrency
//
// Badger lets one process open a database for writing, or many for reading.
// The repository is built around that:
//
//   - Backups (Sessions) open the index read-only for their whole run, so any
//     number of them, in any number of processes, run at once. Before they
//     start and after they commit, they try to open the index for writing for
//     a moment to merge new packs (syncIndex). When other readers hold it, the
//     merge is skipped: the packs are durable and self-describing, and the
//     next session reads the trailers of packs the index does not list yet
//     (loadUnmerged) before it deduplicates. Two concurrent backups may store
//     the same new block twice; prune removes neither copy while it is used,
//     and both are correct.
//   - Restore, mount and check read restore points and packs directly.
//   - The repository lock (flock on REPO/lock, dropped by the kernel when a
//     process dies) is shared by backup, restore, mount, check and forget,
//     and exclusive for prune and repair, the only operations that delete or
//     rewrite packs. So prune never deletes a block a running backup is about
//     to reference: no backup runs during prune.
//
// # Crash safety
//
// The write order is: blobs into a temp pack → pack fsynced and renamed →
// restore point written atomically → index updated. Killed at any moment, a
// backup leaves at most unreferenced packs (reused by the next backup,
// removed by prune) and temp files (removed by prune). Prune writes new packs
// before rewriting restore points (each atomically), and removes a pack from
// the index before deleting its file.
//
// The on-disk format is specified in FORMAT.md beside this file.
package repo
