package ext

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/cairn-backup/cairn/guest/internal/fstest"
	"github.com/cairn-backup/cairn/guest/vfs"
)

// seedLimits bound the walks of the seeds: wide enough to read them all.
var seedLimits = fstest.Limits{Visits: 1 << 20, Depth: 64, Read: 1 << 20}

// fuzzLimits bound the walks of fuzz inputs.
var fuzzLimits = fstest.Limits{Visits: 5000, Depth: 16, Read: 1 << 20}

// seeds returns the small real images under testdata (see mkseeds.sh).
func seeds(tb testing.TB) map[string][]byte {
	tb.Helper()
	return fstest.Seeds(tb, "*.img.gz")
}

func TestSeeds(t *testing.T) {
	for name, img := range seeds(t) {
		t.Run(name, func(t *testing.T) {
			if !bytes.Equal(decodeSparse(encodeSparse(img)), img) {
				t.Fatal("sparse fuzz encoding does not round-trip")
			}
			fsys, err := Open(bytes.NewReader(img), int64(len(img)))
			if err != nil {
				t.Fatal(err)
			}
			// The same FS walked from several goroutines too (run with -race).
			res := fstest.CheckConcurrentWalks(t, fsys, 4, seedLimits)
			if len(res.Errs) > 0 {
				t.Fatal(errors.Join(res.Errs...))
			}
			if res.Files < 30 {
				t.Errorf("%d files", res.Files)
			}
			if name != "ext4-dirty-journal.img.gz" {
				return
			}
			if rec := fsys.(*FS).Recovery(); rec.Transactions == 0 {
				t.Errorf("dirty seed: recovery %+v", rec)
			}
			if _, err := fsys.Lookup(fsys.Root(), "new"); err != nil {
				t.Errorf("file created before the snapshot: %v", err)
			}
			if _, err := fsys.Lookup(fsys.Root(), "small"); !errors.Is(err, vfs.ErrNotFound) {
				t.Errorf("file renamed before the snapshot still at the root: %v", err)
			}
		})
	}
}

// The fuzz input is an image with its all-zero 1 KiB chunks left out
// (Go's fuzzer crawls on inputs of hundreds of KiB): a little-endian
// uint16 count of chunks in the image, then records of a uint16 chunk
// index and 1 KiB of data.
const fuzzChunk = 1024

func encodeSparse(img []byte) []byte {
	out := binary.LittleEndian.AppendUint16(nil, uint16(len(img)/fuzzChunk))
	for i := 0; i+fuzzChunk <= len(img); i += fuzzChunk {
		c := img[i : i+fuzzChunk]
		if !bytes.Equal(c, make([]byte, fuzzChunk)) {
			out = binary.LittleEndian.AppendUint16(out, uint16(i/fuzzChunk))
			out = append(out, c...)
		}
	}
	return out
}

func decodeSparse(data []byte) []byte {
	if len(data) < 2 {
		return nil
	}
	// At most 4 MiB, so that every execution stays fast.
	img := make([]byte, min(int(binary.LittleEndian.Uint16(data)), 4096)*fuzzChunk)
	for data = data[2:]; len(data) >= 2; {
		i := int(binary.LittleEndian.Uint16(data)) * fuzzChunk
		data = data[2:]
		n := min(len(data), fuzzChunk)
		if i+n <= len(img) {
			copy(img[i:], data[:n])
		}
		data = data[n:]
	}
	return img
}

// FuzzOpen opens mutated images and walks them: errors are fine, they
// must wrap ErrMalformed (or say a name or inode is absent); panics,
// hangs and unbounded memory are not. Run it with a short minimisation
// time, inputs are tens of KiB:
//
//	go test -run XXX -fuzz FuzzOpen -fuzzminimizetime 2s ./guest/ext
func FuzzOpen(f *testing.F) {
	for _, img := range seeds(f) {
		f.Add(encodeSparse(img))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		img := decodeSparse(data)
		fsys, err := Open(bytes.NewReader(img), int64(len(img)))
		if err != nil {
			checkErr(t, err)
			return
		}
		for _, err := range fstest.Walk(fsys, fuzzLimits).Errs {
			checkErr(t, err)
		}
	})
}

func checkErr(t *testing.T, err error) {
	for _, ok := range []error{vfs.ErrMalformed, vfs.ErrNotFound, vfs.ErrNotDir, vfs.ErrNotLink, vfs.ErrNotFile, ErrEncrypted} {
		if errors.Is(err, ok) {
			return
		}
	}
	t.Fatalf("error of no known kind: %v", err)
}
