// Command rp is a data-plane candidate measured for issue 16:
// httputil.ReverseProxy with pooled copy buffers over http.Transport,
// round-robin: the shape of `spillway lb`'s data plane before issue 16,
// without its decisions. See docs/BENCHMARKS.md, "Data plane".
package main

import (
	"flag"
	"log"
	"net/http"
	"net/http/httputil"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

type pool struct{ sync.Pool }

func (p *pool) Get() []byte  { return *(p.Pool.Get().(*[]byte)) }
func (p *pool) Put(b []byte) { p.Pool.Put(&b) }

func main() {
	listen := flag.String("listen", "127.0.0.1:8085", "address")
	backends := flag.String("backends", "127.0.0.1:9001,127.0.0.1:9002", "comma-separated upstreams")
	flag.Parse()
	ups := strings.Split(*backends, ",")
	var n atomic.Uint64
	bp := &pool{sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme, pr.Out.URL.Host = "http", ups[n.Add(1)%uint64(len(ups))]
			pr.SetXForwarded()
		},
		Transport:  transport(),
		BufferPool: bp,
	}
	s := &http.Server{Addr: *listen, Handler: rp, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute}
	log.Fatal(s.ListenAndServe())
}
