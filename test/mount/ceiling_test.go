package mount

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	cairnfs "github.com/cairn-backup/cairn/fs"
)

// The FUSE ceiling: how fast this machine's kernel streams a file through
// a FUSE mount whose server does nothing but hand over bytes it already
// has in memory. It is the reference that the mount's sequential figures
// are measured against: what is left between the two is cairn's (reading
// packs, checking hashes, decompressing, decrypting), the rest is the
// kernel's (page cache, request round trips, copies).

// nullFile is a read-only file of size bytes whose every MiB is the same
// non-zero pattern. With dropBehind it drops the pages its reader left
// 64 MiB behind, as cairn's mount does (tree.diskHandle.dropBehind).
type nullFile struct {
	gofs.Inode
	size       int64
	dropBehind bool

	mu   sync.Mutex
	next int64 // end of the furthest read
	kept int64 // pages from here on are still cached
}

var nullPattern = func() []byte {
	b := make([]byte, 1<<20)
	for i := range b {
		b[i] = byte(i*7 + 1)
	}
	return b
}()

var (
	_ gofs.NodeOpener    = (*nullFile)(nil)
	_ gofs.NodeReader    = (*nullFile)(nil)
	_ gofs.NodeGetattrer = (*nullFile)(nil)
)

func (f *nullFile) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Mode = syscall.S_IFREG | 0o444
	out.Size = uint64(f.size)
	out.Blocks = uint64(f.size / 512)
	return 0
}

func (f *nullFile) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	return nil, fuse.FOPEN_KEEP_CACHE, 0
}

func (f *nullFile) Read(ctx context.Context, fh gofs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	n := min(int64(len(dest)), max(0, f.size-off))
	var vec [][]byte
	for pos := off; pos < off+n; {
		within := pos % int64(len(nullPattern))
		k := min(int64(len(nullPattern))-within, off+n-pos)
		vec = append(vec, nullPattern[within:within+k])
		pos += k
	}
	if f.dropBehind {
		f.drop(off + n)
	}
	return fuse.ReadResultVector(vec), 0 // written with writev, as cairn's replies are
}

// drop sends the kernel an invalidation of what lies more than 64 MiB
// behind the furthest read, 16 MiB at a time at least.
func (f *nullFile) drop(end int64) {
	const lag, step = 64 << 20, 16 << 20
	f.mu.Lock()
	f.next = max(f.next, end)
	if f.next-f.kept < lag+step {
		f.mu.Unlock()
		return
	}
	off, n := f.kept, f.next-lag-f.kept
	f.kept += n
	f.mu.Unlock()
	go f.NotifyContent(off, n)
}

// mountNull mounts a directory holding one nullFile, disk.raw, with the
// mount options and readahead of cairn's mount (fs.Mount), and returns the
// file's path and what unmounts it.
func mountNull(t *testing.T, size int64, dropBehind bool) (string, func()) {
	dir := t.TempDir()
	root := &gofs.Inode{}
	file := &nullFile{size: size, dropBehind: dropBehind}
	sec := time.Second
	srv, err := gofs.Mount(dir, root, &gofs.Options{
		EntryTimeout: &sec,
		AttrTimeout:  &sec,
		OnAdd: func(ctx context.Context) {
			root.AddChild("disk.raw", root.NewPersistentInode(ctx, file, gofs.StableAttr{Mode: syscall.S_IFREG}), false)
		},
		MountOptions: fuse.MountOptions{
			FsName:        "cairn-null",
			Name:          "cairn-null",
			Options:       []string{"ro"},
			MaxWrite:      1 << 20,
			MaxReadAhead:  1 << 20,
			MaxBackground: 64,
			DisableXAttrs: true,
			DisableSplice: true,
		},
	})
	if err != nil {
		t.Fatalf("mount the null file system: %v", err)
	}
	unmount := func() {
		if err := srv.Unmount(); err != nil {
			t.Errorf("unmount the null file system: %v", err)
		}
	}
	if err := cairnfs.SetReadahead(dir, cairnfs.DefaultReadahead); err != nil {
		t.Logf("could not set the readahead of the null mount: %v", err)
	}
	return filepath.Join(dir, "disk.raw"), unmount
}

// TestBenchFUSECeiling measures dd bs=1M of an 8 GiB file through a FUSE
// server that only hands over memory, with and without drop-behind.
// TestBenchMount measures the same with drop-behind, next to cairn's
// figures; this runs it alone (CAIRN_BENCH_CEILING=1).
func TestBenchFUSECeiling(t *testing.T) {
	if os.Getenv("CAIRN_BENCH_CEILING") == "" {
		t.Skip("set CAIRN_BENCH_CEILING=1 to measure the FUSE ceiling")
	}
	requireFUSE(t)
	for _, drop := range []bool{false, true} {
		c := fuseCeiling(t, 8<<30, drop)
		t.Logf("FUSE ceiling, dd bs=1M of 8 GiB from memory (drop-behind %v): %s", drop, c)
	}
}

// ceiling is one dd through a null mount.
type ceiling struct {
	rate      float64 // bytes per second
	serverCPU float64 // seconds
	ddCPU     float64 // seconds
}

func (c ceiling) String() string {
	return fmt.Sprintf("%.0f MB/s (server CPU %.2f s, dd CPU %.2f s)", c.rate/1e6, c.serverCPU, c.ddCPU)
}

// fuseCeiling runs dd bs=1M through a fresh null mount of size bytes,
// from a cold page cache.
func fuseCeiling(t *testing.T, size int64, dropBehind bool) ceiling {
	path, unmount := mountNull(t, size, dropBehind)
	defer unmount()
	dropCaches(t)
	var ru0, ru1 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	start := time.Now()
	cmd := exec.Command("dd", "if="+path, "of=/dev/null", "bs=1M")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("dd: %v\n%s", err, out)
	}
	el := time.Since(start)
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	return ceiling{
		rate:      float64(size) / el.Seconds(),
		serverCPU: rusageCPU(ru1) - rusageCPU(ru0),
		ddCPU:     cmd.ProcessState.UserTime().Seconds() + cmd.ProcessState.SystemTime().Seconds(),
	}
}

func rusageCPU(r syscall.Rusage) float64 {
	return float64(r.Utime.Nano()+r.Stime.Nano()) / 1e9
}
