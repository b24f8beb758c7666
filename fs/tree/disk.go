package tree

import (
	"errors"
	"io"
	"strconv"
	"strings"

	"github.com/cairn-backup/cairn/guest"
	"github.com/cairn-backup/cairn/repo"
)

// Names inside a disk directory (see package fs for the layout).
const (
	// WholeDiskFS is the directory of a file system on a disk without a
	// partition table.
	WholeDiskFS = "fs"
	// LVMDir holds one directory per LVM volume group.
	LVMDir = "lvm"
)

// volKey names a volume inside its disk directory, without extension:
// "p2", "fs", "lvm/vg0/root". It is also the volume's part of the inode
// numbers of its files.
func volKey(v *guest.Volume) string {
	switch v.Kind {
	case guest.Partition:
		return "p" + strconv.Itoa(v.Number)
	case guest.LogicalVolume:
		return LVMDir + "/" + escapeName(v.VG) + "/" + escapeName(v.LV)
	}
	return WholeDiskFS
}

// hasFS reports whether the volume gets a directory of files.
func hasFS(v *guest.Volume) bool { return v.FSType() != "" }

// diskDir is <disk>/: p<N>.raw and p<N>/ per partition, fs/ for a file
// system on the whole disk, lvm/ for logical volumes.
type diskDir struct {
	t *Tree
	p *repo.RestorePoint
	d *repo.Disk
}

func (d *diskDir) Attr() Attr {
	return Attr{Ino: inode("parts", d.p.ID, d.d.Name), Mode: dirMode, Mtime: d.p.Time, Stable: true}
}

func (d *diskDir) children() ([]Node, error) {
	dl, err := d.t.diskLayout(d.p, d.d.Name)
	if err != nil {
		return nil, err
	}
	if dl.Err != nil {
		return nil, dl.Err
	}
	var out []Node
	lvs := false
	for _, v := range dl.Volumes {
		switch v.Kind {
		case guest.Partition:
			out = append(out, &partFile{t: d.t, p: d.p, d: d.d, v: v})
			if hasFS(v) {
				out = append(out, d.t.fsDir(d.p, d.d.Name, v, volKey(v)))
			}
		case guest.WholeDisk:
			if hasFS(v) {
				out = append(out, d.t.fsDir(d.p, d.d.Name, v, WholeDiskFS))
			}
		case guest.LogicalVolume:
			lvs = true
		}
	}
	if lvs {
		out = append(out, &lvmDir{t: d.t, p: d.p, disk: d.d.Name})
	}
	return out, nil
}

func (d *diskDir) Readdir() ([]DirEntry, error) { return listNodes(d.children) }

func (d *diskDir) Lookup(name string) (Node, error) {
	if name != LVMDir && name != WholeDiskFS && !strings.HasPrefix(name, "p") {
		return nil, ErrNoEntry // not worth inspecting the disk for
	}
	return findNode(d.children, name)
}

// named is a node that knows its own name in its parent.
type named interface {
	Node
	name() string
}

// listNodes and findNode serve the directories whose entries are nodes
// computed from the disk layout (disk, lvm and volume group directories).
func listNodes(children func() ([]Node, error)) ([]DirEntry, error) {
	cs, err := children()
	if err != nil {
		return nil, err
	}
	out := make([]DirEntry, 0, len(cs))
	for _, c := range cs {
		a := c.Attr()
		out = append(out, DirEntry{Name: c.(named).name(), Ino: a.Ino, Mode: a.Mode})
	}
	sortEntries(out)
	return out, nil
}

func findNode(children func() ([]Node, error), name string) (Node, error) {
	cs, err := children()
	if err != nil {
		return nil, err
	}
	for _, c := range cs {
		if c.(named).name() == name {
			return c, nil
		}
	}
	return nil, ErrNoEntry
}

// partFile is <disk>/p<N>.raw: the bytes of partition N.
type partFile struct {
	t *Tree
	p *repo.RestorePoint
	d *repo.Disk
	v *guest.Volume
}

func (f *partFile) name() string { return volKey(f.v) + RawExt }

func (f *partFile) Attr() Attr {
	return Attr{Ino: inode("part", f.p.ID, f.d.Name, strconv.Itoa(f.v.Number)), Mode: fileMode, Size: f.v.Size,
		Blocks: blocksOf(f.v.Size), Mtime: f.p.Time, Stable: true}
}

