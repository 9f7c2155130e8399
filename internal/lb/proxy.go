package lb

import (
	"context"
	"errors"
	"io"
	"log"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/spillway-dev/spillway/admission"
	"github.com/spillway-dev/spillway/internal/httpapi"
)

var (
	errHeaderTimeout = errors.New("lb: response header timeout")
	errTotalTimeout  = errors.New("lb: total timeout")
	errStreamIdle    = errors.New("lb: stream idle timeout")
	errBodyConsumed  = errors.New("lb: request body already sent")
)

// Header values the proxy sets, shared and read-only (see answer).
var (
	hdrOne   = []string{"1"}
	hdrAllow = []string{"GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS, TRACE"}
	hdrHTTP  = []string{"http"}
	hdrHTTPS = []string{"https"}
	hdrClose = []string{"close"}
)

// ServeHTTP is the proxy: edge shedding, the request body read in full,
// edge admission, pick, proxy (one retry, two when nothing could be sent), in that order. It is the Handler Run serves.
//
// Every request leaves with a sane X-Request-Id (the client's, or one
// made here: httpapi.NewRequestID), passed on to the instance and set on
// the answer, and, with the access log on, gets its line there once the
// exchange has ended.
func (b *Balancer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	set := b.set.Load()
	rid := r.Header[httpapi.RequestIDHeader]
	if len(rid) != 1 || !httpapi.SaneRequestID(rid[0]) {
		if len(rid) > 1 && httpapi.SaneRequestID(rid[0]) {
			rid = rid[:1:1]
		} else {
			rid = []string{httpapi.NewRequestID()}
		}
		r.Header[httpapi.RequestIDHeader] = rid
	}
	w.Header()[httpapi.RequestIDHeader] = rid // an instance's own replaces it (moveHeader)
	if b.tracer != nil {
		trace.SpanFromContext(r.Context()).SetAttributes(attribute.String("spillway.request_id", rid[0]))
	}
	if b.access != nil {
		aw := &accessWriter{ResponseWriter: w, start: now}
		defer b.access.log(aw, r, rid[0]) // after c.finish has filled in aw
		w = aw
	}
	if r.Method == http.MethodConnect {
		w.Header()["Allow"] = hdrAllow
		writeAnswer(w, r, ansMethodNotAllowed, nil)
		b.m.answered(&set.def, outClientError, now)
		return
	}
	upgrade := len(r.Header["Upgrade"]) > 0
	if !upgrade && b.stage.Load() >= stageDraining {
		// Stopping: keep-alive clients reconnect, elsewhere once whatever
		// sends them here has seen /readyz fail (Envoy's drain does this).
		w.Header()["Connection"] = hdrClose
	}
	if r.ProtoMajor == 1 && len(r.TransferEncoding) > 0 {
		// A chunked request body. If it also came with a Content-Length,
		// which net/http has removed by now, a front proxy that framed it
		// by that length sees a different request boundary: RFC 9112
		// §6.1 says close the connection after the answer, as HAProxy
		// does. Which of the two it was cannot be told here, so every
		// chunked request's connection is closed after its answer.
		w.Header()["Connection"] = hdrClose
	}
	path := r.URL.Path
	if path == "" || path[0] != '/' {
		writeAnswer(w, r, ansBadRequest, nil)
		b.m.answered(&set.def, outClientError, now)
		return
	}
	rt := set.timeouts(path) // its route: timeouts and duration series
	bits := rand.Uint64()

	// (a) Edge shedding: answered without touching an instance. A
	// recovering dependency's congestion window is entered here; the
	// ticket gives its slot back when the request ends (finish, or
	// unanswered below).
	tk, no := b.shedder.Enter(path, now, float64(bits>>11)/(1<<53))
	switch {
	case no.Full:
		// The dependency is back but at its capacity (its congestion
		// window is full): overloaded, come back in a second.
		writeAnswer(w, r, ansOverloaded, set.overloadRetryAfter)
		b.m.answered(rt, outOverloaded, now)
		return
	case no.Dep != "":
		a := (*b.answers.Load())[no.Dep]
		if a == nil {
			a = shedAnswer(no.Dep) // a dependency seen since the last evaluation
		}
		writeAnswer(w, r, a, set.shedRetryAfter)
		b.m.answered(rt, outShed, now)
		return
	}

	var c *call // once set, its finish ends tk
	defer func() {
		if c == nil {
			tk.Done(time.Time{}, false, false) // never sent
		}
	}()

	// (b) The body, in full, before anything scarce is held (body.go).
	if set.maxBody > 0 && !upgrade && r.ContentLength != 0 {
		release, a, o, abort := b.bufferBody(w, r, set)
		if abort {
			b.m.answered(rt, outClientError, now)
			panic(http.ErrAbortHandler) // the client left: no answer, no log line
		}
		if a != nil {
			w.Header()["Connection"] = hdrClose // the rest of its body is not read
			var ra []string
			if o == outOverloaded {
				ra = set.overloadRetryAfter
			}
			writeAnswer(w, r, a, ra)
			b.m.answered(rt, o, now)
			return
		}
		defer release()
	}

	// (c) Edge admission: the fleet's reported capacity.
	ticket, err := b.limiter.Load().Acquire(r.Context())
	if err != nil {
		if !errors.Is(err, admission.ErrRejected) {
			b.m.answered(rt, outClientError, now)
			panic(http.ErrAbortHandler) // the client is gone: no answer, never a made-up status
		}
		writeAnswer(w, r, ansOverloaded, set.overloadRetryAfter)
		b.m.answered(rt, outOverloaded, now)
		return
	}
	defer ticket.Release(admission.Success)

	// (d) Pick.
	ep, ok := b.picker.PickFor(now, nil, path)
	if !ok {
		writeAnswer(w, r, ansNoInstance, hdrOne)
		b.m.answered(rt, outNoInstance, now)
		return
	}
	b.budget.Load().Request(now)

	// (e) Proxy.
	c = &call{b: b, w: w, t: rt, parent: r.Context(), start: now, ep: ep, tk: tk}
	c.tk.Sent(time.Now()) // in flight to its dependencies from here: the body is in, a slot held
	c.Context, c.cancel = context.WithCancelCause(c.parent)
	c.phase.Store(phaseHeader)
	c.timer = time.AfterFunc(min(c.t.header, c.t.total), c.fire)
	defer c.finish()
	if upgrade {
		// Tracks the connection ReverseProxy hijacks if the instance
		// agrees to switch protocols.
		w = &upgradeWriter{ResponseWriter: w, c: c}
	}
	b.proxy.ServeHTTP(w, r.WithContext(c))
}

