"""Nova virt driver for the test cloud: the fake driver, plus snapshots.

Nova's stock FakeDriver answers an image snapshot of an image-backed
server without uploading anything, so the image stays "queued" forever
and a backup of such a server cannot be tested. This driver uploads the
server's root disk as the snapshot. The fake driver never writes to a
disk, so the root disk of a fake server is exactly its base image: the
snapshot is a copy of the base image's bytes, in its disk format, which
is what the libvirt driver uploads for an untouched server. Everything
else is FakeDriver's.

The copy goes through a file, as the libvirt driver's does: Nova's
glance.API.download() with neither data nor dest_path returns the chunk
iterator only after _verify_and_write() has closed it in its finally
block (isinstance sees IterableWithLength through glanceclient's
RequestIdProxy), so streaming from it uploads zero bytes and Glance marks
the snapshot active with size 0. That was the "empty snapshot" of the
first version of this driver. The upload itself runs in a native thread
(nova's _upload_data uses tpool), where a plain file is safe to read.

The snapshot is checked before the driver returns: its size and hash
must equal the base image's, or the snapshot fails (and Nova deletes the
image), so a broken copy is never passed off as the server's disk.

Local block devices for "cairn host" servers: a server whose metadata
has cairn_test_local_disks=yes stands for the machine cairn runs on. When
Nova attaches an RBD volume to it, this driver plays the hypervisor and
the guest's udev at once: it exports the volume's bytes to a file under
instances_path (`rbd export`, sparse), binds the file to a read-only loop
device and links it as virtio-<first 20 characters of the volume id> in
$CAIRN_DISK_BY_ID_DIR, the name a virtio disk with the volume id as its
serial gets in /dev/disk/by-id. cairn reads that directory instead of
/dev/disk/by-id when CAIRN_DISK_BY_ID_DIR is set. The copy is a snapshot
of the volume at attach time: cairn only attaches its temporary volumes
made from snapshots, which nothing writes. Detaching removes the link,
the loop device and the file. Any other server keeps FakeDriver's
attach, which touches nothing.

Use: compute_driver = cairn_fakevirt.SnapshotFakeDriver, with this file
on nova-compute's PYTHONPATH (openstack-up.sh copies it to $STATE/python
and aliases it as nova.virt.cairn_fakevirt).
"""
import os
import tempfile
import time

from oslo_concurrency import processutils

from oslo_log import log as logging

import nova.conf
from nova.compute import task_states
from nova import exception
from nova.image import glance
from nova.virt import fake

CONF = nova.conf.CONF
LOG = logging.getLogger(__name__)


class SnapshotFakeDriver(fake.FakeDriver):
    def attach_volume(self, context, connection_info, instance, mountpoint,
                      disk_bus=None, device_type=None, encryption=None):
        if _local_disks(instance):
            _LocalDisk(connection_info).attach()
        super().attach_volume(context, connection_info, instance, mountpoint,
                              disk_bus, device_type, encryption)

    def detach_volume(self, context, connection_info, instance, mountpoint,
                      encryption=None):
        if _local_disks(instance):
            _LocalDisk(connection_info).detach()
        super().detach_volume(context, connection_info, instance, mountpoint,
                              encryption)

    def destroy(self, context, instance, *args, **kwargs):
        # A server deleted with volumes attached: Nova disconnects them
        # without detach_volume, so the local disks go here.
        if _local_disks(instance):
            for ci in list(self._mounts.get(instance.name, {}).values()):
                try:
                    _LocalDisk(ci).detach()
                except Exception:
                    LOG.exception("removing a local disk of %s", instance.uuid)
            self._mounts.pop(instance.name, None)
        super().destroy(context, instance, *args, **kwargs)

    def snapshot(self, context, instance, image_id, update_task_state):
        if instance.uuid not in self.instances:
            raise exception.InstanceNotRunning(instance_id=instance.uuid)
        update_task_state(task_state=task_states.IMAGE_PENDING_UPLOAD)
        api = glance.API()
        base = api.get(context, instance.image_ref)
        meta = {"disk_format": base.get("disk_format") or "raw",
                "container_format": base.get("container_format") or "bare"}
        os.makedirs(CONF.instances_path, exist_ok=True)
        fd, path = tempfile.mkstemp(prefix="snapshot-%s-" % instance.uuid,
                                    dir=CONF.instances_path)
        os.close(fd)
        try:
            api.download(context, instance.image_ref, dest_path=path)
            got = os.path.getsize(path)
            if base.get("size") is not None and got != base["size"]:
                raise exception.ImageUnacceptable(
                    image_id=instance.image_ref,
                    reason="downloaded %d bytes of %d" % (got, base["size"]))
            update_task_state(task_state=task_states.IMAGE_UPLOADING,
                              expected_state=task_states.IMAGE_PENDING_UPLOAD)
            with open(path, "rb") as f:
                api.update(context, image_id, meta, data=f)
        finally:
            os.unlink(path)
        snap = api.get(context, image_id)
        _check_copy(image_id, base, snap)
        LOG.info("uploaded snapshot %s: %s bytes of image %s", image_id,
                 snap.get("size"), instance.image_ref, instance=instance)


