// Command fasthttp is a data-plane candidate measured for issue 16:
// valyala/fasthttp's server and HostClient, round-robin over the
// upstreams, nothing else. See docs/BENCHMARKS.md, "Data plane".
package main

import (
	"flag"
	"log"
	"strings"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8085", "address")
	backends := flag.String("backends", "127.0.0.1:9001,127.0.0.1:9002", "comma-separated upstreams")
	flag.Parse()
	var hcs []*fasthttp.HostClient
	for _, a := range strings.Split(*backends, ",") {
		hcs = append(hcs, &fasthttp.HostClient{Addr: a, MaxConns: 1024, MaxIdleConnDuration: time.Minute, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second})
	}
	var n atomic.Uint64
	h := func(ctx *fasthttp.RequestCtx) {
		hc := hcs[n.Add(1)%uint64(len(hcs))]
		req := &ctx.Request
		req.Header.Del("Connection")
		req.Header.Set("X-Forwarded-For", ctx.RemoteIP().String())
		if err := hc.Do(req, &ctx.Response); err != nil {
			ctx.Error("bad gateway", fasthttp.StatusBadGateway)
		}
		ctx.Response.Header.Del("Connection")
	}
	s := &fasthttp.Server{Handler: h, ReadTimeout: 30 * time.Second, IdleTimeout: time.Minute, NoDefaultServerHeader: true}
	log.Fatal(s.ListenAndServe(*listen))
}
