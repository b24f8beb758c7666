package nbd

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestReadReassembly: chunks in any order, holes zeroed over whatever the
// caller's buffer held.
func TestReadReassembly(t *testing.T) {
	s := &fakeServer{disk: patterned(1 << 20)}
	s.handle = func(w *fakeConn, r fakeReq) {
		half := uint64(r.length / 2)
		w.chunk(0, chunkOffsetHole, r.handle, holePayload(r.off+half, uint32(r.length/4)))
		q := r.off + half + uint64(r.length/4)
		w.chunk(0, chunkOffsetData, r.handle, dataPayload(q, s.disk[q:r.off+uint64(r.length)]))
		w.chunk(0, chunkOffsetData, r.handle, dataPayload(r.off, s.disk[r.off:r.off+half]))
		w.chunk(replyFlagDone, chunkNone, r.handle, nil)
	}
	s.start(t)
	c := s.dial(t, &Options{RequestSize: 64 << 10})
	buf := bytes.Repeat([]byte{0xee}, 300<<10)
	if _, err := c.ReadAt(buf, 1000); err != nil {
		t.Fatal(err)
	}
	want := append([]byte(nil), s.disk[1000:1000+len(buf)]...)
	for off := 0; off < len(buf); off += 64 << 10 { // each request's third quarter is a hole
		n := min(64<<10, len(buf)-off)
		clear(want[off+n/2 : off+n/2+n/4])
	}
	if i := firstDiff(buf, want); i < len(buf) {
		t.Fatalf("byte %d is %#x, want %#x", i, buf[i], want[i])
	}
}

