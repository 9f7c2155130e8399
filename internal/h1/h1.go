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
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"sync"
	"sync/atomic"
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

// conn is one connection to an instance.
type conn struct {
	t      *Transport
	h      *host
	nc     net.Conn
	br     *bufio.Reader
	bw     *bufio.Writer
	lr     limitReader
	cw     countWriter
	reused bool      // it served a response before this request
	since  time.Time // idle since, while in the pool
	// ctx is the request's in flight; cancelled, set when it was
	// cancelled, has set the connection's deadline in the past. A pooled
	// connection's context hook has been stopped, so it is never set
	// after the connection left the pool.
	ctx       context.Context
	cancelled atomic.Bool
}

// setReadDeadline sets the read deadline unless the request was
// cancelled, whose deadline in the past must stay.
func (c *conn) setReadDeadline(t time.Time) {
	c.nc.SetReadDeadline(t)
	if c.cancelled.Load() {
		c.nc.SetDeadline(aLongTimeAgo)
	}
}

// cause is err, or the context's cause when the request was cancelled.
func (c *conn) cause(err error) error {
	if c.cancelled.Load() {
		return fmt.Errorf("h1: %w", context.Cause(c.ctx))
	}
	return err
}

// limitReader reads from the connection, failing once n bytes were read
// while n is set (during a response head); n < 0 is no limit.
type limitReader struct {
	c *conn
	n int64
}

// errHeaderTooLarge is the error of a head over MaxResponseHeaderBytes.
var errHeaderTooLarge = errors.New("h1: response head too large")

func (l *limitReader) Read(p []byte) (int, error) {
	if l.n == 0 {
		return 0, errHeaderTooLarge
	}
	if l.n > 0 && int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.c.nc.Read(p)
	if l.n > 0 {
		l.n -= int64(n)
	}
	return n, err
}

// countWriter writes to the connection, counting what reached it.
type countWriter struct {
	c *conn
	n int64
}

