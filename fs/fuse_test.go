package fs

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/cairn-backup/cairn/fs/tree"
	"github.com/cairn-backup/cairn/guest/vfs"
	"github.com/cairn-backup/cairn/repo"
)

func TestToErrno(t *testing.T) {
	for _, c := range []struct {
		err  error
		want syscall.Errno
	}{
		{nil, 0},
		{tree.ErrNoEntry, syscall.ENOENT},
		{fmt.Errorf("lookup: %w", tree.ErrNoEntry), syscall.ENOENT},
		{&tree.ReadError{Err: fmt.Errorf("blob: %w", repo.ErrCorrupt)}, syscall.EIO},
		{fmt.Errorf("%w: pack missing", repo.ErrNotFound), syscall.EIO}, // data that cannot be read, not a missing name
		{fmt.Errorf("%w: GPT", tree.ErrMalformed), syscall.EIO},
		{syscall.ENXIO, syscall.ENXIO},
		{fmt.Errorf("seek: %w", syscall.EINVAL), syscall.EINVAL},
		{context.Canceled, syscall.EINTR},
		{errors.New("something else"), syscall.EIO},
		{&tree.GuestError{Path: "/etc", Err: fmt.Errorf("ext4: inode 12: %w", vfs.ErrMalformed)}, syscall.EIO},
		{&tree.GuestError{Path: "/x", Err: fmt.Errorf("%w: %w", vfs.ErrMalformed, syscall.ENOENT)}, syscall.EIO}, // malformed wins
		{fmt.Errorf("x: %w", vfs.ErrNotFound), syscall.ENOENT},
		{fmt.Errorf("x: %w", vfs.ErrNotDir), syscall.ENOTDIR},
		{&tree.GuestError{Err: &tree.ReadError{Err: repo.ErrCorrupt}}, syscall.EIO},
	} {
		if got := toErrno(c.err); got != c.want {
			t.Errorf("toErrno(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

func TestFillAttr(t *testing.T) {
	mtime := time.Date(2025, 3, 2, 1, 0, 7, 0, time.UTC)
	var out fuse.Attr
	fillAttr(tree.Attr{Ino: 42, Mode: syscall.S_IFREG | 0o444, Size: 1 << 30, Blocks: 2048, Mtime: mtime, Stable: true}, &out)
	if out.Ino != 42 || out.Size != 1<<30 || out.Blocks != 2048 || out.Mode != syscall.S_IFREG|0o444 ||
		out.Mtime != uint64(mtime.Unix()) || out.Nlink != 1 || out.Blksize != maxRead {
		t.Fatalf("file attr %+v", out)
	}
	fillAttr(tree.Attr{Ino: 1, Mode: syscall.S_IFDIR | 0o555}, &out)
	if out.Blksize != 4096 || out.Mode&syscall.S_IFDIR == 0 {
		t.Fatalf("dir attr %+v", out)
	}
	// A guest file: the guest's owner, links and times.
	atime, ctime := mtime.Add(time.Hour), mtime.Add(-time.Hour)
	fillAttr(tree.Attr{Ino: 7, Mode: syscall.S_IFCHR | 0o600, Mtime: mtime, Stable: true,
		Guest: &tree.GuestAttr{Nlink: 3, UID: 1000, GID: 33, Rdev: 0x0501, Atime: atime, Ctime: ctime}}, &out)
	if out.Nlink != 3 || out.Uid != 1000 || out.Gid != 33 || out.Rdev != 0x0501 || out.Atime != uint64(atime.Unix()) ||
		out.Ctime != uint64(ctime.Unix()) || out.Mtime != uint64(mtime.Unix()) || out.Mode != syscall.S_IFCHR|0o600 {
		t.Fatalf("guest attr %+v", out)
	}
	if timeout(true) != stableTimeout || timeout(false) != listingTimeout || stableTimeout < time.Minute || listingTimeout > 2*time.Second {
		t.Fatal("timeouts: restore point content long, the listing short")
	}
}
