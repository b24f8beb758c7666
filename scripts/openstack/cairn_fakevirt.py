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

Use: compute_driver = cairn_fakevirt.SnapshotFakeDriver, with this file
on nova-compute's PYTHONPATH (openstack-up.sh copies it to $STATE/python
and aliases it as nova.virt.cairn_fakevirt).
"""
import os
import tempfile

from oslo_log import log as logging

import nova.conf
from nova.compute import task_states
from nova import exception
from nova.image import glance
from nova.virt import fake

CONF = nova.conf.CONF
LOG = logging.getLogger(__name__)


class SnapshotFakeDriver(fake.FakeDriver):
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
