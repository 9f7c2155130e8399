// Command overload sends one open-loop load (internal/loadgen: request i
// starts at start + i/rate whether or not the earlier ones have finished)
// to one URL and prints what came back over a measured window, as one
// line of key=value pairs for scripts/bench-overload.sh to collect:
//
//	RESULT offered_rps=... ok=... ok_rps=... ok_p50_ms=... ok_p99_ms=... s503=... s503_p99_ms=... ...
//
// The load runs for -warmup, then for -duration; only requests started in
// the second span count (a request started in it is counted when it ends,
// even after the span). Each request's status and latency, from the
// moment the client sends it to the end of its answer's body, are taken
// by a RoundTripper around the client's transport, so a 503 is a 503
// whoever sent it (spillway's carries a reason, HAProxy's does not).
// With -backend, each backend-sim's /stats is reset when the window
// opens and read when the last request has ended: what the fleet itself
// did meanwhile (calls served, turned away by its queue, peak queue).
//
// With -serve-report ADDR it sends nothing: it serves, until SIGINT or
// SIGTERM, a fixed instance health report on ADDR (GET /readyz: 200;
// GET /health: {"ready":true,"phase":"ready","limit":N}), the way to tell
// `spillway lb` a backend's concurrency limit when the backend (such as
// backend-sim) publishes no report of its own (docs/CONTRACT.md).
//
// It is a benchmark tool, not part of `go test`. It talks to the given
// URLs only and stops when the load has ended (or on SIGINT/SIGTERM, when
// the requests in flight are cut short).
//
// Usage:
//
//	overload -url URL -rate R [-warmup 2s] [-duration 10s] [-timeout 2s] [-body JSON] [-backend URL]...
//	overload -serve-report 127.0.0.1:PORT -report-limit N
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spillway-dev/spillway/health"
	"github.com/spillway-dev/spillway/internal/backendsim"
	"github.com/spillway-dev/spillway/internal/loadgen"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "overload:", err)
		os.Exit(1)
	}
}

// urls is a repeatable flag.
type urls []string

