package lz4enc

import (
	"bytes"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/pierrec/lz4/v4"
)

// roundTrip compresses src into a Bound-sized buffer, checks that pierrec's
// decoder gives src back, and returns the block length.
func roundTrip(t testing.TB, e *Encoder, src []byte) int {
	t.Helper()
	dst := make([]byte, Bound(len(src)))
	n := e.Compress(src, dst)
	if n <= 0 || n > len(dst) {
		t.Fatalf("%d bytes: Compress returned %d with a Bound-sized (%d) destination", len(src), n, len(dst))
	}
	got := make([]byte, len(src)+1) // one spare byte: the decoder must not claim it
	m, err := lz4.UncompressBlock(dst[:n], got)
	if err != nil || m != len(src) || !bytes.Equal(got[:m], src) {
		t.Fatalf("%d bytes: decoded %d bytes, err %v, equal %v", len(src), m, err, bytes.Equal(got[:min(m, len(src))], src))
	}
	return n
}

// realBlocks returns up to max 64 KiB blocks cut from real files: the Go
// distribution's sources and binaries, present wherever the tests run.
func realBlocks(t testing.TB, max int) [][]byte {
	t.Helper()
	var blocks [][]byte
	root := runtime.GOROOT()
	for _, dir := range []string{"src/net", "src/runtime", "pkg/tool", "bin", "src/crypto", "lib", "src/cmd/compile"} {
		filepath.WalkDir(filepath.Join(root, dir), func(p string, d fs.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() || len(blocks) >= max {
				return nil
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return nil
			}
			for i := 0; i < len(b) && len(blocks) < max; i += MaxInput {
				blocks = append(blocks, b[i:min(i+MaxInput, len(b))])
			}
			return nil
		})
	}
	if len(blocks) < 100 {
		t.Fatalf("found only %d blocks of real data under %s", len(blocks), root)
	}
	return blocks
}

func TestRoundTripEdgeSizes(t *testing.T) {
	var e Encoder
	rnd := rand.New(rand.NewPCG(1, 2))
	for n := 0; n <= 300; n++ {
		rep := bytes.Repeat([]byte{'a'}, n)
		roundTrip(t, &e, rep)
		rndb := make([]byte, n)
		for i := range rndb {
			rndb[i] = byte(rnd.Uint32())
		}
		roundTrip(t, &e, rndb)
		text := bytes.Repeat([]byte("abcdefghij0123"), n/14+1)[:n]
		roundTrip(t, &e, text)
	}
	for _, n := range []int{4095, 4096, 4097, 65535, MaxInput} {
		roundTrip(t, &e, make([]byte, n))
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rnd.Uint32())
		}
		if got := roundTrip(t, &e, b); got < n {
			t.Errorf("random %d bytes compressed to %d", n, got)
		}
		for i := range b {
			b[i] = byte(i % 251)
		}
		roundTrip(t, &e, b)
	}
}

func TestEmptyAndTiny(t *testing.T) {
	var e Encoder
	dst := make([]byte, 16)
	if n := e.Compress(nil, dst); n != 1 || dst[0] != 0 {
		t.Fatalf("empty input: %d bytes % x, want one zero token", n, dst[:n])
	}
	// Inputs under 13 bytes are a single literal run.
	if n := e.Compress([]byte("aaaaaaaaaaaa"), dst); n != 13 || dst[0] != 12<<4 {
		t.Fatalf("12 bytes: %d bytes % x", n, dst[:n])
	}
}

func TestHighlyRepetitive(t *testing.T) {
	var e Encoder
	src := make([]byte, MaxInput)
	if n := roundTrip(t, &e, src); n > 300 {
		t.Errorf("64 KiB of zeros compressed to %d bytes", n)
	}
	for i := range src {
		src[i] = "xyz"[i%3]
	}
	if n := roundTrip(t, &e, src); n > 300 {
		t.Errorf("64 KiB of xyz compressed to %d bytes", n)
	}
}

func TestShortDestinationGivesUp(t *testing.T) {
	var e Encoder
	for _, blk := range realBlocks(t, 300) {
		full := roundTrip(t, &e, blk)
		for _, limit := range []int{0, 1, full / 2, full - 1, full, full + 1, len(blk) - len(blk)/32} {
			if limit < 0 {
				continue
			}
			// A guard region after the limit must stay untouched.
			buf := make([]byte, limit+64)
			for i := range buf {
				buf[i] = 0xA5
			}
			n := e.Compress(blk, buf[:limit])
			if n > limit {
				t.Fatalf("returned %d for a %d-byte destination", n, limit)
			}
			for _, c := range buf[limit:] {
				if c != 0xA5 {
					t.Fatalf("wrote past a %d-byte destination", limit)
				}
			}
			if n > 0 {
				got := make([]byte, len(blk))
				if m, err := lz4.UncompressBlock(buf[:n], got); err != nil || m != len(blk) || !bytes.Equal(got, blk) {
					t.Fatalf("limited output does not decode: %d %v", m, err)
				}
			}
		}
	}
}

func TestPanicsOnLargeInput(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("no panic for an input over MaxInput")
		}
	}()
	var e Encoder
	e.Compress(make([]byte, MaxInput+1), make([]byte, Bound(MaxInput+1)))
}

