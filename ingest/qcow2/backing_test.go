package qcow2

import (
	"bytes"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// shIn runs a command in dir and fails the test if it fails.
func shIn(t testing.TB, dir, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
}

// assertHole fails if any extent overlaps [off, off+n).
func assertHole(t testing.TB, ext []region, off, n int64) {
	t.Helper()
	for _, e := range ext {
		if e.off < off+n && off < e.off+e.n {
			t.Fatalf("extent [%d,+%d) overlaps the zeroed range [%d,+%d)", e.off, e.n, off, n)
		}
	}
}

func TestBackingRawBase(t *testing.T) {
	needQemuIO(t)
	dir := t.TempDir()
	base := filepath.Join(dir, "base.raw")
	const mib = 1 << 20
	baseSize := int64(8*mib + 1000) // not a multiple of the cluster size
	writeRandomRaw(t, base, baseSize, 1, region{0, 3 * mib}, region{5 * mib, 3*mib + 1000})
	ov := filepath.Join(dir, "ov.qcow2")
	shIn(t, dir, "qemu-img", "create", "-f", "qcow2", "-b", "base.raw", "-F", "raw", ov, "12M")
	qemuIO(t, ov,
		"write -P 0x5a 100000 70000",
		"write -z 2097152 1048576", // zero clusters over base data
		"write -P 0x6b 8388608 4096",
		"write -P 0x7c 10485760 65536", // beyond the end of the base
	)
	im := mustOpen(t, ov)
	ext := verifyAgainstRaw(t, im, toRaw(t, ov))
	assertHole(t, ext, 2*mib, mib)
	assertHole(t, ext, 3*mib, 2*mib) // sparse hole of the raw base
}

func TestBackingQcow2Base(t *testing.T) {
	needQemuIO(t)
	const mib = 1 << 20
	for _, tc := range []struct {
		name             string
		baseOpts, ovOpts string
		baseConvert      []string
	}{
		{"64k-over-64k", "cluster_size=65536", "cluster_size=65536", nil},
		{"4k-over-64k", "cluster_size=65536", "cluster_size=4096", nil},
		{"64k-over-4k-v2", "cluster_size=4096,compat=0.10", "cluster_size=65536,compat=0.10", nil},
		{"extl2-over-64k", "cluster_size=65536", "cluster_size=65536,extended_l2=on", nil},
		{"512-over-compressed", "cluster_size=65536", "cluster_size=512", []string{"-c"}},
		{"zstd-extl2-over-zstd", "cluster_size=65536,compression_type=zstd", "cluster_size=32768,extended_l2=on,compression_type=zstd", []string{"-c"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			src := filepath.Join(dir, "src.raw")
			writeRandomRaw(t, src, 6*mib, 2, scattered(6*mib, 7, 400000)...)
			base := filepath.Join(dir, "base.qcow2")
			sh(t, "qemu-img", append(append([]string{"convert", "-f", "raw", "-O", "qcow2", "-o", tc.baseOpts}, tc.baseConvert...), src, base)...)
			ov := filepath.Join(dir, "ov.qcow2")
			shIn(t, dir, "qemu-img", "create", "-f", "qcow2", "-o", tc.ovOpts, "-b", "base.qcow2", "-F", "qcow2", ov, "8M")
			qemuIO(t, ov,
				"write -P 0x5a 100000 7000",
				"write -z 1048576 1048576",
				"write -z 3000000 3000", // partial: may be a COW write or subcluster zeroes
				"write -P 0x6b 4194304 4096",
				"write -P 0x7c 6815744 65536", // beyond the end of the base
			)
			im := mustOpen(t, ov)
			ext := verifyAgainstRaw(t, im, toRaw(t, ov))
			if !strings.Contains(tc.ovOpts, "compat=0.10") {
				// Version 2 has no zero clusters: qemu writes zeros there.
				assertHole(t, ext, 1*mib, mib)
			}
		})
	}
}

func TestBackingThreeLevelsRelative(t *testing.T) {
	needQemuIO(t)
	const mib = 1 << 20
	dir := t.TempDir()
	sub := filepath.Join(dir, "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	writeRandomRaw(t, filepath.Join(sub, "base.raw"), 4*mib, 3, region{0, 4 * mib})
	shIn(t, sub, "qemu-img", "create", "-f", "qcow2", "-b", "base.raw", "-F", "raw", "mid.qcow2", "4M")
	qemuIO(t, filepath.Join(sub, "mid.qcow2"), "write -P 0x11 0 1048576", "write -z 2097152 65536")
	shIn(t, dir, "qemu-img", "create", "-f", "qcow2", "-b", "sub/mid.qcow2", "-F", "qcow2", "top.qcow2", "5M")
	top := filepath.Join(dir, "top.qcow2")
	qemuIO(t, top, "write -P 0x22 524288 65536", "write -z 3145728 131072")
	// Open through a relative path from another working directory.
	im := mustOpen(t, top)
	ext := verifyAgainstRaw(t, im, toRaw(t, top))
	assertHole(t, ext, 2*mib, 65536)
	assertHole(t, ext, 3*mib, 131072)
	assertHole(t, ext, 4*mib, mib)
}

// stripBackingFormat renames the backing format header extension of img
// to an unknown type, so that readers must probe the backing format.
func stripBackingFormat(t testing.TB, img string) {
	t.Helper()
	hdr := readHeader(t, img)
	i := bytes.Index(hdr[104:], be32(extBackingFormat))
	if i < 0 {
		t.Fatal("no backing format extension")
	}
	patch(t, img, int64(104+i), be32(0x7a7a7a7a))
}

func TestBackingProbed(t *testing.T) {
	needQemuIO(t)
	const mib = 1 << 20
	dir := t.TempDir()
	writeRandomRaw(t, filepath.Join(dir, "base.raw"), 2*mib, 4, region{1000, mib})
	src := filepath.Join(dir, "src.raw")
	writeRandomRaw(t, src, 2*mib, 5, region{500000, mib})
	sh(t, "qemu-img", "convert", "-f", "raw", "-O", "qcow2", src, filepath.Join(dir, "base.qcow2"))
	for _, base := range []string{"base.raw", "base.qcow2"} {
		ov := filepath.Join(dir, "ov-"+base+".qcow2")
		fmtName := "raw"
		if filepath.Ext(base) == ".qcow2" {
			fmtName = "qcow2"
		}
		shIn(t, dir, "qemu-img", "create", "-f", "qcow2", "-b", base, "-F", fmtName, ov, "2M")
		qemuIO(t, ov, "write -P 0x33 0 65536")
		stripBackingFormat(t, ov)
		im := mustOpen(t, ov)
		if im.hdr.backingFormat != "" {
			t.Fatalf("backing format still %q", im.hdr.backingFormat)
		}
		verifyAgainstRaw(t, im, toRaw(t, ov))
	}
}

// TestBackingHeaderFields checks the parsed header of an overlay.
func TestBackingHeaderFields(t *testing.T) {
	needQemu(t)
	dir := t.TempDir()
	sh(t, "qemu-img", "create", "-f", "qcow2", filepath.Join(dir, "b.qcow2"), "1M")
	shIn(t, dir, "qemu-img", "create", "-f", "qcow2", "-b", "b.qcow2", "-F", "qcow2", "o.qcow2", "1M")
	im := mustOpen(t, filepath.Join(dir, "o.qcow2"))
	if im.hdr.backingFile != "b.qcow2" || im.hdr.backingFormat != "qcow2" {
		t.Fatalf("backing %q format %q", im.hdr.backingFile, im.hdr.backingFormat)
	}
	if _, ok := im.backing.(*Image); !ok {
		t.Fatalf("backing is %T", im.backing)
	}
	if len(im.hdr.featureNames) == 0 {
		t.Fatal("feature name table not parsed")
	}
	if got := binary.BigEndian.Uint32(readHeader(t, filepath.Join(dir, "o.qcow2"))[4:]); got != 3 {
		t.Fatalf("version %d", got)
	}
}
