package repo

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"testing"
)

// TestPackWriterChunks stores blobs of every size class from several
// goroutines into packs that span many chunks, through direct I/O and
// through the ordinary handle, and reads every blob back from the finished
// packs; every pack file ends exactly where its trailer says.
func TestPackWriterChunks(t *testing.T) {
	for _, direct := range []bool{true, false} {
		t.Run(fmt.Sprintf("direct=%v", direct), func(t *testing.T) {
			r, err := Init(t.TempDir()+"/repo", InitOptions{BlockSize: 64 << 10, PackSize: 3<<20 + 12345})
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			s, err := r.NewSession()
			if err != nil {
				t.Fatal(err)
			}
			s.pw.noDirect.Store(!direct)
			type stored struct {
				data []byte
				loc  Location
			}
			var mu sync.Mutex
			var all []stored
			var wg sync.WaitGroup
			for w := range 4 {
				wg.Go(func() {
					rng := rand.New(rand.NewPCG(uint64(w), 1))
					for i := range 150 {
						n := []int{1, 4095, 4096, 4097, 65536, 200 << 10}[rng.IntN(6)]
						data := blockData(uint64(w*1000+i+1), n)
						loc, _, err := s.Store(BlobData, r.codec.hasher.Sum(data), data)
						if err != nil {
							t.Error(err)
							return
						}
						mu.Lock()
						all = append(all, stored{data, loc})
						mu.Unlock()
					}
				})
			}
			wg.Wait()
			if err := s.pw.flush(); err != nil {
				t.Fatal(err)
			}
			if direct && s.pw.noDirect.Load() {
				t.Log("the file system of the test directory refused direct I/O: the fallback ran instead")
			}
			packs := packIDs(t, r)
			if len(packs) < 3 {
				t.Fatalf("want several multi-chunk packs, got %d", len(packs))
			}
			for _, b := range all {
				got, err := r.LoadBlob(BlobData, r.codec.hasher.Sum(b.data), b.loc)
				if err != nil || !bytes.Equal(got, b.data) {
					t.Fatalf("blob at %+v: %d bytes, %v; want %d bytes", b.loc, len(got), err, len(b.data))
				}
			}
			for _, id := range packs {
				raw, err := os.ReadFile(packPath(r.dir, id))
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.HasSuffix(raw, []byte(packEndMagic)) || !bytes.HasPrefix(raw, []byte(packMagic)) {
					t.Errorf("pack %s (%d bytes) does not start and end with the pack magic", id, len(raw))
				}
			}
			s.Abort() // the packs stay; merging reads their trailers into the index
			if _, _, err := r.MergeIndex(); err != nil {
				t.Fatal(err)
			}
			assertIndexMatchesPacks(t, r)
		})
	}
}
