package nbd

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// fakeServer is a scriptable NBD server for fault injection: a correct
// handshake, then every request goes to handle, which writes whatever
// replies (good or hostile) the test wants.
type fakeServer struct {
	disk       []byte
	contexts   []string // supported metadata contexts; IDs are index+1
	blockSizes []uint32 // min, preferred, max; nil: none advertised
	noGo       bool     // answer NBD_OPT_GO with NBD_REP_ERR_UNSUP
	noStruct   bool     // refuse structured replies
	handle     func(w *fakeConn, r fakeReq)

	addr string
	mu   sync.Mutex
	reqs []fakeReq // every request received, in order
}

type fakeReq struct {
	flags, cmd uint16
	handle     uint64
	off        uint64
	length     uint32
}

// fakeConn writes replies; writes from concurrent handlers are serialized.
type fakeConn struct {
	mu sync.Mutex
	c  net.Conn
}

func (w *fakeConn) raw(b []byte) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.c.Write(b)
}

func (w *fakeConn) simple(handle uint64, errno uint32, data []byte) {
	b := binary.BigEndian.AppendUint32(nil, magicSimple)
	b = binary.BigEndian.AppendUint32(b, errno)
	b = binary.BigEndian.AppendUint64(b, handle)
	w.raw(append(b, data...))
}

func chunkBytes(flags, typ uint16, handle uint64, payload []byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, magicStructure)
	b = binary.BigEndian.AppendUint16(b, flags)
	b = binary.BigEndian.AppendUint16(b, typ)
	b = binary.BigEndian.AppendUint64(b, handle)
	b = binary.BigEndian.AppendUint32(b, uint32(len(payload)))
	return append(b, payload...)
}

func (w *fakeConn) chunk(flags, typ uint16, handle uint64, payload []byte) {
	w.raw(chunkBytes(flags, typ, handle, payload))
}

func doneFlag(done bool) uint16 {
	if done {
		return replyFlagDone
	}
	return 0
}

func dataPayload(off uint64, data []byte) []byte {
	return append(binary.BigEndian.AppendUint64(nil, off), data...)
}

func holePayload(off uint64, n uint32) []byte {
	return binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint64(nil, off), n)
}

func errPayload(errno uint32, msg string, off *uint64) []byte {
	b := binary.BigEndian.AppendUint32(nil, errno)
	b = binary.BigEndian.AppendUint16(b, uint16(len(msg)))
	b = append(b, msg...)
	if off != nil {
		b = binary.BigEndian.AppendUint64(b, *off)
	}
	return b
}

func statusPayload(id uint32, desc ...uint32) []byte {
	b := binary.BigEndian.AppendUint32(nil, id)
	for _, d := range desc {
		b = binary.BigEndian.AppendUint32(b, d)
	}
	return b
}

// good answers a request correctly: a read with one data chunk, block
// status with one extent of flags 0 per context.
func (s *fakeServer) good(w *fakeConn, r fakeReq) {
	switch r.cmd {
	case cmdRead:
		if s.noStruct {
			w.simple(r.handle, 0, s.disk[r.off:r.off+uint64(r.length)])
			return
		}
		w.chunk(replyFlagDone, chunkOffsetData, r.handle, dataPayload(r.off, s.disk[r.off:r.off+uint64(r.length)]))
	case cmdBlockStatus:
		for i := range s.contexts {
			w.chunk(doneFlag(i == len(s.contexts)-1), chunkBlockStatus, r.handle, statusPayload(uint32(i+1), r.length, 0))
		}
	}
}

// start listens on a unix socket and serves connections until the test
// ends.
func (s *fakeServer) start(t testing.TB) {
	t.Helper()
	dir, err := os.MkdirTemp("", "nbdfake")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = filepath.Join(dir, "s.sock")
	l, err := net.Listen("unix", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var conns sync.Map
	t.Cleanup(func() {
		l.Close()
		conns.Range(func(k, _ any) bool { k.(net.Conn).Close(); return true })
		wg.Wait()
		os.RemoveAll(dir)
	})
	if s.handle == nil {
		s.handle = s.good
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns.Store(c, true)
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				s.serve(c)
			}()
		}
	}()
}

