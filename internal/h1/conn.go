package h1

import (
	"bufio"
	"context"
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

// This file holds one connection: sending a request on it, reading the
// answer, and the bodies that hand it back to the pool.

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
	err = c.write(&head)
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