// TestHostileReadReplies: every malformed reply to a read is an error,
// never a panic or data; protocol violations drop the connection.
func TestHostileReadReplies(t *testing.T) {
	big := uint64(1) << 63
	cases := []struct {
		name  string
		reply func(w *fakeConn, r fakeReq)
		proto bool // ErrProtocol (connection dropped) rather than ServerError
	}{
		{"data larger than asked", func(w *fakeConn, r fakeReq) {
			w.chunk(replyFlagDone, chunkOffsetData, r.handle, dataPayload(r.off, make([]byte, r.length+1)))
		}, true},
		{"data before the request", func(w *fakeConn, r fakeReq) {
			w.chunk(replyFlagDone, chunkOffsetData, r.handle, dataPayload(r.off-1, make([]byte, r.length)))
		}, true},
		{"data offset overflows", func(w *fakeConn, r fakeReq) {
			w.chunk(replyFlagDone, chunkOffsetData, r.handle, dataPayload(^uint64(0)-2, make([]byte, 16)))
		}, true},
		{"data chunk of 8 bytes", func(w *fakeConn, r fakeReq) {
			w.chunk(replyFlagDone, chunkOffsetData, r.handle, dataPayload(r.off, nil))
		}, true},
		{"4 GiB data chunk announced", func(w *fakeConn, r fakeReq) {
			h := chunkBytes(replyFlagDone, chunkOffsetData, r.handle, nil)
			copy(h[16:], []byte{0xff, 0xff, 0xff, 0xff})
			w.raw(h)
		}, true},
		{"hole past the request", func(w *fakeConn, r fakeReq) {
			w.chunk(replyFlagDone, chunkOffsetHole, r.handle, holePayload(r.off+1, r.length))
		}, true},
		{"hole of size 0", func(w *fakeConn, r fakeReq) {
			w.chunk(replyFlagDone, chunkOffsetHole, r.handle, holePayload(r.off, 0))
		}, true},
		{"hole chunk of wrong length", func(w *fakeConn, r fakeReq) {
			w.chunk(replyFlagDone, chunkOffsetHole, r.handle, append(holePayload(r.off, r.length), 0))
		}, true},
		{"overlapping chunks", func(w *fakeConn, r fakeReq) {
			w.chunk(0, chunkOffsetData, r.handle, dataPayload(r.off, make([]byte, r.length/2+1)))
			w.chunk(replyFlagDone, chunkOffsetHole, r.handle, holePayload(r.off+uint64(r.length/2), r.length/2))
		}, true},
		{"done before everything was sent", func(w *fakeConn, r fakeReq) {
			w.chunk(replyFlagDone, chunkOffsetData, r.handle, dataPayload(r.off, make([]byte, r.length-1)))
		}, true},
		{"NONE without done", func(w *fakeConn, r fakeReq) {
			w.chunk(0, chunkNone, r.handle, nil)
		}, true},
		{"NONE with payload", func(w *fakeConn, r fakeReq) {
			w.chunk(replyFlagDone, chunkNone, r.handle, []byte{0})
		}, true},
		{"unknown chunk type", func(w *fakeConn, r fakeReq) {
			w.chunk(replyFlagDone, 77, r.handle, nil)
		}, true},
		{"block status chunk to a read", func(w *fakeConn, r fakeReq) {
			w.chunk(replyFlagDone, chunkBlockStatus, r.handle, statusPayload(1, r.length, 0))
		}, true},
		{"reply to a handle never sent", func(w *fakeConn, r fakeReq) {
			w.chunk(replyFlagDone, chunkNone, r.handle+1000, nil)
		}, true},
		{"bad magic", func(w *fakeConn, r fakeReq) {
			w.raw(bytes.Repeat([]byte{0x42}, 32))
		}, true},
		{"simple reply to a structured read", func(w *fakeConn, r fakeReq) {
			w.simple(r.handle, 0, make([]byte, r.length))
		}, true},
		{"error message longer than the chunk", func(w *fakeConn, r fakeReq) {
			p := errPayload(5, "boom", nil)
			w.chunk(replyFlagDone, chunkError, r.handle, p[:len(p)-1])
		}, true},
		{"error chunk of 4 GiB", func(w *fakeConn, r fakeReq) {
			h := chunkBytes(replyFlagDone, chunkError, r.handle, nil)
			copy(h[16:], []byte{0xff, 0xff, 0xff, 0xff})
			w.raw(h)
		}, true},
		{"error value 0", func(w *fakeConn, r fakeReq) {
			w.chunk(replyFlagDone, chunkError, r.handle, errPayload(0, "", nil))
		}, true},
		{"error offset outside the request", func(w *fakeConn, r fakeReq) {
			off := r.off + uint64(r.length)
			w.chunk(replyFlagDone, chunkErrorOffset, r.handle, errPayload(5, "", &off))
		}, true},
		{"error offset chunk too short", func(w *fakeConn, r fakeReq) {
			w.chunk(replyFlagDone, chunkErrorOffset, r.handle, errPayload(5, "x", nil))
		}, true},
		{"server hangs up mid-chunk", func(w *fakeConn, r fakeReq) {
			w.raw(chunkBytes(replyFlagDone, chunkOffsetData, r.handle, dataPayload(r.off, make([]byte, r.length)))[:100])
			w.c.Close()
		}, true},
		{"unknown error chunk type", func(w *fakeConn, r fakeReq) {
			w.chunk(replyFlagDone, chunkErrBit+99, r.handle, errPayload(22, "what", nil))
		}, false},
		{"error chunk", func(w *fakeConn, r fakeReq) {
			w.chunk(replyFlagDone, chunkError, r.handle, errPayload(5, "disk on fire", nil))
		}, false},
		{"error after data", func(w *fakeConn, r fakeReq) {
			w.chunk(0, chunkOffsetData, r.handle, dataPayload(r.off, make([]byte, r.length)))
			off := r.off + 5
			w.chunk(replyFlagDone, chunkErrorOffset, r.handle, errPayload(5, "late", &off))
		}, false},
		{"huge offset", func(w *fakeConn, r fakeReq) {
			w.chunk(replyFlagDone, chunkOffsetHole, r.handle, holePayload(big, r.length))
		}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := &fakeServer{disk: patterned(1 << 20)}
			var n atomic.Int32
			s.handle = func(w *fakeConn, r fakeReq) {
				if n.Add(1) == 1 {
					tc.reply(w, r)
				} else {
					s.good(w, r)
				}
			}
			s.start(t)
			c := s.dial(t, &Options{Timeout: 5 * time.Second})
			buf := make([]byte, 8192)
			_, err := c.ReadAt(buf, 4096)
			var se *ServerError
			switch {
			case err == nil:
				t.Fatal("hostile reply accepted")
			case tc.proto && !errors.Is(err, ErrProtocol) && tc.name != "server hangs up mid-chunk":
				t.Fatalf("got %v, want a protocol error", err)
			case !tc.proto && !errors.As(err, &se):
				t.Fatalf("got %v, want a ServerError", err)
			}
			t.Logf("%v", err)
			_, err = c.ReadAt(buf, 4096)
			if tc.proto && err == nil {
				t.Fatal("the connection is still used after a protocol violation")
			}
			if !tc.proto && (err != nil || !bytes.Equal(buf, s.disk[4096:4096+8192])) {
				t.Fatalf("the connection is not usable after a server error: %v", err)
			}
		})
	}
}

