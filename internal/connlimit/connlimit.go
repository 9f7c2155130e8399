// Package connlimit caps the connections a server holds open at once. A
// connection beyond the cap is answered at once with a short HTTP 503
// (reason "overloaded", Retry-After, Connection: close) and closed, never
// queued and never handed to the server: a flood of connections costs the
// server a file descriptor for a few microseconds each, not a goroutine,
// a buffer and a slot until its timeouts fire.
//
// The cap also keeps descriptors free for what the server itself needs
// (connections to its instances, health checks): run out of them and a
// proxy's own dials fail, which is the one failure it must not blame on
// its upstreams. DefaultFor derives a cap from the process's open-file
// limit, as HAProxy derives maxconn from ulimit -n.
//
// A Listener is safe for concurrent use; it owns nothing beyond the
// listener it wraps, which its Close closes.
package connlimit

import (
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// overloaded is the answer to a connection over the cap. It names the
// reason as every spillway 503 does, in the header and the JSON body.
const overloaded = "HTTP/1.1 503 Service Unavailable\r\n" +
	"Content-Type: application/json\r\n" +
	"Retry-After: 1\r\n" +
	"X-Spillway-Reason: overloaded\r\n" +
	"Cache-Control: no-store\r\n" +
	"Connection: close\r\n" +
	"Content-Length: 23\r\n" +
	"\r\n" +
	`{"error":"overloaded"}` + "\n"

// writeTimeout bounds the refusal's write: a peer that does not read gets
// its connection closed.
const writeTimeout = 100 * time.Millisecond

// Listener wraps a net.Listener, capping its open connections.
type Listener struct {
	net.Listener
	max     int64
	open    atomic.Int64
	refused prometheus.Counter // nil: not counted
	openG   prometheus.GaugeFunc
}

// Options configure a Listener.
type Options struct {
	// Registerer, if set, receives NAME_connections (open now) and
	// NAME_connections_refused_total (over the cap). Name is the metric
	// prefix, e.g. "spillway_lb".
	Registerer prometheus.Registerer
	Name       string
}

// New wraps ln so that at most max connections are open at once; max ≤ 0
// means no cap (the connections are still counted).
func New(ln net.Listener, max int, opts Options) (*Listener, error) {
	l := &Listener{Listener: ln, max: int64(max)}
	if opts.Registerer != nil {
		l.refused = prometheus.NewCounter(prometheus.CounterOpts{
			Name: opts.Name + "_connections_refused_total",
			Help: "Client connections answered 503 overloaded and closed because the connection cap was reached.",
		})
		l.openG = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: opts.Name + "_connections",
			Help: "Client connections open now.",
		}, func() float64 { return float64(l.open.Load()) })
		for _, c := range []prometheus.Collector{l.refused, l.openG} {
			if err := opts.Registerer.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return l, nil
}

// Open returns the number of connections open now.
func (l *Listener) Open() int64 { return l.open.Load() }

// Accept returns the next connection under the cap; connections over it
// are refused (see the package comment) and Accept goes on waiting.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if n := l.open.Add(1); l.max > 0 && n > l.max {
			l.open.Add(-1)
			l.refuse(c)
			continue
		}
		return &conn{Conn: c, l: l}, nil
	}
}

func (l *Listener) refuse(c net.Conn) {
	if l.refused != nil {
		l.refused.Inc()
	}
	_ = c.SetWriteDeadline(time.Now().Add(writeTimeout))
	_, _ = c.Write([]byte(overloaded))
	if tc, ok := c.(*net.TCPConn); ok {
		// The request the peer sent is unread: close the write side,
		// so the answer is delivered before the reset a close with
		// unread data would send.
		_ = tc.CloseWrite()
	}
	_ = c.Close()
}

type conn struct {
	net.Conn
	l    *Listener
	once sync.Once
}

func (c *conn) Close() error {
	c.once.Do(func() { c.l.open.Add(-1) })
	return c.Conn.Close()
}

func capFor(nofile uint64) int {
	const reserve = 64
	if nofile < reserve+2*64 {
		return 64
	}
	return int(min((nofile-reserve)/2, 1<<20))
}
