// Command idleconns opens N keep-alive client connections to a proxy, sends
// one request on each and reads its answer, then holds them all idle for
// -hold (or until SIGTERM/SIGINT), and closes them. It prints "ready N"
// once every connection has had its answer. scripts/bench-idle.sh uses it
// to measure a proxy's memory per idle connection and the throughput of
// the active ones beside them (issue 16).
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8085", "the proxy's host:port (loopback only)")
	n := flag.Int("n", 10000, "connections")
	hold := flag.Duration("hold", 5*time.Minute, "how long to hold them at most")
	flag.Parse()
	if h, _, err := net.SplitHostPort(*addr); err != nil || !net.ParseIP(h).IsLoopback() {
		log.Fatalf("-addr %q: a loopback host:port only", *addr)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	conns := make([]net.Conn, *n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	var mu sync.Mutex
	failed := 0
	for i := range conns {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			c, err := net.DialTimeout("tcp", *addr, 5*time.Second)
			if err == nil {
				c.SetDeadline(time.Now().Add(10 * time.Second))
				fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", *addr)
				var res *http.Response
				if res, err = http.ReadResponse(bufio.NewReader(c), nil); err == nil {
					_, err = io.Copy(io.Discard, res.Body)
					res.Body.Close()
				}
				c.SetDeadline(time.Time{})
			}
			if err != nil {
				mu.Lock()
				failed++
				mu.Unlock()
				if c != nil {
					c.Close()
				}
				return
			}
			conns[i] = c
		})
	}
	wg.Wait()
	fmt.Printf("ready %d (failed %d)\n", *n-failed, failed)
	select {
	case <-ctx.Done():
	case <-time.After(*hold):
	}
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
	os.Exit(0)
}