func (w *countWriter) Write(p []byte) (int, error) {
	n, err := w.c.nc.Write(p)
	w.n += int64(n)
	return n, err
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

// host returns the pool of addr, made on first use.
func (t *Transport) host(addr string) *host {
	t.mu.Lock()
	defer t.mu.Unlock()
	h := t.hosts[addr]
	if h == nil {
		if t.hosts == nil {
			t.hosts = map[string]*host{}
		}
		h = &host{}
		t.hosts[addr] = h
	}
	return h
}

// CloseIdleConnections closes every idle connection. Connections in use
// go on; they are kept when they come back.
func (t *Transport) CloseIdleConnections() {
	t.mu.Lock()
	hosts := make([]*host, 0, len(t.hosts))
	for _, h := range t.hosts {
		hosts = append(hosts, h)
	}
	t.mu.Unlock()
	for _, h := range hosts {
		h.mu.Lock()
		idle := h.idle
		h.idle = nil
		h.mu.Unlock()
		for _, c := range idle {
			c.nc.Close()
		}
	}
}

// Close closes every idle connection, and every connection in use as it
// comes back; RoundTrip still works, without keeping connections.
func (t *Transport) Close() {
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
	t.CloseIdleConnections()
}

// get returns an idle connection to h that is still open, or nil.
func (t *Transport) get(h *host) *conn {
	now := t.now()
	for {
		h.mu.Lock()
		n := len(h.idle)
		if n == 0 {
			h.mu.Unlock()
			return nil
		}
		c := h.idle[n-1]
		h.idle[n-1] = nil
		h.idle = h.idle[:n-1]
		var stale []*conn
		if t.IdleConnTimeout > 0 && now.Sub(c.since) >= t.IdleConnTimeout {
			// The most recent is too old: so are the others.
			stale, h.idle = h.idle, nil
		}
		h.mu.Unlock()
		for _, s := range stale {
			s.nc.Close()
		}
		if stale != nil {
			c.nc.Close()
			return nil
		}
		if now.Sub(c.since) >= checkIdleAfter && !alive(c.nc) {
			c.nc.Close()
			continue
		}
		c.reused = true
		return c
	}
}

// put returns c to its pool, or closes it when the pool is full or the
// transport closed.
func (t *Transport) put(c *conn) {
	t.mu.Lock()
	closed := t.closed
	t.mu.Unlock()
	if closed {
		c.nc.Close()
		return
	}
	now := t.now()
	c.since = now
	h := c.h
	var drop *conn
	h.mu.Lock()
	if len(h.idle) >= t.maxIdle() {
		drop = c
	} else {
		h.idle = append(h.idle, c)
		// The oldest goes once it is past the idle timeout.
		if t.IdleConnTimeout > 0 && len(h.idle) > 1 && now.Sub(h.idle[0].since) >= t.IdleConnTimeout {
			drop = h.idle[0]
			copy(h.idle, h.idle[1:])
			h.idle[len(h.idle)-1] = nil
			h.idle = h.idle[:len(h.idle)-1]
		}
	}
	h.mu.Unlock()
	if drop != nil {
		drop.nc.Close()
	}
}

// dial makes a connection to addr (TLS for https).
func (t *Transport) dial(ctx context.Context, h *host, scheme, addr, hostname string) (*conn, error) {
	dial := t.DialContext
	if dial == nil {
		d := net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
		dial = d.DialContext
	}
	nc, err := dial(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if scheme == "https" {
		cfg := t.TLSClientConfig
		if cfg == nil {
			cfg = &tls.Config{}
		}
		if cfg.ServerName == "" {
			cfg = cfg.Clone()
			cfg.ServerName = hostname
		}
		timeout := t.TLSHandshakeTimeout
		if timeout <= 0 {
			timeout = DefaultTLSHandshakeTimeout
		}
		hctx, cancel := context.WithTimeout(ctx, timeout)
		tc := tls.Client(nc, cfg)
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			nc.Close()
			return nil, fmt.Errorf("h1: TLS handshake with %s: %w", addr, err)
		}
		if p := tc.ConnectionState().NegotiatedProtocol; p != "" && p != "http/1.1" {
			tc.Close()
			return nil, fmt.Errorf("h1: %s negotiated %q, not http/1.1", addr, p)
		}
		nc = tc
	}
	c := &conn{t: t, h: h, nc: nc}
	c.lr = limitReader{c: c, n: -1}
	c.cw = countWriter{c: c}
	c.br = bufio.NewReaderSize(&c.lr, 4096)
	c.bw = bufio.NewWriterSize(&c.cw, 4096)
	return c, nil
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

// roundTrip sends req on c and reads the response head. On error c is
// closed; the error wraps errNoResponse when no byte of a response came.
func (c *conn) roundTrip(ctx context.Context, req *http.Request) (res *http.Response, err error) {
	// Cancelling ctx aborts whatever c is blocked in, up to the body's
	// end (body.release stops it).
	c.ctx = ctx
	c.cancelled.Store(false)
	stop := context.AfterFunc(ctx, func() {
		c.cancelled.Store(true)
		c.nc.SetDeadline(aLongTimeAgo)
	})
	defer func() {
		if err != nil {
			stop()
			c.nc.Close()
			err = c.cause(err)
		}
	}()
	c.cw.n = 0
	expect := req.Body != nil && req.Body != http.NoBody && hasToken(req.Header["Expect"], "100-continue")
	var sent bool // the body went (or there is none to send)
	if expect {
		if res, sent, err = c.writeExpecting(req); err != nil {
			return nil, err
		}
	} else if err := c.write(req); err != nil {
		if c.cw.n == 0 {
			return nil, fmt.Errorf("h1: write: %w: %w", errNoResponse, err)
		}
		// The instance may have answered and closed before it read the
		// whole request: its answer is worth more than the write error.
		if res, rerr := c.readEarly(req); rerr == nil {
			res.Close = true
			return c.finish(req, res, stop)
		}
		return nil, fmt.Errorf("h1: write: %w", err)
	} else {
		sent = true
	}
	if res == nil {
		if res, err = c.readResponse(req); err != nil {
			return nil, err
		}
	}
	if !sent {
		res.Close = true // the body was not sent: the connection is out of step
	}
	return c.finish(req, res, stop)
}

// write sends req, flushed.
func (c *conn) write(req *http.Request) error {
	if err := req.Write(c.bw); err != nil {
		return err
	}
	return c.bw.Flush()
}

// writeExpecting sends req's head, waits for a 100 (or the timeout) and
// then sends its body. If a final answer comes first, it is returned and
// the body is not sent.
func (c *conn) writeExpecting(req *http.Request) (res *http.Response, sent bool, err error) {
	body := req.Body
	head := *req
	held := &heldBody{}
	head.Body = held
	head.ContentLength = req.ContentLength
	// Request.Write writes the head, then reads the body: the first read
	// of the held body is where the wait goes.
	held.wait = func() error {
		if err := c.bw.Flush(); err != nil {
			return err
		}
		timeout := c.t.ExpectContinueTimeout
		if timeout <= 0 {
			timeout = DefaultExpectContinueTimeout
		}
		c.setReadDeadline(time.Now().Add(timeout))
		_, perr := c.br.Peek(1)
		c.setReadDeadline(time.Time{})
		var ne net.Error
		if errors.As(perr, &ne) && ne.Timeout() {
			return nil // silence: send the body
		}
		if perr != nil {
			return perr
		}
		r, err := c.readResponse(req)
		if err != nil {
			return err
		}
		if r.StatusCode == http.StatusContinue {
			return nil
		}
		res = r
		return errFinalFirst
	}
	held.body = body
	err = req2Write(&head, c.bw)
	body.Close()
	switch {
	case res != nil: // Request.Write's error hides errFinalFirst
		return res, false, nil
	case err != nil:
		if c.cw.n == 0 {
			err = fmt.Errorf("%w: %w", errNoResponse, err)
		}
		return nil, false, fmt.Errorf("h1: write: %w", err)
	}
	return nil, true, nil
}

// req2Write writes r and flushes.
func req2Write(r *http.Request, w *bufio.Writer) error {
	if err := r.Write(w); err != nil {
		return err
	}
	return w.Flush()
}

// errFinalFirst ends the body's write: a final answer came before a 100.
var errFinalFirst = errors.New("h1: final answer before 100 Continue")

// heldBody is a request body whose first read waits (for 100 Continue).
type heldBody struct {
	wait   func() error
	waited bool
	body   io.ReadCloser
}

func (h *heldBody) Read(p []byte) (int, error) {
	if !h.waited {
		h.waited = true
		if err := h.wait(); err != nil {
			return 0, err
		}
	}
	return h.body.Read(p)
}

func (h *heldBody) Close() error { return nil } // the real body is closed by writeExpecting

// readEarly reads a response that came before the request was written
// whole, within a short wait.
func (c *conn) readEarly(req *http.Request) (*http.Response, error) {
	c.setReadDeadline(time.Now().Add(50 * time.Millisecond))
	return c.readResponse(req)
}

// readResponse reads a response head, skipping 1xx answers (passed to the
// request's ClientTrace, if any) other than 101.
func (c *conn) readResponse(req *http.Request) (*http.Response, error) {
	if _, err := c.br.Peek(1); err != nil {
		return nil, fmt.Errorf("h1: read: %w: %w", errNoResponse, err)
	}
	trace := httptrace.ContextClientTrace(req.Context())
	for n := 0; ; n++ {
		c.lr.n = c.t.maxHeader()
		res, err := http.ReadResponse(c.br, req)
		c.lr.n = -1
		if err != nil {
			return nil, fmt.Errorf("h1: read response head: %w", err)
		}
		if res.StatusCode >= 200 || res.StatusCode == http.StatusSwitchingProtocols {
			return res, nil
		}
		if res.StatusCode == http.StatusContinue && hasToken(req.Header["Expect"], "100-continue") {
			return res, nil // writeExpecting's
		}
		if n >= max1xx {
			return nil, fmt.Errorf("h1: more than %d informational answers", max1xx)
		}
		if res.StatusCode != http.StatusContinue && trace != nil && trace.Got1xxResponse != nil {
			if err := trace.Got1xxResponse(res.StatusCode, textproto.MIMEHeader(res.Header)); err != nil {
				return nil, err
			}
		}
	}
}

// finish gives res its body: the connection for a 101, else one that
// returns c to the pool at its end; with none, c goes back at once.
func (c *conn) finish(req *http.Request, res *http.Response, stop func() bool) (*http.Response, error) {
	keep := !res.Close && !req.Close
	if res.StatusCode == http.StatusSwitchingProtocols {
		res.Body = &upgraded{c: c, stop: stop}
		return res, nil
	}
	b := &body{rc: res.Body, c: c, stop: stop, keep: keep}
	if res.Body == http.NoBody {
		b.release(true)
		return res, nil
	}
	res.Body = b
	return res, nil
}

// body is a response's body: at its end the connection goes back to the
// pool (or is closed if it cannot be kept); closed early, the connection
// is closed. Close may come from another goroutine than Read.
type body struct {
	rc   io.ReadCloser
	c    *conn
	stop func() bool
	keep bool
	done atomic.Bool
}

func (b *body) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	switch {
	case err == io.EOF:
		b.release(true)
	case err != nil:
		err = b.c.cause(err)
		b.release(false)
	}
	return n, err
}

func (b *body) Close() error {
	b.release(false)
	return nil
}

// release ends the body's hold on its connection, once: back to the pool
// if the body was read whole, the connection can be kept, and the context
// was not cancelled meanwhile; otherwise closed.
func (b *body) release(whole bool) {
	if !b.done.CompareAndSwap(false, true) {
		return
	}
	if b.stop() && whole && b.keep {
		b.c.t.put(b.c)
		return
	}
	b.c.nc.Close()
}

// upgraded is a 101's body: the connection itself, read through what the
// head's reader holds.
type upgraded struct {
	c    *conn
	stop func() bool
	once sync.Once
}

func (u *upgraded) Read(p []byte) (int, error)  { return u.c.br.Read(p) }
func (u *upgraded) Write(p []byte) (int, error) { return u.c.nc.Write(p) }
func (u *upgraded) Close() error {
	var err error
	u.once.Do(func() {
		u.stop()
		err = u.c.nc.Close()
	})
	return err
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