func (u *urls) String() string     { return strings.Join(*u, ",") }
func (u *urls) Set(s string) error { *u = append(*u, s); return nil }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("overload", flag.ContinueOnError)
	fs.SetOutput(stderr)
	target := fs.String("url", "", "absolute http URL every request goes to")
	rate := fs.Float64("rate", 0, "requests started per second")
	warmup := fs.Duration("warmup", 2*time.Second, "load before the measured window, not counted")
	duration := fs.Duration("duration", 10*time.Second, "the measured window")
	timeout := fs.Duration("timeout", 2*time.Second, "client timeout of each request")
	body := fs.String("body", `{"ticket":"valid-bench"}`, "POST body (JSON); empty: GET without a body")
	var backends urls
	fs.Var(&backends, "backend", "a backend-sim's base URL whose /stats to reset at the window's start and read at the end; repeat")
	serve := fs.String("serve-report", "", "serve a fixed health report on this host:port instead of sending load")
	limit := fs.Int("report-limit", 0, "the report's concurrency limit (with -serve-report)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx) // ends the goroutines below on every return
	defer cancel()
	if *serve != "" {
		return serveReport(ctx, *serve, *limit, stderr)
	}
	if *warmup < 0 || *duration <= 0 {
		return fmt.Errorf("warmup %v, duration %v: warmup must not be negative, duration must be positive", *warmup, *duration)
	}

	rec := &recorder{}
	// The transport newTransport would build for this rate, every timeout
	// set, with the recorder around it.
	idle := int(min(max(*rate/4, 16), 1024))
	tr := &http.Transport{
		Proxy:                 nil,
		DialContext:           (&net.Dialer{Timeout: *timeout, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          idle,
		MaxIdleConnsPerHost:   idle,
		IdleConnTimeout:       30 * time.Second,
		ResponseHeaderTimeout: *timeout,
		ExpectContinueTimeout: time.Second,
	}
	defer tr.CloseIdleConnections()
	rec.next = tr

	cfg := loadgen.Config{
		URL:      *target,
		Rate:     *rate,
		Duration: *warmup + *duration,
		Timeout:  *timeout,
		Client:   &http.Client{Transport: rec},
	}
	if *body != "" {
		b := []byte(*body)
		cfg.Header = http.Header{"Content-Type": {"application/json"}}
		cfg.Body = func(int) []byte { return b }
	}
	start := time.Now()
	from, to := start.Add(*warmup), start.Add(*warmup+*duration)
	var dropped dropCounter
	cfg.OnResult = func(at time.Time, o health.Outcome, d time.Duration) {
		if d == 0 && o == health.OutcomeClientTimeout && !at.Before(from) && at.Before(to) {
			dropped.add() // not sent: loadgen's MaxInFlight was reached
		}
	}

	sims := make([]*backendsim.Client, len(backends))
	for i, u := range backends {
		sims[i] = &backendsim.Client{BaseURL: u, HTTP: &http.Client{Timeout: 5 * time.Second}}
	}
	resetErr := make(chan error, 1)
	go func() { // resets the backends' counts when the window opens
		t := time.NewTimer(time.Until(from))
		defer t.Stop()
		select {
		case <-ctx.Done():
			resetErr <- ctx.Err()
			return
		case <-t.C:
		}
		var errs []error
		for _, s := range sims {
			_, err := s.ResetStats(ctx)
			errs = append(errs, err)
		}
		resetErr <- errors.Join(errs...)
	}()

	res, err := loadgen.Run(ctx, cfg, nil)
	if err != nil {
		return err
	}
	// The backends' counts are a side view: without them the run still
	// counts, with -1 in their place.
	var be fleetStats
	if err := <-resetErr; err != nil {
		fmt.Fprintf(stderr, "overload: reset backend stats: %v\n", err)
		be.invalid()
	}
	for _, s := range sims {
		st, err := s.Stats(ctx)
		if err != nil {
			fmt.Fprintf(stderr, "overload: backend stats %s: %v\n", s.BaseURL, err)
			be.invalid()
			continue
		}
		be.add(st)
	}

	w := rec.window(from, to)
	secs := duration.Seconds()
	offered := len(w.ok) + len(w.s503) + w.other + w.errors + w.timeouts + dropped.n
	fmt.Fprintf(stdout, "RESULT target_rps=%.1f offered_rps=%.1f ok=%d ok_rps=%.1f ok_p50_ms=%.2f ok_p99_ms=%.2f ok_max_ms=%.2f"+
		" s503=%d s503_rps=%.1f s503_p50_ms=%.2f s503_p99_ms=%.2f other_status=%d errors=%d timeouts=%d dropped=%d"+
		" max_in_flight=%d be_served=%d be_queue_full=%d be_queue_timeout=%d be_abandoned=%d be_peak_busy=%d be_peak_queued=%d\n",
		*rate, float64(offered)/secs, len(w.ok), float64(len(w.ok))/secs,
		ms(quantile(w.ok, 0.50)), ms(quantile(w.ok, 0.99)), ms(quantile(w.ok, 1)),
		len(w.s503), float64(len(w.s503))/secs, ms(quantile(w.s503, 0.50)), ms(quantile(w.s503, 0.99)),
		w.other, w.errors, w.timeouts, dropped.n, res.MaxInFlight,
		be.get(be.served), be.get(be.queueFull), be.get(be.queueTimeout), be.get(be.abandoned),
		be.get(uint64(be.peakBusy)), be.get(uint64(be.peakQueued)))
	if res.Lost() != 0 {
		return fmt.Errorf("loadgen lost %d requests", res.Lost())
	}
	return nil
}

// serveReport serves /readyz and a /health report with the given limit on
// addr until ctx is done.
func serveReport(ctx context.Context, addr string, limit int, stderr io.Writer) error {
	if limit <= 0 {
		return fmt.Errorf("report limit %d: must be positive", limit)
	}
	report := fmt.Appendf(nil, `{"ready":true,"phase":"ready","limit":%d}`, limit)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") })
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(report)
	})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: time.Minute}
	fmt.Fprintf(stderr, "overload: serving a report of limit %d on %s\n", limit, ln.Addr())
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// sample is one request as the client saw it. status is 0 when no answer
// came (timeout set when the client gave up).
type sample struct {
	start   time.Time
	d       time.Duration
	status  int
	timeout bool
}

