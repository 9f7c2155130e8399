// Command leanclient is a data-plane candidate measured for issue 16: the
// net/http server with a hand-written upstream client (package h1): the
// handler writes the request on a pooled upstream connection itself and
// reads the response head into one reused buffer, with no
// http.Transport, no ReverseProxy and no goroutines per upstream
// connection. See docs/BENCHMARKS.md, "Data plane".
package main

import (
	"bytes"
	"flag"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spillway-dev/spillway/scripts/candidates/h1"
)

var hop = map[string]bool{"Connection": true, "Proxy-Connection": true, "Keep-Alive": true, "Te": true, "Trailer": true, "Transfer-Encoding": true, "Upgrade": true}

var heads = sync.Pool{New: func() any { return new(h1.Head) }}

func main() {
	listen := flag.String("listen", "127.0.0.1:8085", "address")
	backends := flag.String("backends", "127.0.0.1:9001,127.0.0.1:9002", "comma-separated upstreams")
	flag.Parse()
	var pools []*h1.Pool
	for _, a := range strings.Split(*backends, ",") {
		pools = append(pools, &h1.Pool{Addr: a})
	}
	var n atomic.Uint64
	h := func(w http.ResponseWriter, r *http.Request) {
		p := pools[n.Add(1)%uint64(len(pools))]
		u, err := p.Get()
		if err != nil {
			http.Error(w, "bad gateway", http.StatusBadGateway)
			return
		}
		bw := u.W
		bw.WriteString(r.Method)
		bw.WriteByte(' ')
		bw.WriteString(r.RequestURI)
		bw.WriteString(" HTTP/1.1\r\nHost: ")
		bw.WriteString(r.Host)
		bw.WriteString("\r\n")
		for k, vs := range r.Header {
			if hop[k] {
				continue
			}
			for _, v := range vs {
				bw.WriteString(k)
				bw.WriteString(": ")
				bw.WriteString(v)
				bw.WriteString("\r\n")
			}
		}
		if ip, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
			bw.WriteString("X-Forwarded-For: ")
			bw.WriteString(ip)
			bw.WriteString("\r\n")
		}
		if r.ContentLength > 0 {
			bw.WriteString("Content-Length: ")
			bw.WriteString(strconv.FormatInt(r.ContentLength, 10))
			bw.WriteString("\r\n\r\n")
			io.CopyN(bw, r.Body, r.ContentLength)
		} else {
			bw.WriteString("\r\n")
		}
		if err := bw.Flush(); err != nil {
			u.Close()
			http.Error(w, "bad gateway", http.StatusBadGateway)
			return
		}
		res := heads.Get().(*h1.Head)
		defer heads.Put(res)
		if err := res.Read(u.R); err != nil {
			u.Close()
			http.Error(w, "bad gateway", http.StatusBadGateway)
			return
		}
		f := res.First
		if len(f) < 12 {
			u.Close()
			http.Error(w, "bad gateway", http.StatusBadGateway)
			return
		}
		code, _ := strconv.Atoi(string(f[9:12]))
		hdr := w.Header()
		for _, l := range res.Lines {
			c := bytes.IndexByte(l, ':')
			k := textproto.CanonicalMIMEHeaderKey(string(l[:c]))
			if hop[k] {
				continue
			}
			hdr[k] = append(hdr[k], string(bytes.TrimSpace(l[c+1:])))
		}
		w.WriteHeader(code)
		var err2 error
		switch {
		case res.Length > 0:
			_, err2 = io.CopyN(w, u.R, res.Length)
		case res.Chunked:
			_, err2 = io.Copy(w, httputil.NewChunkedReader(u.R)) // trailers dropped: a prototype
		}
		if err2 != nil || res.Close || (res.Length < 0 && !res.Chunked) {
			u.Close()
			return
		}
		p.Put(u)
	}
	s := &http.Server{Addr: *listen, Handler: http.HandlerFunc(h), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute}
	log.Fatal(s.ListenAndServe())
}
