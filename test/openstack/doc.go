// Package openstack holds cairn's integration tests against a real
// OpenStack: backup (`cairn backup openstack`) and restore (`cairn restore
// vm`, `cairn restore volume`) of Nova servers and Cinder volumes, through
// the public APIs only, as a user's cloud would be used.
//
// The cloud is the one scripts/openstack-up.sh starts on 127.0.0.1 (run it
// as root; scripts/openstack-down.sh stops it, --purge also deletes its
// state). `make test` does both and sets CAIRN_REQUIRE_OPENSTACK=1: then a
// test that cannot reach the cloud fails instead of skipping.
//
// What the tests connect to (all of it also in the sourceable
// /var/lib/openstack-lite/cairn-test.env):
//
//	CAIRN_TEST_CLOUDS_YAML  clouds.yaml (default /var/lib/openstack-lite/clouds.yaml)
//	OS_CLOUD                cloud "openstack-lite": admin, project admin
//	CAIRN_TEST_CLOUD_ALT    cloud "openstack-lite-alt": user cairn-alt in project cairn-alt
//	CAIRN_TEST_PROJECT_ALT  "cairn-alt", the second project (admin holds the admin role there too)
//	CAIRN_TEST_CEPH_CONF    ceph.conf of the Cinder RBD backend, for test-only byte access
//	                        (rbd export volumes/volume-<id>; never used by cairn itself)
//
// Fixtures the script creates: flavors cairn.tiny (1 vCPU, 256 MiB, 1 GB)
// and cairn.small (2, 512 MiB, 2 GB); shared networks cairn-net
// (10.66.0.0/24), cairn-net2 (10.67.0.0/24) and cairn-nosec (10.68.0.0/24,
// port_security_enabled=false; each subnet leaves .128-.254 out of
// Neutron's allocation pool for tests that ask for a fixed IP), on which
// ports bind, so servers with
// networks go ACTIVE under Nova's fake virt driver; volume types rbd (the
// default, Ceph: snapshots of in-use volumes work) and nfs; raised quotas.
//
// Restore tests: restore_test.go (round trip, second project and network
// mapping, missing flavor and key pair, single volume, local-image restore
// points), restore_net_test.go (network identity: MAC addresses kept or
// renewed, which ports Nova deletes with the server, security groups
// recreated from their captured rules, rollback), restore_fault_test.go
// (failures injected at each step through a fault-injecting transport in
// front of every endpoint), and
// restore_bench_test.go (the throughput figure; CAIRN_BENCH=1 only).
//
// Backup tests: backup_test.go (a boot-from-volume server with two
// volumes whose bytes were written through Ceph: restore point disks
// byte-equal, definition equal to what Nova/Cinder/Neutron report, second
// backup deduplicated, --transfer attach; the quiesced path through Nova
// and the warning for a guest agent without os_require_quiesce),
// backup_ephemeral_test.go (image-backed root), backup_qcow2_test.go (an
// image-backed server from a qcow2 image: its qcow2 snapshot read through
// a converting volume), backup_nova_attach_test.go (--transfer attach to
// a "cairn host" server through Nova: the test cloud's virt driver turns
// the attached RBD volume into a read-only loop device linked in
// $CAIRN_DISK_BY_ID_DIR; also SIGTERM while reading and a device that
// never appears), cleanup_remote_test.go (orphan cleanup leaves another
// host's live run alone until its heartbeat is older than the grace),
// backup_kill_test.go (the
// built binary SIGKILLed at several steps; `cairn openstack cleanup` or
// the next run removes the leftovers), backup_fault_test.go (5xx, lost
// answers, stalls, a cut download, a status timeout through faultTransport)
// and backup_bench_test.go (the 4 GiB throughput figure; CAIRN_BENCH=1).
// harness_test.go holds the shared fixtures: newBFVServer, the leak check
// over snapshots, volumes, images and attachments of every project
// (leakSet, noLeaks), the built binary (cairnBin, runCairn) and
// faultTransport.
package openstack
