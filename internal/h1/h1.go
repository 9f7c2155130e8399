// Package h1 is an HTTP/1.1 client transport that sends a request and
// reads its response in the caller's goroutine, over a pool of kept-alive
// connections (plain TCP, or TLS): the load balancer's way to its
// instances.
//
// net/http's Transport runs two goroutines per connection and hands every
// request and response between them and the caller; under one busy core
// that hand-off costs more than the proxying itself (see
// docs/BENCHMARKS.md, "Data plane"). Here nothing runs but the
// caller: the request is written, then the response head read, on the
// caller's goroutine; the body is read by whoever reads Response.Body, and
// the connection goes back to the pool at the body's end.
//
// # Contract
//
// A Transport is an http.RoundTripper with net/http's request and
// response semantics, since it writes with Request.Write and reads with
// http.ReadResponse: the same Host, Content-Length, chunked and trailer
// handling, HEAD, 204 and 304 without a body, Connection: close honoured
// both ways, 1xx answers passed to an httptrace.ClientTrace's
// Got1xxResponse (at most 5), and a 101 Switching Protocols whose Body is
// the connection (an io.ReadWriteCloser), as httputil.ReverseProxy needs.
// Expect: 100-continue sends the body once the instance says 100, or
// after a second of silence; a final answer instead means the body is not
// sent, and the connection is closed.
//
// Where it differs from net/http's Transport:
//
//   - The body is written before the response is read: an instance that
//     answers before reading the whole body gets its answer read only if
//     the write fails (it then closed), not while the body streams.
//   - Cancelling the request's context aborts the dial, the write, the
//     wait for the head and the body's reads (the connection's deadline is
//     set in the past, and it is closed). There is no response header
//     timeout of the Transport's own: a caller bounds the wait with its
//     context.
//   - A request is sent again, once, on a new connection when a kept-alive
//     connection failed before any byte of a response came (the instance
//     closed it while idle): always if nothing reached the socket,
//     otherwise only for a replayable request (GET, HEAD, OPTIONS, TRACE,
//     or one with an Idempotency-Key) without a body or with GetBody.
//     Every idle connection is checked for a close from the instance
//     before reuse (a peek that does not wait).
//   - Only http and https URLs; no proxy, no compression, no HTTP/2.
//
// Errors from the dial are returned as the dialer gave them (a
// *net.OpError with Op "dial" for a refused connection). RoundTrip always
// closes the request's body, as the RoundTripper contract says. A
// Transport is safe for concurrent use; its zero value is usable, with
// the defaults of each field.
package h1

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"
)

// Defaults of Transport's fields.
const (
	DefaultMaxIdleConnsPerHost    = 2
	DefaultMaxResponseHeaderBytes = 1 << 20
	DefaultExpectContinueTimeout  = time.Second
	DefaultTLSHandshakeTimeout    = 10 * time.Second
)

// checkIdleAfter: a connection idle this long is checked for a close from
// the instance before it is reused (a peek, one system call): every one,
// as net/http's transport notices a close on an idle connection at once
// with its reader goroutine. An instance killed under load has closed
// every connection in the pool; unchecked, a request that cannot be sent
// again (a POST whose body went out) would fail on one instead of being
// sent, on a new connection, elsewhere. A variable for tests.
var checkIdleAfter time.Duration

// max1xx bounds the informational answers read before the final one.
const max1xx = 5

// Transport is an HTTP/1.1 RoundTripper; see the package documentation.
type Transport struct {
	// DialContext makes a TCP connection. Default: a net.Dialer with a
	// 30s timeout and keep-alive.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
	// TLSClientConfig is for https URLs. Its ServerName, if empty, is
	// the URL's host. Default: a zero tls.Config.
	TLSClientConfig *tls.Config
	// TLSHandshakeTimeout bounds a TLS handshake. Default 10s.
	TLSHandshakeTimeout time.Duration
	// MaxIdleConnsPerHost is how many idle connections are kept per
	// host:port; more are closed. Default 2 (net/http's).
	MaxIdleConnsPerHost int
	// IdleConnTimeout closes a connection idle this long. Zero: no limit.
	IdleConnTimeout time.Duration
	// MaxResponseHeaderBytes bounds a response head. Default 1 MiB.
	MaxResponseHeaderBytes int64
	// ExpectContinueTimeout is how long a request with Expect:
	// 100-continue waits for the instance's 100 before it sends its body
	// anyway. Default 1s.
	ExpectContinueTimeout time.Duration
	// Now is the clock for idle times. Default time.Now.
	Now func() time.Time

	mu     sync.Mutex
	hosts  map[string]*host
	closed bool
}

