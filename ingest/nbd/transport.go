package nbd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"
)

// The transport: requests go out under one write lock, each holding one of
// MaxInFlight slots; a single reader goroutine (readLoop) demultiplexes
// the replies by handle and completes the requests; the first transport
// error fails every request in flight and the connection for good.

// fail makes the connection unusable and fails every pending request.
func (c *Client) fail(err error) {
	c.mu.Lock()
	if c.err == nil {
		c.err = err
		c.conn.Close()
	}
	err = c.err
	reqs := c.pending
	c.pending = map[uint64]*request{}
	c.mu.Unlock()
	for _, r := range reqs {
		// Closing the connection has interrupted any read into r.buf;
		// wait for it to let go of the buffer before r's caller returns.
		r.mu.Lock()
		r.fail(err)
		r.abandoned = true
		r.mu.Unlock()
		close(r.done)
		<-c.slots
	}
}

func (c *Client) readLoop() {
	defer close(c.readerDone)
	for {
		if err := c.demux.next(); err != nil {
			c.mu.Lock()
			closing := c.closing
			c.mu.Unlock()
			switch {
			case closing:
				err = ErrClosed
			case errors.Is(err, os.ErrDeadlineExceeded):
				err = fmt.Errorf("nbd: the server sent nothing for %v with requests outstanding: %w", c.timeout, err)
			case errors.Is(err, ErrProtocol):
			default:
				err = fmt.Errorf("nbd: connection to the server lost: %w", unexpectedEOF(err))
			}
			c.fail(err)
			return
		}
	}
}

func (c *Client) lookup(handle uint64) *request {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pending[handle]
}

// complete ends a request whose reply is over.
func (c *Client) complete(r *request) {
	c.mu.Lock()
	if c.pending[r.handle] != r {
		c.mu.Unlock()
		return
	}
	delete(c.pending, r.handle)
	c.mu.Unlock()
	close(r.done)
	<-c.slots
}

// start sends a request once a slot is free.
func (c *Client) start(ctx context.Context, r *request) error {
	select {
	case c.slots <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	case <-c.readerDone:
		return c.connErr()
	}
	c.mu.Lock()
	if c.err != nil || c.closing {
		c.mu.Unlock()
		<-c.slots
		return c.connErr()
	}
	c.handle++
	r.handle = c.handle
	c.pending[r.handle] = r
	if c.timeout > 0 && len(c.pending) == 1 {
		// Arm the reader's idle deadline (see idleReader).
		c.conn.SetReadDeadline(time.Now().Add(c.timeout))
	}
	c.mu.Unlock()
	c.wmu.Lock()
	err := c.writeRequest(r)
	c.wmu.Unlock()
	if err != nil {
		// A partly written request corrupts the stream.
		c.fail(fmt.Errorf("nbd: sending request: %w", err))
	}
	return nil // the failure reaches the caller through r
}

func (c *Client) writeRequest(r *request) error {
	r.encode(&c.wbuf)
	if c.timeout > 0 {
		c.conn.SetWriteDeadline(time.Now().Add(c.timeout))
	}
	_, err := c.conn.Write(c.wbuf[:])
	return err
}

// wait waits for the reply to r. If ctx ends first the request is
// abandoned: its reply is discarded when it comes, unless it is already
// arriving into the caller's buffer, in which case the connection is
// dropped, since the buffer must not be written after wait returns.
func (c *Client) wait(ctx context.Context, r *request) error {
	select {
	case <-r.done:
		return r.err
	case <-ctx.Done():
	}
	select {
	case <-r.done:
		return r.err
	default:
	}
	if !r.mu.TryLock() {
		// The reader is in the middle of a reply chunk for r, possibly
		// writing into the caller's buffer.
		c.fail(fmt.Errorf("nbd: read cancelled while its data was arriving: %w", ctx.Err()))
		<-r.done
		return ctx.Err()
	}
	r.abandoned = true
	r.mu.Unlock()
	return ctx.Err()
}

// do sends r and waits for its reply.
func (c *Client) do(ctx context.Context, r *request) error {
	if err := c.start(ctx, r); err != nil {
		return err
	}
	return c.wait(ctx, r)
}

func (c *Client) connErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return c.err
	}
	return ErrClosed
}

// idleReader is the connection as the reply reader sees it. With a
// timeout, a read while requests are outstanding must make progress within
// it; an idle connection may stay silent for ever. start arms the deadline
// when the first request goes out, under the same lock, so the reader
// cannot miss it.
type idleReader struct{ c *Client }

func (r idleReader) Read(p []byte) (int, error) {
	c := r.c
	if c.timeout > 0 {
		c.mu.Lock()
		if len(c.pending) > 0 {
			c.conn.SetReadDeadline(time.Now().Add(c.timeout))
		} else {
			c.conn.SetReadDeadline(time.Time{})
		}
		c.mu.Unlock()
	}
	return c.conn.Read(p)
}
