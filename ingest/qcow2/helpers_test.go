package qcow2

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// needQemu skips the test when qemu-img is not installed.
func needQemu(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Skip("qemu-img not installed")
	}
}

// needQemuIO skips the test when qemu-io is not installed.
func needQemuIO(t testing.TB) {
	t.Helper()
	needQemu(t)
	if _, err := exec.LookPath("qemu-io"); err != nil {
		t.Skip("qemu-io not installed")
	}
}

// run runs a command and fails the test if it fails.
func sh(t testing.TB, name string, args ...string) string {
	t.Helper()
	if name == "qemu-img" && len(args) > 0 && args[0] == "convert" {
		// Skip the final flush to disk: test files are disposable.
		args = append([]string{"convert", "-t", "unsafe"}, args[1:]...)
	}
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// qemuIO runs qemu-io commands against a qcow2 image.
func qemuIO(t testing.TB, img string, cmds ...string) {
	t.Helper()
	if len(cmds) == 0 {
		return
	}
	args := []string{"-f", "qcow2", "-t", "unsafe"}
	for _, c := range cmds {
		args = append(args, "-c", c)
	}
	out := sh(t, "qemu-io", append(args, img)...)
	if strings.Contains(out, "error") || strings.Contains(out, "failed") {
		t.Fatalf("qemu-io %v: %s", cmds, out)
	}
}

// region is a byte range of a test disk.
type region struct{ off, n int64 }

// writeRandomRaw creates a sparse raw file of the given size with seeded
// random bytes in the given regions.
func writeRandomRaw(t testing.TB, path string, size int64, seed uint64, regions ...region) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	for _, r := range regions {
		buf := make([]byte, r.n)
		for i := range buf {
			// Never zero, so that every byte counts as data, and
			// compressible (4 bits of entropy per byte), so that
			// qemu-img convert -c really compresses.
			buf[i] = 'a' + byte(rng.Uint32()%16)
		}
		// Stamp each 512-byte sector with its disk offset.
		for o := (r.off + 511) &^ 511; o+8 <= r.off+r.n; o += 512 {
			binary.BigEndian.PutUint64(buf[o-r.off:], uint64(o)|0x8080808080808080)
		}
		if _, err := f.WriteAt(buf, r.off); err != nil {
			t.Fatal(err)
		}
	}
}

// toRaw converts an image to raw with qemu-img and returns the raw path.
func toRaw(t testing.TB, img string) string {
	t.Helper()
	out := img + ".expected.raw"
	sh(t, "qemu-img", "convert", "-O", "raw", img, out)
	return out
}

// collectExtents returns the extents reported by im and checks that they
// are ascending, non-overlapping, non-adjacent and within the disk.
func collectExtents(t testing.TB, im *Image) []region {
	t.Helper()
	var ext []region
	err := im.Extents(func(off, n int64) error {
		if n <= 0 {
			return fmt.Errorf("empty extent at %d", off)
		}
		if off < 0 || off+n > im.Size() {
			return fmt.Errorf("extent [%d,+%d) outside disk of %d bytes", off, n, im.Size())
		}
		if len(ext) > 0 {
			last := ext[len(ext)-1]
			if off <= last.off+last.n {
				return fmt.Errorf("extent [%d,+%d) not after [%d,+%d) with a gap", off, n, last.off, last.n)
			}
		}
		ext = append(ext, region{off, n})
		return nil
	})
	if err != nil {
		t.Fatalf("Extents: %v", err)
	}
	return ext
}

