package fstest

import (
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Seed returns the file testdata/name of the calling test's package,
// gunzipped when the name ends in .gz.
func Seed(tb testing.TB, name string) []byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		tb.Fatal(err)
	}
	if !strings.HasSuffix(name, ".gz") {
		return b
	}
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		tb.Fatalf("%s: %v", name, err)
	}
	if b, err = io.ReadAll(zr); err != nil {
		tb.Fatalf("%s: %v", name, err)
	}
	return b
}

// Seeds returns every file under testdata matching pattern (for example
// "*.img.gz"), read as Seed reads it and keyed by base name. No match
// fails the test: a seed test that reads nothing proves nothing.
func Seeds(tb testing.TB, pattern string) map[string][]byte {
	tb.Helper()
	paths, err := filepath.Glob(filepath.Join("testdata", pattern))
	if err != nil || len(paths) == 0 {
		tb.Fatalf("no seed images testdata/%s: %v", pattern, err)
	}
	out := map[string][]byte{}
	for _, p := range paths {
		out[filepath.Base(p)] = Seed(tb, filepath.Base(p))
	}
	return out
}
