"""Nova virt driver for the test cloud: the fake driver, plus snapshots.

Nova's stock FakeDriver answers an image snapshot of an image-backed
server without uploading anything, so the image stays "queued" forever
and a backup of such a server cannot be tested. This driver uploads the
server's root disk as the snapshot. The fake driver never writes to a
disk, so the root disk of a fake server is exactly its base image: the
snapshot is a copy of the base image's bytes, in its disk format, which
is what the libvirt driver uploads for an untouched server.

Use: compute_driver = cairn_fakevirt.SnapshotFakeDriver, with this file
on nova-compute's PYTHONPATH (openstack-up.sh copies it to $STATE/python).
"""
from nova.compute import task_states
from nova import exception
from nova.image import glance
from nova.virt import fake


class SnapshotFakeDriver(fake.FakeDriver):
    def snapshot(self, context, instance, image_id, update_task_state):
        if instance.uuid not in self.instances:
            raise exception.InstanceNotRunning(instance_id=instance.uuid)
        update_task_state(task_state=task_states.IMAGE_PENDING_UPLOAD)
        api = glance.API()
        base = api.get(context, instance.image_ref)
        chunks = api.download(context, instance.image_ref)
        meta = {"disk_format": base.get("disk_format", "raw"),
                "container_format": base.get("container_format", "bare")}
        update_task_state(task_state=task_states.IMAGE_UPLOADING,
                          expected_state=task_states.IMAGE_PENDING_UPLOAD)
        api.update(context, image_id, meta, data=_Reader(chunks))


class _Reader(object):
    """A file-like view of an iterator of chunks (glanceclient uploads it)."""

    def __init__(self, chunks):
        self._it = iter(chunks)
        self._buf = b""

    def read(self, n=-1):
        while n < 0 or len(self._buf) < n:
            try:
                self._buf += next(self._it)
            except StopIteration:
                break
        if n < 0:
            out, self._buf = self._buf, b""
        else:
            out, self._buf = self._buf[:n], self._buf[n:]
        return out
