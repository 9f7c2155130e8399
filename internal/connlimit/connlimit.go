// Package connlimit caps the connections a server holds open at once. A
// connection beyond the cap is answered with a short HTTP 503 (reason
// "overloaded", Retry-After, Connection: close) as soon as its request is
// in, and closed, never handed to the server: a flood of connections costs
// the server a file descriptor for a moment each, not a goroutine, a
// buffer and a slot until its timeouts fire (over TLS, Options.TLS, it is
// closed without an answer). Refusals in progress are bounded too
// (Options.Refusing); while that many are under way, Accept waits and the
// kernel's backlog holds the next connections, so a flood can never take
// every descriptor.
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
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spillway-dev/spillway/health"
)

// overloaded is the answer to a connection over the cap. It names the
// reason as every spillway 503 does, in the header and the JSON body.
var overloaded = []byte("HTTP/1.1 503 Service Unavailable\r\n" +
	"Content-Type: application/json\r\n" +
	"Retry-After: 1\r\n" +
	health.ReasonHeader + ": " + health.ReasonOverloaded + "\r\n" +
	"Cache-Control: no-store\r\n" +
	"Connection: close\r\n" +
	"Content-Length: " + strconv.Itoa(len(overloadedBody)) + "\r\n" +
	"\r\n" +
	overloadedBody)

const overloadedBody = `{"error":"` + health.ReasonOverloaded + `"}` + "\n"

// A refusal waits up to readWait for the peer's request (an HTTP client
// that reads an answer before it has sent its request drops it as
// unsolicited), then has writeWait to deliver the answer.
const (
	readWait  = 500 * time.Millisecond
	writeWait = 100 * time.Millisecond
	// lingerWait and lingerMax bound the lingering close: after the
	// answer, what the peer still sends (a request body) is read and
	// dropped until it closes, for at most lingerWait and lingerMax
	// bytes.
	lingerWait = 500 * time.Millisecond
	lingerMax  = 64 << 10
)

// Listener wraps a net.Listener, capping its open connections.
type Listener struct {
	net.Listener
	max      int64
	open     atomic.Int64
	refusing chan struct{}      // a token per refusal in progress
	refused  prometheus.Counter // nil: not counted
	tls      bool
	openG    prometheus.GaugeFunc
	wg       sync.WaitGroup // refusals in progress
}

// Options configure a Listener.
type Options struct {
	// Registerer, if set, receives NAME_connections (open now) and
	// NAME_connections_refused_total (over the cap). Name is the metric
	// prefix, e.g. "spillway_lb".
	Registerer prometheus.Registerer
	Name       string
	// Refusing bounds the refusals in progress, each of which holds its
	// connection's descriptor for up to 600ms; while that many are, Accept
	// waits (the kernel's backlog holds the next connections). Default a
	// quarter of the cap, from 4 to 1024.
	Refusing int
	// TLS says the connections start with a TLS handshake: one over the
	// cap is then closed at once, without an answer (a plain-text 503
	// would be garbage to a TLS client, and a handshake to send one
	// costs what the cap saves).
	TLS bool
}

// New wraps ln so that at most limit connections are open at once; limit ≤ 0
// means no cap (the connections are still counted).
func New(ln net.Listener, limit int, opts Options) (*Listener, error) {
	refusing := opts.Refusing
	if refusing <= 0 {
		refusing = min(max(limit/4, 4), 1024)
	}
	l := &Listener{Listener: ln, max: int64(limit), refusing: make(chan struct{}, refusing), tls: opts.TLS}
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

// refuse answers c 503 and closes it, on a goroutine of its own so that
// Accept goes on, once fewer than Options.Refusing refusals are in
// progress: the descriptors they hold are bounded too.
func (l *Listener) refuse(c net.Conn) {
	if l.refused != nil {
		l.refused.Inc()
	}
	if l.tls {
		_ = c.Close()
		return
	}
	l.refusing <- struct{}{}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		defer func() { <-l.refusing }()
		// Read what the peer sends first (its request line and headers,
		// usually in one segment), so the answer is a reply it reads.
		var buf [4096]byte
		_ = c.SetReadDeadline(time.Now().Add(readWait))
		if n, _ := c.Read(buf[:]); n == 0 {
			_ = c.Close() // nothing sent: nobody to answer
			return
		}
		_ = c.SetWriteDeadline(time.Now().Add(writeWait))
		_, _ = c.Write(overloaded)
		if tc, ok := c.(*net.TCPConn); ok {
			// A lingering close, as HAProxy and nginx do: the write
			// side first (the answer, then FIN), then what the peer
			// still sends is read until it closes. Closing at once with
			// unread data (a body in a second segment) sends a reset,
			// and a reset can destroy the answer in the peer's receive
			// buffer before the peer reads it.
			_ = tc.CloseWrite()
			_ = c.SetReadDeadline(time.Now().Add(lingerWait))
			_, _ = io.CopyN(io.Discard, c, lingerMax)
		}
		_ = c.Close()
	}()
}

// Close closes the listener and waits for refusals in progress (each
// takes at most readWait + writeWait + lingerWait).
func (l *Listener) Close() error {
	err := l.Listener.Close()
	l.wg.Wait()
	return err
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
	if nofile < reserve+2 {
		return 1
	}
	return int(min((nofile-reserve)/2, 1<<20))
}
