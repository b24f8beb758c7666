package repo

import (
	"bytes"
	"fmt"
	"testing"
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
	r, err := Init(b.TempDir()+"/repo", InitOptions{BlockSize: bs, PackSize: 16 << 20, Encrypt: true, Credentials: testKey})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	s, err := r.NewSession()
	if err != nil {
		b.Fatal(err)
	}
	type blob struct {
		id  ID
		loc Location
	}
	var blobs []blob
	for i := 0; i < 64; i++ {
		data := blockData(uint64(i+1), bs)
		if i%2 == 1 {
			data = compressibleBlock(fmt.Sprint(i), bs)
		}
		id := r.codec.hasher.Sum(data)
		loc, _, err := s.Store(BlobData, id, data)
		if err != nil {
			b.Fatal(err)
		}
		blobs = append(blobs, blob{id, loc})
	}
	if err := s.Commit(&RestorePoint{VM: "bench"}); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(bs)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		bl := blobs[i%len(blobs)]
		if _, err := r.LoadBlob(BlobData, bl.id, bl.loc); err != nil {
			b.Fatal(err)
		}
	}
}

// TestVerifySum: the recycled hashing states give Hasher.Sum's IDs, for
// keyed and unkeyed hashers used in turn (a state keyed for one
// repository must never verify another's blobs).
func TestVerifySum(t *testing.T) {
	hs := []*Hasher{NewHasher(&[32]byte{1}), NewHasher(nil), NewHasher(&[32]byte{2})}
	for i := 0; i < 30; i++ {
		h := hs[i%len(hs)]
		data := blockData(uint64(i+1), 100+i*5000)
		if got, want := verifySum(h, data), h.Sum(data); got != want {
			t.Fatalf("round %d: verifySum %s, Sum %s", i, got.Short(), want.Short())
		}
	}
}
