package tree

import (
	"bytes"
	"encoding/json"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cairn-backup/cairn/repo"
)

const (
	dirMode  = syscall.S_IFDIR | 0o555
	fileMode = syscall.S_IFREG | 0o444
	linkMode = syscall.S_IFLNK | 0o777

	// LatestName is the symlink in each VM directory to its newest restore point.
	LatestName = "latest"
	// MetaName is the restore point metadata file in each restore point directory.
	MetaName = "vm.json"
	// RawExt ends the names of disk and partition images.
	RawExt = ".raw"
)

// ---------------------------------------------------------------- root

type rootDir struct{ t *Tree }

func (d *rootDir) Attr() Attr {
	a := Attr{Ino: RootIno, Mode: dirMode}
	if s, err := d.t.snapshotFor(); err == nil {
		a.Mtime = s.mtime
	}
	return a
}

func (d *rootDir) Readdir() ([]DirEntry, error) {
	s, err := d.t.snapshotFor()
	if err != nil {
		return nil, err
	}
	out := make([]DirEntry, 0, len(s.names))
	for _, name := range s.names {
		out = append(out, DirEntry{Name: name, Ino: vmIno(s.vms[name].name), Mode: dirMode})
	}
	return out, nil
}

func (d *rootDir) Lookup(name string) (Node, error) {
	v, err := d.t.findVM(name)
	if err != nil {
		return nil, err
	}
	return &vmDir{t: d.t, name: v.name, dir: v.dir}, nil
}

// findVM returns the VM whose directory is named dir, re-reading the
// listing once when it is not found and the listing is not brand new.
func (t *Tree) findVM(dir string) (*vmEntry, error) {
	s, err := t.snapshotFor()
	if err != nil {
		return nil, err
	}
	if v := s.vms[dir]; v != nil {
		return v, nil
	}
	if s, err = t.current(missRefresh); err != nil {
		return nil, err
	}
	if v := s.vms[dir]; v != nil {
		return v, nil
	}
	return nil, ErrNoEntry
}

func vmIno(vm string) uint64 { return inode("vm", vm) }

// ---------------------------------------------------------------- VM

// vmDir is a VM's directory. It looks its restore points up in the
// current listing on every call, so one node stays valid as backups come
// and go.
type vmDir struct {
	t         *Tree
	name, dir string
}

func (d *vmDir) Attr() Attr {
	a := Attr{Ino: vmIno(d.name), Mode: dirMode}
	if s, err := d.t.snapshotFor(); err == nil {
		if v := s.vms[d.dir]; v != nil {
			a.Mtime = v.latest().p.Time
		}
	}
	return a
}

func (d *vmDir) entry(maxAge time.Duration) (*vmEntry, error) {
	s, err := d.t.current(maxAge)
	if err != nil {
		return nil, err
	}
	if v := s.vms[d.dir]; v != nil && v.name == d.name {
		return v, nil
	}
	return nil, ErrNoEntry // every restore point of the VM was forgotten
}

