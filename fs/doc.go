// Package fs is cairn's restore browser: a read-only FUSE file system that
// shows every restore point of a repository as byte-exact raw disk images
// (one per disk, partition and LVM logical volume) and as the files of the
// guest file systems inside them (ext2/3/4, XFS, NTFS, FAT), read in Go.
// `cairn mount MOUNTPOINT` serves it; `cairn umount MOUNTPOINT` (or
// fusermount3 -u) ends it.
//
// # The tree
//
//	MOUNTPOINT/
//	  web1/                             one directory per VM
//	    latest -> 2025-03-02T01-00-07Z  symlink to the newest restore point
//	    2025-03-01T01-00-05Z/           one directory per restore point
//	    2025-03-02T01-00-07Z/
//	      vm.json                       the restore point's metadata and VM definition
//	      vda.raw                       disk vda, byte for byte (size = disk size)
//	      vda/                          what is inside vda
//	        p1.raw                      partition 1, byte for byte
//	        p1/                         the files of partition 1's file system
//	        p2.raw                      partition 2 (say, an LVM physical volume)
//	        lvm/                        logical volumes of the volume groups on vda
//	          vg0/
//	            root.raw                logical volume vg0/root, byte for byte
//	            root/                   the files of its file system
//	            swap.raw
//	      vdb.raw
//	      vdb/
//	        fs/                         vdb has no partition table, but a file system
//
// Names:
//
//   - VM directories are named after the VM. Names that cannot be a path
//     component are escaped: '/' → %2F, '%' → %25, NUL → %00, "." → %2E,
//     ".." → %2E%2E, the empty name → %.
//   - Restore point directories are named by the restore point's time in
//     UTC, to the second: 2006-01-02T15-04-05Z (no colons, so the names work
//     in scp, Samba and Windows). When two restore points of a VM fall in
//     the same second, the later one is suffixed with the first 8 digits of
//     its ID: 2006-01-02T15-04-05Z-3f2a91c0. A name does not change while
//     the file system is mounted. `cairn list` shows the same IDs.
//   - latest is a relative symlink to the newest restore point's directory.
//   - vm.json holds the restore point's ID, VM, time, host, tags, parent,
//     source, consistency, its disks (name, image file name, size, block
//     size, source format and path, backup statistics) and the VM definition
//     as captured, as indented JSON.
//   - <disk>.raw is the whole disk: reads return exactly the bytes that
//     were backed up, holes as zeros. SEEK_DATA/SEEK_HOLE report the
//     disk's holes (blocks never stored), and st_blocks counts only the
//     stored blocks, so qemu-img, cp --sparse and du see a sparse file.
//   - <disk>/ holds p<N>.raw per partition of an MBR or GPT partition
//     table: the partition's bytes, a slice of <disk>.raw. N is the GPT
//     entry number, or for MBR 1-4 for primary and 5 and up for logical
//     partitions (as Linux numbers them); the extended partition itself
//     is not shown. A damaged partition table (bad GPT checksums in both
//     copies, a protective MBR without a GPT, partitions beyond the end of
//     the disk) makes listing the directory fail with EIO and is logged;
//     the disk image and everything else still read.
//   - p<N>/ sits next to p<N>.raw when a reader recognises a file system in
//     the partition: the guest's files. A partition with no known file
//     system (swap, a BIOS boot partition, an encrypted volume) only has
//     its .raw image.
//   - fs/ holds the files of a file system written on the whole disk, with
//     no partition table (common for data volumes).
//   - lvm/<vg>/<lv>.raw and lvm/<vg>/<lv>/ are the LVM2 logical volumes
//     (linear and striped) of the physical volumes found on whole disks
//     or in partitions, assembled across all disks of the restore point:
//     a volume group spanning vda and vdb shows under the first of them
//     (in the restore point's order) that holds one of its physical
//     volumes. Logical volumes that need device-mapper logic (thin,
//     snapshot, RAID, cache) or a missing disk are not shown, and logged.
//     VG and LV names are escaped like VM names; an LV whose names clash
//     ("a" and "a.raw") is left out and logged.
//
// Inside a guest file system everything is the guest's: names, the
// directory order, sizes, modes (setuid bits show, but the mount is
// nosuid), owners as numbers (UID/GID, not mapped to this machine's
// users), access, modification and change times, link counts, symlink
// targets (never followed by cairn: an absolute target points into this
// machine, as with any mounted disk), hard links (one inode number for
// all names), sparse files (st_blocks counts only what is allocated;
// holes read as zeros), device nodes, fifos and sockets (shown, never
// opened: the mount is nodev). FAT and NTFS have no Unix owners or modes:
// UID/GID 0, directories 0755, files 0644 (0444 read-only). Names a
// Unix directory cannot hold ("", ".", "..", names with '/' or NUL) and
// repeated names are left out and logged.
//
// Supported: ext2, ext3, ext4 (old and new feature sets, a dirty journal
// is read as a crash-consistent snapshot would be: see guest/ext), XFS
// (v4 and v5), NTFS, FAT12/16/32 with long names, LVM2 linear and
// striped volumes. The readers are in guest/; the kernel's drivers are
// never used, so this works on machines without vfat, NTFS or
// device-mapper.
//
// Real tools work on the images: `qemu-img info` and `compare`,
// `guestfish --ro -a vda.raw -i`, `e2fsck -fn p2.raw`, `mount -o
// loop,ro p2.raw /mnt`, and `qemu-img create -f qcow2 -b .../vda.raw -F
// raw overlay.qcow2` boots a restore point without copying it (instant
// recovery).
//
// `cairn restore files RESTORE-POINT vda/p2:/etc/nginx --to DIR` copies
// out of the same tree without mounting (see fs/tree's CopyOut).
//
// # Behaviour
//
//   - Read-only: anything that would write fails with EROFS.
//   - The list of VMs and restore points is re-read from the repository
//     when it is older than 2 seconds (and when a name is looked up that is
//     not in a listing older than 250 ms), so a backup that finishes while
//     mounted appears without a remount; the kernel caches this top level
//     for one second. Restore point content never changes: the kernel
//     caches it for an hour, and keeps file pages across opens.
//   - Reads verify every block against its hash. A block that fails (a
//     corrupt or missing pack) makes the read fail with EIO, and a log line
//     names the VM, restore point, disk and offset; other reads go on.
//     This holds through the guest readers too: a guest file whose block
//     fails gives EIO, never its bytes.
//   - A guest file system is read from the guest, which may be hostile.
//     A damaged or crafted structure (a bad superblock, inode, extent
//     tree, directory, cluster chain, LVM metadata) gives EIO on the node
//     it concerns and one log line naming the VM, restore point, disk,
//     volume and path; the rest of the mount keeps serving. Readers bound
//     what they allocate and detect loops (see package guest).
//   - Inode numbers derive from identity (VM, restore point ID, disk,
//     partition number; for guest files the volume and the guest's inode
//     number), so they are the same in every mount, a file reached through
//     latest is the same file as by its directory name, and hard links
//     inside a guest share one number.
//   - Reads: the kernel sends reads of up to 1 MiB (max_read); when cairn
//     runs as root it raises the mount's readahead to 4 MiB through
//     /sys/class/bdi (FUSE cannot ask for more than 128 KiB), so sequential
//     reads arrive as 1 MiB requests, several at once (async reads). A
//     file that is read sequentially also gets cairn's own readahead: the
//     blocks after the read are decoded (hash check, decompression,
//     decryption) by a pool of workers, in parallel and ahead of the
//     reader, into the block cache, at most twice as far ahead as the
//     sequential run has read. Replies are handed to the kernel straight
//     from the cache, holes from a shared zero buffer, without copying.
//   - A long sequential run (dd, cat, qemu-img convert of a disk image)
//     does not keep what it read: once a run has read more than 80 MiB,
//     the daemon has the kernel drop the file's cached pages more than
//     64 MiB behind the reader (FUSE_NOTIFY_INVAL_INODE, from a goroutine
//     of its own) and drops the pack pages of those blocks (fadvise).
//     Streaming an image then neither evicts the host's page cache nor
//     takes fresh memory for every page it reads, which on a virtual
//     machine whose host reclaims free guest memory cost more than the
//     reading itself. Random reads and short runs keep their pages.
//   - Files are read without OPEN, FLUSH and RELEASE requests: the first
//     OPEN and FLUSH answer ENOSYS, after which the kernel opens files
//     without asking and keeps their pages across opens (FUSE no-open
//     support). A file costs its READ requests only, which halves the
//     round trips of cp -a; each file node keeps one reader, so concurrent
//     sequential readers of one file share its readahead.
//   - Guest file systems hint what they read next (vfs.Prefetcher): listing
//     an ext directory queues the inode table blocks of its entries for the
//     prefetch workers, so the stats that follow do not wait one by one.
//   - Memory: decoded blocks are cached within --cache-size (256 MiB by
//     default), spread over at most max(4, size/64 MiB) open disks; a disk
//     read while that many others are open closes the least recently
//     used one. A block's buffer is reused for another block once the
//     cache has dropped it and the replies that hold it have been sent, so
//     a long read does not allocate fresh memory per block; buffers come
//     from 4 MiB slabs mapped with their pages populated and are never
//     unmapped (their number is bounded by the most in use at once). At
//     start the daemon populates 32 MiB of Go heap and touches 16 MiB of
//     decode buffers for the first requests (cli/runtime.go). Block tables add up to 8 MiB per open disk. What is
//     inside the disks (partition tables, volumes, opened guest file
//     systems and their caches) is kept for the 8 restore points browsed
//     most recently, and guest directory listings for up to 262,144
//     entries in all (a bigger directory is looked up name by name), so
//     that `ls -l` of a big directory reads it once.
//   - The kernel caches names, attributes and pages of restore point
//     content (which never changes) for an hour, and lists directories
//     with READDIRPLUS, so `ls -l` costs one round trip per 4 KiB of
//     entries rather than one per name.
//   - The mount holds a shared repository lock: backups, restores, check
//     and forget run alongside it, prune and repair wait for it to end.
//
// Package fs/tree holds the tree itself, in plain Go; this package only
// translates it to FUSE with go-fuse.
package fs
