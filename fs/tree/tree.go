// Package tree is the restore browser's file tree in plain Go: which names
// exist, what they hold and how their bytes are read. It knows nothing
// about FUSE; package fs translates it into a mounted file system. See the
// documentation of package fs for the layout and the naming rules.
//
// Everything is built lazily: a directory's children are only worked out
// when the directory is listed or a name in it is looked up, and what is
// inside a restore point's disks (partition tables, LVM, file systems:
// guest.Inspect) is only read when one of its disk directories is opened.
// Guest file systems are read by the readers of package guest; the same
// tree serves the FUSE mount and `cairn restore files` (CopyOut). The list of
// restore points is re-read from the repository when it is older than
// Options.Refresh, so backups finishing while the tree is served appear
// without a remount.
package tree

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cairn-backup/cairn/guest"
	"github.com/cairn-backup/cairn/guest/part"
	"github.com/cairn-backup/cairn/repo"
)

// Errors returned by the tree (besides repository errors, which pass through).
var (
	// ErrNoEntry: the name does not exist in the directory.
	ErrNoEntry = errors.New("no such file or directory")
	// ErrMalformed: a disk's partition table is damaged or inconsistent.
	ErrMalformed = part.ErrMalformed
)

// PointDirLayout is the name of a restore point directory: its UTC time.
const PointDirLayout = "2006-01-02T15-04-05Z"

// Options configure a Tree.
type Options struct {
	// CacheBytes bounds the decoded-block caches of all open disks together
	// (0: DefaultCacheBytes).
	CacheBytes int64
	// Refresh is how old the restore point listing may get before a lookup
	// or listing re-reads REPO/points (0: 2 s).
	Refresh time.Duration
	// Prefetchers is the number of readahead workers (0: default, <0: no readahead).
	Prefetchers int
	// Logger receives errors that cannot be returned to a caller, like a
	// restore point that fails to load (nil: log.Default()).
	Logger *log.Logger
	// Now is the clock (nil: time.Now); for tests.
	Now func() time.Time
	// Readers are the guest file system readers (nil: guest.Readers()).
	Readers []guest.Reader
	// DirCacheEntries bounds the cache of guest directory listings, in
	// entries (0: DefaultDirCacheEntries).
	DirCacheEntries int
}

// DefaultCacheBytes is the default budget for decoded blocks.
const DefaultCacheBytes = 256 << 20

// Tree is the restore browser's tree over one repository. Safe for
// concurrent use.
type Tree struct {
	r    *repo.Repository
	opts Options
	log  *log.Logger
	now  func() time.Time

	mu       sync.Mutex // guards the fields below; held during a refresh
	snap     *snapshot
	loaded   map[string]*repo.RestorePoint // restore points read so far, by ID
	failed   map[string]bool               // IDs whose load failed (logged once)
	dirNames map[string]string             // point ID → directory name, fixed while the point exists
	dirOwner map[string]string             // VM name NUL directory name → point ID

	disks    *sourcePool
	machines machineCache
	dirs     dirCache

	logMu   sync.Mutex
	logSeen map[string]bool // messages logged recently (bounded)
}

// snapshot is the listing of VMs and restore points at one moment.
type snapshot struct {
	at    time.Time
	vms   map[string]*vmEntry // by directory name
	names []string            // directory names, sorted
	mtime time.Time           // newest restore point
}

type vmEntry struct {
	name   string // the VM's name
	dir    string // its directory name
	points []*pointEntry
	byDir  map[string]*pointEntry
}

type pointEntry struct {
	p   *repo.RestorePoint
	dir string
}

func (v *vmEntry) latest() *pointEntry { return v.points[len(v.points)-1] }

