package fstest

import (
	"io"
	"testing"
	"time"
)

// Extent is a byte range of an image: where a file's data lies.
type Extent struct{ Off, Len int64 }

// ReadRatio is a reader benchmark with its reference run side by side:
// each iteration reads f's first size bytes in 1 MiB ReadAt calls, then
// the same extents straight from raw, the image the reader reads. It
// reports reader time / raw time as the metric "ratio".
func ReadRatio(b *testing.B, f io.ReaderAt, size int64, raw io.ReaderAt, extents []Extent) {
	b.Helper()
	buf := make([]byte, 1<<20)
	var tReader, tRaw time.Duration
	b.SetBytes(size)
	b.ResetTimer()
	for range b.N {
		t0 := time.Now()
		for off := int64(0); off < size; off += int64(len(buf)) {
			if _, err := f.ReadAt(buf[:min(int64(len(buf)), size-off)], off); err != nil {
				b.Fatal(err)
			}
		}
		tReader += time.Since(t0)
		t0 = time.Now()
		for _, x := range extents {
			for off, end := x.Off, x.Off+x.Len; off < end; off += int64(len(buf)) {
				if _, err := raw.ReadAt(buf[:min(int64(len(buf)), end-off)], off); err != nil {
					b.Fatal(err)
				}
			}
		}
		tRaw += time.Since(t0)
	}
	b.ReportMetric(float64(tReader)/float64(tRaw), "ratio")
}
