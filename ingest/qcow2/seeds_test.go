package qcow2

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// maxSeedFile is the largest corpus file TestGenerateFuzzSeeds keeps.
const maxSeedFile = 100 << 10

// TestGenerateFuzzSeeds regenerates the FuzzOpen seed corpus from small
// images made by qemu-img. It only runs when QCOW2_GEN_SEEDS=1:
//
//	QCOW2_GEN_SEEDS=1 go test -run TestGenerateFuzzSeeds ./ingest/qcow2/
func TestGenerateFuzzSeeds(t *testing.T) {
	if os.Getenv("QCOW2_GEN_SEEDS") != "1" {
		t.Skip("set QCOW2_GEN_SEEDS=1 to regenerate testdata/fuzz/FuzzOpen")
	}
	needQemuIO(t)
	const size = 64 << 10
	data := []region{{0, 700}, {5000, 1500}, {40000, 600}}
	ioMix := []string{"write -P 0x5a 9000 600", "write -z 20480 1024", "discard 0 512"}
	seeds := []struct {
		name string
		c    imageCase
		post func(t *testing.T, img string)
	}{
		{name: "v3-512", c: imageCase{convertArgs: []string{"-o", "cluster_size=512"}, io: ioMix}},
		{name: "v2-512", c: imageCase{convertArgs: []string{"-o", "cluster_size=512,compat=0.10"}, io: ioMix}},
		{name: "deflate-512", c: imageCase{convertArgs: []string{"-c", "-o", "cluster_size=512"}}},
		{name: "zstd-512", c: imageCase{convertArgs: []string{"-c", "-o", "cluster_size=512,compression_type=zstd"}, io: []string{"write -z 1024 512"}}},
		{name: "dirty-lazy-512", c: imageCase{convertArgs: []string{"-o", "cluster_size=512,lazy_refcounts=on"}}, post: func(t *testing.T, img string) {
			patch(t, img, 72, be64(incompatDirty))
		}},
		{name: "backing-512", c: imageCase{convertArgs: []string{"-o", "cluster_size=512"}}, post: func(t *testing.T, img string) {
			sh(t, "qemu-img", "rebase", "-u", "-f", "qcow2", "-b", "fuzz.qcow2", "-F", "qcow2", img)
		}},
		// FuzzOpen provides base.raw next to the fuzzed image.
		{name: "backing-raw-512", c: imageCase{convertArgs: []string{"-o", "cluster_size=512"}, io: []string{"write -z 2048 4096"}}, post: func(t *testing.T, img string) {
			sh(t, "qemu-img", "rebase", "-u", "-f", "qcow2", "-b", "base.raw", "-F", "raw", img)
		}},
		{name: "backing-probed-512", c: imageCase{convertArgs: []string{"-o", "cluster_size=512"}}, post: func(t *testing.T, img string) {
			sh(t, "qemu-img", "rebase", "-u", "-f", "qcow2", "-b", "base.raw", "-F", "raw", img)
			stripBackingFormat(t, img)
		}},
	}
	out := filepath.Join("testdata", "fuzz", "FuzzOpen")
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, s := range seeds {
		dir := t.TempDir()
		c := s.c
		c.name, c.size, c.data = s.name, size, data
		img := c.build(t, dir)
		if s.post != nil {
			s.post(t, img)
		}
		b, err := os.ReadFile(img)
		if err != nil {
			t.Fatal(err)
		}
		enc := fmt.Appendf(nil, "go test fuzz v1\n[]byte(%q)\n", b)
		if len(enc) > maxSeedFile {
			t.Logf("skipping %s: %d bytes encoded", s.name, len(enc))
			continue
		}
		if err := os.WriteFile(filepath.Join(out, "seed-"+s.name), enc, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: image %d bytes, seed file %d bytes", s.name, len(b), len(enc))
	}
}

// TestFuzzSeedsOpen checks that the seed corpus holds valid images (all
// but the self-referencing one open and read cleanly), so that the fuzzer
// starts from inputs that reach deep into the package.
func TestFuzzSeedsOpen(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "fuzz", "FuzzOpen", "seed-*"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no seeds: %v", err)
	}
	dir := t.TempDir()
	base := make([]byte, 48<<10)
	for i := range base {
		base[i] = byte(i*7 + 1)
	}
	if err := os.WriteFile(filepath.Join(dir, "base.raw"), base, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, file := range files {
		enc, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		lit, ok := strings.CutPrefix(string(enc), "go test fuzz v1\n[]byte(")
		lit, ok2 := strings.CutSuffix(lit, ")\n")
		if !ok || !ok2 {
			t.Fatalf("%s: not a corpus file", file)
		}
		b, err := strconv.Unquote(lit)
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		p := filepath.Join(dir, "fuzz.qcow2")
		if err := os.WriteFile(p, []byte(b), 0o644); err != nil {
			t.Fatal(err)
		}
		im, err := Open(p)
		if strings.HasSuffix(file, "seed-backing-512") {
			expectErr(t, err, ErrBackingChain, "loop")
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if err := readAll(im); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		im.Close()
	}
}
