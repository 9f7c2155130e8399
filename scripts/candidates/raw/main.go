// Command raw is a data-plane candidate measured for issue 16: a
// hand-written HTTP/1.1 core (package h1) on both sides, a goroutine per
// client connection that reads a request, forwards it on a pooled
// upstream connection, and copies the response back. See
// docs/BENCHMARKS.md, "Data plane".
package main

import (
	"bufio"
	"flag"
	"log"
	"net"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/spillway-dev/spillway/scripts/candidates/h1"
)

type state struct {
	r   *bufio.Reader
	w   *bufio.Writer
	req h1.Head
	res h1.Head
	xff []byte
}

var states = sync.Pool{New: func() any {
	return &state{r: bufio.NewReaderSize(nil, 4096), w: bufio.NewWriterSize(nil, 4096)}
}}

func main() {
	listen := flag.String("listen", "127.0.0.1:8085", "address")
	backends := flag.String("backends", "127.0.0.1:9001,127.0.0.1:9002", "comma-separated upstreams")
	flag.Parse()
	var pools []*h1.Pool
	for _, a := range strings.Split(*backends, ",") {
		pools = append(pools, &h1.Pool{Addr: a})
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	var n atomic.Uint64
	for {
		c, err := ln.Accept()
		if err != nil {
			log.Fatal(err)
		}
		go serve(c, pools, &n)
	}
}

func serve(c net.Conn, pools []*h1.Pool, n *atomic.Uint64) {
	defer c.Close()
	s := states.Get().(*state)
	defer states.Put(s)
	s.r.Reset(c)
	s.w.Reset(c)
	ip, _, _ := net.SplitHostPort(c.RemoteAddr().String())
	s.xff = append(append(s.xff[:0], "X-Forwarded-For: "...), ip...)
	for {
		if err := s.req.Read(s.r); err != nil {
			return
		}
		p := pools[n.Add(1)%uint64(len(pools))]
		u, err := p.Get()
		if err != nil {
			s.w.WriteString("HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
			s.w.Flush()
			return
		}
		s.req.WriteHead(u.W, s.xff)
		if err := s.req.CopyBody(u.W, s.r, false); err != nil {
			u.Close()
			return
		}
		if err := u.W.Flush(); err != nil {
			u.Close()
			return
		}
		if err := s.res.Read(u.R); err != nil {
			u.Close()
			s.w.WriteString("HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
			s.w.Flush()
			return
		}
		toEOF := s.res.Length < 0 && !s.res.Chunked
		if toEOF {
			s.res.WriteHead(s.w, []byte("Connection: close"))
		} else {
			s.res.WriteHead(s.w)
		}
		err = s.res.CopyBody(s.w, u.R, toEOF)
		if err != nil || s.res.Close || toEOF {
			u.Close()
		} else {
			p.Put(u)
		}
		if err != nil || s.w.Flush() != nil || toEOF || s.req.Close {
			return
		}
	}
}
