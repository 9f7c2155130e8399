// Package tcpproxy is a TCP proxy for tests whose link can be cut and
// restored: a network partition, on loopback, between a component and a
// peer it talks to (a balancer and etcd). It is part of the test kit
// (see internal/testkit), apart so that only the tests that need it use
// it.
//
// # Contract
//
//   - Only tests import it. Start listens on a loopback port the kernel
//     chooses and forwards every connection to the target; the proxy
//     belongs to the test that started it and is closed when it ends, at
//     the latest.
//   - Cut stops every byte, both ways, on the connections open and on
//     those made while it lasts (accepted and held), as a partition that
//     drops packets does: nothing is closed or reset, so the peers find
//     out by their own timeouts. Restore lets the bytes flow again,
//     those sent meanwhile first. Cut and Restore may be called in any
//     order, from any goroutine.
//   - Close closes the listener and every connection and waits for the
//     proxy's goroutines; later calls do nothing.
package tcpproxy

import (
	"net"
	"sync"
	"testing"
)

// Proxy forwards connections from Addr to a target until Close.
type Proxy struct {
	target string
	ln     net.Listener
	done   chan struct{} // closed by Close
	wg     sync.WaitGroup

	mu     sync.Mutex
	cut    bool
	resume chan struct{} // closed by Restore
	conns  map[net.Conn]struct{}
	closed bool
}

// Start starts a proxy to target (host:port) on a loopback port; it is
// closed when t ends.
func Start(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{target: target, ln: ln, done: make(chan struct{}), conns: map[net.Conn]struct{}{}}
	p.wg.Go(p.accept)
	t.Cleanup(p.Close)
	return p
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Cut stops the bytes both ways until Restore.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.cut {
		p.cut, p.resume = true, make(chan struct{})
	}
}

// Restore lets the bytes flow again.
func (p *Proxy) Restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut {
		p.cut = false
		close(p.resume)
	}
}

// Close closes the listener and every connection, and waits for the
// proxy's goroutines.
func (p *Proxy) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	close(p.done)
	p.ln.Close()
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// track adds c to the connections Close closes; false once closed.
func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) untrack(cs ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		c.Close()
		delete(p.conns, c)
	}
}

func (p *Proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return // closed
		}
		if !p.track(c) {
			return
		}
		p.wg.Go(func() { p.serve(c) })
	}
}

// serve dials the target for c and copies both ways until either side
// closes.
func (p *Proxy) serve(c net.Conn) {
	if !p.open() {
		p.untrack(c)
		return
	}
	u, err := net.Dial("tcp", p.target)
	if err != nil || !p.track(u) {
		if u != nil {
			u.Close()
		}
		p.untrack(c)
		return
	}
	var wg sync.WaitGroup
	wg.Go(func() { p.copy(u, c) })
	wg.Go(func() { p.copy(c, u) })
	wg.Wait()
}

// copy copies from src to dst, holding each chunk while the link is cut;
// when either side fails it closes both.
func (p *Proxy) copy(dst, src net.Conn) {
	defer p.untrack(dst, src)
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !p.open() {
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// open waits while the link is cut; false once the proxy is closed.
func (p *Proxy) open() bool {
	for {
		p.mu.Lock()
		cut, resume := p.cut, p.resume
		p.mu.Unlock()
		if !cut {
			select {
			case <-p.done:
				return false
			default:
				return true
			}
		}
		select {
		case <-resume:
		case <-p.done:
			return false
		}
	}
}
