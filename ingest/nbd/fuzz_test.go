package nbd

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// The fuzz targets feed arbitrary server bytes to the code that parses
// them. The seed corpus in testdata/fuzz holds replies recorded from
// qemu-nbd (TestGenerateFuzzSeeds) next to the hand-made ones below.

// fuzzContexts are the metadata context IDs the reply harness negotiated;
// they are the IDs qemu-nbd 7.2 assigns.
var fuzzContexts = map[uint32]string{0: ContextAllocation, 1: ContextAllocationDepth, 2: DirtyBitmapContext("bm0")}

// fuzzRequests are the requests in flight when the replies arrive, with
// handles 1 to 4 in this order.
func fuzzRequests(reqOne bool) []*request {
	r1 := newRequest(cmdRead, 7680, 1024)
	r2 := newRequest(cmdRead, 0, 512)
	r3 := newRequest(cmdBlockStatus, 0, 1<<20)
	r3.keepCtx = 0
	r4 := newRequest(cmdBlockStatus, 65536, 4096)
	r4.keepCtx = 2
	if reqOne {
		r4.flags = cmdFlagReqOne
	}
	reqs := []*request{r1, r2, r3, r4}
	for i, r := range reqs {
		r.handle = uint64(i + 1)
		if r.cmd == cmdRead {
			r.buf = bytes.Repeat([]byte{0xee}, int(r.length))
		}
	}
	return reqs
}

// runReplies parses stream as the server's replies to fuzzRequests and
// returns the requests that completed.
func runReplies(stream []byte, structured, reqOne bool) (done []*request, err error) {
	reqs := fuzzRequests(reqOne)
	return runRepliesOn(bufio.NewReaderSize(bytes.NewReader(stream), 4096), structured, reqs)
}

// runRepliesFrom parses structured replies to fuzzRequests from r.
func runRepliesFrom(r *bufio.Reader) ([]*request, error) {
	return runRepliesOn(r, true, fuzzRequests(false))
}

func runRepliesOn(r *bufio.Reader, structured bool, reqs []*request) (done []*request, err error) {
	pending := map[uint64]*request{}
	for _, r := range reqs {
		pending[r.handle] = r
	}
	d := &demux{
		r:          r,
		structured: structured,
		contexts:   fuzzContexts,
		lookup:     func(h uint64) *request { return pending[h] },
		complete: func(r *request) {
			delete(pending, r.handle)
			done = append(done, r)
		},
	}
	for len(pending) > 0 {
		if err = d.next(); err != nil {
			break
		}
	}
	return done, err
}

// checkCompleted asserts what a successful reply guarantees.
func checkCompleted(t *testing.T, done []*request, structured bool) {
	for _, r := range done {
		if r.err != nil {
			var se *ServerError
			if !errors.As(r.err, &se) || se.Errno == 0 {
				t.Fatalf("request %d failed with %v", r.handle, r.err)
			}
			continue
		}
		switch r.cmd {
		case cmdRead:
			if structured && (r.cover.total != uint64(r.length) || len(r.cover.spans) != 1) {
				t.Fatalf("read %d completed with %d of %d bytes in %d spans", r.handle, r.cover.total, r.length, len(r.cover.spans))
			}
		case cmdBlockStatus:
			if len(r.extents) == 0 || r.extents[0].Offset != int64(r.off) {
				t.Fatalf("block status %d completed with extents %v", r.handle, r.extents)
			}
			end := int64(r.off)
			for _, e := range r.extents {
				if e.Offset != end || e.Length <= 0 {
					t.Fatalf("block status %d: extents %v not consecutive", r.handle, r.extents)
				}
				end = e.End()
			}
			if end > int64(r.off)+int64(r.length) {
				t.Fatalf("block status %d: extents end at %d, past the request", r.handle, end)
			}
		}
	}
}