// TestDuplicateDone: a chunk after the final one is a protocol error.
func TestDuplicateDone(t *testing.T) {
	s := &fakeServer{disk: patterned(1 << 20)}
	s.handle = func(w *fakeConn, r fakeReq) {
		s.good(w, r)
		w.chunk(replyFlagDone, chunkNone, r.handle, nil)
	}
	s.start(t)
	c := s.dial(t, nil)
	buf := make([]byte, 4096)
	if _, err := c.ReadAt(buf, 0); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := c.ReadAt(buf, 0)
		if errors.Is(err, ErrProtocol) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("second DONE not detected: %v", err)
		}
	}
}

func TestServerErrorFields(t *testing.T) {
	s := &fakeServer{disk: patterned(1 << 20)}
	s.handle = func(w *fakeConn, r fakeReq) {
		off := r.off + 100
		w.chunk(replyFlagDone, chunkErrorOffset, r.handle, errPayload(28, "no space\x00\nleft", &off))
	}
	s.start(t)
	c := s.dial(t, nil)
	_, err := c.ReadAt(make([]byte, 512), 0)
	var se *ServerError
	if !errors.As(err, &se) || se.Errno != 28 || !se.HasOffset || se.Offset != 100 || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("got %#v", err)
	}
	if msg := err.Error(); !strings.Contains(msg, "ENOSPC (28)") || !strings.Contains(msg, "at offset 100") || !strings.Contains(msg, "no space") || strings.ContainsAny(msg, "\x00\n") {
		t.Fatalf("message %q", msg)
	}
}

// TestBlockSizeConstraints: every request is aligned to the minimum block
// size and no larger than the maximum, whatever the caller asks.
func TestBlockSizeConstraints(t *testing.T) {
	s := &fakeServer{disk: patterned(1 << 20), blockSizes: []uint32{512, 4096, 64 << 10}}
	s.start(t)
	c := s.dial(t, &Options{RequestSize: 1 << 20})
	for _, rg := range []struct{ off, n int }{{1, 1}, {511, 2}, {1000, 200000}, {0, 1 << 20}, {(1 << 20) - 3, 3}, {4096, 8192}} {
		buf := make([]byte, rg.n)
		if _, err := c.ReadAt(buf, int64(rg.off)); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf, s.disk[rg.off:rg.off+rg.n]) {
			t.Fatalf("ReadAt(%d, %d) wrong bytes", rg.n, rg.off)
		}
	}
	for _, r := range s.received() {
		if r.cmd == cmdRead && (r.off%512 != 0 || r.length%512 != 0 || r.length > 64<<10 || r.length == 0) {
			t.Fatalf("request [%d, +%d) breaks the block size constraints", r.off, r.length)
		}
	}
	n, err := c.ReadAt(make([]byte, 10), (1<<20)-4)
	if n != 4 || err == nil {
		t.Fatalf("read across the end: %d, %v", n, err)
	}

	bad := &fakeServer{disk: patterned(4096), blockSizes: []uint32{3, 4096, 1 << 20}}
	bad.start(t)
	if _, err := bad.tryDial(nil); !errors.Is(err, ErrProtocol) {
		t.Fatalf("minimum block size 3 accepted: %v", err)
	}
}

// TestInFlightBound: a server that answers only when it holds many requests
// never sees more than MaxInFlight at once, and answers in reverse order
// reach the right callers.
func TestInFlightBound(t *testing.T) {
	const limit = 5
	s := &fakeServer{disk: patterned(4 << 20)}
	var mu sync.Mutex
	var held []fakeReq
	var peak int
	s.handle = func(w *fakeConn, r fakeReq) {
		mu.Lock()
		defer mu.Unlock()
		held = append(held, r)
		peak = max(peak, len(held))
		if len(held) == limit || r.off+uint64(r.length) == 4<<20 {
			for i := len(held) - 1; i >= 0; i-- {
				s.good(w, held[i])
			}
			held = held[:0]
		}
	}
	s.start(t)
	c := s.dial(t, &Options{MaxInFlight: limit, RequestSize: 4096})
	buf := make([]byte, 4<<20)
	if _, err := c.ReadAt(buf, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf, s.disk) || peak != limit {
		t.Fatalf("equal %v, peak in flight %d (limit %d)", bytes.Equal(buf, s.disk), peak, limit)
	}
}