func (f *partFile) Open() (Handle, error) {
	return f.t.newHandle(f.p, f.d, f.v.Offset, f.v.Size), nil
}

// lvmDir is <disk>/lvm/: one directory per volume group whose first
// physical volume is on this disk.
type lvmDir struct {
	t    *Tree
	p    *repo.RestorePoint
	disk string
}

func (d *lvmDir) name() string { return LVMDir }

func (d *lvmDir) Attr() Attr {
	return Attr{Ino: inode("lvm", d.p.ID, d.disk), Mode: dirMode, Mtime: d.p.Time, Stable: true}
}

func (d *lvmDir) children() ([]Node, error) {
	dl, err := d.t.diskLayout(d.p, d.disk)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var out []Node
	for _, v := range dl.Volumes {
		if v.Kind == guest.LogicalVolume && !seen[v.VG] {
			seen[v.VG] = true
			out = append(out, &vgDir{t: d.t, p: d.p, disk: d.disk, vg: v.VG})
		}
	}
	return out, nil
}

func (d *lvmDir) Readdir() ([]DirEntry, error)     { return listNodes(d.children) }
func (d *lvmDir) Lookup(name string) (Node, error) { return findNode(d.children, name) }

// vgDir is <disk>/lvm/<vg>/: <lv>.raw and <lv>/ per logical volume.
type vgDir struct {
	t        *Tree
	p        *repo.RestorePoint
	disk, vg string
}

func (d *vgDir) name() string { return escapeName(d.vg) }

func (d *vgDir) Attr() Attr {
	return Attr{Ino: inode("vg", d.p.ID, d.vg), Mode: dirMode, Mtime: d.p.Time, Stable: true}
}

// children lists the group's volumes; a volume whose names clash with
// an earlier one ("a" and "a.raw") is left out and logged.
func (d *vgDir) children() ([]Node, error) {
	dl, err := d.t.diskLayout(d.p, d.disk)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var out []Node
	for _, v := range dl.Volumes {
		if v.Kind != guest.LogicalVolume || v.VG != d.vg {
			continue
		}
		name := escapeName(v.LV)
		if seen[name] || seen[name+RawExt] {
			d.t.logOnce("VM %s restore point %s: logical volume %s/%s clashes with another name and is not shown", d.p.VM, d.p.ID, v.VG, v.LV)
			continue
		}
		seen[name], seen[name+RawExt] = true, true
		out = append(out, &lvFile{t: d.t, p: d.p, v: v})
		if hasFS(v) {
			out = append(out, d.t.fsDir(d.p, d.disk, v, name))
		}
	}
	return out, nil
}

func (d *vgDir) Readdir() ([]DirEntry, error)     { return listNodes(d.children) }
func (d *vgDir) Lookup(name string) (Node, error) { return findNode(d.children, name) }

// lvFile is <disk>/lvm/<vg>/<lv>.raw: the bytes of a logical volume,
// through the LVM mapping of its segments onto the physical volumes.
type lvFile struct {
	t *Tree
	p *repo.RestorePoint
	v *guest.Volume
}

func (f *lvFile) name() string { return escapeName(f.v.LV) + RawExt }

func (f *lvFile) Attr() Attr {
	return Attr{Ino: inode("lv", f.p.ID, f.v.VG, f.v.LV), Mode: fileMode, Size: f.v.Size, Blocks: blocksOf(f.v.Size),
		Mtime: f.p.Time, Stable: true}
}

func (f *lvFile) Open() (Handle, error) {
	return &readerHandle{r: f.v.ReaderAt(), size: f.v.Size}, nil
}

// readerHandle reads a volume through its io.ReaderAt.
type readerHandle struct {
	r    io.ReaderAt
	size int64
}

func (h *readerHandle) ReadAt(p []byte, off int64) (int, error) {
	if off >= h.size {
		return 0, io.EOF
	}
	if rest := h.size - off; int64(len(p)) > rest {
		p = p[:rest]
	}
	n, err := h.r.ReadAt(p, off)
	if err != nil && !errors.Is(err, io.EOF) {
		return 0, err // never part of a failed read
	}
	if off+int64(n) >= h.size {
		return n, io.EOF
	}
	return n, nil
}

func (h *readerHandle) Close() error { return nil }