type callKey struct{}

// call is one proxied request's state, shared by ServeHTTP, the round
// tripper and the error handler. It is the request's context: the
// client's, canceled by the timer, plus itself under callKey{} (one
// allocation less than a context.WithValue layer). Context values survive
// context.WithoutCancel, so the transport's detached dials see it too.
type call struct {
	context.Context // parent, canceled by the timer
	b               *Balancer
	w               http.ResponseWriter // the client's, for moveHeader
	t               *routeTimeouts
	parent          context.Context // the client's
	cancel          context.CancelCauseFunc
	// timer enforces the response header timeout of the running attempt
	// (phaseHeader), then the total timeout (phaseTotal) or, for a stream,
	// the idle timeout (phaseStream).
	timer *time.Timer
	phase atomic.Uint32
	start time.Time
	tk    Ticket    // the shedder's (Shedder.Enter), ended by finish
	ep    *Endpoint // the instance of the last attempt
	body  trackedBody
	// Set by the round tripper; read after ReverseProxy returns.
	status    int       // the instance's status, 0 if none
	headersAt time.Time // when its response headers arrived
	fail      outcome
	attempted bool
	retried   bool
	attempts  int // sent to the transport, retries included
	// A stream's state (see stream.go), set by the handler's goroutine
	// before the stream's bytes flow.
	stream bool
	last   atomic.Int64             // when a byte last passed, as time since start
	rc     *http.ResponseController // an event stream's client side
	client net.Conn                 // an upgraded connection's client side
}

