package nbd

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
)

// TestHostileBlockStatus: malformed block status replies are protocol
// errors.
func TestHostileBlockStatus(t *testing.T) {
	cases := []struct {
		name  string
		reply func(w *fakeConn, r fakeReq)
	}{
		{"extents longer than asked", func(w *fakeConn, r fakeReq) {
			w.chunk(replyFlagDone, chunkBlockStatus, r.handle, statusPayload(1, r.length, 0, 1, 0))
		}},
		{"zero-length extent", func(w *fakeConn, r fakeReq) {
			w.chunk(replyFlagDone, chunkBlockStatus, r.handle, statusPayload(1, 0, 0))
		}},
		{"no extents", func(w *fakeConn, r fakeReq) {
			w.chunk(replyFlagDone, chunkBlockStatus, r.handle, statusPayload(1))
		}},
		{"ragged payload", func(w *fakeConn, r fakeReq) {
			w.chunk(replyFlagDone, chunkBlockStatus, r.handle, append(statusPayload(1, 512, 0), 1, 2, 3))
		}},
		{"unknown context id", func(w *fakeConn, r fakeReq) {
			w.chunk(replyFlagDone, chunkBlockStatus, r.handle, statusPayload(9, 512, 0))
		}},
		{"same context twice", func(w *fakeConn, r fakeReq) {
			w.chunk(0, chunkBlockStatus, r.handle, statusPayload(1, 512, 0))
			w.chunk(replyFlagDone, chunkBlockStatus, r.handle, statusPayload(1, 512, 0))
		}},
		{"done without the context asked", func(w *fakeConn, r fakeReq) {
			w.chunk(replyFlagDone, chunkBlockStatus, r.handle, statusPayload(2, 512, 0))
		}},
		{"data chunk to block status", func(w *fakeConn, r fakeReq) {
			w.chunk(replyFlagDone, chunkOffsetData, r.handle, dataPayload(r.off, []byte{1}))
		}},
		{"simple success", func(w *fakeConn, r fakeReq) {
			w.simple(r.handle, 0, nil)
		}},
		{"half a million extents", func(w *fakeConn, r fakeReq) {
			desc := make([]uint32, 0, 2*(r.length+1))
			for range r.length + 1 {
				desc = append(desc, 1, 0)
			}
			w.chunk(replyFlagDone, chunkBlockStatus, r.handle, statusPayload(1, desc...))
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := &fakeServer{disk: patterned(1 << 20), contexts: []string{ContextAllocation, "qemu:dirty-bitmap:b"}}
			s.handle = tc.reply
			s.start(t)
			c := s.dial(t, &Options{MetaContexts: s.contexts})
			_, err := c.BlockStatus(context.Background(), 0, 512<<10, ContextAllocation)
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("got %v, want a protocol error", err)
			}
		})
	}
}

// TestReqOneViolated: more than one extent in reply to a single-extent
// request is a protocol error.
func TestReqOneViolated(t *testing.T) {
	s := &fakeServer{disk: patterned(1 << 20), contexts: []string{ContextAllocation}}
	s.handle = func(w *fakeConn, r fakeReq) {
		w.chunk(replyFlagDone, chunkBlockStatus, r.handle, statusPayload(1, 512, 0, 512, 1))
	}
	s.start(t)
	c := s.dial(t, &Options{MetaContexts: s.contexts})
	if _, err := c.BlockStatus(context.Background(), 0, 4096, ContextAllocation); err != nil {
		t.Fatalf("two extents to a plain request: %v", err)
	}
	if _, err := c.BlockStatusOne(context.Background(), 0, 4096, ContextAllocation); !errors.Is(err, ErrProtocol) {
		t.Fatalf("two extents to a REQ_ONE request: %v", err)
	}
	if r := s.received(); r[len(r)-1].flags != cmdFlagReqOne {
		t.Fatalf("request flags %#x", r[len(r)-1].flags)
	}
}

// TestExtentsProgress: a server that answers a little at a time is walked
// to the end, its pieces merged; one that answers nothing usable past the
// offset is an error, not a loop.
func TestExtentsProgress(t *testing.T) {
	s := &fakeServer{disk: patterned(1 << 20), contexts: []string{ContextAllocation}, blockSizes: []uint32{512, 4096, 1 << 20}}
	var calls atomic.Int32
	s.handle = func(w *fakeConn, r fakeReq) {
		calls.Add(1)
		flags := uint32(r.off/8192) & 1 // alternate every 8 KiB, answered 4 KiB at a time
		w.chunk(replyFlagDone, chunkBlockStatus, r.handle, statusPayload(1, min(4096, r.length), flags))
	}
	s.start(t)
	c := s.dial(t, &Options{MetaContexts: s.contexts})
	ext := collect(t, c, 100, 64<<10, ContextAllocation)
	if len(ext) != 9 || ext[0].Offset != 100 || ext[0].Length != 8192-100 || ext[8].End() != 100+64<<10 || calls.Load() != 17 {
		t.Fatalf("extents %v after %d calls", ext, calls.Load())
	}
	for i, e := range ext[1:] {
		if e.Offset != ext[i].End() || e.Flags == ext[i].Flags {
			t.Fatalf("extents %v not consecutive and merged", ext)
		}
	}

	s2 := &fakeServer{disk: patterned(1 << 20), contexts: []string{ContextAllocation}, blockSizes: []uint32{512, 4096, 1 << 20}}
	s2.handle = func(w *fakeConn, r fakeReq) {
		w.chunk(replyFlagDone, chunkBlockStatus, r.handle, statusPayload(1, 50, 0)) // ends before offset 100
	}
	s2.start(t)
	c2 := s2.dial(t, &Options{MetaContexts: s2.contexts})
	err := c2.Extents(context.Background(), 100, 4096, ContextAllocation, func(Extent) error { return nil })
	if !errors.Is(err, ErrProtocol) {
		t.Fatalf("a server that makes no progress: %v", err)
	}
}
