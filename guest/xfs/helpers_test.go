package xfs

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

func toolsRequired() bool {
	return os.Getenv("CI") == "true" || os.Getenv("CAIRN_REQUIRE_TOOLS") == "1"
}

// requireTools fails (CI=true or CAIRN_REQUIRE_TOOLS=1) or skips the test
// when the tests cannot build and loop-mount real XFS images here.
func requireTools(t testing.TB) {
	t.Helper()
	var missing []string
	for _, tool := range []string{"mkfs.xfs", "xfs_db", "xfs_io", "xfs_freeze", "mount", "umount", "cp", "sync"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	why := ""
	switch {
	case len(missing) > 0:
		why = "missing " + strings.Join(missing, ", ") + " (apt-get install xfsprogs)"
	case os.Geteuid() != 0:
		why = "not root, so no loop mounts"
	default:
		if b, err := os.ReadFile("/proc/filesystems"); err != nil || !strings.Contains(string(b), "\txfs\n") {
			why = "the kernel has no XFS driver"
		}
	}
	if why == "" {
		return
	}
	if toolsRequired() {
		t.Fatalf("cannot build XFS test images: %s; CI=true or CAIRN_REQUIRE_TOOLS=1 requires them", why)
	}
	t.Skipf("skipping: %s; set CAIRN_REQUIRE_TOOLS=1 to turn this into a failure", why)
}

func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}
