package h1

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"time"
)

// This file holds the pool of idle connections per host and the dial.

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
