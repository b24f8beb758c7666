// Package openstack is cairn's one adapter to OpenStack (Keystone, Nova,
// Cinder, Glance, Neutron), built on gophercloud v2; no other package
// imports gophercloud. Backup (this package's backup*.go) and restore
// (restore*.go) both use it.
//
// Vocabulary:
//   - Config/Connect: how to reach a cloud, from clouds.yaml (--os-cloud,
//     OS_CLOUD) or OS_* variables; Cloud is a connected session with one
//     service client per API and the microversions cairn relies on
//     (Nova 2.79, Cinder 3.44).
//   - Selection: which servers a command works on (names or IDs, tags,
//     metadata, a name glob, a project or all projects).
//   - Definition: everything needed to recreate a server (flavor with extra
//     specs, volumes with their image metadata, ports, security groups,
//     keypair with its public key, ...), stored as JSON with the restore
//     point (Source "openstack").
//   - Temporaries: snapshots, volumes, images and attachments cairn creates
//     while reading a server. Each carries the name prefix "cairn-tmp-" and
//     the metadata key "cairn_temporary", is recorded in a journal before it
//     is created and deleted in dependency order (image, attachment, volume,
//     snapshot) on success, error and interruption. A killed run's journal
//     is replayed by the next run or by `cairn openstack cleanup`. They also
//     say which host runs the backup (cairn_host) and when it last showed it
//     was alive (cairn_heartbeat, refreshed every 10 minutes): orphan
//     cleanup on another host, which cannot see the run's journal lock,
//     leaves them alone until that is older than its grace age
//     (heartbeat.go, cleanup.go).
//   - Transfer: how a snapshot's bytes reach cairn. "glance" (default):
//     temporary volume from the snapshot, upload to a raw Glance image,
//     stream the download into ingest without a temporary file. "attach":
//     when cairn runs on a Nova server of the cloud (--attach-to-server ID,
//     or "self" found by the SMBIOS UUID and confirmed by the cloud), a Nova
//     attachment of the temporary volume to that server, read as the local
//     block device with the volume's serial (backup_nova_attach.go);
//     otherwise a Cinder attachment to this host whose rbd or nfs
//     connection info cairn reads directly (backup_attach.go).
//
// Consistency: a server whose boot image asks for quiescing
// (hw_qemu_guest_agent=yes and os_require_quiesce=yes, or the legacy
// hw_require_fsfreeze=yes) is snapshotted through Nova's createImage on the
// volume-backed server, which freezes the guest file systems through the
// QEMU guest agent while Cinder snapshots every volume: "filesystem"
// consistency. Otherwise each volume gets a Cinder snapshot (forced when
// in use): "crash" consistency. Pre/post commands that succeed raise it to
// "application".
package openstack