// New returns the tree of repository r. The caller keeps r open and holds
// a shared repository lock while the tree is used, and calls Close.
func New(r *repo.Repository, o Options) *Tree {
	if o.CacheBytes <= 0 {
		o.CacheBytes = DefaultCacheBytes
	}
	if o.Refresh <= 0 {
		o.Refresh = 2 * time.Second
	}
	if o.Logger == nil {
		o.Logger = log.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	t := &Tree{
		r: r, opts: o, log: o.Logger, now: o.Now,
		loaded:   make(map[string]*repo.RestorePoint),
		failed:   make(map[string]bool),
		dirNames: make(map[string]string),
		dirOwner: make(map[string]string),
	}
	t.disks = newSourcePool(r, o.CacheBytes, o.Prefetchers)
	t.machines.init()
	t.dirs.init(o.DirCacheEntries)
	t.logSeen = make(map[string]bool)
	return t
}

// Close stops the readahead workers and drops the caches.
func (t *Tree) Close() { t.disks.close() }

// Root is the root directory: one directory per VM.
func (t *Tree) Root() Dir { return &rootDir{t: t} }

// current returns the listing, re-reading REPO/points when it is older
// than maxAge.
func (t *Tree) current(maxAge time.Duration) (*snapshot, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	if t.snap != nil && now.Sub(t.snap.at) < maxAge {
		return t.snap, nil
	}
	s, err := t.refreshLocked(now)
	if err != nil {
		if t.snap != nil { // keep serving what we had
			t.log.Printf("re-reading the restore point list failed, showing the previous one: %v", err)
			return t.snap, nil
		}
		return nil, err
	}
	t.snap = s
	return s, nil
}

// snapshotFor is current with the configured refresh interval.
func (t *Tree) snapshotFor() (*snapshot, error) { return t.current(t.opts.Refresh) }

// missRefresh is how old the listing may be when a name is not found
// before the listing is re-read to look for it.
const missRefresh = 250 * time.Millisecond

func (t *Tree) refreshLocked(now time.Time) (*snapshot, error) {
	ids, err := t.r.PointIDs()
	if err != nil {
		return nil, fmt.Errorf("list restore points: %w", err)
	}
	present := make(map[string]bool, len(ids))
	for _, id := range ids {
		present[id] = true
		if t.loaded[id] != nil {
			continue // restore points are immutable while we hold the shared lock
		}
		p, err := t.r.LoadPoint(id)
		if errors.Is(err, repo.ErrNotFound) {
			continue // forgotten meanwhile
		}
		if err != nil {
			if !t.failed[id] {
				t.failed[id] = true
				t.log.Printf("restore point %s cannot be read and is not shown: %v", id, err)
			}
			continue
		}
		delete(t.failed, id)
		t.loaded[id] = p
	}
	for id, p := range t.loaded {
		if !present[id] {
			delete(t.loaded, id) // forgotten; open files keep their *RestorePoint
			t.disks.forget(id)
			t.machines.forget(id)
			if d, ok := t.dirNames[id]; ok {
				delete(t.dirNames, id)
				delete(t.dirOwner, p.VM+"\x00"+d)
			}
		}
	}
	for id := range t.failed {
		if !present[id] {
			delete(t.failed, id)
		}
	}
	return t.buildLocked(now), nil
}

// buildLocked groups the loaded restore points by VM and names them.
func (t *Tree) buildLocked(now time.Time) *snapshot {
	all := make([]*repo.RestorePoint, 0, len(t.loaded))
	for _, p := range t.loaded {
		all = append(all, p)
	}
	sort.Slice(all, func(i, j int) bool { return pointLess(all[i], all[j]) })
	s := &snapshot{at: now, vms: make(map[string]*vmEntry)}
	for _, p := range all {
		dir := escapeName(p.VM)
		v := s.vms[dir]
		if v == nil {
			v = &vmEntry{name: p.VM, dir: dir, byDir: make(map[string]*pointEntry)}
			s.vms[dir] = v
			s.names = append(s.names, dir)
		} else if v.name != p.VM {
			// Two VM names escape alike; cannot happen with escapeName,
			// which is injective, but never show one VM's points as another's.
			t.log.Printf("restore point %s: VM name %q clashes with %q; not shown", p.ID, p.VM, v.name)
			continue
		}
		pe := &pointEntry{p: p, dir: t.pointDirLocked(p, v)}
		v.points = append(v.points, pe)
		v.byDir[pe.dir] = pe
		if p.Time.After(s.mtime) {
			s.mtime = p.Time
		}
	}
	sort.Strings(s.names)
	return s
}

// pointDirLocked names p's directory: its UTC time to the second, with
// "-<first 8 digits of the ID>" appended when another restore point of the
// same VM has that name already. A name, once given, stays the same while
// the restore point exists, even if the one it clashed with is forgotten.
func (t *Tree) pointDirLocked(p *repo.RestorePoint, v *vmEntry) string {
	if d, ok := t.dirNames[p.ID]; ok {
		return d
	}
	d := p.Time.UTC().Format(PointDirLayout)
	if _, taken := t.dirOwner[p.VM+"\x00"+d]; taken {
		base := d
		d = base + "-" + p.ID[:min(8, len(p.ID))]
		if _, taken := t.dirOwner[p.VM+"\x00"+d]; taken {
			d = base + "-" + p.ID // two IDs starting alike in one second
		}
	}
	t.dirNames[p.ID] = d
	t.dirOwner[p.VM+"\x00"+d] = p.ID
	return d
}

func pointLess(a, b *repo.RestorePoint) bool {
	if !a.Time.Equal(b.Time) {
		return a.Time.Before(b.Time)
	}
	return a.ID < b.ID
}

// escapeName makes a VM or disk name usable as one path component:
// '%', '/' and NUL become %25, %2F and %00, and the names "." and ".." (and
// the empty name) are written %2E, %2E%2E (and %). The mapping is
// injective, so distinct names stay distinct.
func escapeName(s string) string {
	switch s {
	case "":
		return "%"
	case ".":
		return "%2E"
	case "..":
		return "%2E%2E"
	}
	if !strings.ContainsAny(s, "%/\x00") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '%', '/', 0:
			fmt.Fprintf(&b, "%%%02X", c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// inode returns a stable inode number for the node identified by parts
// (kind, VM name, restore point ID, ...): the same node always gets the
// same number, in every mount.
func inode(parts ...string) uint64 {
	h := sha256.New()
	for _, p := range parts {
		var n [4]byte
		binary.LittleEndian.PutUint32(n[:], uint32(len(p)))
		h.Write(n[:])
		h.Write([]byte(p))
	}
	ino := binary.LittleEndian.Uint64(h.Sum(nil))
	if ino <= RootIno || ino == ^uint64(0) { // reserved by FUSE
		ino = 2 + ino%1000
	}
	return ino
}

// RootIno is the root directory's inode number.
const RootIno = 1

// Attr is what stat shows for a node.
type Attr struct {
	Ino    uint64
	Mode   uint32 // file type and permission bits, as in syscall.Stat_t
	Size   int64
	Blocks int64 // 512-byte units holding data (du); a sparse disk has fewer than Size/512
	Mtime  time.Time
	// Stable says that the node's attributes, and for a directory its
	// entries, never change: restore point content. The listing of VMs and
	// restore points is not stable.
	Stable bool
	// Guest holds the metadata of a file inside a guest file system; nil
	// for cairn's own nodes (owned by the mounting user, one link, all
	// times Mtime).
	Guest *GuestAttr
}

// GuestAttr is what a guest file system says about a file besides its
// mode, size and mtime.
type GuestAttr struct {
	Nlink        uint32
	UID, GID     uint32
	Rdev         uint64 // device number of a block or character device (Linux encoding)
	Atime, Ctime time.Time
}

// IsDir reports whether the node is a directory.
func (a Attr) IsDir() bool { return a.Mode&syscall.S_IFMT == syscall.S_IFDIR }

// logOnce logs a message unless the same message was logged recently: a
// damaged guest file system read over and over logs each problem once.
func (t *Tree) logOnce(format string, a ...any) {
	msg := fmt.Sprintf(format, a...)
	t.logMu.Lock()
	if t.logSeen[msg] {
		t.logMu.Unlock()
		return
	}
	if len(t.logSeen) >= 4096 {
		clear(t.logSeen)
	}
	t.logSeen[msg] = true
	t.logMu.Unlock()
	t.log.Print(msg)
}

// Node is a node of the tree: a Dir, File or Symlink, or (inside a guest
// file system) a device node, fifo or socket, which only has attributes.
type Node interface {
	Attr() Attr
}

// DirEntry is one name in a directory listing.
type DirEntry struct {
	Name string
	Ino  uint64
	Mode uint32 // file type bits (syscall.S_IFDIR, S_IFREG, S_IFLNK) and permissions
}

// Dir is a directory.
type Dir interface {
	Node
	// Readdir lists the directory: sorted by name, except inside guest
	// file systems, which list in their own order. Mode may be 0 for a
	// guest entry whose type the directory does not record.
	Readdir() ([]DirEntry, error)
	// Lookup returns the named child, or ErrNoEntry.
	Lookup(name string) (Node, error)
}

// File is a regular file.
type File interface {
	Node
	Open() (Handle, error)
}

// Handle is an open file. ReadAt follows io.ReaderAt; a read that fails
// returns no data and an error (a *ReadError for disk reads).
type Handle interface {
	ReadAt(p []byte, off int64) (int, error)
	Close() error
}

// Seeker is implemented by handles of disk and partition images: it finds
// data and holes like lseek(2) SEEK_DATA and SEEK_HOLE. Offsets past the
// last data return syscall.ENXIO.
type Seeker interface {
	SeekData(off int64) (int64, error)
	SeekHole(off int64) (int64, error)
}

// SliceReader is implemented by handles of disk and partition images.
// ReadSlices returns up to n bytes at off as slices of buffers that
// nobody modifies (cached blocks, a shared zero buffer for holes), so that
// they can be handed to the kernel without copying; the caller must not
// modify them either, and must call Release on the result once it is done
// with them (their blocks' buffers are recycled after). It returns fewer
// bytes at the end of the file and, like ReadAt, no data and a *ReadError
// when a block cannot be read.
type SliceReader interface {
	ReadSlices(off int64, n int) (*Slices, error)
}

// Slices are bytes of a disk as read-only views of cached blocks and of a
// shared zero buffer, valid until Release.
type Slices struct {
	Vec [][]byte
	N   int // bytes in Vec
	// DropOff and DropLen, when DropLen > 0, are a range of the file that
	// a long sequential reader has left behind: the kernel's cached pages
	// of it may be dropped (see diskHandle.dropBehind).
	DropOff, DropLen int64
	blocks           []*repo.Block
}

// Release gives the blocks back; Vec must not be used after.
func (s *Slices) Release() {
	for _, b := range s.blocks {
		b.Release()
	}
	s.blocks, s.Vec = nil, nil
}

// Symlink is a symbolic link.
type Symlink interface {
	Node
	Readlink() (string, error)
}

// ReadError is a failed read of a disk: which restore point, disk and
// offset (from the start of the disk) could not be read, and why.
type ReadError struct {
	VM, Point, Disk string
	Offset          int64
	Err             error
}

func (e *ReadError) Error() string {
	return fmt.Sprintf("VM %s restore point %s disk %s offset %d: %v", e.VM, e.Point, e.Disk, e.Offset, e.Err)
}

func (e *ReadError) Unwrap() error { return e.Err }
