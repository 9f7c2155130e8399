package sidecar

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"

	"github.com/spillway-dev/spillway/guard"
	"github.com/spillway-dev/spillway/health"
	"github.com/spillway-dev/spillway/internal/buildinfo"
	"github.com/spillway-dev/spillway/internal/httpapi"
)

// Options are a Sidecar's collaborators. Zero values are usable.
type Options struct {
	// Logger receives the sidecar's logs. Default: discard.
	Logger *slog.Logger
	// Now is the clock of the health server and of the duration metric.
	// Default time.Now.
	Now func() time.Time
}

// Outcomes of a proxied request, the values of the outcome label of
// spillway_sidecar_requests_total.
const (
	outcomeOK          = "ok"           // the upstream answered 1xx-4xx
	outcomeUpstream5xx = "upstream_5xx" // the upstream answered 5xx, passed on
	outcomeUnavailable = "dependency_unavailable"
	outcomeOverloaded  = "overloaded"
	outcomeCanceled    = "canceled" // the service went away
	outcomeCutOff      = "cut_off"  // the answer broke off after its headers
)

// Sidecar is one guarded egress proxy and its health server. Make it with
// New and call Run once.
type Sidecar struct {
	cfg      Config
	log      *slog.Logger
	now      func() time.Time
	guard    *guard.Guard
	health   *health.Server
	ready    *serviceReady // nil without service_ready.url
	tr       *http.Transport
	proxy    *httputil.ReverseProxy
	registry *prometheus.Registry
	requests *prometheus.CounterVec
	outcomes map[string]prometheus.Counter // requests, bound by outcome
	duration prometheus.Histogram
	errs     httpapi.Adapter
	draining atomic.Bool
}

// New builds a Sidecar from c (start it from DefaultConfig): the derived
// defaults of a copy are resolved (Resolve), then it is validated.
func New(c *Config, opts Options) (*Sidecar, error) {
	cfg := *c
	cfg.Resolve()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	target, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("url: %w", err)
	}
	s := &Sidecar{cfg: cfg, log: opts.Logger, now: opts.Now, errs: httpapi.Adapter{Log: opts.Logger, Message: "guard answered itself"}}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), buildinfo.NewCollector())
	s.registry = reg
	s.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name:        "spillway_sidecar_requests_total",
		Help:        "Requests the sidecar proxied or answered itself, by outcome: ok, upstream_5xx, dependency_unavailable, overloaded, canceled, cut_off.",
		ConstLabels: prometheus.Labels{"dependency": cfg.Name},
	}, []string{"outcome"})
	s.duration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:        "spillway_sidecar_duration_seconds",
		Help:        "Time from a request's arrival at the sidecar to the end of its answer.",
		ConstLabels: prometheus.Labels{"dependency": cfg.Name},
		Buckets:     []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	})
	reg.MustRegister(s.requests, s.duration)
	s.outcomes = map[string]prometheus.Counter{}
	for _, o := range []string{outcomeOK, outcomeUpstream5xx, outcomeUnavailable, outcomeOverloaded, outcomeCanceled, outcomeCutOff} {
		s.outcomes[o] = s.requests.WithLabelValues(o)
	}

	s.tr = &http.Transport{
		Proxy:                  nil, // the sidecar is the proxy: no HTTP_PROXY detour
		DialContext:            (&net.Dialer{Timeout: cfg.Timeout, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:           cfg.MaxConcurrent,
		MaxIdleConnsPerHost:    cfg.MaxConcurrent,
		IdleConnTimeout:        90 * time.Second,
		TLSHandshakeTimeout:    cfg.Timeout,
		ResponseHeaderTimeout:  cfg.Timeout,
		ExpectContinueTimeout:  time.Second,
		MaxResponseHeaderBytes: 64 << 10,
		ForceAttemptHTTP2:      true,
	}
	s.proxy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target) // scheme, host, joined path; Host is the upstream's
			// Transparent: the service's own X-Forwarded-* go on as
			// they came (Rewrite drops them), and none is added.
			for _, h := range []string{"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto"} {
				if v, ok := pr.In.Header[h]; ok {
					pr.Out.Header[h] = v
				}
			}
		},
		Transport:  s.tr,
		BufferPool: bufferPool{},
		// Errors before the upstream's headers are the call's failure:
		// the recorder keeps the error and the sidecar answers itself.
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			w.(*recorder).err = err
		},
		ErrorLog: slog.NewLogLogger(opts.Logger.Handler(), slog.LevelDebug),
	}

	s.guard, err = guard.New(cfg.Config, guard.Options{
		Name:       cfg.Name,
		Logger:     opts.Logger,
		Registerer: reg,
		Client: &http.Client{Transport: s.tr, CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse // a 3xx probe answer is unhealthy
		}},
		// The load balancer long-polls /health: tell it at once.
		OnChange: func() { s.health.Notify() }, // s.health is set below, before any call
	})
	if err != nil {
		return nil, fmt.Errorf("guard: %w", err)
	}
	s.health = health.New(health.Options{Now: opts.Now, Logger: opts.Logger, Gatherer: reg, Registerer: reg})
	s.health.AddDependency(cfg.Name, s.guard.Status)
	if cfg.ServiceReady.URL != "" {
		s.ready = newServiceReady(cfg.ServiceReady, opts.Logger, s.health.Notify)
		s.health.AddReadinessGate("service", s.ready.err)
	}
	return s, nil
}

// bufferPool lends ReverseProxy its 32 KiB copy buffers, which it would
// otherwise allocate for every answer.
type bufferPool struct{}

var buffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (bufferPool) Get() []byte  { return *buffers.Get().(*[]byte) }
func (bufferPool) Put(b []byte) { buffers.Put(&b) }

// Health returns the sidecar's health server.
func (s *Sidecar) Health() *health.Server { return s.health }

// Handler returns the proxy's handler: every request is forwarded to the
// upstream through the guard.
func (s *Sidecar) Handler() http.Handler { return http.HandlerFunc(s.serveHTTP) }

// recorder is the proxy's ResponseWriter: it remembers whether the
// upstream's answer has begun (its status) and the error that ended the
// call before it did.
type recorder struct {
	http.ResponseWriter
	status int   // the final status written, 0 before
	err    error // the proxy's error before the upstream answered
}

func (r *recorder) WriteHeader(code int) {
	if code >= 200 && r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(p []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the server's writer (flushes,
// deadlines, the hijack of an upgrade).
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// errCutOff: the upstream's answer broke off after its headers were sent
// on (the body could not be copied).
var errCutOff = errors.New("answer cut off after its headers")

// upstreamStatus is a 5xx answer of the upstream: passed on to the
// service, and a failure for the breaker.
type upstreamStatus int

func (e upstreamStatus) Error() string { return fmt.Sprintf("upstream answered %d", int(e)) }

func (s *Sidecar) serveHTTP(w http.ResponseWriter, r *http.Request) {
	start := s.now()
	if s.draining.Load() {
		w.Header()["Connection"] = []string{"close"}
	}
	rec := &recorder{ResponseWriter: w}
	cutOff := false
	err := s.guard.Do(r.Context(), func(ctx context.Context) (err error) {
		defer func() {
			// ReverseProxy aborts the answer when its body cannot be
			// copied; count it here, abort below, outside the guard.
			if p := recover(); p != nil {
				if p != http.ErrAbortHandler {
					panic(p)
				}
				cutOff = true
				err = errCutOff
			}
		}()
		s.proxy.ServeHTTP(rec, r.WithContext(ctx))
		switch {
		case rec.err != nil:
			return rec.err
		case rec.status >= 500:
			return upstreamStatus(rec.status)
		}
		return nil
	})
	outcome := outcomeOK
	defer func() {
		s.outcomes[outcome].Inc()
		s.duration.Observe(s.now().Sub(start).Seconds())
	}()
	switch {
	case cutOff:
		outcome = outcomeCutOff
		panic(http.ErrAbortHandler)
	case rec.status >= 500:
		outcome = outcomeUpstream5xx // passed on as it came
	case err == nil || rec.status != 0:
	case r.Context().Err() != nil:
		outcome = outcomeCanceled
		s.errs.Render(w, r, httpapi.RequestID(r), httpapi.ErrClientGone)
	case errors.Is(err, guard.ErrBulkheadFull):
		outcome = outcomeOverloaded
		s.errs.Render(w, r, httpapi.RequestID(r), &httpapi.Error{
			Status: http.StatusServiceUnavailable, Code: health.ReasonOverloaded,
			RetryAfter: time.Second, Err: err,
		})
	default:
		outcome = outcomeUnavailable
		s.errs.Render(w, r, httpapi.RequestID(r), &httpapi.Error{
			Status: http.StatusServiceUnavailable, Code: health.ReasonDependencyUnavailable,
			RetryAfter: s.cfg.retryAfter(), Err: err,
		})
	}
}

// Run serves the proxy on ln and the health port on hl until ctx is done,
// then shuts down in order: the report says draining and /readyz fails
// at once, the proxy serves on for drain_delay (answers say Connection:
// close), its listener closes and calls in flight get shutdown_timeout,
// then the guard's probe, the readiness poller and the health server
// stop. It owns both listeners and every goroutine it starts.
func (s *Sidecar) Run(ctx context.Context, ln, hl net.Listener) error {
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       s.cfg.Timeout + 10*time.Second,
		WriteTimeout:      s.cfg.Timeout + 10*time.Second,
		IdleTimeout:       90 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	// bg lives until the proxy has stopped: the probe, the poller and the
	// health server outlive the drain.
	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBG()
	g, gctx := errgroup.WithContext(bg)
	g.Go(func() error { return s.guard.Run(gctx) })
	g.Go(func() error { return s.health.Serve(gctx, hl) })
	if s.ready != nil {
		g.Go(func() error { return s.ready.run(gctx) })
	}
	s.health.Start()
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }() // owned: waited for below

	var err error
	served := false // serveErr received
	select {
	case err = <-serveErr:
		served = true
		err = fmt.Errorf("proxy server: %w", err)
	case <-gctx.Done():
		err = errors.New("health server, readiness poller or guard stopped early")
	case <-ctx.Done():
		s.log.Info("draining", "drain_delay", s.cfg.DrainDelay)
		s.draining.Store(true)
		s.health.Drain()
		t := time.NewTimer(s.cfg.DrainDelay)
		select {
		case <-t.C:
		case <-gctx.Done():
			t.Stop()
		}
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ShutdownTimeout)
		if serr := srv.Shutdown(sctx); serr != nil {
			s.log.Warn("shutdown: calls in flight cut off", "error", serr)
		}
		cancel()
	}
	_ = srv.Close()
	if !served {
		if e := <-serveErr; err == nil && !errors.Is(e, http.ErrServerClosed) {
			err = fmt.Errorf("proxy server: %w", e)
		}
	}
	stopBG()
	if gerr := g.Wait(); gerr != nil && err == nil {
		err = gerr
	}
	s.tr.CloseIdleConnections()
	return err
}

// Interface guards.
var (
	_ http.ResponseWriter = (*recorder)(nil)
	_ httputil.BufferPool = bufferPool{}
)
