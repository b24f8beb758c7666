package fstest

import (
	"crypto/sha256"
	"encoding/hex"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// RandBytes returns n pseudo-random bytes, the same for the same seed;
// n is rounded down to a multiple of 8, the rest is zeros.
func RandBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9E3779B97F4A7C15))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for j := 0; j < 8; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

// SHA returns the hex SHA-256 of b.
func SHA(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

// WriteFile writes data to p (mode 0644), making its parent directories.
func WriteFile(tb testing.TB, p string, data []byte) {
	tb.Helper()
	Must(tb, os.MkdirAll(filepath.Dir(p), 0o755))
	Must(tb, os.WriteFile(p, data, 0o644))
}

// Must fails the test on a non-nil err.
func Must(tb testing.TB, err error) {
	tb.Helper()
	if err != nil {
		tb.Fatal(err)
	}
}

// OpenImage opens the image file at p for the rest of the test and
// returns it with its size.
func OpenImage(tb testing.TB, p string) (*os.File, int64) {
	tb.Helper()
	f, err := os.Open(p)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { f.Close() })
	st, err := f.Stat()
	if err != nil {
		tb.Fatal(err)
	}
	return f, st.Size()
}
