package part

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// seeds are small real tables made with sfdisk (testdata/*.raw.gz): a GPT
// with three partitions and an MBR with an extended partition holding two
// logical ones.
func seeds(t testing.TB) map[string][]byte {
	paths, _ := filepath.Glob("testdata/*.raw.gz")
	if len(paths) == 0 {
		t.Fatal("no seed images in testdata")
	}
	out := map[string][]byte{}
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		z, err := gzip.NewReader(f)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(z)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		out[filepath.Base(p)] = b
	}
	return out
}

// TestSeeds checks that the seeds read as sfdisk wrote them, so the fuzz
// corpus starts from valid tables.
func TestSeeds(t *testing.T) {
	s := seeds(t)
	gpt, err := Read(bytes.NewReader(s["gpt.raw.gz"]), int64(len(s["gpt.raw.gz"])))
	if err != nil || gpt.Kind != "gpt" || len(gpt.Partitions) != 3 || gpt.Partitions[2].Start != 134*512 {
		t.Fatalf("gpt seed: %+v %v", gpt, err)
	}
	mbr, err := Read(bytes.NewReader(s["mbr.raw.gz"]), int64(len(s["mbr.raw.gz"])))
	if err != nil || mbr.Kind != "mbr" || len(mbr.Partitions) != 4 || mbr.Partitions[3].Number != 6 {
		t.Fatalf("mbr seed: %+v %v", mbr, err)
	}
}

// FuzzRead: any bytes give a table whose partitions lie inside the disk,
// or an error wrapping ErrMalformed; never a panic or a huge allocation.
func FuzzRead(f *testing.F) {
	for _, b := range seeds(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		table, err := Read(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("error that is neither malformed nor a short read: %v", err)
			}
			return
		}
		if len(table.Partitions) > MaxPartitions {
			t.Fatalf("%d partitions", len(table.Partitions))
		}
		for _, p := range table.Partitions {
			if p.Start <= 0 || p.Size <= 0 || p.Start+p.Size > int64(len(b)) {
				t.Fatalf("partition %+v outside a %d-byte disk", p, len(b))
			}
		}
	})
}
