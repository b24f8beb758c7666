package nbd

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sort"
	"sync"
	"time"
)

// Options tune a connection. The zero value is ready to use.
type Options struct {
	// MetaContexts to select for BlockStatus, e.g. ContextAllocation and
	// DirtyBitmapContext("backup-vda"). Contexts the server does not know
	// are left out; see Client.HasMetaContext.
	MetaContexts []string
	// MaxInFlight bounds the requests outstanding on the connection
	// (default 16).
	MaxInFlight int
	// RequestSize is the largest read request sent; it is rounded down to
	// the server's block sizes and capped at its maximum (default 2 MiB).
	RequestSize int
	// Timeout fails the connection when the server sends nothing for this
	// long while requests are outstanding, and bounds the handshake and
	// each request write (default 2 minutes; negative: no timeout).
	Timeout time.Duration
	// NoStructuredReplies keeps to simple replies (no holes, no block
	// status); for servers that mishandle structured replies, and tests.
	NoStructuredReplies bool
}

const (
	defaultInFlight    = 16
	defaultRequestSize = 2 << 20
	defaultTimeout     = 2 * time.Minute
)

// Client is a connection to one NBD export. All methods are safe for
// concurrent use; requests from concurrent callers are pipelined on the one
// connection and their replies matched by handle.
type Client struct {
	conn       net.Conn
	info       ExportInfo
	structured bool
	contexts   map[string]uint32 // negotiated metadata contexts by name
	timeout    time.Duration
	reqSize    int

	slots chan struct{} // one token per request in flight
	wmu   sync.Mutex    // serializes request writes
	wbuf  [28]byte

	mu      sync.Mutex
	pending map[uint64]*request
	handle  uint64
	err     error // set once the connection is unusable
	closing bool

	demux      *demux // used by the reader goroutine only
	readerDone chan struct{}
}

// Dial connects to addr over network ("unix" or "tcp"), negotiates the
// fixed newstyle handshake with structured replies and the requested
// metadata contexts, and enters transmission on export.
func Dial(ctx context.Context, network, addr, export string, opts *Options) (*Client, error) {
	o := withDefaults(opts)
	var c *Client
	err := negotiate(ctx, network, addr, o, func(conn net.Conn, n *negotiation) (err error) {
		c, err = transmit(conn, n, export, o)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("nbd: %s %s export %q: %w", network, addr, export, err)
	}
	go c.readLoop()
	return c, nil
}

func withDefaults(opts *Options) Options {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = defaultInFlight
	}
	if o.RequestSize <= 0 {
		o.RequestSize = defaultRequestSize
	}
	if o.Timeout == 0 {
		o.Timeout = defaultTimeout
	}
	return o
}

// negotiate dials, greets the server and runs fn to haggle options. Until
// it returns, the connection's deadline is the context's or the timeout,
// and cancelling ctx interrupts it. On error the connection is closed.
func negotiate(ctx context.Context, network, addr string, o Options, fn func(net.Conn, *negotiation) error) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return err
	}
	deadline, ok := ctx.Deadline()
	if o.Timeout > 0 && (!ok || time.Until(deadline) > o.Timeout) {
		deadline, ok = time.Now().Add(o.Timeout), true
	}
	if ok {
		conn.SetDeadline(deadline)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	n := &negotiation{rw: conn}
	err = n.greet()
	if err == nil {
		err = fn(conn, n)
	}
	if !stop() && err == nil {
		err = ctx.Err() // the deadline may already be in the past
	}
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%v)", ctx.Err(), err)
		}
		conn.Close()
		return err
	}
	conn.SetDeadline(time.Time{}) // fails only if fn closed conn, as Query does
	return nil
}

func transmit(conn net.Conn, n *negotiation, export string, o Options) (*Client, error) {
	c := &Client{
		conn: conn, timeout: o.Timeout, contexts: map[string]uint32{},
		slots: make(chan struct{}, o.MaxInFlight), pending: map[uint64]*request{},
		readerDone: make(chan struct{}),
	}
	var err error
	if !o.NoStructuredReplies {
		if c.structured, err = n.structuredReplies(); err != nil {
			return nil, err
		}
	}
	ids := map[uint32]string{}
	if c.structured && len(o.MetaContexts) > 0 {
		selected, err := n.metaContexts(optSetMetaContext, export, o.MetaContexts)
		if err != nil {
			return nil, err
		}
		for _, m := range selected {
			c.contexts[m.name] = m.id
			ids[m.id] = m.name
		}
	}
	c.info, err = n.info(optGo, export)
	var oe *OptionError
	if errors.As(err, &oe) && oe.Reply == repErrUnsup {
		c.info, err = n.exportName(export)
	}
	if err != nil {
		return nil, err
	}
	c.reqSize = requestSize(o.RequestSize, c.info)
	c.demux = &demux{
		r:          bufio.NewReaderSize(idleReader{c}, 64<<10),
		structured: c.structured, contexts: ids,
		lookup: c.lookup, complete: c.complete,
	}
	return c, nil
}

// requestSize is the read request size: want, within the server's block
// sizes.
func requestSize(want int, info ExportInfo) int {
	n := uint64(want)
	n = min(n, uint64(info.MaxBlock), defaultMaxBlock<<2)
	n -= n % uint64(info.MinBlock)
	return int(max(n, uint64(info.MinBlock)))
}

// Info returns what the server announced about the export.
func (c *Client) Info() ExportInfo { return c.info }

// Size is the export size in bytes.
func (c *Client) Size() int64 { return c.info.Size }

// StructuredReplies reports whether the server agreed to structured
// replies (needed for holes and block status).
func (c *Client) StructuredReplies() bool { return c.structured }

// HasMetaContext reports whether the server agreed to the metadata context.
func (c *Client) HasMetaContext(name string) bool {
	_, ok := c.contexts[name]
	return ok
}

// MetaContexts lists the metadata contexts the server agreed to, sorted.
func (c *Client) MetaContexts() []string {
	names := make([]string, 0, len(c.contexts))
	for n := range c.contexts {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Close ends the session: a soft disconnect (NBD_CMD_DISC) when no request
// is outstanding, then the connection is closed. Requests still in flight
// fail with ErrClosed.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		<-c.readerDone
		return nil
	}
	c.closing = true
	idle := c.err == nil && len(c.pending) == 0
	c.mu.Unlock()
	if idle {
		r := newRequest(cmdDisc, 0, 0)
		c.wmu.Lock()
		c.writeRequest(r) //nolint:errcheck // closing anyway
		c.wmu.Unlock()
	}
	c.fail(ErrClosed)
	<-c.readerDone
	return nil
}

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
