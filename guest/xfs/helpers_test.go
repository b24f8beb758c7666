package xfs

import (
	"os"
	"strings"
	"testing"

	"github.com/cairn-backup/cairn/guest/internal/fstest"
)

// requireTools fails (CI=true or CAIRN_REQUIRE_TOOLS=1) or skips the test
// when the tests cannot build and loop-mount real XFS images here.
func requireTools(t testing.TB) {
	t.Helper()
	fstest.RequireTools(t, "xfsprogs mount coreutils", "mkfs.xfs", "xfs_db", "xfs_io", "xfs_freeze", "mount", "umount", "cp", "sync")
	fstest.RequireRoot(t, "loop mounts")
	if b, err := os.ReadFile("/proc/filesystems"); err != nil || !strings.Contains(string(b), "\txfs\n") {
		fstest.Unavailable(t, "the kernel has no XFS driver")
	}
}

// openImage opens the XFS image file at p for the rest of the test.
func openImage(t testing.TB, p string) (*FS, *os.File) {
	t.Helper()
	fh, size := fstest.OpenImage(t, p)
	fsys, err := OpenXFS(fh, size)
	if err != nil {
		t.Fatal(err)
	}
	return fsys, fh
}