def _check_copy(image_id, base, snap):
    """Fail unless the snapshot holds exactly the base image's bytes."""
    want = (base.get("size"), base.get("os_hash_algo"),
            base.get("os_hash_value"))
    got = (snap.get("size"), snap.get("os_hash_algo"),
           snap.get("os_hash_value"))
    if snap.get("status") != "active" or got != want:
        raise exception.ImageUnacceptable(
            image_id=image_id,
            reason="snapshot is %s with size/hash %s, base image has %s" % (
                snap.get("status"), got, want))


def _local_disks(instance):
    return (instance.get("metadata") or {}).get("cairn_test_local_disks") == "yes"


class _LocalDisk(object):
    """The local block device of one attached RBD volume (see above)."""

    def __init__(self, connection_info):
        self.ci = connection_info
        self.data = connection_info.get("data") or {}
        self.vol = connection_info.get("serial") or self.data.get("volume_id")
        if not self.vol:
            raise exception.VolumeAttachFailed(
                volume_id="?", reason="connection info without a volume id")
        self.by_id = os.environ.get("CAIRN_DISK_BY_ID_DIR") or "/dev/disk/by-id"
        self.link = os.path.join(self.by_id, "virtio-" + self.vol[:20])
        self.file = os.path.join(CONF.instances_path, "cairn-disk-%s.raw" % self.vol)

    def attach(self):
        if self.ci.get("driver_volume_type") != "rbd":
            raise exception.VolumeAttachFailed(
                volume_id=self.vol, reason="cairn_fakevirt makes local disks of rbd volumes only, not %s"
                % self.ci.get("driver_volume_type"))
        self.detach()  # what an earlier attach of this volume left
        mons = ",".join("%s:%s" % hp for hp in zip(self.data.get("hosts") or [], self.data.get("ports") or []))
        auth = (["--id", self.data["auth_username"]] if self.data.get("auth_enabled")
                else ["--auth-supported", "none"])
        os.makedirs(CONF.instances_path, exist_ok=True)
        os.makedirs(self.by_id, exist_ok=True)
        # the ceph client's first command can race the monitor map (see
        # ceph-retry.sh): retried like there
        for attempt in range(5):
            try:
                processutils.execute("rbd", "--mon-host", mons, *auth, "--no-progress", "export",
                                     self.data["name"], self.file)
                break
            except processutils.ProcessExecutionError as e:
                if os.path.exists(self.file):
                    os.unlink(self.file)
                if attempt == 4 or "problem getting command descriptions" not in (e.stderr or ""):
                    raise exception.VolumeAttachFailed(volume_id=self.vol, reason="rbd export: %s" % e)
                time.sleep(1)
        try:
            dev, _ = processutils.execute("losetup", "-r", "-f", "--show", self.file)
            dev = dev.strip()
            tmp = self.link + ".tmp"
            if os.path.lexists(tmp):
                os.unlink(tmp)
            os.symlink(dev, tmp)
            os.rename(tmp, self.link)
        except Exception:
            self.detach()
            raise
        LOG.info("volume %s attached as local disk %s -> %s", self.vol, self.link, dev)

    def detach(self):
        if os.path.islink(self.link):
            os.unlink(self.link)
        if os.path.exists(self.file):
            out, _ = processutils.execute("losetup", "-j", self.file, "-O", "NAME", "-n")
            for dev in out.split():
                processutils.execute("losetup", "-d", dev, check_exit_code=[0, 1])
            os.unlink(self.file)
            LOG.info("local disk of volume %s removed", self.vol)
