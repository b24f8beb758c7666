package source

import (
	"bytes"
	"errors"
	"io"
	"math/rand"
	"strings"
	"sync"
	"testing"
	"time"
)

// pipelineRead reads s the way the backup pipeline does: batches of
// batch bytes handed out in order to workers that read concurrently.
func pipelineRead(s *Stream, size int64, batch int64, workers int) ([]byte, error) {
	out := make([]byte, size)
	jobs := make(chan int64, workers*2)
	var mu sync.Mutex
	var first error
	var wg sync.WaitGroup
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for off := range jobs {
				n := min(batch, size-off)
				if _, err := s.ReadAt(out[off:off+n], off); err != nil && !errors.Is(err, io.EOF) {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	for off := int64(0); off < size; off += batch {
		jobs <- off
	}
	close(jobs)
	wg.Wait()
	return out, first
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.New(rand.NewSource(int64(n))).Read(b)
	return b
}

type slowReader struct{ r io.Reader }

func (s slowReader) Read(p []byte) (int, error) {
	if len(p) > 7000 {
		p = p[:7000] // small reads, like a network body
	}
	return s.r.Read(p)
}

func TestStreamPipelineReadsEveryByte(t *testing.T) {
	data := randomBytes(9<<20 + 12345)
	opened := 0
	s := NewStream(int64(len(data)), 5<<20, func() (io.ReadCloser, error) {
		opened++
		return io.NopCloser(slowReader{bytes.NewReader(data)}), nil
	})
	if opened != 0 {
		t.Fatal("opened before the first read")
	}
	got, err := pipelineRead(s, int64(len(data)), 1<<20, 4)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("bytes differ")
	}
	if opened != 1 {
		t.Fatalf("opened %d times", opened)
	}
	if len(s.chunks) != 0 {
		t.Fatalf("%d chunks still held after every byte was read", len(s.chunks))
	}
	s.Close()
	if _, err := s.ReadAt(make([]byte, 1), 0); err == nil {
		t.Fatal("read after close succeeded")
	}
}

type failAtEOF struct{ r io.Reader }

func (f failAtEOF) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if errors.Is(err, io.EOF) {
		return n, errors.New("checksum mismatch")
	}
	return n, err
}

func TestStreamErrors(t *testing.T) {
	data := randomBytes(3 << 20)
	cases := map[string]struct {
		size int64
		body io.Reader
		want string
	}{
		"short":            {int64(len(data)) + 10, bytes.NewReader(data), "ended early"},
		"long":             {int64(len(data)) - 10, bytes.NewReader(data), "longer than"},
		"verifier at EOF":  {int64(len(data)), failAtEOF{bytes.NewReader(data)}, "checksum mismatch"},
		"error mid-stream": {int64(len(data)), io.MultiReader(bytes.NewReader(data[:1<<20]), iotestErr{}), "connection reset"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			s := NewStream(c.size, 8<<20, func() (io.ReadCloser, error) { return io.NopCloser(c.body), nil })
			_, err := pipelineRead(s, c.size, 256<<10, 3)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want %q", err, c.want)
			}
		})
	}
}

type iotestErr struct{}

func (iotestErr) Read([]byte) (int, error) { return 0, errors.New("connection reset by peer") }

func TestStreamWaitsForWindowRoomAndDetectsStall(t *testing.T) {
	data := randomBytes(8 << 20)
	s := NewStream(int64(len(data)), 2<<20, func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
	// A read far ahead waits until the bytes before it are read.
	got := make(chan error, 1)
	go func() {
		_, err := s.ReadAt(make([]byte, 100), 7<<20)
		got <- err
	}()
	for off := int64(0); off < 7<<20; off += 1 << 20 {
		if _, err := s.ReadAt(make([]byte, 1<<20), off); err != nil {
			t.Fatal(err)
		}
	}
	if err := <-got; err != nil {
		t.Fatalf("read ahead: %v", err)
	}
	if _, err := s.ReadAt(make([]byte, 10), 0); err == nil || !strings.Contains(err.Error(), "released") {
		t.Fatalf("re-read of released bytes: err = %v", err)
	}
	// Nobody reads the earlier bytes: the waiting read fails, not hangs.
	old := stallTimeout
	stallTimeout = 100 * time.Millisecond
	defer func() { stallTimeout = old }()
	s2 := NewStream(int64(len(data)), 2<<20, func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
	if _, err := s2.ReadAt(make([]byte, 100), 7<<20); err == nil || !strings.Contains(err.Error(), "stopped") {
		t.Fatalf("stalled read: err = %v", err)
	}
}