// TestRatioAgainstPierrec: on real data the output is at most a few
// percent larger than pierrec's (the encoder it replaces).
func TestRatioAgainstPierrec(t *testing.T) {
	var e Encoder
	var c lz4.Compressor
	var ours, theirs, raw int
	dst := make([]byte, Bound(MaxInput))
	for _, blk := range realBlocks(t, 2000) {
		ours += roundTrip(t, &e, blk)
		n, err := c.CompressBlock(blk, dst)
		if err != nil || n == 0 {
			n = len(blk)
		}
		theirs += n
		raw += len(blk)
	}
	t.Logf("%d bytes: ours %d (%.3f), pierrec %d (%.3f)", raw, ours, float64(ours)/float64(raw), theirs, float64(theirs)/float64(raw))
	if float64(ours) > 1.05*float64(theirs) {
		t.Errorf("output %.1f%% larger than pierrec's", 100*(float64(ours)/float64(theirs)-1))
	}
}

func FuzzRoundTrip(f *testing.F) {
	f.Add([]byte(""), 0)
	f.Add([]byte("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"), 5)
	f.Add(bytes.Repeat([]byte("hello world, hello lz4 "), 300), 100)
	f.Fuzz(func(t *testing.T, src []byte, limit int) {
		if len(src) > MaxInput {
			src = src[:MaxInput]
		}
		var e Encoder
		roundTrip(t, &e, src)
		// A short destination: either a valid block that fits, or 0.
		limit = max(0, min(limit, Bound(len(src))))
		buf := make([]byte, limit+8)
		n := e.Compress(src, buf[:limit])
		if n < 0 || n > limit || !bytes.Equal(buf[limit:], make([]byte, 8)) {
			t.Fatalf("limit %d: returned %d or wrote past the end", limit, n)
		}
		if n > 0 {
			got := make([]byte, len(src))
			if m, err := lz4.UncompressBlock(buf[:n], got); err != nil || m != len(src) || !bytes.Equal(got, src) {
				t.Fatalf("limit %d: block does not decode: %d %v", limit, m, err)
			}
		}
	})
}

// benchBlocks returns real 64 KiB blocks: from the disk image named by
// LZ4ENC_BENCH_IMAGE (every 16th non-zero block, up to 4000) if set, else
// from the Go distribution.
func benchBlocks(b *testing.B) ([][]byte, int64) {
	var blocks [][]byte
	if p := os.Getenv("LZ4ENC_BENCH_IMAGE"); p != "" {
		blocks = imageBlocks(b, p, 16, 4000)
	} else {
		blocks = realBlocks(b, 1000)
	}
	var total int64
	for _, blk := range blocks {
		total += int64(len(blk))
	}
	return blocks, total
}

// BenchmarkEncoder and BenchmarkPierrec compress the same real 64 KiB
// blocks with the same early give-up limit as repo's blob encoder; compare
// their MB/s side by side.
func BenchmarkEncoder(b *testing.B) {
	blocks, total := benchBlocks(b)
	var e Encoder
	dst := make([]byte, Bound(MaxInput))
	b.SetBytes(total)
	b.ResetTimer()
	for range b.N {
		for _, blk := range blocks {
			e.Compress(blk, dst[:len(blk)-len(blk)/32])
		}
	}
}

func BenchmarkPierrec(b *testing.B) {
	blocks, total := benchBlocks(b)
	var c lz4.Compressor
	dst := make([]byte, Bound(MaxInput))
	b.SetBytes(total)
	b.ResetTimer()
	for range b.N {
		for _, blk := range blocks {
			c.CompressBlock(blk, dst[:len(blk)-len(blk)/32])
		}
	}
}

// BenchmarkSideBySide alternates the two encoders over the same real blocks
// and reports the best pass of each in MB per CPU-second of this thread, and
// their ratio: figures that hold on a shared, loaded machine.
func BenchmarkSideBySide(b *testing.B) {
	blocks, total := benchBlocks(b)
	var e Encoder
	var c lz4.Compressor
	dst := make([]byte, Bound(MaxInput))
	best := [2]time.Duration{1 << 62, 1 << 62}
	runtime.LockOSThread() // threadCPU measures this thread only
	defer runtime.UnlockOSThread()
	b.ResetTimer()
	for range b.N {
		for k := range 2 {
			start := threadCPU(b)
			for _, blk := range blocks {
				if k == 0 {
					e.Compress(blk, dst[:len(blk)-len(blk)/32])
				} else {
					c.CompressBlock(blk, dst[:len(blk)-len(blk)/32])
				}
			}
			best[k] = min(best[k], threadCPU(b)-start)
		}
	}
	b.ReportMetric(float64(total)/best[0].Seconds()/1e6, "ours-MB/s")
	b.ReportMetric(float64(total)/best[1].Seconds()/1e6, "pierrec-MB/s")
	b.ReportMetric(best[1].Seconds()/best[0].Seconds(), "speedup")
}

func imageBlocks(b *testing.B, path string, stride, max int) [][]byte {
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	var blocks [][]byte
	zero := make([]byte, MaxInput)
	seen := 0
	for off := int64(0); len(blocks) < max; off += MaxInput {
		blk := make([]byte, MaxInput)
		n, _ := f.ReadAt(blk, off)
		if n < MaxInput {
			break
		}
		if bytes.Equal(blk, zero) {
			continue
		}
		if seen++; seen%stride == 0 {
			blocks = append(blocks, blk)
		}
	}
	return blocks
}

func threadCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_THREAD, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