const (
	phaseHeader = iota
	phaseTotal
	phaseStream
)

// Value implements context.Context.
func (c *call) Value(key any) any {
	if key == (callKey{}) {
		return c
	}
	return c.Context.Value(key)
}

func (c *call) fire() {
	switch c.phase.Load() {
	case phaseHeader:
		c.cancel(errHeaderTimeout)
	case phaseTotal:
		c.cancel(errTotalTimeout)
	default:
		if quiet := time.Since(c.start) - time.Duration(c.last.Load()); quiet < c.t.idle {
			c.timer.Reset(c.t.idle - quiet)
			return
		}
		c.b.m.streamIdleCuts.Add(1)
		c.cancel(errStreamIdle)
	}
}

// armHeader starts an attempt's response header timeout at now, within
// the total timeout.
func (c *call) armHeader(now time.Time) {
	left := c.t.total - now.Sub(c.start)
	if c.t.header < left {
		c.phase.Store(phaseHeader)
		c.timer.Reset(c.t.header)
		return
	}
	c.phase.Store(phaseTotal)
	c.timer.Reset(max(left, 0))
}

// armTotal switches the timer to the total timeout once headers are in.
func (c *call) armTotal() {
	c.phase.Store(phaseTotal)
	c.timer.Reset(max(c.t.total-time.Since(c.start), 0))
}

func (c *call) finish() {
	c.timer.Stop()
	c.cancel(nil)
	c.ep.Release()
	if aw, ok := c.w.(*accessWriter); ok {
		aw.attempts, aw.answered = c.attempts, c.status != 0
		if c.attempts > 0 {
			aw.instance = c.ep.id
		}
		if c.status == http.StatusSwitchingProtocols {
			aw.upgraded = c.status
		}
	}
	if c.stream {
		c.endStream()
	}
	o := c.fail
	if o == outOK {
		switch {
		case c.status >= 500:
			o = outUpstream5xx
		case c.status >= 400:
			o = outClientError
		}
	}
	// A stream's duration ends at its response headers: its lifetime
	// is the client's, not a latency.
	end := time.Now()
	if c.stream && !c.headersAt.IsZero() {
		end = c.headersAt
	}
	c.b.m.requests[o].Add(1)
	if c.t.obs != nil {
		c.t.obs[o].Observe(end.Sub(c.start).Seconds())
	}
	// What the dependencies behind the instance did: the feedback ramp's
	// signal, and their baseline latency while ok. A client's own
	// failure, or the balancer's (out of descriptors), says nothing about
	// them.
	if !c.headersAt.IsZero() {
		end = c.headersAt
	}
	c.tk.Done(end, c.attempted && c.fail != outClientError && c.fail != outOverloaded, c.fail != outOK || c.status >= 500)
}

// trackedBody passes the request body to the transport and remembers
// whether any of it was read, so a body that was never sent can be sent
// again (on a fresh connection, or to another instance). Close does
// nothing: ReverseProxy closes the real body when the handler returns.
type trackedBody struct {
	rc     io.ReadCloser
	read   atomic.Bool
	failed bodyError // reading the client's body failed: its fault
}

func (t *trackedBody) Read(p []byte) (int, error) {
	t.read.Store(true)
	n, err := t.rc.Read(p)
	t.failed.set(err)
	return n, err
}

func (t *trackedBody) Close() error { return nil }

// getBody lets the transport resend a body it never wrote (a reused
// keep-alive connection that turned out dead).
func (c *call) getBody() (io.ReadCloser, error) {
	if c.body.read.Load() {
		return nil, errBodyConsumed
	}
	return &c.body, nil
}

