package qcow2

import (
	"path/filepath"
	"testing"
)

// TestReadAfterQemuOps reads images that went through qemu-img operations
// which leave unusual but valid metadata: an L1 table larger than needed
// (shrink), a grown L1 table (resize), internal snapshots (shared clusters
// without the copied flag) and persistent bitmaps (autoclear feature and
// header extension).
func TestReadAfterQemuOps(t *testing.T) {
	needQemuIO(t)
	const mib = 1 << 20
	cases := []struct {
		name string
		ops  func(t *testing.T, img string)
	}{
		{"shrink", func(t *testing.T, img string) {
			sh(t, "qemu-img", "resize", "-f", "qcow2", "--shrink", img, "3M")
		}},
		{"grow", func(t *testing.T, img string) {
			sh(t, "qemu-img", "resize", "-f", "qcow2", img, "3G")
			qemuIO(t, img, "write -P 0x99 2147483648 65536")
		}},
		{"snapshot", func(t *testing.T, img string) {
			sh(t, "qemu-img", "snapshot", "-c", "s1", img)
			qemuIO(t, img, "write -P 0x61 0 100000", "write -z 1048576 65536")
			sh(t, "qemu-img", "snapshot", "-c", "s2", img)
			qemuIO(t, img, "write -P 0x62 50000 100000")
		}},
		{"bitmap", func(t *testing.T, img string) {
			sh(t, "qemu-img", "bitmap", "--add", img, "b0")
			qemuIO(t, img, "write -P 0x63 0 65536")
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			img := imageCase{name: c.name, size: 8 * mib, data: scattered(8*mib, 6, 300000)}.build(t, dir)
			c.ops(t, img)
			im := mustOpen(t, img)
			verifyAgainstRaw(t, im, toRaw(t, img))
		})
	}
}

// TestReadOddHeaderSize checks that a virtual size that is not a multiple
// of 512 is rounded down, as QEMU does.
func TestReadOddHeaderSize(t *testing.T) {
	needQemuIO(t)
	dir := t.TempDir()
	img := filepath.Join(dir, "odd.qcow2")
	sh(t, "qemu-img", "create", "-f", "qcow2", img, "1M")
	qemuIO(t, img, "write -P 0x41 0 1M")
	patch(t, img, 24, be64(1000000+100))
	im := mustOpen(t, img)
	if im.Size() != 999936 {
		t.Fatalf("Size() = %d, want 999936", im.Size())
	}
	verifyAgainstRaw(t, im, toRaw(t, img))
}
