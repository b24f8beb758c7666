package xfs

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/cairn-backup/cairn/guest/internal/fstest"
)

// TestDirtyLog shuts a mounted file system down without an unmount record
// (as a crashed guest leaves it): LogClean must say so, and the reader
// still reads the on-disk state: what was written back before the crash
// (a file that existed at a freeze); later changes may exist only in the
// log, which the reader does not replay.
func TestDirtyLog(t *testing.T) {
	requireTools(t)
	dir := t.TempDir()
	img, mnt := filepath.Join(dir, "xfs.img"), filepath.Join(dir, "mnt")
	os.Mkdir(mnt, 0o755)
	os.WriteFile(img, nil, 0o600)
	if err := os.Truncate(img, 320<<20); err != nil {
		t.Fatal(err)
	}
	fstest.Run(t, "mkfs.xfs", "-q", "-f", img)
	fstest.Run(t, "mount", "-o", "loop", img, mnt)
	mounted := true
	defer func() {
		if mounted {
			exec.Command("umount", mnt).Run()
		}
	}()
	want := bytes.Repeat([]byte("written back before the crash\n"), 1000)
	if err := os.WriteFile(filepath.Join(mnt, "f"), want, 0o644); err != nil {
		t.Fatal(err)
	}
	// Freezing writes all metadata back in place; what changes after it
	// is only in the log when the shutdown comes.
	fstest.Run(t, "xfs_freeze", "-f", mnt)
	fstest.Run(t, "xfs_freeze", "-u", mnt)
	if err := os.WriteFile(filepath.Join(mnt, "only-in-log"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	fstest.Run(t, "sync")
	fstest.Run(t, "xfs_io", "-x", "-c", "shutdown", mnt)
	fstest.Run(t, "umount", mnt)
	mounted = false

	fsys, fh := openImage(t, img)
	if clean, err := fsys.LogClean(); err != nil || clean {
		t.Fatalf("LogClean after a shutdown = %v, %v; want false", clean, err)
	}
	e, err := fsys.Lookup(fsys.Root(), "f")
	if err != nil {
		t.Fatal(err)
	}
	f, err := fsys.Open(e.Ino)
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, f.Size())
	if _, err := f.ReadAt(got, 0); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("synced file: %d bytes, %v", len(got), err)
	}

	// A fresh mkfs is clean too.
	fstest.Run(t, "mkfs.xfs", "-q", "-f", img)
	fsys, err = OpenXFS(fh, 320<<20)
	if err != nil {
		t.Fatal(err)
	}
	if clean, err := fsys.LogClean(); err != nil || !clean {
		t.Fatalf("LogClean after mkfs = %v, %v; want true", clean, err)
	}
}
