package repo

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
)

// recycleImage is a disk of 64 test blocks, incompressible and text ones
// mixed (raw and lz4 blobs), and a restore point of it.
func recycleImage(t *testing.T) (*Repository, *RestorePoint, []byte) {
	r := newTestRepo(t, true)
	var img []byte
	for i := 0; i < 64; i++ {
		if i%3 == 2 {
			img = append(img, compressibleBlock(fmt.Sprint(i), testBlockSize)...)
		} else {
			img = append(img, blockData(uint64(i+1), testBlockSize)...)
		}
	}
	return r, commitPoint(t, r, "vm", diskImage{name: "vda", img: img}), img
}

// TestBlockRecycling: a block a reader holds keeps its bytes while the
// cache evicts it and other blocks are decoded into recycled buffers;
// buffers are recycled once released.
func TestBlockRecycling(t *testing.T) {
	r, p, img := recycleImage(t)
	dr, err := r.OpenDisk(p, "vda", 3*testBlockSize) // keeps 3 blocks
	if err != nil {
		t.Fatal(err)
	}
	want := func(b int) []byte { return img[b*testBlockSize : (b+1)*testBlockSize] }
	held, err := dr.AcquireBlock(0)
	if err != nil || !bytes.Equal(held.Data, want(0)) {
		t.Fatalf("block 0: %v", err)
	}
	seen := map[*byte]bool{}
	for round := 0; round < 3; round++ {
		for b := 1; b < 64; b++ {
			blk, err := dr.AcquireBlock(int64(b))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(blk.Data, want(b)) {
				t.Fatalf("block %d: wrong bytes (first difference at %d)", b, firstDiff(blk.Data, want(b)))
			}
			seen[&blk.Data[:1][0]] = true
			blk.Release()
		}
	}
	if !bytes.Equal(held.Data, want(0)) {
		t.Fatalf("held block 0 changed while evicted (first difference at %d)", firstDiff(held.Data, want(0)))
	}
	held.Release()
	// 189 decodes with 3 cached: buffers must have been reused.
	if len(seen) > 32 {
		t.Errorf("%d distinct buffers for 189 decodes: not recycled", len(seen))
	}
	defer func() {
		if recover() == nil {
			t.Error("a second Release of a block did not panic")
		}
	}()
	held.Release()
}

// TestBlockRecyclingConcurrent: readers acquiring, checking and releasing
// blocks in parallel through a small cache always see their own block's
// bytes (run with -race).
func TestBlockRecyclingConcurrent(t *testing.T) {
	r, p, img := recycleImage(t)
	dr, err := r.OpenDisk(p, "vda", 4*testBlockSize)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 1))
			var hold []*Block
			var holdB []int
			for i := 0; i < 400; i++ {
				b := rng.IntN(64)
				blk, err := dr.AcquireBlock(int64(b))
				if err != nil {
					errs <- err
					return
				}
				hold, holdB = append(hold, blk), append(holdB, b)
				if len(hold) > 3 || rng.IntN(2) == 0 {
					for j, h := range hold {
						w := img[holdB[j]*testBlockSize : (holdB[j]+1)*testBlockSize]
						if !bytes.Equal(h.Data, w) {
							errs <- fmt.Errorf("goroutine %d: block %d changed while held", g, holdB[j])
							return
						}
						h.Release()
					}
					hold, holdB = hold[:0], holdB[:0]
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// BenchmarkDiskReadAt reads a disk of 64 KiB blocks (half raw, half lz4)
// in 1 MiB pieces through a cache of 8 blocks, so that every block is
// decoded again on each pass and evicted soon after: the steady state of
// a long sequential read.
func BenchmarkDiskReadAt(b *testing.B) {
	const bs = 64 << 10
	const blocks = 64
	r, s, tbl := benchBlobs(b, blocks)
	ref, err := s.StoreTable(0, tbl)
	if err != nil {
		b.Fatal(err)
	}
	p := &RestorePoint{VM: "bench", Disks: []Disk{{Name: "vda", Size: blocks * bs, BlockSize: bs, TableSize: blocks, Tables: []TableRef{ref}}}}
	if err := s.Commit(p); err != nil {
		b.Fatal(err)
	}
	dr, err := r.OpenDisk(p, "vda", 8*bs)
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		off := int64(i%(blocks*bs/len(buf))) * int64(len(buf))
		if _, err := dr.ReadAt(buf, off); err != nil {
			b.Fatal(err)
		}
	}
}

// TestWarmDecodeBuffers: warmed buffers join the free list at full block
// size, and the next decode of a block uses one of them.
func TestWarmDecodeBuffers(t *testing.T) {
	r, p, img := recycleImage(t)
	// A pool of its own: other tests' released buffers are not warmed ones.
	blockBufPools.Delete(r.Config().BlockSize)
	defer blockBufPools.Delete(r.Config().BlockSize)
	r.WarmDecodeBuffers(4 * int64(r.Config().BlockSize))
	pool := blockBufsFor(r.Config().BlockSize)
	pool.mu.Lock()
	warmed := map[*byte]bool{}
	for _, b := range pool.free {
		if cap(b) != pool.size {
			t.Errorf("warmed buffer of capacity %d, want %d", cap(b), pool.size)
		}
		warmed[&b[:1][0]] = true
	}
	pool.mu.Unlock()
	if len(warmed) != 4 {
		t.Fatalf("%d distinct warmed buffers on the free list, want 4", len(warmed))
	}
	dr, err := r.OpenDisk(p, "vda", 0)
	if err != nil {
		t.Fatal(err)
	}
	blk, err := dr.AcquireBlock(5)
	if err != nil || blk == nil {
		t.Fatalf("block 5: %v", err)
	}
	defer blk.Release()
	if !bytes.Equal(blk.Data, img[5*testBlockSize:6*testBlockSize]) {
		t.Fatal("block 5: wrong bytes")
	}
	if !warmed[&blk.Data[:1][0]] {
		t.Error("the decode did not use a warmed buffer")
	}
}