func (s *fakeServer) dial(t testing.TB, opts *Options) *Client {
	t.Helper()
	c, err := s.tryDial(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func (s *fakeServer) tryDial(opts *Options) (*Client, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return Dial(ctx, "unix", s.addr, "disk", opts)
}

func (s *fakeServer) received() []fakeReq {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]fakeReq(nil), s.reqs...)
}

func (s *fakeServer) serve(c net.Conn) {
	if !s.negotiate(c) {
		return
	}
	w := &fakeConn{c: c}
	var hdr [28]byte
	for {
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return
		}
		r := fakeReq{
			flags: binary.BigEndian.Uint16(hdr[4:]), cmd: binary.BigEndian.Uint16(hdr[6:]),
			handle: binary.BigEndian.Uint64(hdr[8:]), off: binary.BigEndian.Uint64(hdr[16:]),
			length: binary.BigEndian.Uint32(hdr[24:]),
		}
		s.mu.Lock()
		s.reqs = append(s.reqs, r)
		s.mu.Unlock()
		if r.cmd == cmdDisc {
			return
		}
		s.handle(w, r)
	}
}

func optReply(c net.Conn, opt, typ uint32, data []byte) {
	b := binary.BigEndian.AppendUint64(nil, magicOptReply)
	b = binary.BigEndian.AppendUint32(b, opt)
	b = binary.BigEndian.AppendUint32(b, typ)
	b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
	c.Write(append(b, data...))
}

// negotiate plays the server side of the fixed newstyle handshake.
func (s *fakeServer) negotiate(c net.Conn) bool {
	b := binary.BigEndian.AppendUint64(nil, magicInit)
	b = binary.BigEndian.AppendUint64(b, magicOpt)
	b = binary.BigEndian.AppendUint16(b, flagFixedNewstyle|flagNoZeroes)
	c.Write(b)
	var cf [4]byte
	if _, err := io.ReadFull(c, cf[:]); err != nil {
		return false
	}
	for {
		var h [16]byte
		if _, err := io.ReadFull(c, h[:]); err != nil {
			return false
		}
		opt := binary.BigEndian.Uint32(h[8:])
		data := make([]byte, binary.BigEndian.Uint32(h[12:]))
		if _, err := io.ReadFull(c, data); err != nil {
			return false
		}
		switch opt {
		case optStructuredReply:
			if s.noStruct {
				optReply(c, opt, repErrUnsup, nil)
			} else {
				optReply(c, opt, repAck, nil)
			}
		case optSetMetaContext, optListMetaContext:
			// name length, name, count, queries: serve exact matches.
			nl := binary.BigEndian.Uint32(data)
			q := data[4+nl+4:]
			for len(q) >= 4 {
				ql := binary.BigEndian.Uint32(q)
				name := string(q[4 : 4+ql])
				q = q[4+ql:]
				for i, have := range s.contexts {
					if have == name {
						optReply(c, opt, repMetaContext, append(binary.BigEndian.AppendUint32(nil, uint32(i+1)), name...))
					}
				}
			}
			optReply(c, opt, repAck, nil)
		case optGo, optInfo:
			if s.noGo {
				optReply(c, opt, repErrUnsup, nil)
				continue
			}
			info := binary.BigEndian.AppendUint16(nil, infoExport)
			info = binary.BigEndian.AppendUint64(info, uint64(len(s.disk)))
			info = binary.BigEndian.AppendUint16(info, FlagHasFlags|FlagReadOnly)
			optReply(c, opt, repInfo, info)
			if s.blockSizes != nil {
				bs := binary.BigEndian.AppendUint16(nil, infoBlockSize)
				for _, v := range s.blockSizes {
					bs = binary.BigEndian.AppendUint32(bs, v)
				}
				optReply(c, opt, repInfo, bs)
			}
			optReply(c, opt, repAck, nil)
			if opt == optGo {
				return true
			}
		case optExportName:
			b := binary.BigEndian.AppendUint64(nil, uint64(len(s.disk)))
			c.Write(binary.BigEndian.AppendUint16(b, FlagHasFlags))
			return true
		case optAbort:
			optReply(c, opt, repAck, nil)
			return false
		default:
			optReply(c, opt, repErrUnsup, nil)
		}
	}
}

// patterned is a disk whose every byte depends on its offset.
func patterned(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i>>8)
	}
	return b
}
