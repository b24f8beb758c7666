// Package libvirt is cairn's libvirt/KVM strategy: it backs up the disks of
// libvirt domains into restore points (one per domain and backup) and
// restores a restore point as a domain again. It talks to libvirtd with
// github.com/digitalocean/go-libvirt (pure Go, libvirt's RPC protocol) and
// reads disks through NBD with the project's client, ingest/nbd.
//
// Connections: qemu:///system is libvirtd's unix socket on this machine;
// qemu+ssh://user@host/system is a remote hypervisor reached with
// golang.org/x/crypto/ssh (key authentication: ~/.ssh/id_*, ?keyfile=, or
// ssh-agent; host key checked against ~/.ssh/known_hosts unless
// ?no_verify=1). Over SSH, libvirt's socket and the NBD sockets of backup
// jobs are forwarded unix sockets (direct-streamlocal) on the same SSH
// connection, and qemu-nbd / qemu-img run as SSH sessions: nothing is
// exposed on the network.
//
// Methods (Options.Method; "auto" picks):
//
//   - backup: a running domain, libvirt's backup API in pull mode. One
//     backup job exports every disk over NBD on a unix socket at a fixed
//     point in time and creates checkpoint cairn-<time>-<random> (a
//     persistent dirty bitmap in each qcow2 disk). A full backup reads the
//     allocated extents (NBD base:allocation); an incremental one names the
//     base restore point's checkpoint in <incremental> and reads only the
//     extents of qemu:dirty-bitmap:backup-<disk>; every other block comes
//     from the base restore point unread (ingest.BackupSources). A pull job
//     is ended with an abort (libvirt has no "backup end"); success is
//     judged by cairn's own reads. After a successful backup, older cairn
//     checkpoints are deleted; after a failed one, the new checkpoint is
//     deleted, so the chain continues from the base.
//   - offline: a shut-off domain, from its disk files: qemu-nbd exports each
//     disk read-only, with the base checkpoint's bitmap (--bitmap) for qcow2
//     disks, so the same reader serves running and stopped domains. The new
//     checkpoint is created on the inactive domain first.
//   - snapshot: hypervisors without the backup API. An atomic disk-only
//     external snapshot without metadata freezes the base files, qemu-nbd
//     reads them (--force-share), and blockcommit --active --pivot merges the
//     overlays back, also when the backup fails. Always a full read,
//     deduplicated against the previous restore point.
//
// Raw disks cannot carry checkpoints: they are always read in full. When a
// checkpoint's bitmap is broken (QEMU was killed: libvirt answers
// "checkpoint inconsistent", qemu-img shows the bitmap "in-use") or gone,
// the backup says so, deletes cairn's checkpoints, takes a full backup and
// starts a new chain. The base of an incremental backup is the newest
// restore point of the domain (same UUID) whose checkpoint still exists.
//
// Consistency: Options.Quiesce freezes the guest file systems through the
// QEMU guest agent around the point in time and records "filesystem"; an
// agent that froze nothing, or no agent, gives "crash" with a note. Without
// Quiesce, a domain with a guest agent channel gets a note that it could be
// quiesced. Options.Suspend pauses the guest instead (one guest at a time,
// resumed after MaxSuspend at the latest, or when the libvirt call fixing
// the point returns if one is under way then: "suspended"). Pre and post
// commands run on this machine. test/libvirt proves the agent path against
// the real qemu-ga in a Linux guest built by scripts/libvirt/guest-image.sh.
//
// Serialization: one backup per domain (an flock'd file per hypervisor and
// domain UUID, and libvirt's own job check first, because a second
// backup-begin blocks 30 s and then fails). Transient libvirt errors
// (timeouts, the state change lock, an unresponsive agent) are retried
// three times with backoff. An interrupted backup (context cancelled on
// SIGINT/SIGTERM) ends its job and leaves the chain usable.
//
// Restore points carry Source "libvirt", the tags libvirt.checkpoint,
// libvirt.method, libvirt.kind and libvirt.uuid, and the domain XML in
// Definition (see Definition). Restore writes the disks with
// ingest.RestoreDisk and defines the domain again, with new UUID and MAC
// addresses under a new name.
//
// Pitfalls of libvirt 9.0 / QEMU 7.2 met on the way are listed in
// scripts/libvirt-up.sh (setup) and above (runtime).
package libvirt