func FuzzStructuredReply(f *testing.F) {
	for _, s := range replySeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, stream []byte) {
		done, _ := runReplies(stream, true, false)
		checkCompleted(t, done, true)
		done, _ = runReplies(stream, true, true)
		checkCompleted(t, done, true)
	})
}

func FuzzSimpleReply(f *testing.F) {
	w := &seedWriter{}
	w.simple(1, 0, make([]byte, 1024))
	w.simple(2, 5, nil)
	f.Add(w.Bytes())
	f.Fuzz(func(t *testing.T, stream []byte) {
		done, _ := runReplies(stream, false, false)
		checkCompleted(t, done, false)
	})
}

// seedWriter builds reply streams for seeds.
type seedWriter struct{ bytes.Buffer }

func (w *seedWriter) chunk(flags, typ uint16, handle uint64, payload []byte) {
	w.Write(chunkBytes(flags, typ, handle, payload))
}

func (w *seedWriter) simple(handle uint64, errno uint32, data []byte) {
	b := binary.BigEndian.AppendUint32(nil, magicSimple)
	b = binary.BigEndian.AppendUint32(b, errno)
	b = binary.BigEndian.AppendUint64(b, handle)
	w.Write(append(b, data...))
}

func replySeeds() [][]byte {
	var seeds [][]byte
	w := &seedWriter{}
	// A complete, valid exchange, replies interleaved.
	w.chunk(0, chunkOffsetData, 1, dataPayload(7680, make([]byte, 512)))
	w.chunk(0, chunkOffsetHole, 2, holePayload(0, 256))
	w.chunk(0, chunkBlockStatus, 3, statusPayload(0, 65536, 0, 1<<20-65536, StateHole|StateZero))
	w.chunk(0, chunkOffsetHole, 1, holePayload(8192, 512))
	w.chunk(replyFlagDone, chunkOffsetData, 2, dataPayload(256, make([]byte, 256)))
	w.chunk(replyFlagDone, chunkNone, 1, nil)
	w.chunk(0, chunkBlockStatus, 4, statusPayload(0, 4096, 0))
	w.chunk(replyFlagDone, chunkBlockStatus, 4, statusPayload(2, 512, StateDirty, 3584, 0))
	w.chunk(replyFlagDone, chunkBlockStatus, 3, statusPayload(2, 1<<20, 0))
	seeds = append(seeds, bytes.Clone(w.Bytes()))
	// Errors, with and without offsets and messages.
	w.Reset()
	off := uint64(8000)
	w.chunk(0, chunkErrorOffset, 1, errPayload(5, "bad sector", &off))
	w.chunk(replyFlagDone, chunkError, 2, errPayload(22, "", nil))
	w.chunk(replyFlagDone, chunkErrBit+7, 3, errPayload(12, "new error type", nil))
	w.chunk(replyFlagDone, chunkNone, 1, nil)
	seeds = append(seeds, bytes.Clone(w.Bytes()))
	return seeds
}

// TestReplySeeds: the hand-made seeds do what they are meant to, so the
// fuzzer starts from replies that reach every path.
func TestReplySeeds(t *testing.T) {
	seeds := replySeeds()
	done, err := runReplies(seeds[0], true, false)
	if err != nil || len(done) != 4 {
		t.Fatalf("valid exchange: %d done, %v", len(done), err)
	}
	for _, r := range done {
		if r.err != nil {
			t.Fatalf("request %d: %v", r.handle, r.err)
		}
	}
	if got := fmt.Sprint(done[3].extents); got != "[{0 65536 0} {65536 983040 3}]" {
		t.Fatalf("base:allocation extents %s", got)
	}
	if got := fmt.Sprint(done[2].extents); got != "[{65536 512 1} {66048 3584 0}]" {
		t.Fatalf("dirty bitmap extents %s", got)
	}
	// The replies recorded from qemu-nbd.
	rec := readSeed(t, "FuzzStructuredReply", "qemu-nbd")
	if done, err := runReplies(rec, true, false); err != nil || len(done) != 4 {
		t.Fatalf("recorded qemu-nbd replies: %d done, %v", len(done), err)
	}
	done, err = runReplies(seeds[1], true, false)
	if len(done) != 3 || err == nil {
		t.Fatalf("error exchange: %d done, %v", len(done), err)
	}
	for _, r := range done {
		var se *ServerError
		if !errors.As(r.err, &se) {
			t.Fatalf("request %d: %v, want a ServerError", r.handle, r.err)
		}
	}
}

