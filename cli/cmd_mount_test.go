package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{
		"256MiB": 256 << 20, "256M": 256 << 20, "1GiB": 1 << 30, "1g": 1 << 30, "1.5GiB": 3 << 29,
		"268435456": 268435456, "100MB": 100e6, "64 MiB": 64 << 20, "2T": 2 << 40,
	} {
		got, err := parseSize(in)
		if err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "MiB", "-1M", "12XB", "1e400"} {
		if got, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q) = %d, want an error", in, got)
		}
	}
}

// TestMountUsageErrors checks usage errors of mount, umount, restore disk and
// urfave's own (unknown command or flag, bad value, missing required flag):
// exit 2 and a message that names what is wrong, before any repository is opened.
func TestMountUsageErrors(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	os.WriteFile(file, nil, 0o600)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"mount"}, "MOUNTPOINT"},
		{[]string{"mount", dir, "extra"}, "MOUNTPOINT"},
		{[]string{"mount", filepath.Join(dir, "missing")}, "existing directory"},
		{[]string{"mount", file}, "existing directory"},
		{[]string{"mount", dir, "--cache-size", "lots"}, "--cache-size"},
		{[]string{"mount", dir, "--cache-size", "1MiB"}, "at least 16MiB"},
		{[]string{"mount", dir, "--foreground=false"}, "foreground"},
		{[]string{"umount"}, "MOUNTPOINT"},
		{[]string{"restore", "disk", "rp", "vda", "--to", file + ".vmdk", "--format", "vmdk"}, "use raw or qcow2"},
		{[]string{"restore", "disk", "rp", "--to", file + ".raw"}, "RESTORE-POINT and DISK"},
		{[]string{"restore", "disk", "rp", "vda"}, `Required flag "to"`},
		{[]string{"frobnicate"}, "unknown command"},
		{[]string{"mount", dir, "--no-such-flag"}, "cairn mount --help"},
		{[]string{"list", "--lock-wait", "soon"}, "lock-wait"},
	} {
		var stdout, stderr bytes.Buffer
		code := Main(append([]string{"cairn"}, c.args...), &stdout, &stderr)
		if code != exitUsage || !strings.Contains(stderr.String(), c.want) {
			t.Errorf("cairn %s: exit %d, stderr %q; want exit %d mentioning %q", strings.Join(c.args, " "), code, stderr.String(), exitUsage, c.want)
		}
	}
}

func TestMountNeedsRepository(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := Main([]string{"cairn", "mount", t.TempDir(), "--repo", filepath.Join(t.TempDir(), "none")}, &stdout, &stderr)
	if code != exitNoRepo {
		t.Fatalf("exit %d, want %d: %s", code, exitNoRepo, stderr.String())
	}
}

func TestUmountNotMounted(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := Main([]string{"cairn", "umount", t.TempDir()}, &stdout, &stderr); code == 0 {
		t.Fatal("umount of a directory that is not mounted must fail")
	}
}
