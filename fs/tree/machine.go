package tree

import (
	"container/list"
	"errors"
	"sync"

	"github.com/cairn-backup/cairn/guest"
	"github.com/cairn-backup/cairn/repo"
)

// What is inside a restore point's disks (partition tables, LVM, file
// systems) is worked out by guest.Inspect once per restore point, when one
// of its disk directories is first opened, and kept in a small LRU: each
// entry holds the opened guest file systems and their caches. Guest nodes
// do not hold their file system; they find it here by restore point and
// volume on every call, so evicting an entry frees its memory even while
// the kernel still remembers the nodes.

// maxMachines is how many restore points' inspected disks are kept.
const maxMachines = 8

type machineResult struct {
	once sync.Once
	m    *guest.Machine
	err  error
	elem *list.Element
	id   string
}

type machineCache struct {
	mu  sync.Mutex
	m   map[string]*machineResult // by restore point ID
	lru *list.List
}

func (c *machineCache) init() {
	c.m = make(map[string]*machineResult)
	c.lru = list.New()
}

func (c *machineCache) forget(pointID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if r := c.m[pointID]; r != nil {
		c.lru.Remove(r.elem)
		delete(c.m, pointID)
	}
}

// diskReader reads a whole disk of a restore point through the block
// cache: the io.ReaderAt guest readers are given.
type diskReader struct{ h *diskHandle }

func (r diskReader) ReadAt(p []byte, off int64) (int, error) { return r.h.ReadAt(p, off) }

// Prefetch implements vfs.Prefetcher: guest file systems hint what they
// will read next.
func (r diskReader) Prefetch(off, n int64) { r.h.Prefetch(off, n) }

// machine returns what guest.Inspect found on the disks of p, inspecting
// them on first use. Malformed partition tables and LVM metadata are
// logged once; a failed read of the repository is returned and retried on
// the next call.
func (t *Tree) machine(p *repo.RestorePoint) (*guest.Machine, error) {
	c := &t.machines
	c.mu.Lock()
	r := c.m[p.ID]
	if r == nil {
		r = &machineResult{id: p.ID}
		r.elem = c.lru.PushFront(r)
		c.m[p.ID] = r
		for c.lru.Len() > maxMachines {
			old := c.lru.Remove(c.lru.Back()).(*machineResult)
			delete(c.m, old.id)
		}
	} else {
		c.lru.MoveToFront(r.elem)
	}
	c.mu.Unlock()
	r.once.Do(func() {
		var disks []guest.Disk
		for i := range p.Disks {
			d := &p.Disks[i]
			disks = append(disks, guest.Disk{Name: d.Name, R: diskReader{t.newHandle(p, d, 0, d.Size)}, Size: d.Size})
		}
		r.m, r.err = guest.Inspect(disks, guest.Options{Readers: t.opts.Readers})
		if r.err != nil {
			return
		}
		for _, dl := range r.m.Disks {
			if dl.Err != nil {
				t.log.Printf("VM %s restore point %s disk %s: %v; its directory gives I/O errors", p.VM, p.ID, dl.Name, dl.Err)
			}
		}
		if r.m.LVMErr != nil {
			t.log.Printf("VM %s restore point %s: LVM: %v", p.VM, p.ID, r.m.LVMErr)
		}
		for _, n := range r.m.Notes {
			t.log.Printf("VM %s restore point %s: %s", p.VM, p.ID, n)
		}
	})
	if r.err != nil {
		err := r.err
		c.mu.Lock()
		if c.m[p.ID] == r {
			c.lru.Remove(r.elem)
			delete(c.m, p.ID) // retry next time
		}
		c.mu.Unlock()
		t.log.Printf("VM %s restore point %s: reading the disks' partition tables and volumes failed: %v", p.VM, p.ID, err)
		return nil, err
	}
	return r.m, nil
}

// diskLayout returns the layout of disk d of p.
func (t *Tree) diskLayout(p *repo.RestorePoint, disk string) (*guest.DiskLayout, error) {
	m, err := t.machine(p)
	if err != nil {
		return nil, err
	}
	for _, dl := range m.Disks {
		if dl.Name == disk {
			return dl, nil
		}
	}
	return nil, ErrNoEntry
}

// volume finds a volume of p by its key (see volKey).
func (t *Tree) volume(p *repo.RestorePoint, disk, key string) (*guest.Volume, error) {
	dl, err := t.diskLayout(p, disk)
	if err != nil {
		return nil, err
	}
	for _, v := range dl.Volumes {
		if volKey(v) == key {
			return v, nil
		}
	}
	return nil, errors.New("volume " + key + " of disk " + disk + " is gone")
}
