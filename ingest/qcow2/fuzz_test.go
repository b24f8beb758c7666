package qcow2

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

// fuzzAllocLimit is the most a single fuzz input may make the package
// allocate (Open, a few reads and Extents together).
const fuzzAllocLimit = 64 << 20

// fuzzTimeout is the longest a single fuzz input may take.
const fuzzTimeout = 10 * time.Second

var errEnoughExtents = errors.New("enough extents")

// FuzzOpen opens arbitrary bytes as a qcow2 image, reads a few clusters
// and walks the extents. It must never panic or allocate without bound.
// The seed corpus in testdata/fuzz/FuzzOpen holds small real images made
// by qemu-img (see TestGenerateFuzzSeeds).
func FuzzOpen(f *testing.F) {
	dir := f.TempDir()
	path := filepath.Join(dir, "fuzz.qcow2")
	// A raw file that seeds may name as their backing file.
	base := make([]byte, 48<<10)
	for i := range base {
		base[i] = byte(i*7 + 1)
	}
	if err := os.WriteFile(filepath.Join(dir, "base.raw"), base, 0o644); err != nil {
		f.Fatal(err)
	}
	addGeneratedSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		// Write a new file rather than truncating the old one: ext4 flushes
		// a file truncated to zero and rewritten when it is closed, which
		// makes every input wait for the disk.
		if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		// The fuzzer has no hang detection: crash (and so record the
		// input) if one input takes far too long.
		watchdog := time.AfterFunc(fuzzTimeout, func() {
			buf := make([]byte, 1<<20)
			n := runtime.Stack(buf, true)
			panic(fmt.Sprintf("input took more than %v:\n%s", fuzzTimeout, buf[:n]))
		})
		defer watchdog.Stop()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		exerciseImage(t, path)
		runtime.ReadMemStats(&after)
		if n := after.TotalAlloc - before.TotalAlloc; n > fuzzAllocLimit {
			t.Fatalf("allocated %d bytes", n)
		}
	})
}

// exerciseImage opens path and, if that works, reads parts of it and its
// extents; errors are fine, panics and inconsistencies are not.
func exerciseImage(t *testing.T, path string) {
	im, err := Open(path)
	if err != nil {
		if im != nil {
			t.Fatal("Open returned an image and an error")
		}
		return
	}
	defer im.Close()
	size := im.Size()
	if size < 0 || size%512 != 0 {
		t.Fatalf("Size() = %d", size)
	}
	cs := int64(im.ClusterSize())
	buf := make([]byte, 128<<10)
	for _, off := range []int64{0, cs, 3 * cs / 2, size / 2, size - cs, size - 1, size - 100} {
		if off < 0 {
			continue
		}
		n, err := im.ReadAt(buf, off)
		if err == nil && n != len(buf) {
			t.Fatalf("ReadAt(%d) = %d, nil", off, n)
		}
		if off >= size && (n != 0 || err != io.EOF) {
			t.Fatalf("ReadAt(%d) past Size %d = %d, %v", off, size, n, err)
		}
	}
	count := 0
	last := int64(-1)
	err = im.Extents(func(off, n int64) error {
		if n <= 0 || off <= last || off+n > size {
			return fmt.Errorf("bad extent [%d,+%d) after %d, size %d", off, n, last, size)
		}
		last = off + n
		if count++; count > 1000 {
			return errEnoughExtents
		}
		return nil
	})
	if err != nil && !errors.Is(err, errEnoughExtents) && !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrTruncated) && !isIOError(err) {
		t.Fatalf("Extents: %v", err)
	}
}

// isIOError reports whether err comes from the operating system.
func isIOError(err error) bool {
	var pe *os.PathError
	return errors.As(err, &pe)
}

// addGeneratedSeeds adds seeds that are too large for the corpus directory
// (extended L2 entries need clusters of at least 16 KiB), built with
// qemu-img when it is installed.
func addGeneratedSeeds(f *testing.F) {
	if _, err := exec.LookPath("qemu-io"); err != nil {
		return
	}
	if _, err := exec.LookPath("qemu-img"); err != nil {
		return
	}
	dir := f.TempDir()
	img := filepath.Join(dir, "extl2.qcow2")
	for _, args := range [][]string{
		{"qemu-img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=16384,extended_l2=on", img, "256K"},
		{"qemu-io", "-f", "qcow2", "-c", "write -P 0x11 1000 3000", "-c", "write -z 20480 1024", "-c", "write -P 0x22 65536 16384", img},
	} {
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			f.Fatalf("%v: %v\n%s", args, err, out)
		}
	}
	b, err := os.ReadFile(img)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
}