// recorder is an http.RoundTripper that records every request's status
// and latency, until its answer's body is closed. Safe for concurrent
// use.
type recorder struct {
	next http.RoundTripper

	mu      sync.Mutex
	samples []sample
}

var _ http.RoundTripper = (*recorder)(nil)

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	start := time.Now()
	res, err := r.next.RoundTrip(req)
	if err != nil {
		var ne net.Error
		timeout := req.Context().Err() != nil || errors.As(err, &ne) && ne.Timeout()
		r.add(sample{start: start, d: time.Since(start), timeout: timeout})
		return nil, err
	}
	status := res.StatusCode
	res.Body = &timedBody{ReadCloser: res.Body, done: func() {
		r.add(sample{start: start, d: time.Since(start), status: status})
	}}
	return res, nil
}

func (r *recorder) add(s sample) {
	r.mu.Lock()
	r.samples = append(r.samples, s)
	r.mu.Unlock()
}

// timedBody calls done once, when it is closed.
type timedBody struct {
	io.ReadCloser
	once sync.Once
	done func()
}

func (b *timedBody) Close() error {
	err := b.ReadCloser.Close()
	b.once.Do(b.done)
	return err
}

// window is what the requests started in [from, to) got.
type window struct {
	ok, s503                []time.Duration // latencies of 2xx and 503 answers, sorted
	other, errors, timeouts int             // other statuses; transport errors; client timeouts
}

func (r *recorder) window(from, to time.Time) window {
	r.mu.Lock()
	defer r.mu.Unlock()
	var w window
	for _, s := range r.samples {
		if s.start.Before(from) || !s.start.Before(to) {
			continue
		}
		switch {
		case s.status >= 200 && s.status < 300:
			w.ok = append(w.ok, s.d)
		case s.status == http.StatusServiceUnavailable:
			w.s503 = append(w.s503, s.d)
		case s.status != 0:
			w.other++
		case s.timeout:
			w.timeouts++
		default:
			w.errors++
		}
	}
	slices.Sort(w.ok)
	slices.Sort(w.s503)
	return w
}

// quantile is the nearest-rank q-quantile of sorted ds; -1 when empty.
func quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return -1
	}
	i := int(math.Ceil(q*float64(len(ds)))) - 1
	return ds[min(max(i, 0), len(ds)-1)]
}

// ms is d in milliseconds; -1 stays -1 (no sample).
func ms(d time.Duration) float64 {
	if d < 0 {
		return -1
	}
	return float64(d) / float64(time.Millisecond)
}

// dropCounter counts requests loadgen did not send; OnResult calls it
// from the scheduler's goroutine and from request goroutines.
type dropCounter struct {
	mu sync.Mutex
	n  int
}

func (c *dropCounter) add() {
	c.mu.Lock()
	c.n++
	c.mu.Unlock()
}

// fleetStats sums the backends' validate counts since the reset.
type fleetStats struct {
	served, queueFull, queueTimeout, abandoned uint64
	peakBusy, peakQueued                       int  // summed over the backends: each one's peak
	bad                                        bool // a reset or a read failed
}

func (f *fleetStats) invalid() { f.bad = true }

// get is v, or -1 when the counts are incomplete.
func (f *fleetStats) get(v uint64) int64 {
	if f.bad {
		return -1
	}
	return int64(v)
}

func (f *fleetStats) add(st backendsim.Stats) {
	v := st.Paths[backendsim.PathValidate]
	f.served += v.Valid + v.Invalid
	f.queueFull += v.QueueFull
	f.queueTimeout += v.QueueTimeout
	f.abandoned += v.Abandoned
	f.peakBusy += st.Pool.PeakBusy
	f.peakQueued += st.Pool.PeakQueued
}
