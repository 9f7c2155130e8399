package lb

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/spillway-dev/spillway/health"
)

// Request bodies are read in full, within server.body_timeout, before a
// request takes an edge admission slot or touches an instance, as nginx
// buffers them (proxy_request_buffering) before it picks an upstream. A
// client that trickles its body, or stops half way, then holds nothing
// scarce: not a slot, not an instance's connection or worker. It gets 408
// request_timeout at the body timeout; a malformed body (bad chunking)
// gets 400, a body over server.max_request_body 413, all without any
// instance seeing it, so none of them can count against an instance.
//
// Memory: bodies being buffered at once hold at most
// server.max_buffered_bytes; a request that would go over gets 503
// overloaded at once. With server.max_request_body 0 bodies stream to the
// instance as they arrive (no limit, no buffering), and a failure to read
// one is still the client's.

var (
	ansRequestTimeout = errorAnswer(http.StatusRequestTimeout, health.ReasonRequestTimeout)
	ansTooLarge       = errorAnswer(http.StatusRequestEntityTooLarge, health.ReasonRequestTooLarge)
)

// bodyPool recycles body buffers; ones that grew past 64 KiB are dropped.
var bodyPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// bufferedBody is a body read in full: the request's new Body and its
// GetBody, so the transport can send it again.
type bufferedBody struct {
	*bytes.Reader
}

func (bufferedBody) Close() error { return nil }

// bufferBody reads r's body, replaces it with the buffered copy and
// returns a release func to call when the request is done; or it returns
// the answer to give instead (with its outcome), or abort when the client
// has gone and gets no answer at all.
func (b *Balancer) bufferBody(w http.ResponseWriter, r *http.Request, set *settings) (release func(), a *answer, o outcome, abort bool) {
	limit := set.maxBody
	if r.ContentLength > limit {
		return nil, ansTooLarge, outClientError, false
	}
	reserve := limit // chunked: its size is unknown
	if r.ContentLength > 0 {
		reserve = r.ContentLength
	}
	if b.buffered.Add(reserve) > set.maxBuffered {
		b.buffered.Add(-reserve)
		return nil, ansOverloaded, outOverloaded, false
	}
	buf := bodyPool.Get().(*bytes.Buffer)
	buf.Reset()
	release = func() {
		b.buffered.Add(-reserve)
		if buf.Cap() <= 64<<10 {
			bodyPool.Put(buf)
		}
	}
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Now().Add(set.bodyTimeout))
	_, err := buf.ReadFrom(io.LimitReader(r.Body, limit+1))
	// On success the server has cleared the read deadline itself (it does
	// once the body hits its end); on failure the connection is closed.
	switch {
	case err == nil && int64(buf.Len()) > limit:
		a, o = ansTooLarge, outClientError
	case err == nil:
		r.Body = bufferedBody{bytes.NewReader(buf.Bytes())}
		r.GetBody = func() (io.ReadCloser, error) { return bufferedBody{bytes.NewReader(buf.Bytes())}, nil }
		r.ContentLength = int64(buf.Len())
		r.TransferEncoding = nil
		// The client's Expect: 100-continue was met (net/http's server
		// sent the 100 as the body was read); the instance gets the
		// whole request and has nothing to wait for.
		delete(r.Header, "Expect")
		return release, nil, outOK, false
	case isTimeout(err):
		a, o = ansRequestTimeout, outClientError
	case r.Context().Err() != nil || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET):
		abort = true // the client left before its body was in
	default:
		a, o = ansBadRequest, outClientError // malformed chunking, a bad trailer
	}
	release()
	return nil, a, o, abort
}

func isTimeout(err error) bool {
	var te interface{ Timeout() bool }
	return errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &te) && te.Timeout())
}

// bodyError remembers the first error reading a streamed request body
// gave: the client's failure, never the instance's.
type bodyError struct {
	mu  sync.Mutex
	err error
}

func (e *bodyError) set(err error) {
	if err == nil || err == io.EOF {
		return
	}
	e.mu.Lock()
	if e.err == nil {
		e.err = err
	}
	e.mu.Unlock()
}

func (e *bodyError) get() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.err
}

// isLocalExhaustion reports whether err is this process running out of
// something of its own (file descriptors, ephemeral ports, buffers): not
// a failure of the instance it was dialing, which must not be ejected for
// it.
func isLocalExhaustion(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM) ||
		errors.Is(err, syscall.EADDRNOTAVAIL)
}