// rawDataRegions lists the data regions of a (sparse) raw file.
func rawDataRegions(t testing.TB, path string) []region {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, _ := f.Stat()
	var rs []region
	if err := dataExtents(f, 0, fi.Size(), func(off, n int64) error {
		rs = append(rs, region{off, n})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return rs
}

// verifyAgainstRaw checks that im reads exactly like the raw file at
// rawPath (qemu-img's conversion of the same image) and that its extents
// cover every non-zero byte. Small disks are compared in full, with both
// 1 MiB sequential reads and random unaligned reads; large sparse ones in
// the raw file's data regions, the reported extents and random samples.
func verifyAgainstRaw(t testing.TB, im *Image, rawPath string) []region {
	t.Helper()
	raw, err := os.Open(rawPath)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	fi, _ := raw.Stat()
	if fi.Size() != im.Size() {
		t.Fatalf("Size() = %d, qemu-img raw output is %d bytes", im.Size(), fi.Size())
	}
	size := im.Size()
	ext := collectExtents(t, im)
	// firstEnding returns the index of the first extent ending after off.
	firstEnding := func(off int64) int {
		lo, hi := 0, len(ext)
		for lo < hi {
			m := (lo + hi) / 2
			if ext[m].off+ext[m].n <= off {
				lo = m + 1
			} else {
				hi = m
			}
		}
		return lo
	}
	// zeroOutside checks that the bytes of want (at disk offset off) that
	// lie outside every extent are zero.
	zeroOutside := func(off int64, want []byte) {
		t.Helper()
		end := off + int64(len(want))
		i := firstEnding(off)
		for pos := off; pos < end; {
			if i < len(ext) && ext[i].off <= pos {
				pos = ext[i].off + ext[i].n
				i++
				continue
			}
			gapEnd := end
			if i < len(ext) && ext[i].off < gapEnd {
				gapEnd = ext[i].off
			}
			for j, b := range want[pos-off : gapEnd-off] {
				if b != 0 {
					t.Fatalf("non-zero byte at %d is outside all extents", pos+int64(j))
				}
			}
			pos = gapEnd
		}
	}
	compare := func(off, n int64) {
		t.Helper()
		want := make([]byte, n)
		if _, err := raw.ReadAt(want, off); err != nil && err != io.EOF {
			t.Fatal(err)
		}
		got := make([]byte, n)
		m, err := im.ReadAt(got, off)
		if m != int(n) || (err != nil && !(err == io.EOF && off+n == size)) {
			t.Fatalf("ReadAt(%d bytes at %d) = %d, %v", n, off, m, err)
		}
		if !bytes.Equal(got, want) {
			i := 0
			for got[i] == want[i] {
				i++
			}
			t.Fatalf("ReadAt(%d bytes at %d): first difference at %d: got %#x, qemu %#x", n, off, off+int64(i), got[i], want[i])
		}
		zeroOutside(off, want)
	}
	const chunk = 1 << 20
	if size <= 256<<20 {
		for off := int64(0); off < size; off += chunk {
			compare(off, min(chunk, size-off))
		}
	} else {
		for _, r := range rawDataRegions(t, rawPath) {
			for off := r.off; off < r.off+r.n; off += chunk {
				compare(off, min(chunk, r.off+r.n-off))
			}
		}
		for _, r := range ext {
			for off := r.off; off < r.off+r.n; off += chunk {
				compare(off, min(chunk, r.off+r.n-off))
			}
		}
	}
	rng := rand.New(rand.NewPCG(uint64(size), 7))
	for i := 0; i < 200 && size > 0; i++ {
		off := rng.Int64N(size)
		n := min(rng.Int64N(300<<10)+1, size-off)
		compare(off, n)
	}
	if size > 0 {
		compare(size-1, 1)
		// Reading past the end returns the tail and io.EOF.
		buf := make([]byte, 4096)
		off := max(0, size-1000)
		n, err := im.ReadAt(buf, off)
		if int64(n) != size-off || err != io.EOF {
			t.Fatalf("ReadAt across the end = %d, %v; want %d, EOF", n, err, size-off)
		}
	}
	if n, err := im.ReadAt(make([]byte, 10), size); n != 0 || err != io.EOF {
		t.Fatalf("ReadAt at Size = %d, %v; want 0, EOF", n, err)
	}
	return ext
}

// kindStats counts the allocation units of im by kind (for checking that
// a test image exercises what it should).
func kindStats(t testing.TB, im *Image) map[runKind]int64 {
	t.Helper()
	st := map[runKind]int64{}
	unit := int64(1) << im.unitBits
	for off := int64(0); off < im.Size(); {
		r, err := im.mapRun(off, min(unit-off%unit, im.Size()-off))
		if err != nil {
			t.Fatal(err)
		}
		st[r.kind]++
		off += r.length
	}
	return st
}

// extentBytes sums the lengths of extents.
func extentBytes(ext []region) int64 {
	var s int64
	for _, r := range ext {
		s += r.n
	}
	return s
}

// patch overwrites bytes of a file.
func patch(t testing.TB, path string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func be32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
func be64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

// readHeader returns the raw first 4 KiB of an image file.
func readHeader(t testing.TB, path string) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 4096)
	n, _ := f.ReadAt(b, 0)
	return b[:n]
}

// mustOpen opens an image or fails the test.
func mustOpen(t testing.TB, path string) *Image {
	t.Helper()
	im, err := Open(path)
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	t.Cleanup(func() { im.Close() })
	return im
}

// tmp returns a path in a per-test temporary directory.
func tmp(t testing.TB, name string) string {
	return filepath.Join(t.TempDir(), name)
}
