// Package h1 is the hand-written HTTP/1.1 core measured as a data-plane
// candidate for issue 16: a message head read into one reused buffer
// (header lines as byte-slice views, no maps, no strings), bodies by
// Content-Length or passed through chunked, and a pool of kept-alive
// upstream connections. It is a benchmark prototype: enough HTTP/1.1 for
// the harness's traffic and to size the approach, not a full parser.
package h1

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
	"time"
)

// Head is one request or response head: its first line and its header
// lines, each a view into the reader's buffer copy held in buf.
type Head struct {
	buf     []byte
	First   []byte
	Lines   [][]byte // "Name: value" without CRLF
	Length  int64    // Content-Length, or -1
	Chunked bool
	Close   bool // Connection: close
}

var errHead = errors.New("malformed head")

// Read reads a head from r into h, reusing h's storage.
func (h *Head) Read(r *bufio.Reader) error {
	h.buf, h.Lines, h.Length, h.Chunked, h.Close = h.buf[:0], h.Lines[:0], -1, false, false
	var offs [][2]int
	first := true
	var fs, fe int
	for {
		line, err := r.ReadSlice('\n')
		if err != nil {
			return err
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			if first {
				continue
			}
			break
		}
		start := len(h.buf)
		h.buf = append(h.buf, line...)
		if first {
			fs, fe, first = start, len(h.buf), false
			continue
		}
		offs = append(offs, [2]int{start, len(h.buf)})
		if len(offs) > 100 {
			return errHead
		}
	}
	h.First = h.buf[fs:fe]
	for _, o := range offs {
		l := h.buf[o[0]:o[1]]
		h.Lines = append(h.Lines, l)
		c := bytes.IndexByte(l, ':')
		if c <= 0 {
			return errHead
		}
		name, val := l[:c], bytes.TrimSpace(l[c+1:])
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			n, err := strconv.ParseInt(string(val), 10, 64)
			if err != nil || n < 0 || (h.Length >= 0 && h.Length != n) {
				return errHead
			}
			h.Length = n
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			h.Chunked = bytes.EqualFold(val, []byte("chunked"))
			if !h.Chunked {
				return errHead
			}
		case bytes.EqualFold(name, []byte("Connection")):
			h.Close = bytes.Contains(bytes.ToLower(val), []byte("close"))
		}
	}
	if h.Chunked && h.Length >= 0 {
		return errHead // smuggling: both
	}
	return nil
}

var hop = [][]byte{[]byte("Connection"), []byte("Proxy-Connection"), []byte("Keep-Alive"), []byte("Te"), []byte("Trailer"), []byte("Upgrade"), []byte("Proxy-Authorization"), []byte("Proxy-Authenticate")}

// WriteHead writes h's first line and end-to-end header lines to w,
// with the extra lines after them.
func (h *Head) WriteHead(w *bufio.Writer, extra ...[]byte) {
	w.Write(h.First)
	w.WriteString("\r\n")
lines:
	for _, l := range h.Lines {
		c := bytes.IndexByte(l, ':')
		for _, p := range hop {
			if bytes.EqualFold(l[:c], p) {
				continue lines
			}
		}
		w.Write(l)
		w.WriteString("\r\n")
	}
	for _, l := range extra {
		w.Write(l)
		w.WriteString("\r\n")
	}
	w.WriteString("\r\n")
}

// CopyBody copies the body h describes from r to w. A response with
// neither length nor chunking (read to close) is signalled by toEOF.
func (h *Head) CopyBody(w *bufio.Writer, r *bufio.Reader, toEOF bool) error {
	switch {
	case h.Chunked:
		for {
			line, err := r.ReadSlice('\n')
			if err != nil {
				return err
			}
			w.Write(line)
			t := bytes.TrimRight(line, "\r\n")
			if i := bytes.IndexByte(t, ';'); i >= 0 {
				t = t[:i]
			}
			n, err := strconv.ParseInt(string(bytes.TrimSpace(t)), 16, 64)
			if err != nil || n < 0 {
				return errHead
			}
			if n == 0 { // trailers, then the blank line
				for {
					line, err := r.ReadSlice('\n')
					if err != nil {
						return err
					}
					w.Write(line)
					if len(bytes.TrimRight(line, "\r\n")) == 0 {
						return nil
					}
				}
			}
			if _, err := io.CopyN(w, r, n+2); err != nil {
				return err
			}
		}
	case h.Length > 0:
		_, err := io.CopyN(w, r, h.Length)
		return err
	case h.Length < 0 && toEOF:
		_, err := io.Copy(w, r)
		return err
	}
	return nil
}

// Conn is one kept-alive upstream connection.
type Conn struct {
	net.Conn
	R *bufio.Reader
	W *bufio.Writer
}

// Pool keeps idle connections to one upstream address.
type Pool struct {
	Addr string
	mu   sync.Mutex
	idle []*Conn
}

// Get returns an idle connection or dials one.
func (p *Pool) Get() (*Conn, error) {
	p.mu.Lock()
	if n := len(p.idle); n > 0 {
		c := p.idle[n-1]
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		return c, nil
	}
	p.mu.Unlock()
	nc, err := net.DialTimeout("tcp", p.Addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	return &Conn{Conn: nc, R: bufio.NewReaderSize(nc, 4096), W: bufio.NewWriterSize(nc, 4096)}, nil
}

// Put returns c to the pool.
func (p *Pool) Put(c *Conn) {
	p.mu.Lock()
	if len(p.idle) < 1024 {
		p.idle = append(p.idle, c)
		c = nil
	}
	p.mu.Unlock()
	if c != nil {
		c.Close()
	}
}
