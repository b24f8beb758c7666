package libvirt

import (
	"strings"

	golibvirt "github.com/digitalocean/go-libvirt"
)

// deleteCheckpoint removes one checkpoint (libvirt merges its bitmap into
// its neighbours, so other checkpoints stay usable). When the bitmap is
// broken, only the metadata can go.
func (j *job) deleteCheckpoint(name string) {
	cp, err := j.c.L.DomainCheckpointLookupByName(j.dom, name, 0)
	if err != nil {
		return
	}
	if err := j.c.L.DomainCheckpointDelete(cp, 0); err != nil {
		if err2 := j.c.L.DomainCheckpointDelete(cp, golibvirt.DomainCheckpointDeleteMetadataOnly); err2 != nil {
			j.note("could not delete checkpoint %s: %v; delete it with `virsh checkpoint-delete %s %s`", name, err, j.name, name)
			return
		}
		if running, err := j.running(); err == nil && !running {
			j.removeOfflineBitmaps(name) // libvirt could not touch the files
		}
	}
}

// deleteCheckpoints removes every checkpoint cairn created on the domain
// except keep, so that bitmaps do not pile up in the qcow2 files.
// Checkpoints of other tools are left alone.
func (j *job) deleteCheckpoints(keep string) {
	cps, _, err := j.c.L.DomainListAllCheckpoints(j.dom, 1, 0)
	if err != nil {
		return
	}
	for _, cp := range cps {
		if strings.HasPrefix(cp.Name, checkpointPrefix) && cp.Name != keep {
			j.deleteCheckpoint(cp.Name)
		}
	}
}