// readSeed reads a []byte corpus file of testdata/fuzz.
func readSeed(t *testing.T, target, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "fuzz", target, name))
	if err != nil {
		t.Fatal(err)
	}
	body, ok := strings.CutPrefix(string(b), "go test fuzz v1\n[]byte(")
	if !ok {
		t.Fatalf("%s/%s is not a []byte corpus file", target, name)
	}
	v, err := strconv.Unquote(strings.TrimSuffix(strings.TrimSpace(body), ")"))
	if err != nil {
		t.Fatalf("%s/%s: %v", target, name, err)
	}
	return []byte(v)
}

// FuzzHandshake feeds arbitrary server bytes to the handshake.
func FuzzHandshake(f *testing.F) {
	f.Add(handshakeSeed())
	f.Fuzz(func(t *testing.T, server []byte) {
		n := &negotiation{rw: &fuzzRW{r: bytes.NewReader(server)}}
		if n.greet() != nil {
			return
		}
		structured, err := n.structuredReplies()
		if err != nil {
			return
		}
		if structured {
			if _, err := n.metaContexts(optSetMetaContext, "disk", []string{ContextAllocation}); err != nil {
				return
			}
		}
		info, err := n.info(optGo, "disk")
		if err != nil {
			return
		}
		if info.Size < 0 || info.MinBlock == 0 || info.MinBlock&(info.MinBlock-1) != 0 || info.MaxBlock < info.MinBlock {
			t.Fatalf("accepted export info %+v", info)
		}
		if rs := requestSize(defaultRequestSize, info); rs <= 0 || rs%int(info.MinBlock) != 0 || uint32(rs) > info.MaxBlock {
			t.Fatalf("request size %d for %+v", rs, info)
		}
	})
}

// fuzzRW reads the server's side from r and swallows the client's writes.
type fuzzRW struct{ r io.Reader }

func (f *fuzzRW) Read(p []byte) (int, error)  { return f.r.Read(p) }
func (f *fuzzRW) Write(p []byte) (int, error) { return len(p), nil }

func handshakeSeed() []byte {
	b := binary.BigEndian.AppendUint64(nil, magicInit)
	b = binary.BigEndian.AppendUint64(b, magicOpt)
	b = binary.BigEndian.AppendUint16(b, flagFixedNewstyle|flagNoZeroes)
	rep := func(opt, typ uint32, data []byte) {
		b = binary.BigEndian.AppendUint64(b, magicOptReply)
		b = binary.BigEndian.AppendUint32(b, opt)
		b = binary.BigEndian.AppendUint32(b, typ)
		b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
		b = append(b, data...)
	}
	rep(optStructuredReply, repAck, nil)
	rep(optSetMetaContext, repMetaContext, append([]byte{0, 0, 0, 0}, ContextAllocation...))
	rep(optSetMetaContext, repAck, nil)
	info := binary.BigEndian.AppendUint16(nil, infoExport)
	info = binary.BigEndian.AppendUint64(info, 1<<30)
	rep(optGo, repInfo, binary.BigEndian.AppendUint16(info, FlagHasFlags|FlagReadOnly))
	bs := binary.BigEndian.AppendUint16(nil, infoBlockSize)
	bs = binary.BigEndian.AppendUint32(bs, 512)
	bs = binary.BigEndian.AppendUint32(bs, 4096)
	rep(optGo, repInfo, binary.BigEndian.AppendUint32(bs, 32<<20))
	rep(optGo, repAck, nil)
	return b
}
