package lb

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Streams: an upgraded connection (101 Switching Protocols, e.g. a
// WebSocket) or a Server-Sent Events response (Content-Type
// text/event-stream) lives as long as its peers keep it busy, so neither
// the total timeout nor the server's read and write timeouts bound it.
// Once its headers are in, a stream is bounded by its route's idle timeout
// instead (Envoy's stream_idle_timeout, HAProxy's timeout tunnel, nginx's
// proxy_read_timeout):
//
//   - every byte read from the instance, and for an upgraded connection
//     every byte written to it, counts as activity; the call's timer, in
//     phaseStream, cancels the call once none has passed for the idle
//     timeout, which closes the instance's side;
//   - a write to the client may block for at most the idle timeout: each
//     read from the instance moves the client connection's write deadline
//     to now + idle (replacing the server's write_timeout, counted from the
//     request's start), so a client that stops reading is cut off too.
//     The server's read_timeout no longer applies once the request body is
//     read (net/http lifts it then), and hijacking lifts both deadlines of
//     an upgraded connection.
//
// Any other response, with or without a Content-Length, is an ordinary
// response under the total timeout: a chunked body is how many handlers
// send short answers, and a slow-drip instance must not escape the total
// timeout by leaving out the length.

// isStream reports whether res starts a stream: a 101 Switching Protocols
// or a 2xx event stream.
func isStream(res *http.Response) bool {
	if res.StatusCode == http.StatusSwitchingProtocols {
		return true
	}
	if res.StatusCode < 200 || res.StatusCode > 299 {
		return false
	}
	ct := res.Header["Content-Type"]
	return len(ct) > 0 && isEventStream(ct[0])
}

// isEventStream reports whether a Content-Type value is text/event-stream,
// parameters allowed, without allocating.
func isEventStream(ct string) bool {
	const mt = "text/event-stream"
	if len(ct) < len(mt) || !strings.EqualFold(ct[:len(mt)], mt) {
		return false
	}
	rest := strings.TrimLeft(ct[len(mt):], " \t")
	return rest == "" || rest[0] == ';'
}

// startStream switches the call from the total timeout to the idle
// timeout and wraps the instance's body to record activity. It runs on the
// handler's goroutine (in the round tripper), before any of the stream's
// bytes pass.
func (c *call) startStream(res *http.Response) {
	c.stream = true
	c.b.m.streams.Add(1)
	c.last.Store(int64(time.Since(c.start)))
	if res.StatusCode == http.StatusSwitchingProtocols {
		// ReverseProxy needs the body to be the instance's connection.
		if rwc, ok := res.Body.(io.ReadWriteCloser); ok {
			res.Body = &streamConn{streamBody: streamBody{rc: rwc, c: c}, rwc: rwc}
		}
	} else {
		c.rc = http.NewResponseController(c.w)
		// An error means a ResponseWriter that cannot reach its
		// connection (ServeHTTP mounted elsewhere, behind a wrapper
		// without Unwrap): the server's write timeout then stays.
		_ = c.rc.SetWriteDeadline(time.Now().Add(c.t.idle))
		res.Body = &streamBody{rc: res.Body, c: c}
	}
	c.phase.Store(phaseStream)
	c.timer.Reset(c.t.idle)
}

// endStream is finish's part for a stream.
func (c *call) endStream() {
	c.b.m.streams.Add(-1)
	if c.client != nil {
		c.b.upgrades.remove(c.client)
	}
}

// fromInstance records bytes read from the instance, about to be written
// to the client: activity, and a fresh write deadline for that write.
func (c *call) fromInstance() {
	now := time.Now()
	c.last.Store(int64(now.Sub(c.start)))
	switch {
	case c.client != nil:
		_ = c.client.SetWriteDeadline(now.Add(c.t.idle))
	case c.rc != nil:
		_ = c.rc.SetWriteDeadline(now.Add(c.t.idle))
	}
}

// streamBody is an event stream's body from the instance.
type streamBody struct {
	rc io.ReadCloser
	c  *call
}

func (s *streamBody) Read(p []byte) (int, error) {
	n, err := s.rc.Read(p)
	if n > 0 {
		s.c.fromInstance()
	}
	return n, err
}

func (s *streamBody) Close() error { return s.rc.Close() }

// streamConn is an upgraded connection to the instance. Reads run on
// ReverseProxy's goroutine that copies to the client, writes on the one
// that copies from it.
type streamConn struct {
	streamBody
	rwc io.ReadWriteCloser
}

func (s *streamConn) Write(p []byte) (int, error) {
	n, err := s.rwc.Write(p)
	if n > 0 {
		s.c.last.Store(int64(time.Since(s.c.start)))
	}
	return n, err
}

// CloseWrite passes the client's half-close on, as ReverseProxy does with
// the transport's own body.
func (s *streamConn) CloseWrite() error {
	if cw, ok := s.rwc.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return http.ErrNotSupported
}

// upgradeWriter wraps the ResponseWriter of a request that asks to
// upgrade, to learn the client connection that ReverseProxy hijacks:
// http.Server forgets a hijacked connection, so Shutdown neither waits for
// it nor closes it, and the balancer does both itself.
type upgradeWriter struct {
	http.ResponseWriter
	c *call
}

func (u *upgradeWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(u.ResponseWriter).Hijack()
	if err == nil {
		// Before ReverseProxy starts its copying goroutines, which read
		// c.client.
		u.c.client = conn
		u.c.b.upgrades.add(conn)
	}
	return conn, brw, err
}

// Unwrap lets http.ResponseController reach the connection.
func (u *upgradeWriter) Unwrap() http.ResponseWriter { return u.ResponseWriter }

// upgradeSet holds the client connections of upgraded requests in flight.
// The zero value is empty and ready. Safe for concurrent use.
type upgradeSet struct {
	mu    sync.Mutex
	conns map[net.Conn]struct{}
	empty chan struct{} // closed when conns empties while wait waits
}

func (u *upgradeSet) add(c net.Conn) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.conns == nil {
		u.conns = map[net.Conn]struct{}{}
	}
	u.conns[c] = struct{}{}
}

func (u *upgradeSet) remove(c net.Conn) {
	u.mu.Lock()
	defer u.mu.Unlock()
	delete(u.conns, c)
	if len(u.conns) == 0 && u.empty != nil {
		close(u.empty)
		u.empty = nil
	}
}

// len returns how many upgraded connections are open.
func (u *upgradeSet) len() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.conns)
}

// wait waits until no upgraded connection is open, and reports whether
// that happened before ctx was done.
func (u *upgradeSet) wait(ctx context.Context) bool {
	for {
		u.mu.Lock()
		if len(u.conns) == 0 {
			u.mu.Unlock()
			return true
		}
		if u.empty == nil {
			u.empty = make(chan struct{})
		}
		empty := u.empty
		u.mu.Unlock()
		select {
		case <-empty:
		case <-ctx.Done():
			return false
		}
	}
}

// closeAll closes every upgraded connection (their handlers then end and
// remove them) and returns how many there were.
func (u *upgradeSet) closeAll() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	for c := range u.conns {
		_ = c.Close()
	}
	return len(u.conns)
}
