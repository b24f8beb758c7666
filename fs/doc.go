// Package fs is cairn's restore browser: a read-only FUSE file system that
// shows every restore point of a repository as byte-exact raw disk images,
// one image per disk and one per partition. `cairn mount MOUNTPOINT`
// serves it; `cairn umount MOUNTPOINT` (or fusermount3 -u) ends it.
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
//	      vda/                          the partitions of vda
//	        p1.raw                      partition 1, byte for byte
//	        p2.raw
//	      vdb.raw
//	      vdb/                          empty: vdb has no partition table
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
//     is not shown. A disk without a partition table, or with one cairn does
//     not know, has an empty directory. A damaged partition table (bad GPT
//     checksums in both copies, a protective MBR without a GPT, partitions
//     beyond the end of the disk) makes listing the directory fail with EIO
//     and is logged; the disk image and everything else still read.
//
// Guest file systems (the files inside ext4, XFS, NTFS...) are not part of
// the tree yet; loop-mount a partition image to read them:
// `mount -o ro,loop MOUNTPOINT/web1/latest/vda/p1.raw /mnt`, or point
// qemu at the images (`qemu-img create -f qcow2 -b .../vda.raw -F raw
// overlay.qcow2` boots a restore point without copying it).
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
//   - Inode numbers derive from identity (VM, restore point ID, disk,
//     partition number), so they are the same in every mount, and a file
//     reached through latest is the same file as by its directory name.
//   - Reads: the kernel sends reads of up to 1 MiB (max_read); when cairn
//     runs as root it raises the mount's readahead to 4 MiB through
//     /sys/class/bdi (FUSE cannot ask for more than 128 KiB), so sequential
//     reads arrive as 1 MiB requests, several at once (async reads). A
//     handle that reads sequentially also gets cairn's own readahead: the
//     blocks after the read are decoded (hash check, decompression,
//     decryption) by a pool of workers, in parallel and ahead of the
//     reader, into the block cache. Replies are handed to the kernel
//     straight from the cache, holes from a shared zero buffer, without
//     copying.
//   - Memory: decoded blocks are cached within --cache-size (256 MiB by
//     default), spread over at most max(4, size/64 MiB) open disks; a disk
//     read while that many others are open closes the least recently
//     used one. Block tables add up to 8 MiB per open disk.
//   - The mount holds a shared repository lock: backups, restores, check
//     and forget run alongside it, prune and repair wait for it to end.
//
// Package fs/tree holds the tree itself, in plain Go; this package only
// translates it to FUSE with go-fuse.
package fs
