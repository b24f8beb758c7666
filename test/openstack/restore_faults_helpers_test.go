package openstack

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
)

// faultProxy sits between cairn and the cloud's endpoints (as the HTTP
// transport of cairn's client: every API call of every service goes
// through it) and injects one failure at a chosen call, forwarding
// everything else to the real cloud unchanged.
type faultProxy struct {
	next  http.RoundTripper
	mu    sync.Mutex
	rules []*faultRule
	log   []string
}

// faultRule matches requests by method and URL path; the nth match (1 =
// first) gets the fault.
type faultRule struct {
	Method string
	Path   *regexp.Regexp
	Nth    int
	// one of:
	Status  int    // answer with this status and Body, without forwarding
	Body    string //
	CutBody int64  // forward, but drop the connection after this many body bytes
	seen    int
	Fired   bool
}

func newFaultProxy(rules ...*faultRule) *faultProxy {
	t := http.DefaultTransport.(*http.Transport).Clone()
	return &faultProxy{next: t, rules: rules}
}

var errInjectedCut = errors.New("connection reset by fault proxy")

func (p *faultProxy) RoundTrip(req *http.Request) (*http.Response, error) {
	p.mu.Lock()
	var hit *faultRule
	for _, r := range p.rules {
		if r.Method == req.Method && r.Path.MatchString(req.URL.Path) {
			r.seen++
			if r.seen == max(r.Nth, 1) && !r.Fired {
				r.Fired, hit = true, r
			}
		}
	}
	p.log = append(p.log, req.Method+" "+req.URL.Path)
	p.mu.Unlock()
	switch {
	case hit == nil:
		return p.next.RoundTrip(req)
	case hit.Status != 0:
		if req.Body != nil {
			io.Copy(io.Discard, req.Body)
			req.Body.Close()
		}
		return &http.Response{
			StatusCode: hit.Status, Status: fmt.Sprintf("%d injected", hit.Status),
			Header: http.Header{"Content-Type": {"application/json"}},
			Body:   io.NopCloser(strings.NewReader(hit.Body)), Request: req, ContentLength: int64(len(hit.Body)),
			Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		}, nil
	default:
		req = req.Clone(req.Context())
		req.Body = &cutReader{r: req.Body, left: hit.CutBody}
		req.ContentLength = -1
		return p.next.RoundTrip(req)
	}
}

// cutReader fails like a dropped connection after left bytes.
type cutReader struct {
	r    io.ReadCloser
	left int64
}

func (c *cutReader) Read(b []byte) (int, error) {
	if c.left <= 0 {
		return 0, errInjectedCut
	}
	if int64(len(b)) > c.left {
		b = b[:c.left]
	}
	n, err := c.r.Read(b)
	c.left -= int64(n)
	return n, err
}

func (c *cutReader) Close() error { return c.r.Close() }

func (p *faultProxy) fired() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, r := range p.rules {
		if !r.Fired {
			return false
		}
	}
	return true
}
