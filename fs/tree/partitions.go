package tree

import (
	"errors"
	"sync"

	"github.com/cairn-backup/cairn/guest/part"
	"github.com/cairn-backup/cairn/repo"
)

// Partition is one partition of a disk (see package guest/part).
type Partition = part.Partition

// ---------------------------------------------------------------- cache

// partResult is the partition table of one disk of one restore point,
// read once: restore points are immutable.
type partResult struct {
	once  sync.Once
	parts []Partition
	err   error
}

type partCache struct {
	mu sync.Mutex
	m  map[sourceKey]*partResult
}

func (c *partCache) forget(pointID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.m {
		if k.point == pointID {
			delete(c.m, k)
		}
	}
}

// partitions returns the partitions of disk d of p, reading its table on
// first use. A malformed table is logged once and remembered; a failed
// read is retried on the next call.
func (t *Tree) partitions(p *repo.RestorePoint, d *repo.Disk) ([]Partition, error) {
	k := sourceKey{point: p.ID, disk: d.Name}
	t.parts.mu.Lock()
	pr := t.parts.m[k]
	if pr == nil {
		pr = &partResult{}
		t.parts.m[k] = pr
	}
	t.parts.mu.Unlock()
	pr.once.Do(func() {
		src, err := t.disks.get(p, d)
		if err != nil {
			pr.err = err
			return
		}
		table, err := part.Read(src.dr, d.Size)
		pr.parts, pr.err = table.Partitions, err
		if errors.Is(err, ErrMalformed) {
			t.log.Printf("VM %s restore point %s disk %s: %v; its partition directory gives I/O errors", p.VM, p.ID, d.Name, err)
		}
	})
	if pr.err != nil && !errors.Is(pr.err, ErrMalformed) {
		err := pr.err
		t.parts.mu.Lock()
		if t.parts.m[k] == pr {
			delete(t.parts.m, k) // retry next time
		}
		t.parts.mu.Unlock()
		t.log.Printf("VM %s restore point %s disk %s: reading the partition table failed: %v", p.VM, p.ID, d.Name, err)
		return nil, err
	}
	return pr.parts, pr.err
}
