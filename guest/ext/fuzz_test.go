package ext

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/cairn-backup/cairn/guest/vfs"
)

// seeds returns the small real images under testdata (see mkseeds.sh).
func seeds(tb testing.TB) map[string][]byte {
	tb.Helper()
	names, err := filepath.Glob("testdata/*.img.gz")
	if err != nil || len(names) == 0 {
		tb.Fatalf("no seed images in testdata: %v", err)
	}
	out := map[string][]byte{}
	for _, n := range names {
		fh, err := os.Open(n)
		if err != nil {
			tb.Fatal(err)
		}
		zr, err := gzip.NewReader(fh)
		if err != nil {
			tb.Fatal(err)
		}
		b, err := io.ReadAll(zr)
		fh.Close()
		if err != nil {
			tb.Fatal(err)
		}
		out[filepath.Base(n)] = b
	}
	return out
}

// walk reads the whole tree, bounded, and returns the first error that
// is not a reported malformation. It is what the fuzz target runs.
func walk(fsys vfs.FS, budget int) (files int, err error) {
	stack := []uint64{fsys.Root()}
	seen := map[uint64]bool{fsys.Root(): true}
	buf := make([]byte, 64<<10)
	for len(stack) > 0 && budget > 0 {
		dir := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		entries, err := fsys.ReadDir(dir)
		if err != nil {
			return files, err
		}
		budget -= len(entries) / 16
		for _, e := range entries {
			if budget--; budget <= 0 {
				break
			}
			if _, err := fsys.Lookup(dir, e.Name); err != nil {
				return files, err
			}
			fi, err := fsys.Stat(e.Ino)
			if err != nil {
				return files, err
			}
			switch fi.Mode & vfs.ModeType {
			case vfs.ModeDir:
				if !seen[e.Ino] { // a crafted tree may loop
					seen[e.Ino] = true
					stack = append(stack, e.Ino)
				}
			case vfs.ModeLink:
				if _, err := fsys.Readlink(e.Ino); err != nil {
					return files, err
				}
			case vfs.ModeFile:
				fl, err := fsys.Open(e.Ino)
				if err != nil {
					return files, err
				}
				for off := int64(0); off < min(fl.Size(), 1<<20); off += int64(len(buf)) {
					if _, err := fl.ReadAt(buf, off); err != nil && err != io.EOF {
						return files, err
					}
				}
				files++
			}
		}
	}
	return files, nil
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
			files, err := walk(fsys, 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			// The same FS walked from several goroutines (run with -race).
			errs := make(chan error, 4)
			for i := 0; i < 4; i++ {
				go func() {
					_, err := walk(fsys, 1<<20)
					errs <- err
				}()
			}
			for i := 0; i < 4; i++ {
				if err := <-errs; err != nil {
					t.Error(err)
				}
			}
			if files < 30 {
				t.Errorf("%d files", files)
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
		_, err = walk(fsys, 5000)
		if err != nil {
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