// host is the idle connections to one host:port, the most recent last.
type host struct {
	mu   sync.Mutex
	idle []*conn
}

func (t *Transport) now() time.Time {
	if t.Now != nil {
		return t.Now()
	}
	return time.Now()
}

func (t *Transport) maxIdle() int {
	if t.MaxIdleConnsPerHost > 0 {
		return t.MaxIdleConnsPerHost
	}
	return DefaultMaxIdleConnsPerHost
}

func (t *Transport) maxHeader() int64 {
	if t.MaxResponseHeaderBytes > 0 {
		return t.MaxResponseHeaderBytes
	}
	return DefaultMaxResponseHeaderBytes
}

// RoundTrip sends req and returns the response head; see the package
// documentation.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL == nil {
		closeBody(req)
		return nil, errors.New("h1: request without URL")
	}
	scheme := req.URL.Scheme
	if scheme != "http" && scheme != "https" {
		closeBody(req)
		return nil, fmt.Errorf("h1: unsupported scheme %q", scheme)
	}
	hostname, port := req.URL.Hostname(), req.URL.Port()
	if hostname == "" {
		closeBody(req)
		return nil, errors.New("h1: request without host")
	}
	if port == "" {
		port = "80"
		if scheme == "https" {
			port = "443"
		}
	}
	addr := net.JoinHostPort(hostname, port)
	ctx := req.Context()
	h := t.host(addr)
	for retried := false; ; retried = true {
		if err := ctx.Err(); err != nil {
			closeBody(req)
			return nil, err
		}
		c := t.get(h)
		if c == nil {
			var err error
			if c, err = t.dial(ctx, h, scheme, addr, hostname); err != nil {
				closeBody(req)
				return nil, err
			}
		}
		res, err := c.roundTrip(ctx, req)
		if err == nil {
			return res, nil
		}
		if retried || !c.reused || !errors.Is(err, errNoResponse) || ctx.Err() != nil {
			return nil, err
		}
		next, ok := rewind(req, c.cw.n == 0)
		if !ok {
			return nil, err
		}
		req = next
	}
}

// errNoResponse is the cause of a failure before any byte of a response
// came: on a kept-alive connection, the instance closed it while idle.
var errNoResponse = errors.New("h1: connection closed before a response")

// rewind returns req to send again on a new connection, if it may be:
// when nothing was written, any request; otherwise a replayable one. A
// body must come again from GetBody.
func rewind(req *http.Request, nothingWritten bool) (*http.Request, bool) {
	if !nothingWritten && !replayable(req) {
		return nil, false
	}
	if req.Body == nil || req.Body == http.NoBody {
		return req, true
	}
	if req.GetBody == nil {
		return nil, false
	}
	body, err := req.GetBody()
	if err != nil {
		return nil, false
	}
	next := *req
	next.Body = body
	return &next, true
}

// replayable is net/http's rule for a request that may be sent again
// after part of it was written.
func replayable(req *http.Request) bool {
	switch req.Method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	_, a := req.Header["Idempotency-Key"]
	_, b := req.Header["X-Idempotency-Key"]
	return a || b
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}

// aLongTimeAgo is a deadline in the past: it aborts blocked I/O.
var aLongTimeAgo = time.Unix(1, 0)

// hasToken reports whether a comma-separated header has token.
func hasToken(values []string, token string) bool {
	for _, v := range values {
		for len(v) > 0 {
			var t string
			i := 0
			for i < len(v) && v[i] != ',' {
				i++
			}
			t, v = v[:i], v[min(i+1, len(v)):]
			for len(t) > 0 && (t[0] == ' ' || t[0] == '\t') {
				t = t[1:]
			}
			for len(t) > 0 && (t[len(t)-1] == ' ' || t[len(t)-1] == '\t') {
				t = t[:len(t)-1]
			}
			if len(t) == len(token) && asciiEqualFold(t, token) {
				return true
			}
		}
	}
	return false
}

func asciiEqualFold(a, b string) bool {
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
