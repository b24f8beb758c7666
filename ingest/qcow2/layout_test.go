package qcow2

import (
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
)

// allocRegions returns the guest byte ranges of allocated clusters, merged.
func allocRegions(size int64, clusterBits int, alloc []uint64) []region {
	var rs []region
	C := int64(1) << clusterBits
	for _, g := range alloc {
		off := int64(g) * C
		n := min(C, size-off)
		if k := len(rs); k > 0 && rs[k-1].off+rs[k-1].n == off {
			rs[k-1].n += n
			continue
		}
		rs = append(rs, region{off, n})
	}
	return rs
}

// writeImage plans and writes a qcow2 image holding the allocated clusters
// of the raw file src, writing the data clusters in parallel.
func writeImage(t *testing.T, src, dst string, size int64, clusterBits int, alloc []uint64, dataFirst, noTruncate bool) *Layout {
	t.Helper()
	l, err := PlanLayout(size, clusterBits, alloc)
	if err != nil {
		t.Fatal(err)
	}
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	var meta io.WriterAt = out
	if noTruncate {
		meta = struct{ io.WriterAt }{out} // hide (*os.File).Truncate
	}
	if !dataFirst {
		if err := l.WriteMetadata(meta); err != nil {
			t.Fatal(err)
		}
	}
	C := int64(1) << clusterBits
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			buf := make([]byte, C)
			for i := w; i < len(alloc); i += 4 {
				g := alloc[i]
				n := min(C, size-int64(g)*C) // a partial last cluster is written short
				if _, err := in.ReadAt(buf[:n], int64(g)*C); err != nil {
					errs <- err
					return
				}
				off := l.DataOffset(g)
				if off < 0 || off%C != 0 || off+C > l.FileSize() {
					errs <- fmt.Errorf("DataOffset(%d) = %d", g, off)
					return
				}
				if _, err := out.WriteAt(buf[:n], off); err != nil {
					errs <- err
					return
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if dataFirst {
		if err := l.WriteMetadata(meta); err != nil {
			t.Fatal(err)
		}
	}
	return l
}

func TestLayoutRoundTrip(t *testing.T) {
	needQemu(t)
	const mib = 1 << 20
	spread := func(n, every, offset uint64) []uint64 {
		var a []uint64
		for i := uint64(0); i < n; i++ {
			a = append(a, offset+i*every)
		}
		return a
	}
	randomAlloc := func(total uint64, p float64, seed uint64) []uint64 {
		rng := rand.New(rand.NewPCG(seed, seed))
		var a []uint64
		for g := uint64(0); g < total; g++ {
			if rng.Float64() < p {
				a = append(a, g)
			}
		}
		return a
	}
	cases := []struct {
		name        string
		size        int64
		clusterBits int
		alloc       []uint64
		dataFirst   bool
		noTruncate  bool
	}{
		{"empty", 1 << 30, 16, nil, false, false},
		{"zero-size", 0, 16, nil, false, false},
		{"one-cluster", 65536, 16, []uint64{0}, false, false},
		{"partial-last", 10*65536 + 1024, 16, []uint64{0, 3, 4, 10}, false, false},
		{"partial-last-only-4k", 4096*77 + 512, 12, []uint64{77}, false, false},
		{"data-first", 10*65536 + 3584, 16, []uint64{1, 2, 10}, true, false},
		{"no-truncate", 10*65536 + 3584, 16, []uint64{1, 2, 10}, false, true},
		{"512-many", 20 * mib, 9, randomAlloc(40960, 0.5, 1), false, false},
		{"512-dense", 12 * mib, 9, spread(24576, 1, 0), false, false},
		{"4k-random", 64 * mib, 12, randomAlloc(16384, 0.2, 2), false, false},
		{"64k-full", 16 * mib, 16, spread(256, 1, 0), false, false},
		{"2m", 50*mib + 512, 21, []uint64{0, 1, 7, 25}, false, false},
		{"4k-sparse-64g", 64 << 30, 12, spread(300, 55555, 17), false, false},
		{"64k-sparse-1t", 1 << 40, 16, spread(40, 400009, 3), false, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			src := filepath.Join(dir, "src.raw")
			want := allocRegions(c.size, c.clusterBits, c.alloc)
			writeRandomRaw(t, src, c.size, uint64(c.size)+uint64(len(c.alloc)), want...)
			dst := filepath.Join(dir, "out.qcow2")
			l := writeImage(t, src, dst, c.size, c.clusterBits, c.alloc, c.dataFirst, c.noTruncate)
			fi, err := os.Stat(dst)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Size() != l.FileSize() && !(c.noTruncate && fi.Size() < l.FileSize()) {
				t.Fatalf("file is %d bytes, FileSize() = %d", fi.Size(), l.FileSize())
			}
			out := sh(t, "qemu-img", "check", "-f", "qcow2", dst)
			if !strings.Contains(out, "No errors were found on the image.") || strings.Contains(out, "leak") {
				t.Fatalf("qemu-img check:\n%s", out)
			}
			out = sh(t, "qemu-img", "compare", "-f", "raw", "-F", "qcow2", src, dst)
			if !strings.Contains(out, "Images are identical.") {
				t.Fatalf("qemu-img compare:\n%s", out)
			}
			im := mustOpen(t, dst)
			ext := verifyAgainstRaw(t, im, src)
			if len(ext) == 0 {
				ext = nil
			}
			if !reflect.DeepEqual(ext, want) {
				t.Fatalf("extents %v, want %v", ext, want)
			}
			// Every cluster outside the plan reports -1.
			for _, g := range []uint64{1, 2, 5, 1 << 40} {
				if off := l.DataOffset(g); off >= 0 {
					found := false
					for _, a := range c.alloc {
						found = found || a == g
					}
					if !found {
						t.Fatalf("DataOffset(%d) = %d for an unallocated cluster", g, off)
					}
				}
			}
		})
	}
}

func TestPlanLayoutErrors(t *testing.T) {
	for _, c := range []struct {
		name        string
		size        int64
		clusterBits int
		alloc       []uint64
		want        string
	}{
		{"bits-low", 1 << 20, 8, nil, "cluster bits"},
		{"bits-high", 1 << 20, 22, nil, "cluster bits"},
		{"negative", -1, 16, nil, "negative"},
		{"unsorted", 1 << 20, 16, []uint64{3, 2}, "sorted"},
		{"duplicate", 1 << 20, 16, []uint64{2, 2}, "sorted"},
		{"beyond", 1 << 20, 16, []uint64{16}, "beyond"},
		{"beyond-partial", 65536 + 512, 16, []uint64{2}, "beyond"},
		{"unaligned-size", 65536 + 100, 16, nil, "multiple of 512"},
		{"l1-too-large", 1 << 40, 9, nil, "L1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := PlanLayout(c.size, c.clusterBits, c.alloc)
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "qcow2: ") {
				t.Fatalf("PlanLayout error = %v, want one mentioning %q", err, c.want)
			}
		})
	}
}

// TestLayoutCopiesAllocated checks that PlanLayout does not keep the
// caller's slice.
func TestLayoutCopiesAllocated(t *testing.T) {
	a := []uint64{1, 5, 9}
	l, err := PlanLayout(1<<20, 16, a)
	if err != nil {
		t.Fatal(err)
	}
	off := l.DataOffset(5)
	a[1] = 6
	if l.DataOffset(5) != off || l.DataOffset(6) != -1 {
		t.Fatal("layout changed with the caller's slice")
	}
}
