package repo

import (
	"bytes"
	"fmt"
	"sync"
	"testing"

	"github.com/zeebo/blake3"
)

// TestLoadBlobOwnsResult: a block read with LoadBlob stays the caller's.
// Raw (incompressible) blocks come back in the buffer they were read and
// decrypted in; later loads of other blocks, raw or lz4, through the
// scratch pool and into caller buffers, must never write over it.
func TestLoadBlobOwnsResult(t *testing.T) {
	for _, enc := range []bool{false, true} {
		t.Run(fmt.Sprint("encrypted=", enc), func(t *testing.T) {
			r := newTestRepo(t, enc)
			var img []byte
			for i := 0; i < 32; i++ {
				if i%3 == 2 {
					img = append(img, compressibleBlock(fmt.Sprint(i), testBlockSize)...)
				} else {
					img = append(img, blockData(uint64(i+1), testBlockSize)...)
				}
			}
			p := commitPoint(t, r, "vm", diskImage{name: "vda", img: img})
			dr, err := r.OpenDisk(p, "vda", 1) // a 1-byte cache: every read decodes
			if err != nil {
				t.Fatal(err)
			}
			var got [][]byte
			for b := int64(0); b < 32; b++ {
				data, err := dr.ReadBlock(b)
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, data)
				// Interleave the other paths that use the scratch pool.
				if _, err := dr.ReadBlockInto((b+7)%32, nil); err != nil {
					t.Fatal(err)
				}
				if _, err := dr.ReadBlockInto((b+11)%32, make([]byte, 0, 16)); err != nil {
					t.Fatal(err)
				}
			}
			for b, data := range got {
				want := img[b*testBlockSize : (b+1)*testBlockSize]
				if !bytes.Equal(data, want) {
					t.Fatalf("block %d changed after later reads (first difference at %d)", b, firstDiff(data, want))
				}
			}
		})
	}
}

// BenchmarkLoadBlob loads 64 KiB data blobs, half incompressible (stored
// raw) and half text (lz4), from an encrypted repository: read, decrypt,
// decompress, verify.
func BenchmarkLoadBlob(b *testing.B) {
	const bs = 64 << 10
	r, s, blobs := benchBlobs(b, 64)
	if err := s.Commit(&RestorePoint{VM: "bench"}); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(bs)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		bl := blobs[i%len(blobs)]
		if _, err := r.LoadBlob(BlobData, bl.ID, bl.Location); err != nil {
			b.Fatal(err)
		}
	}
}

// TestVerifySum: the recycled hashing states give Hasher.Sum's IDs, for
// keyed and unkeyed hashers used in turn (a state keyed for one
// repository must never verify another's blobs).
// Hasher.Sum recycles keyed states: interleaved hashers, keys and sizes,
// also from several goroutines, give the IDs of fresh states.
func TestHasherSumRecycled(t *testing.T) {
	keys := []*[32]byte{{1}, nil, {2}}
	hs := []*Hasher{NewHasher(keys[0]), NewHasher(keys[1]), NewHasher(keys[2])}
	fresh := func(key *[32]byte, data []byte) ID {
		if key == nil {
			return ID(blake3.Sum256(data))
		}
		k, err := blake3.NewKeyed(key[:])
		if err != nil {
			t.Fatal(err)
		}
		k.Write(data)
		var id ID
		k.Sum(id[:0])
		return id
	}
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 30; i++ {
				data := blockData(uint64(g*100+i+1), 100+i*5000)
				if got, want := hs[i%3].Sum(data), fresh(keys[i%3], data); got != want {
					t.Errorf("goroutine %d round %d: Sum %s, fresh state %s", g, i, got.Short(), want.Short())
					return
				}
			}
		}()
	}
	wg.Wait()
}