// TestCancelAbandonsRequest: a cancelled read returns at once; its late
// reply is discarded and does not touch the caller's buffer, and the
// connection goes on.
func TestCancelAbandonsRequest(t *testing.T) {
	s := &fakeServer{disk: patterned(1 << 20)}
	release := make(chan struct{})
	var first atomic.Bool
	s.handle = func(w *fakeConn, r fakeReq) {
		if first.CompareAndSwap(false, true) {
			go func() { <-release; s.good(w, r) }()
			return
		}
		s.good(w, r)
	}
	s.start(t)
	c := s.dial(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	buf := make([]byte, 4096)
	if _, err := c.ReadAtContext(ctx, buf, 0); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("cancelled read: %v", err)
	}
	close(release)
	other := make([]byte, 4096)
	if _, err := c.ReadAt(other, 8192); err != nil || !bytes.Equal(other, s.disk[8192:8192+4096]) {
		t.Fatalf("read after a cancelled one: %v", err)
	}
	if !bytes.Equal(buf, make([]byte, 4096)) {
		t.Fatal("the abandoned reply was written into the caller's buffer")
	}
}

func TestFallbacks(t *testing.T) {
	t.Run("export name", func(t *testing.T) {
		s := &fakeServer{disk: patterned(64 << 10), noGo: true}
		s.start(t)
		c := s.dial(t, nil)
		buf := make([]byte, 1000)
		if _, err := c.ReadAt(buf, 3); err != nil || !bytes.Equal(buf, s.disk[3:1003]) {
			t.Fatalf("read after NBD_OPT_EXPORT_NAME: %v", err)
		}
	})
	t.Run("no structured replies", func(t *testing.T) {
		s := &fakeServer{disk: patterned(64 << 10), noStruct: true, contexts: []string{ContextAllocation}}
		s.start(t)
		c := s.dial(t, &Options{MetaContexts: s.contexts})
		if c.StructuredReplies() || c.HasMetaContext(ContextAllocation) {
			t.Fatal("structured replies or contexts without the server's consent")
		}
		buf := make([]byte, 1000)
		if _, err := c.ReadAt(buf, 3); err != nil || !bytes.Equal(buf, s.disk[3:1003]) {
			t.Fatalf("read with simple replies: %v", err)
		}
	})
}

func TestCloseDisconnects(t *testing.T) {
	s := &fakeServer{disk: patterned(64 << 10)}
	s.start(t)
	c := s.dial(t, nil)
	if _, err := c.ReadAt(make([]byte, 10), 0); err != nil {
		t.Fatal(err)
	}
	c.Close()
	c.Close()
	if _, err := c.ReadAt(make([]byte, 10), 0); !errors.Is(err, ErrClosed) {
		t.Fatalf("read after Close: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		r := s.received()
		if len(r) > 0 && r[len(r)-1].cmd == cmdDisc {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("server never got NBD_CMD_DISC: %v", r)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestDialStalledServer: a server that accepts and says nothing fails
// Dial at the context's deadline, or after Options.Timeout.
func TestDialStalledServer(t *testing.T) {
	dir, err := os.MkdirTemp("", "nbdstall")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	addr := filepath.Join(dir, "s.sock")
	l, err := net.Listen("unix", addr)
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan []net.Conn)
	defer func() {
		l.Close()
		for _, c := range <-accepted {
			c.Close()
		}
	}()
	go func() {
		var conns []net.Conn
		for {
			c, err := l.Accept()
			if err != nil {
				accepted <- conns
				return
			}
			conns = append(conns, c) // held open, silent
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	t0 := time.Now()
	if _, err := Dial(ctx, "unix", addr, "disk", nil); !errors.Is(err, context.DeadlineExceeded) || time.Since(t0) > 3*time.Second {
		t.Fatalf("Dial with a deadline: %v after %v", err, time.Since(t0))
	}
	t0 = time.Now()
	if _, err := Dial(context.Background(), "unix", addr, "disk", &Options{Timeout: 200 * time.Millisecond}); !errors.Is(err, os.ErrDeadlineExceeded) || time.Since(t0) > 3*time.Second {
		t.Fatalf("Dial with a timeout: %v after %v", err, time.Since(t0))
	}
}

// TestCloseWithReadsInFlight: Close fails outstanding reads at once with
// ErrClosed, and the client's goroutine is gone afterwards.
func TestCloseWithReadsInFlight(t *testing.T) {
	s := &fakeServer{disk: patterned(1 << 20)}
	s.handle = func(*fakeConn, fakeReq) {} // never answers
	s.start(t)
	before := runtime.NumGoroutine()
	c, err := s.tryDial(nil)
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 4)
	for i := range 4 {
		go func() {
			_, err := c.ReadAt(make([]byte, 3<<20), int64(i)<<18)
			errs <- err
		}()
	}
	time.Sleep(50 * time.Millisecond)
	c.Close()
	for range 4 {
		select {
		case err := <-errs:
			if !errors.Is(err, ErrClosed) {
				t.Fatalf("read cut off by Close: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("a read outlived Close")
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before+1 { // +1: the fake server's connection
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines before Dial, %d after Close", before, runtime.NumGoroutine())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