// proxyError is the ReverseProxy's ErrorHandler: the round tripper has
// classified the failure.
func (b *Balancer) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	c, _ := r.Context().Value(callKey{}).(*call)
	kind := outBadGateway
	if c != nil {
		switch {
		case !c.attempted:
			// ReverseProxy refused the request itself (an invalid
			// Upgrade token): the client's fault.
			c.fail = outClientError
			writeAnswer(w, r, ansBadRequest, nil)
			return
		case c.fail == outOK:
			c.fail = outBadGateway
		}
		kind = c.fail
	}
	switch kind {
	case outClientError:
		switch berr := c.body.failed.get(); {
		case c.parent.Err() != nil:
			c.fail = outClientError
			panic(http.ErrAbortHandler) // the client left: no answer at all
		case isTimeout(berr):
			w.Header()["Connection"] = hdrClose
			writeAnswer(w, r, ansRequestTimeout, nil)
		default:
			w.Header()["Connection"] = hdrClose
			writeAnswer(w, r, ansBadRequest, nil)
		}
		return
	case outOverloaded:
		writeAnswer(w, r, ansOverloaded, b.set.Load().overloadRetryAfter)
	case outTimeout:
		writeAnswer(w, r, ansGatewayTimeout, nil)
	default:
		writeAnswer(w, r, ansBadGateway, nil)
	}
	if kind != outClientError {
		b.log.Debug("proxy error", "path", r.URL.Path, "instance", r.URL.Host, "error", err)
	}
}

func (b *Balancer) newReverseProxy() *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			b.set.Load().setXForwarded(pr)
			pr.Out.URL.Scheme = b.scheme
			pr.Out.URL.Host = "instance" // set per attempt by the round tripper
			if _, te := pr.Out.Header["Te"]; te && b.transport.Load().h1 != nil {
				// ReverseProxy passes "Te: trailers" on; over HTTP/1.1 a
				// TE field must be named in Connection (RFC 9110 §10.1.4).
				pr.Out.Header["Connection"] = append(pr.Out.Header["Connection"], "te")
			}
		},
		ModifyResponse: moveHeader,
		Transport:      (*upstream)(b),
		BufferPool:     &bufferPool{},
		ErrorHandler:   b.proxyError,
		ErrorLog:       log.New(slogWriter{b.log}, "", 0),
	}
}

// moveHeader is the ReverseProxy's ModifyResponse: it moves the instance's
// response headers into the client's header map, where ReverseProxy would
// copy them value by value (one allocation per header). It runs after
// ReverseProxy removed the hop-by-hop headers and before it copies, which
// then finds nothing left to copy. The moved slices are not shared with
// anything that writes to them: the server clones the handler's header
// map when the status is written. Informational answers (101 Switching
// Protocols) keep their headers: ReverseProxy reads the upgrade from them.
func moveHeader(res *http.Response) error {
	if res.StatusCode < 200 || res.Request == nil {
		return nil
	}
	c, _ := res.Request.Context().Value(callKey{}).(*call)
	if c == nil {
		return nil
	}
	dst := c.w.Header()
	if _, ok := res.Header[httpapi.RequestIDHeader]; ok {
		delete(dst, httpapi.RequestIDHeader) // the instance echoed it: once is enough
	}
	for k, vv := range res.Header {
		if old, ok := dst[k]; ok {
			dst[k] = append(old, vv...)
		} else {
			dst[k] = vv
		}
	}
	clear(res.Header)
	return nil
}

// slogWriter sends the ReverseProxy's own log lines to slog at debug.
type slogWriter struct{ log *slog.Logger }

func (s slogWriter) Write(p []byte) (int, error) {
	s.log.Debug("reverse proxy", "detail", string(p))
	return len(p), nil
}

const proxyBufSize = 32 << 10

// bufferPool recycles the ReverseProxy's copy buffers (32 KiB) as array
// pointers, so Put allocates nothing.
type bufferPool struct{ p sync.Pool }

func (bp *bufferPool) Get() []byte {
	if b, ok := bp.p.Get().(*[proxyBufSize]byte); ok {
		return b[:]
	}
	return new([proxyBufSize]byte)[:]
}

func (bp *bufferPool) Put(b []byte) {
	if cap(b) >= proxyBufSize {
		bp.p.Put((*[proxyBufSize]byte)(b[:proxyBufSize]))
	}
}
