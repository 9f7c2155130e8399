// Command transport is a data-plane candidate measured for issue 16: the
// net/http server and http.Transport, forwarding without
// httputil.ReverseProxy (headers copied by hand, the body with a pooled
// buffer), round-robin. See docs/BENCHMARKS.md, "Data plane".
package main

import (
	"flag"
	"io"
	"log"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

var hop = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

func main() {
	listen := flag.String("listen", "127.0.0.1:8085", "address")
	backends := flag.String("backends", "127.0.0.1:9001,127.0.0.1:9002", "comma-separated upstreams")
	flag.Parse()
	ups := strings.Split(*backends, ",")
	tr := &http.Transport{MaxIdleConns: 2048, MaxIdleConnsPerHost: 1024, IdleConnTimeout: time.Minute, DisableCompression: true}
	bufs := sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}
	var n atomic.Uint64
	h := func(w http.ResponseWriter, r *http.Request) {
		out := r.Clone(r.Context())
		out.RequestURI = ""
		out.URL.Scheme, out.URL.Host = "http", ups[n.Add(1)%uint64(len(ups))]
		for _, k := range hop {
			out.Header.Del(k)
		}
		if ip, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
			out.Header.Set("X-Forwarded-For", ip)
		}
		res, err := tr.RoundTrip(out)
		if err != nil {
			http.Error(w, "bad gateway", http.StatusBadGateway)
			return
		}
		defer res.Body.Close()
		for _, k := range hop {
			res.Header.Del(k)
		}
		for k, v := range res.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(res.StatusCode)
		b := bufs.Get().(*[]byte)
		_, _ = io.CopyBuffer(w, res.Body, *b)
		bufs.Put(b)
	}
	s := &http.Server{Addr: *listen, Handler: http.HandlerFunc(h), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute}
	log.Fatal(s.ListenAndServe())
}
