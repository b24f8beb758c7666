package fs

import (
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/cairn-backup/cairn/fs/tree"
	"github.com/cairn-backup/cairn/repo"
)

// Options configure a mount.
type Options struct {
	// AllowOther lets users other than the one mounting read the file
	// system (mount option allow_other; for root, e.g. to let qemu running
	// as another user open the images). Every such user can then read the
	// backed-up disks.
	AllowOther bool
	// CacheBytes bounds the decoded-block caches (0: tree.DefaultCacheBytes).
	CacheBytes int64
	// Logger receives read errors and other problems (nil: log.Default()).
	Logger *log.Logger
	// Debug logs every FUSE request.
	Debug bool
	// Refresh is how old the restore point listing may get (0: 2 s).
	Refresh time.Duration
	// Readahead is the kernel readahead of the mount, in bytes (0:
	// DefaultReadahead, <0: the kernel default of 128 KiB). FUSE cannot
	// ask for more than 128 KiB at mount time; root raises it afterwards
	// through /sys/class/bdi, so that sequential reads reach the daemon as
	// 1 MiB requests instead of 128 KiB ones.
	Readahead int64
}

// DefaultReadahead is the kernel readahead set on the mount.
const DefaultReadahead = 4 << 20

const (
	// stableTimeout is how long the kernel may cache names and attributes
	// inside a restore point, which never change.
	stableTimeout = time.Hour
	// listingTimeout is how long it may cache the VM and restore point
	// listing, which changes as backups finish and are forgotten.
	listingTimeout = time.Second
	// maxRead is the largest read the kernel sends.
	maxRead = 1 << 20
)

// Server is a mounted restore browser.
type Server struct {
	srv        *fuse.Server
	tree       *tree.Tree
	mountpoint string
	done       chan struct{}
	once       sync.Once
}

// Mount mounts the restore browser of repository r on mountpoint, read
// only, and serves it in the background until Unmount, or until it is
// unmounted from outside (fusermount3 -u): Done is closed then. The caller
// keeps r open and holds a shared repository lock until Done is closed.
//
// Do not read the mount from the process that serves it with anything
// that can block the serving goroutines (see go-fuse's notes on
// deadlocks); tests read it from child processes.
func Mount(mountpoint string, r *repo.Repository, o Options) (*Server, error) {
	abs, err := filepath.Abs(mountpoint)
	if err != nil {
		return nil, err
	}
	st, err := os.Stat(abs)
	if err != nil {
		return nil, fmt.Errorf("mount point: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("mount point %s is not a directory", abs)
	}
	logger := o.Logger
	if logger == nil {
		logger = log.Default()
	}
	t := tree.New(r, tree.Options{CacheBytes: o.CacheBytes, Logger: logger, Refresh: o.Refresh})
	root := &node{n: t.Root(), log: logger}
	short := listingTimeout
	opts := &gofs.Options{
		// Timeouts set per entry in Lookup and Getattr; these are for
		// the root and for replies that set none.
		EntryTimeout: &short,
		AttrTimeout:  &short,
		Logger:       logger,
		// Owners and modes are all set by fillAttr: go-fuse must not
		// turn a guest's root-owned (UID 0) or mode-0000 files into the
		// mounting user's or 0644 ones.
		NullPermissions: true,
		MountOptions: fuse.MountOptions{
			FsName:        "cairn",
			Name:          "cairn",
			Options:       []string{"ro", "default_permissions", "nodev", "nosuid"},
			AllowOther:    o.AllowOther,
			MaxWrite:      maxRead, // also sets max_read and the request size (max_pages)
			MaxReadAhead:  maxRead,
			MaxBackground: 64, // concurrent readahead requests
			DisableXAttrs: true,
			// Symlink targets never change: guest links are immutable and
			// `latest` is a new inode for each target (tree.latestLink).
			// Without this, every path through `latest` costs a READLINK.
			EnableSymlinkCaching: true,
			DisableSplice:        true, // replies come from memory; splicing them only adds a copy
			Debug:                o.Debug,
			Logger:               logger,
		},
	}
	srv, err := gofs.Mount(abs, root, opts)
	if err != nil {
		t.Close()
		return nil, fmt.Errorf("mount %s: %w", abs, err)
	}
	if o.Readahead >= 0 {
		ra := o.Readahead
		if ra == 0 {
			ra = DefaultReadahead
		}
		if err := SetReadahead(abs, ra); err != nil && o.Debug {
			logger.Printf("could not raise the readahead of %s (reads stay 128 KiB requests): %v", abs, err)
		}
	}
	s := &Server{srv: srv, tree: t, mountpoint: abs, done: make(chan struct{})}
	go func() {
		srv.Wait()
		s.finish()
	}()
	return s, nil
}

// SetReadahead sets the readahead of the FUSE file system mounted on dir
// through its backing device info in sysfs (root only).
func SetReadahead(dir string, bytes int64) error {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return err
	}
	path := fmt.Sprintf("/sys/class/bdi/%d:%d/read_ahead_kb", unix.Major(st.Dev), unix.Minor(st.Dev))
	return os.WriteFile(path, []byte(strconv.FormatInt(bytes>>10, 10)), 0)
}

func (s *Server) finish() {
	s.once.Do(func() {
		s.tree.Close()
		close(s.done)
	})
}

// Mountpoint is the absolute path the file system is mounted on.
func (s *Server) Mountpoint() string { return s.mountpoint }

// Done is closed when the file system is no longer mounted and served.
func (s *Server) Done() <-chan struct{} { return s.done }

// Unmount unmounts the file system (fusermount3 -u, retried briefly) and
// waits until serving stops. It fails with EBUSY-like errors while files
// are open or a process has its working directory inside.
func (s *Server) Unmount() error {
	if err := s.srv.Unmount(); err != nil {
		select {
		case <-s.done:
			return nil // unmounted from outside meanwhile
		default:
		}
		return err
	}
	<-s.done
	return nil
}
