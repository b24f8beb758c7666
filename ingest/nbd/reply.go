package nbd

import (
	"bufio"
	"encoding/binary"
	"io"
	"strings"
)

// demux reads the server's replies, one message per call to next, checks
// every length and offset against the request it answers, and delivers
// the payload: read data straight into the caller's buffer, holes as
// zeros, block status as extents. Any reply it cannot trust is a protocol
// error, after which the connection is unusable.
type demux struct {
	r          *bufio.Reader
	structured bool
	contexts   map[uint32]string // metadata context IDs the server assigned
	lookup     func(handle uint64) *request
	complete   func(req *request) // the reply to req is over
	hdr        [20]byte
}

func (d *demux) next() error {
	if _, err := io.ReadFull(d.r, d.hdr[:4]); err != nil {
		return err
	}
	switch magic := binary.BigEndian.Uint32(d.hdr[:4]); magic {
	case magicSimple:
		return d.simple()
	case magicStructure:
		if !d.structured {
			return protoErr("structured reply chunk although structured replies were not negotiated")
		}
		return d.chunk()
	default:
		return protoErr("reply magic %#08x", magic)
	}
}

func (d *demux) simple() error {
	if _, err := io.ReadFull(d.r, d.hdr[:12]); err != nil {
		return unexpectedEOF(err)
	}
	errno := binary.BigEndian.Uint32(d.hdr[0:])
	handle := binary.BigEndian.Uint64(d.hdr[4:])
	req := d.lookup(handle)
	if req == nil {
		return protoErr("simple reply for unknown handle %#x", handle)
	}
	req.mu.Lock()
	defer req.mu.Unlock()
	switch {
	case req.cmd == cmdRead && d.structured:
		return protoErr("simple reply to a read although structured replies were negotiated")
	case errno != 0:
		req.fail(&ServerError{Op: opName(req.cmd), Errno: errno})
	case req.cmd == cmdRead:
		if err := d.receive(req, req.buf); err != nil {
			return unexpectedEOF(err)
		}
	case req.cmd == cmdBlockStatus:
		return protoErr("simple success reply to a block status request")
	}
	d.complete(req)
	return nil
}

func (d *demux) chunk() error {
	if _, err := io.ReadFull(d.r, d.hdr[:16]); err != nil {
		return unexpectedEOF(err)
	}
	flags := binary.BigEndian.Uint16(d.hdr[0:])
	typ := binary.BigEndian.Uint16(d.hdr[2:])
	handle := binary.BigEndian.Uint64(d.hdr[4:])
	length := binary.BigEndian.Uint32(d.hdr[12:])
	req := d.lookup(handle)
	if req == nil {
		return protoErr("reply chunk (type %d) for unknown or finished handle %#x", typ, handle)
	}
	req.mu.Lock()
	defer req.mu.Unlock()
	var err error
	switch {
	case typ == chunkNone:
		if length != 0 || flags&replyFlagDone == 0 {
			return protoErr("NBD_REPLY_TYPE_NONE chunk with length %d, flags %#x", length, flags)
		}
	case typ == chunkOffsetData:
		err = d.offsetData(req, length)
	case typ == chunkOffsetHole:
		err = d.offsetHole(req, length)
	case typ == chunkBlockStatus:
		err = d.blockStatus(req, length)
	case typ&chunkErrBit != 0:
		err = d.errorChunk(req, typ, length)
	default:
		return protoErr("unknown reply chunk type %d", typ)
	}
	if err != nil {
		return err
	}
	if flags&replyFlagDone != 0 {
		if err := d.finish(req); err != nil {
			return err
		}
		d.complete(req)
	}
	return nil
}

// finish checks a reply that the server has marked done.
func (d *demux) finish(req *request) error {
	if req.err != nil {
		return nil
	}
	switch req.cmd {
	case cmdRead:
		if req.cover.total != uint64(req.length) {
			return protoErr("read reply ended after describing %d of %d bytes", req.cover.total, req.length)
		}
	case cmdBlockStatus:
		for _, id := range req.answered {
			if id == req.keepCtx {
				return nil
			}
		}
		return protoErr("block status reply ended without extents for context %q", d.contexts[req.keepCtx])
	}
	return nil
}

// within reports whether [off, off+n) lies inside the request.
func within(req *request, off uint64, n uint64) bool {
	return off >= req.off && n <= uint64(req.length) && off-req.off <= uint64(req.length)-n
}

func (d *demux) offsetData(req *request, length uint32) error {
	if req.cmd != cmdRead {
		return protoErr("data chunk in reply to %s", opName(req.cmd))
	}
	if length < 9 || length-8 > req.length {
		return protoErr("data chunk of length %d in reply to a %d-byte read", length, req.length)
	}
	if _, err := io.ReadFull(d.r, d.hdr[:8]); err != nil {
		return unexpectedEOF(err)
	}
	off := binary.BigEndian.Uint64(d.hdr[:8])
	n := uint64(length - 8)
	if err := d.cover(req, off, n, "data"); err != nil {
		return err
	}
	start := off - req.off
	return unexpectedEOF(d.receive(req, req.buf[start:start+n]))
}

