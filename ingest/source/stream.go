package source

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"time"
)

// Stream is a Source over a sequential, non-seekable reader of known size,
// such as an HTTP download of a raw image. It opens the reader lazily on
// the first ReadAt, so a backup can list many streamed disks up front and
// start each download only when its turn comes.
//
// The backup pipeline reads every byte of the disk exactly once, in
// batches that its workers take in ascending order. Stream keeps only a
// window of the stream in memory: a chunk is released as soon as all its
// bytes were read. A read beyond the window waits until the reads before
// it have released their chunks (a worker that took an earlier batch may
// simply not have been scheduled yet). If nothing at all is read for
// stallTimeout while a read waits, the earlier bytes will never be read
// (the pipeline stopped after an error) and the waiting read fails instead
// of hanging. A second read of released bytes is a usage error.
//
// The reader must deliver exactly Size bytes and then io.EOF; fewer bytes
// or more bytes is an error. A reader that verifies a checksum should
// return its error instead of io.EOF; Stream checks for the end of the
// stream before it serves the last bytes, so such an error fails the
// read that would complete the disk.
type Stream struct {
	size   int64
	window int64
	open   func() (io.ReadCloser, error)

	mu       sync.Mutex
	cond     *sync.Cond
	body     io.ReadCloser
	reading  bool     // a ReadAt is pulling from body without holding mu
	base     int64    // disk offset of chunks[0]
	chunks   [][]byte // retained chunks, contiguous from base
	consumed []int    // bytes of each retained chunk read so far
	filled   int64    // bytes taken from body
	ended    bool     // body returned io.EOF after exactly size bytes
	err      error
	progress uint64 // bumped by every completed read and pull
}

// stallTimeout bounds a wait for window room without any progress.
var stallTimeout = 60 * time.Second

// streamChunk is how much is read from the body at a time.
const streamChunk = 1 << 20

// NewStream returns a Source of size bytes read from the reader that open
// returns. window bounds the bytes held in memory; it must be at least the
// read spread of the pipeline (see ingest.StreamWindow).
func NewStream(size, window int64, open func() (io.ReadCloser, error)) *Stream {
	s := &Stream{size: size, window: max(window, 2*streamChunk), open: open}
	s.cond = sync.NewCond(&s.mu)
	return s
}

func (s *Stream) Size() int64    { return s.size }
func (s *Stream) Format() string { return "raw stream" }

// Extents reports the whole disk: a stream has no allocation map. Zero
// blocks still cost no storage; they are only read.
func (s *Stream) Extents(fn func(off, length int64) error) error {
	if s.size == 0 {
		return nil
	}
	return fn(0, s.size)
}

// Close stops the download and fails every pending and later read.
func (s *Stream) Close() error {
	s.mu.Lock()
	if s.err == nil {
		s.err = errors.New("stream closed")
	}
	body := s.body
	s.body = nil
	s.cond.Broadcast()
	s.mu.Unlock()
	if body != nil {
		return body.Close()
	}
	return nil
}

// ReadAt copies p from the window, pulling from the body as needed.
func (s *Stream) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off >= s.size {
		return 0, io.EOF
	}
	want := min(int64(len(p)), s.size-off)
	end := off + want
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		if s.err != nil {
			return 0, s.err
		}
		if off < s.base {
			return 0, fmt.Errorf("stream: read at %d of bytes already released (window starts at %d)", off, s.base)
		}
		if end-s.base > s.window+streamChunk && end > s.filled {
			if err := s.waitRoom(); err != nil {
				return 0, fmt.Errorf("stream: read at %d..%d beyond the read-ahead window of %d bytes from %d: %w", off, end, s.window, s.base, err)
			}
			continue
		}
		if end <= s.filled && (end < s.size || s.ended) {
			s.copyOut(p[:want], off)
			s.progress++
			s.cond.Broadcast()
			if want < int64(len(p)) {
				return int(want), io.EOF
			}
			return int(want), nil
		}
		if s.reading {
			s.cond.Wait()
			continue
		}
		s.pull()
	}
}

// waitRoom waits (mu held) for any progress; it fails after stallTimeout
// without progress.
func (s *Stream) waitRoom() error {
	start, seen := time.Now(), s.progress
	t := time.AfterFunc(stallTimeout, func() {
		s.mu.Lock()
		s.cond.Broadcast()
		s.mu.Unlock()
	})
	defer t.Stop()
	for s.progress == seen && s.err == nil {
		if time.Since(start) >= stallTimeout {
			return fmt.Errorf("no byte before it was read for %s (the reader stopped)", stallTimeout)
		}
		s.cond.Wait()
	}
	return s.err
}

// pull reads the next chunk (or checks the end of the body) with mu
// released; it is called with mu held and returns with mu held.
func (s *Stream) pull() {
	s.reading = true
	body, filled := s.body, s.filled
	s.mu.Unlock()
	var buf []byte
	var err error
	ended := false
	if body == nil {
		body, err = s.open()
		if err == nil {
			s.mu.Lock()
			if s.err != nil { // closed while opening
				err = s.err
				body.Close()
			} else {
				s.body = body
			}
			s.mu.Unlock()
		}
	}
	if err == nil {
		if filled < s.size {
			buf = make([]byte, min(streamChunk, s.size-filled))
			_, err = io.ReadFull(body, buf)
			if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
				err = fmt.Errorf("stream ended early, at byte %d of %d", filled, s.size)
			}
		} else {
			var one [1]byte
			n, rerr := io.ReadFull(body, one[:])
			switch {
			case n > 0:
				err = fmt.Errorf("stream is longer than the expected %d bytes", s.size)
			case errors.Is(rerr, io.EOF):
				ended = true
			default:
				err = rerr
			}
		}
	}
	s.mu.Lock()
	s.reading = false
	s.cond.Broadcast()
	if err != nil {
		if s.err == nil {
			s.err = fmt.Errorf("download: %w", err)
		}
		return
	}
	s.progress++
	if buf != nil {
		s.chunks = append(s.chunks, buf)
		s.consumed = append(s.consumed, 0)
		s.filled += int64(len(buf))
	}
	if ended {
		s.ended = true
	}
}

// copyOut copies [off, off+len(p)) from the retained chunks and releases
// the chunks at the front that have been read completely.
func (s *Stream) copyOut(p []byte, off int64) {
	i := int((off - s.base) / streamChunk)
	o := int((off - s.base) % streamChunk)
	for len(p) > 0 {
		n := copy(p, s.chunks[i][o:])
		s.consumed[i] += n
		p = p[n:]
		i, o = i+1, 0
	}
	for len(s.chunks) > 0 && s.consumed[0] >= len(s.chunks[0]) {
		s.base += int64(len(s.chunks[0]))
		s.chunks[0] = nil
		s.chunks, s.consumed = s.chunks[1:], s.consumed[1:]
	}
}
