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
	ctxDeadline := ok
	if o.Timeout > 0 && (!ok || time.Until(deadline) > o.Timeout) {
		deadline, ok, ctxDeadline = time.Now().Add(o.Timeout), true, false
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
		switch {
		case ctx.Err() != nil:
			err = fmt.Errorf("%w (%v)", ctx.Err(), err)
		case ctxDeadline && errors.Is(err, os.ErrDeadlineExceeded):
			// The connection's deadline, which is the context's, can
			// pass a moment before the context itself reports it.
			err = fmt.Errorf("%w (%v)", context.DeadlineExceeded, err)
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