func (d *demux) offsetHole(req *request, length uint32) error {
	if req.cmd != cmdRead {
		return protoErr("hole chunk in reply to %s", opName(req.cmd))
	}
	if length != 12 {
		return protoErr("hole chunk of length %d", length)
	}
	if _, err := io.ReadFull(d.r, d.hdr[:12]); err != nil {
		return unexpectedEOF(err)
	}
	off := binary.BigEndian.Uint64(d.hdr[0:])
	n := uint64(binary.BigEndian.Uint32(d.hdr[8:]))
	if n == 0 {
		return protoErr("hole chunk of size 0")
	}
	if err := d.cover(req, off, n, "hole"); err != nil {
		return err
	}
	if !req.abandoned {
		start := off - req.off
		clear(req.buf[start : start+n])
	}
	return nil
}

// cover checks a content chunk [off, off+n) against the request and the
// chunks before it.
func (d *demux) cover(req *request, off, n uint64, what string) error {
	if !within(req, off, n) {
		return protoErr("%s chunk [%d, +%d) outside the request [%d, +%d)", what, off, n, req.off, req.length)
	}
	ok, fragmented := req.cover.add(off-req.off, off-req.off+n)
	if fragmented {
		return protoErr("read reply scattered into more than %d pieces", maxReadPieces)
	}
	if !ok {
		return protoErr("%s chunk [%d, +%d) overlaps an earlier chunk", what, off, n)
	}
	return nil
}

// receive reads len(dst) payload bytes into dst, or discards them if the
// caller has given up on the request. The caller holds req.mu.
func (d *demux) receive(req *request, dst []byte) error {
	if req.abandoned {
		_, err := d.r.Discard(len(dst))
		return err
	}
	_, err := io.ReadFull(d.r, dst)
	return err
}

func (d *demux) blockStatus(req *request, length uint32) error {
	if req.cmd != cmdBlockStatus {
		return protoErr("block status chunk in reply to %s", opName(req.cmd))
	}
	if length < 12 || (length-4)%8 != 0 {
		return protoErr("block status chunk of length %d", length)
	}
	if _, err := io.ReadFull(d.r, d.hdr[:4]); err != nil {
		return unexpectedEOF(err)
	}
	id := binary.BigEndian.Uint32(d.hdr[:4])
	if _, ok := d.contexts[id]; !ok {
		return protoErr("block status for unknown metadata context id %d", id)
	}
	for _, a := range req.answered {
		if a == id {
			return protoErr("second block status chunk for context %q", d.contexts[id])
		}
	}
	req.answered = append(req.answered, id)
	count := (length - 4) / 8
	if req.flags&cmdFlagReqOne != 0 && count > 1 {
		return protoErr("%d extents in reply to a single-extent block status request", count)
	}
	keep := id == req.keepCtx
	var sum uint64
	for range count {
		if _, err := io.ReadFull(d.r, d.hdr[:8]); err != nil {
			return unexpectedEOF(err)
		}
		n := binary.BigEndian.Uint32(d.hdr[0:])
		flags := binary.BigEndian.Uint32(d.hdr[4:])
		if n == 0 {
			return protoErr("zero-length extent for context %q", d.contexts[id])
		}
		if sum+uint64(n) > uint64(req.length) {
			return protoErr("extents for context %q cover more than the %d bytes asked", d.contexts[id], req.length)
		}
		if keep && !req.abandoned && len(req.extents) < maxExtentsPerReply {
			req.extents = append(req.extents, Extent{Offset: int64(req.off + sum), Length: int64(n), Flags: flags})
		}
		sum += uint64(n)
	}
	return nil
}

func (d *demux) errorChunk(req *request, typ uint16, length uint32) error {
	if length < 6 || length > maxErrorChunk {
		return protoErr("error chunk (type %d) of length %d", typ, length)
	}
	buf := make([]byte, length)
	if _, err := io.ReadFull(d.r, buf); err != nil {
		return unexpectedEOF(err)
	}
	errno := binary.BigEndian.Uint32(buf[0:])
	msgLen := uint32(binary.BigEndian.Uint16(buf[4:]))
	if msgLen > length-6 {
		return protoErr("error chunk message of %d bytes in a %d-byte chunk", msgLen, length)
	}
	if errno == 0 {
		return protoErr("error chunk (type %d) with error value 0", typ)
	}
	se := &ServerError{Op: opName(req.cmd), Errno: errno, Message: cleanMessage(buf[6 : 6+msgLen])}
	rest := buf[6+msgLen:]
	if typ == chunkErrorOffset {
		if len(rest) != 8 {
			return protoErr("error-offset chunk with %d trailing bytes", len(rest))
		}
		se.Offset, se.HasOffset = binary.BigEndian.Uint64(rest), true
		if !within(req, se.Offset, 1) {
			return protoErr("error offset %d outside the request [%d, +%d)", se.Offset, req.off, req.length)
		}
	}
	req.fail(se)
	return nil
}

// cleanMessage makes a server's message safe to print.
func cleanMessage(b []byte) string {
	s := strings.ToValidUTF8(string(b), "?")
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}

func opName(cmd uint16) string {
	switch cmd {
	case cmdRead:
		return "read"
	case cmdBlockStatus:
		return "block status"
	}
	return "command"
}

// unexpectedEOF turns a clean EOF in the middle of a message into
// io.ErrUnexpectedEOF.
func unexpectedEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
