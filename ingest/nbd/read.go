package nbd

import (
	"context"
	"fmt"
	"io"
)

// ReadAt reads len(p) bytes at off (io.ReaderAt). Reads past the end of
// the export return the bytes before it and io.EOF.
func (c *Client) ReadAt(p []byte, off int64) (int, error) {
	return c.ReadAtContext(context.Background(), p, off)
}

// ReadAtContext is ReadAt with a context. The read is split into requests
// of at most the request size, aligned to the server's minimum block size,
// all pipelined on the connection; holes the server reports are zeroed in
// p without crossing the wire.
func (c *Client) ReadAtContext(ctx context.Context, p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("nbd: read at negative offset %d", off)
	}
	if off >= c.info.Size {
		return 0, io.EOF
	}
	n := len(p)
	var eof error
	if int64(n) > c.info.Size-off {
		n, eof = int(c.info.Size-off), io.EOF
	}
	if err := c.read(ctx, p[:n], off); err != nil {
		return 0, err
	}
	return n, eof
}

// piece is one request of a read and where its bytes go.
type piece struct {
	req    *request
	dst    []byte // the caller's bytes this request fills
	bounce int    // offset of dst's bytes in req.buf if it is a bounce buffer, else -1
}

func (c *Client) read(ctx context.Context, p []byte, off int64) error {
	if len(p) == 0 {
		return nil
	}
	align := int64(c.info.MinBlock)
	var pieces []piece
	var err error
	for done := 0; done < len(p) && err == nil; {
		pos := off + int64(done)
		// The request covers [start, end): aligned, within the export.
		start := pos - pos%align
		end := min(start+int64(c.reqSize), c.info.Size)
		want := min(int64(len(p)-done), end-pos)
		if e := pos + want; e < end {
			end = min(e+(align-e%align)%align, c.info.Size)
		}
		pc := piece{dst: p[done : done+int(want)], bounce: -1}
		pc.req = newRequest(cmdRead, uint64(start), uint32(end-start))
		if start == pos && end == pos+want {
			pc.req.buf = pc.dst
		} else {
			pc.req.buf = make([]byte, end-start)
			pc.bounce = int(pos - start)
		}
		if err = c.start(ctx, pc.req); err == nil {
			pieces = append(pieces, pc)
		}
		done += int(want)
	}
	for _, pc := range pieces {
		if werr := c.wait(ctx, pc.req); werr != nil {
			if err == nil {
				err = werr
			}
			continue
		}
		if pc.bounce >= 0 {
			copy(pc.dst, pc.req.buf[pc.bounce:])
		}
	}
	return err
}