func (d *vmDir) Readdir() ([]DirEntry, error) {
	v, err := d.entry(d.t.opts.Refresh)
	if err == ErrNoEntry {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	out := []DirEntry{{Name: LatestName, Ino: latestIno(d.name, v.latest().dir), Mode: linkMode}}
	for _, pe := range v.points {
		out = append(out, DirEntry{Name: pe.dir, Ino: pointIno(pe.p), Mode: dirMode})
	}
	sortEntries(out)
	return out, nil
}

func (d *vmDir) Lookup(name string) (Node, error) {
	for _, maxAge := range []time.Duration{d.t.opts.Refresh, missRefresh} {
		v, err := d.entry(maxAge)
		if err != nil && err != ErrNoEntry {
			return nil, err
		}
		if v == nil {
			continue
		}
		if name == LatestName {
			pe := v.latest()
			return &latestLink{target: pe.dir, mtime: pe.p.Time, vm: d.name}, nil
		}
		if pe := v.byDir[name]; pe != nil {
			return &pointDir{t: d.t, p: pe.p}, nil
		}
	}
	return nil, ErrNoEntry
}

// latestLink is VM/latest, a relative symlink to the newest restore point,
// pinned to the target it had when it was looked up. Its inode number
// depends on that target: the kernel caches symlink targets (see
// fs.Mount), so a newer restore point must come as a new inode, which it
// does once the entry's listing timeout ends and the kernel looks
// `latest` up again.
type latestLink struct {
	target, vm string
	mtime      time.Time
}

func latestIno(vm, target string) uint64 { return inode("latest", vm, target) }

func (l *latestLink) Attr() Attr {
	return Attr{Ino: latestIno(l.vm, l.target), Mode: linkMode, Size: int64(len(l.target)), Mtime: l.mtime}
}

func (l *latestLink) Readlink() (string, error) { return l.target, nil }

// ---------------------------------------------------------------- restore point

type pointDir struct {
	t *Tree
	p *repo.RestorePoint
}

func pointIno(p *repo.RestorePoint) uint64 { return inode("point", p.ID) }

func (d *pointDir) Attr() Attr {
	return Attr{Ino: pointIno(d.p), Mode: dirMode, Mtime: d.p.Time, Stable: true}
}

// children lists the restore point's entries: vm.json, then per disk its
// image and its partition directory. A disk whose names clash with an
// earlier entry is left out (and logged): a disk named "vm.json" or two
// disks "a" and "a.raw".
func (d *pointDir) children() []Node {
	out := []Node{&metaFile{p: d.p}}
	seen := map[string]bool{MetaName: true}
	for i := range d.p.Disks {
		disk := &d.p.Disks[i]
		name := escapeName(disk.Name)
		if seen[name] || seen[name+RawExt] {
			d.t.log.Printf("VM %s restore point %s: disk %q clashes with another entry and is not shown", d.p.VM, d.p.ID, disk.Name)
			continue
		}
		seen[name], seen[name+RawExt] = true, true
		out = append(out, &diskFile{t: d.t, p: d.p, d: disk}, &diskDir{t: d.t, p: d.p, d: disk})
	}
	return out
}

func (d *pointDir) Readdir() ([]DirEntry, error) {
	var out []DirEntry
	for _, c := range d.children() {
		a := c.Attr()
		out = append(out, DirEntry{Name: nameOf(c), Ino: a.Ino, Mode: a.Mode})
	}
	sortEntries(out)
	return out, nil
}

func (d *pointDir) Lookup(name string) (Node, error) {
	for _, c := range d.children() {
		if nameOf(c) == name {
			return c, nil
		}
	}
	return nil, ErrNoEntry
}

// nameOf is the name of a restore point directory's child.
func nameOf(n Node) string {
	switch n := n.(type) {
	case *metaFile:
		return MetaName
	case *diskFile:
		return escapeName(n.d.Name) + RawExt
	case *diskDir:
		return escapeName(n.d.Name)
	}
	panic("tree: unexpected child of a restore point directory")
}

// metaFile is vm.json: the restore point's metadata and VM definition.
type metaFile struct {
	p    *repo.RestorePoint
	once sync.Once
	data []byte
}

// pointMeta is what vm.json holds: the restore point without its block
// table locations, which are repository internals.
type pointMeta struct {
	ID          string            `json:"id"`
	VM          string            `json:"vm"`
	Time        time.Time         `json:"time"`
	Host        string            `json:"host,omitempty"`
	Tags        map[string]string `json:"tags,omitempty"`
	Parent      string            `json:"parent,omitempty"`
	Source      string            `json:"source,omitempty"`
	Consistency string            `json:"consistency,omitempty"`
	Disks       []diskMeta        `json:"disks"`
	Definition  json.RawMessage   `json:"definition,omitempty"`
}

type diskMeta struct {
	Name      string         `json:"name"`
	File      string         `json:"file"`
	Size      int64          `json:"size"`
	BlockSize int            `json:"block_size"`
	Format    string         `json:"source_format,omitempty"`
	Source    string         `json:"source,omitempty"`
	Stats     repo.DiskStats `json:"stats"`
}

func (f *metaFile) content() []byte {
	f.once.Do(func() {
		p := f.p
		m := pointMeta{ID: p.ID, VM: p.VM, Time: p.Time.UTC(), Host: p.Host, Tags: p.Tags, Parent: p.Parent,
			Source: p.Source, Consistency: p.Consistency, Disks: []diskMeta{}}
		if len(bytes.TrimSpace(p.Definition)) > 0 && json.Valid(p.Definition) {
			m.Definition = p.Definition
		}
		for _, d := range p.Disks {
			m.Disks = append(m.Disks, diskMeta{Name: d.Name, File: escapeName(d.Name) + RawExt, Size: d.Size,
				BlockSize: d.BlockSize, Format: d.Format, Source: d.Source, Stats: d.Stats})
		}
		raw, err := json.MarshalIndent(m, "", "  ")
		if err != nil { // only an invalid definition can fail; show the rest
			m.Definition = nil
			raw, _ = json.MarshalIndent(m, "", "  ")
		}
		f.data = append(raw, '\n')
	})
	return f.data
}

func (f *metaFile) Attr() Attr {
	n := int64(len(f.content()))
	return Attr{Ino: inode("meta", f.p.ID), Mode: fileMode, Size: n, Blocks: blocksOf(n), Mtime: f.p.Time, Stable: true}
}

func (f *metaFile) Open() (Handle, error) { return bytesHandle{bytes.NewReader(f.content())}, nil }

type bytesHandle struct{ *bytes.Reader }

func (bytesHandle) Close() error { return nil }

// ---------------------------------------------------------------- disks

// diskFile is <disk>.raw: the whole disk, byte for byte.
type diskFile struct {
	t *Tree
	p *repo.RestorePoint
	d *repo.Disk
}

func (f *diskFile) Attr() Attr {
	// Blocks counts the stored (non-zero) blocks, so du and sparse-aware
	// copies see the disk's holes.
	blocks := min(f.d.Stats.DataBlocks*int64(f.d.BlockSize), f.d.Size) / 512
	return Attr{Ino: inode("disk", f.p.ID, f.d.Name), Mode: fileMode, Size: f.d.Size, Blocks: blocks,
		Mtime: f.p.Time, Stable: true}
}

func (f *diskFile) Open() (Handle, error) { return f.t.newHandle(f.p, f.d, 0, f.d.Size), nil }

// sortEntries sorts a listing by name, numbers inside names compared as
// numbers (p2.raw before p10.raw).
func sortEntries(es []DirEntry) {
	sort.Slice(es, func(i, j int) bool {
		a, b := es[i].Name, es[j].Name
		if naturalLess(a, b) != naturalLess(b, a) {
			return naturalLess(a, b)
		}
		return a < b // "p01" and "p1"
	})
}

// blocksOf is the number of 512-byte units of a file of size bytes.
func blocksOf(size int64) int64 { return (size + 511) / 512 }

func naturalLess(a, b string) bool {
	for a != "" && b != "" {
		da, db := leadingDigits(a), leadingDigits(b)
		if da > 0 && db > 0 {
			na, nb := strings.TrimLeft(a[:da], "0"), strings.TrimLeft(b[:db], "0")
			if len(na) != len(nb) {
				return len(na) < len(nb)
			}
			if na != nb {
				return na < nb
			}
			a, b = a[da:], b[db:]
			continue
		}
		if a[0] != b[0] {
			return a[0] < b[0]
		}
		a, b = a[1:], b[1:]
	}
	return len(a) < len(b)
}

func leadingDigits(s string) int {
	n := 0
	for n < len(s) && s[n] >= '0' && s[n] <= '9' {
		n++
	}
	return n
}
