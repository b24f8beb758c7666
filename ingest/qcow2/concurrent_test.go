package qcow2

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// TestConcurrentReadAt reads a compressed overlay over a qcow2 base from
// several goroutines at once, with caches small enough to churn.
func TestConcurrentReadAt(t *testing.T) {
	needQemuIO(t)
	const size = 8 << 20
	dir := t.TempDir()
	src := filepath.Join(dir, "src.raw")
	writeRandomRaw(t, src, size, 11, scattered(size, 10, 500000)...)
	sh(t, "qemu-img", "convert", "-f", "raw", "-O", "qcow2", "-c", "-o", "cluster_size=4096", src, filepath.Join(dir, "base.qcow2"))
	ov := filepath.Join(dir, "ov.qcow2")
	shIn(t, dir, "qemu-img", "create", "-f", "qcow2", "-o", "cluster_size=512", "-b", "base.qcow2", "-F", "qcow2", ov, "8M")
	qemuIO(t, ov, "write -P 0x42 1000000 300000", "write -z 3000000 200000")
	want, err := os.ReadFile(toRaw(t, ov))
	if err != nil {
		t.Fatal(err)
	}
	im := mustOpen(t, ov)
	im.l2.max = 2 // force L2 cache evictions
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			buf := make([]byte, 256<<10)
			for i := 0; i < 200; i++ {
				off := rng.Int64N(size)
				n := min(int64(rng.IntN(len(buf))+1), size-off)
				if _, err := im.ReadAt(buf[:n], off); err != nil {
					t.Error(err)
					return
				}
				if !bytes.Equal(buf[:n], want[off:off+n]) {
					t.Errorf("mismatch reading %d bytes at %d", n, off)
					return
				}
			}
		}(w)
	}
	wg.Wait()
}
