package nbd

import (
	"encoding/binary"
	"sort"
	"sync"
)

// request is one command in flight: what was asked, where its reply goes,
// and what has arrived so far. The reader goroutine fills it; the caller
// waits on done.
type request struct {
	handle uint64
	cmd    uint16
	flags  uint16
	off    uint64
	length uint32

	buf   []byte   // NBD_CMD_READ: destination, len(buf) == length
	cover coverage // NBD_CMD_READ: ranges the reply has described

	keepCtx  uint32   // NBD_CMD_BLOCK_STATUS: context whose extents are kept
	extents  []Extent // ... and those extents
	answered []uint32 // contexts that have sent their chunk

	err  error         // first error reported for this request
	done chan struct{} // closed once the reply is complete or the connection failed

	// mu guards what the caller sees (buf, err, extents): the reader holds
	// it while it handles a reply chunk for this request, and changes
	// nothing once abandoned is set, which a caller that gives up (or a
	// failing connection) sets before the request goes back to its owner.
	mu        sync.Mutex
	abandoned bool
}

func newRequest(cmd uint16, off uint64, length uint32) *request {
	return &request{cmd: cmd, off: off, length: length, done: make(chan struct{})}
}

// encode writes the 28-byte request header.
func (r *request) encode(b *[28]byte) {
	binary.BigEndian.PutUint32(b[0:], magicRequest)
	binary.BigEndian.PutUint16(b[4:], r.flags)
	binary.BigEndian.PutUint16(b[6:], r.cmd)
	binary.BigEndian.PutUint64(b[8:], r.handle)
	binary.BigEndian.PutUint64(b[16:], r.off)
	binary.BigEndian.PutUint32(b[24:], r.length)
}

// fail records the first error of the request, unless it was abandoned.
func (r *request) fail(err error) {
	if r.err == nil && !r.abandoned {
		r.err = err
	}
}

// coverage tracks which parts [0, length) of a read reply have been
// described by content chunks, to reject overlaps and detect a reply that
// claims success without covering the whole request. Servers send chunks
// in order, which keeps this to one span; a reply scattered into more than
// maxReadPieces disjoint spans is rejected rather than tracked.
type coverage struct {
	spans []span // sorted, disjoint, non-adjacent
	total uint64
}

type span struct{ start, end uint64 }

// add marks [start, end) covered; it reports false on overlap or when the
// reply is too fragmented to track.
func (c *coverage) add(start, end uint64) (ok bool, tooFragmented bool) {
	// j is the first span that ends after start: the only one that can
	// overlap, and the one that may start right at end.
	j := sort.Search(len(c.spans), func(i int) bool { return c.spans[i].end > start })
	if j < len(c.spans) && c.spans[j].start < end {
		return false, false
	}
	joinPrev := j > 0 && c.spans[j-1].end == start
	joinNext := j < len(c.spans) && c.spans[j].start == end
	switch {
	case joinPrev && joinNext:
		c.spans[j-1].end = c.spans[j].end
		c.spans = append(c.spans[:j], c.spans[j+1:]...)
	case joinPrev:
		c.spans[j-1].end = end
	case joinNext:
		c.spans[j].start = start
	default:
		if len(c.spans) >= maxReadPieces {
			return false, true
		}
		c.spans = append(c.spans, span{})
		copy(c.spans[j+1:], c.spans[j:])
		c.spans[j] = span{start, end}
	}
	c.total += end - start
	return true, false
}
