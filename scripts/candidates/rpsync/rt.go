package main

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

type conn struct {
	net.Conn
	r *bufio.Reader
	w *bufio.Writer
}

type syncRT struct {
	mu   sync.Mutex
	idle map[string][]*conn
}

func transport() http.RoundTripper { return &syncRT{idle: map[string][]*conn{}} }

func (t *syncRT) get(addr string) (*conn, error) {
	t.mu.Lock()
	if cs := t.idle[addr]; len(cs) > 0 {
		c := cs[len(cs)-1]
		t.idle[addr] = cs[:len(cs)-1]
		t.mu.Unlock()
		return c, nil
	}
	t.mu.Unlock()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	return &conn{Conn: nc, r: bufio.NewReaderSize(nc, 4096), w: bufio.NewWriterSize(nc, 4096)}, nil
}

func (t *syncRT) put(addr string, c *conn) {
	t.mu.Lock()
	t.idle[addr] = append(t.idle[addr], c)
	t.mu.Unlock()
}

func (t *syncRT) RoundTrip(req *http.Request) (*http.Response, error) {
	addr := req.URL.Host
	c, err := t.get(addr)
	if err != nil {
		return nil, err
	}
	if err := req.Write(c.w); err != nil {
		c.Close()
		return nil, err
	}
	if err := c.w.Flush(); err != nil {
		c.Close()
		return nil, err
	}
	res, err := http.ReadResponse(c.r, req)
	if err != nil {
		c.Close()
		return nil, err
	}
	res.Body = &body{ReadCloser: res.Body, t: t, c: c, addr: addr, keep: !res.Close}
	return res, nil
}

type body struct {
	io.ReadCloser
	t    *syncRT
	c    *conn
	addr string
	keep bool
	eof  bool
}

func (b *body) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.eof = true
	}
	return n, err
}

func (b *body) Close() error {
	if b.c == nil {
		return nil
	}
	if b.eof && b.keep {
		b.t.put(b.addr, b.c)
	} else {
		b.c.Close()
	}
	b.c = nil
	return nil
}
