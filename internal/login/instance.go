package login

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"reflect"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/errgroup"

	"github.com/spillway-dev/spillway/admission"
	"github.com/spillway-dev/spillway/guard"
	"github.com/spillway-dev/spillway/health"
	"github.com/spillway-dev/spillway/internal/buildinfo"
	"github.com/spillway-dev/spillway/internal/certs"
	"github.com/spillway-dev/spillway/internal/clientip"
	"github.com/spillway-dev/spillway/internal/connlimit"
	"github.com/spillway-dev/spillway/internal/field"
	"github.com/spillway-dev/spillway/internal/membership"
	"github.com/spillway-dev/spillway/internal/reload"
	"github.com/spillway-dev/spillway/internal/tracing"
)

// BackendName is the dependency's name in /health and in metrics.
const BackendName = "backend"

// Options are an Instance's collaborators. Zero values are usable.
type Options struct {
	// Logger receives the instance's logs. Default: discard.
	Logger *slog.Logger
	// Dev allows an ephemeral signing key when none is configured.
	Dev bool
	// Getenv reads the key's environment variable. Default os.Getenv.
	Getenv func(string) string
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// InstanceID names the instance in its registration (Config.Register).
	// Default HOSTNAME-PID.
	InstanceID string
	// TracerProvider, if set, traces the service port (package tracing):
	// a server span per request, continuing the caller's W3C trace
	// context, and a client span for each backend call made for it,
	// whose trace context the backend receives. Nil: no tracing.
	TracerProvider trace.TracerProvider
	// Registrar registers the instance at Config.Register. The command
	// wires the etcd registry (registry.Registrar); this package links no
	// client of it. New fails when Config.Register is set and Registrar
	// is nil.
	Registrar Registrar
}

// Registrar registers rec at target, under a lease of ttl that the
// returned Registration keeps alive, or fails at once with the reason.
type Registrar func(ctx context.Context, target membership.Target, rec membership.Record, ttl time.Duration, log *slog.Logger) (Registration, error)

// Registration is a registered instance.
type Registration interface {
	// Key is where the instance is registered.
	Key() string
	// Run keeps the registration alive until ctx is done or Deregister
	// is called; it registers again when the registry comes back after
	// an outage.
	Run(ctx context.Context) error
	// Deregister removes the registration at once.
	Deregister(ctx context.Context) error
	// Close releases the registration's client. Call it after Run has
	// returned.
	Close() error
}

// Instance is one login instance. Create it with New and call Run once.
type Instance struct {
	cfg       Config
	certs     *certs.Store // tls; nil: plain HTTP
	log       *slog.Logger
	now       func() time.Time
	getenv    func(string) string
	tokens    atomic.Pointer[Tokens]
	backend   *backendClient
	guard     *guard.Guard
	limiter   *admission.Limiter
	health    *health.Server
	rate      atomic.Pointer[clientLimiter] // nil: no per-client limit
	registry  *prometheus.Registry
	metrics   *metrics
	service   http.Handler
	id        string // the registration's id
	registrar Registrar
}

type metrics struct {
	requests *prometheus.CounterVec
	duration prometheus.Histogram
	reload   *reload.Gauges
}

// Login outcomes, the values of the outcome label.
const (
	outcomeOK          = "ok"
	outcomeInvalid     = "invalid_ticket"
	outcomeMalformed   = "malformed"
	outcomeTooLarge    = "too_large"
	outcomeRateLimited = "rate_limited"
	outcomeUnavailable = "dependency_unavailable"
	outcomeCanceled    = "canceled"
	outcomeError       = "error"
)

// New builds an Instance from cfg (start it from DefaultConfig): the
// derived defaults of a copy are resolved (Resolve), then it is
// validated.
func New(c *Config, opts Options) (*Instance, error) {
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
	if opts.Getenv == nil {
		opts.Getenv = os.Getenv
	}
	if cfg.Register != "" && opts.Registrar == nil {
		return nil, errors.New("register is set but this program cannot register (no Registrar)")
	}
	in := &Instance{cfg: cfg, log: opts.Logger, now: opts.Now, getenv: opts.Getenv, id: opts.InstanceID, registrar: opts.Registrar}
	if in.id == "" {
		host, err := os.Hostname()
		if err != nil || host == "" {
			host = "login"
		}
		in.id = fmt.Sprintf("%s-%d", host, os.Getpid())
	}

	tokens, err := LoadTokens(cfg.Token, opts.Dev, opts.Getenv, opts.Now)
	if err != nil {
		return nil, err
	}
	in.tokens.Store(tokens)

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), buildinfo.NewCollector())
	in.registry = reg
	in.metrics = &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spillway_login_requests_total",
			Help: "Login requests that reached the login handler, by outcome.",
		}, []string{"outcome"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "spillway_login_duration_seconds",
			Help:    "Time spent in the login handler.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}),
	}
	reg.MustRegister(in.metrics.requests, in.metrics.duration)
	if in.metrics.reload, err = reload.New(reg, in.now()); err != nil {
		return nil, err
	}
	for _, o := range []string{outcomeOK, outcomeInvalid, outcomeMalformed, outcomeTooLarge, outcomeRateLimited, outcomeUnavailable, outcomeCanceled, outcomeError} {
		in.metrics.requests.WithLabelValues(o)
	}

	if cfg.TLS.Enabled() {
		if in.certs, err = certs.New(cfg.TLS, certs.Options{Logger: opts.Logger, Registerer: reg, Name: "spillway_login"}); err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
	}
	in.backend = newBackendClient(cfg.Backend.URL, cfg.Backend.ProbeURL, cfg.Backend.MaxConcurrent, cfg.Backend.Timeout)
	if opts.TracerProvider != nil {
		// Only the calls made for a traced request get a span: the
		// guard's probes and the deep health checks start none.
		in.backend.http.Transport = otelhttp.NewTransport(in.backend.http.Transport, append(otelOptions(opts.TracerProvider),
			otelhttp.WithFilter(func(r *http.Request) bool { return trace.SpanContextFromContext(r.Context()).IsValid() }),
			otelhttp.WithSpanNameFormatter(func(string, *http.Request) string { return "login backend validate" }))...)
	}
	in.guard, err = guard.New(cfg.Backend.Config, guard.Options{
		Name:       BackendName,
		Logger:     opts.Logger,
		Registerer: reg,
		Client:     in.backend.http,
		// The load balancer long-polls /health: tell it at once.
		OnChange: func() { in.health.Notify() }, // in.health is set below, before any call
	})
	if err != nil {
		return nil, fmt.Errorf("backend guard: %w", err)
	}
	in.limiter, err = admission.New(cfg.Admission, admission.Options{
		Name:       "login",
		Now:        opts.Now,
		Logger:     opts.Logger,
		Registerer: reg,
	})
	if err != nil {
		return nil, fmt.Errorf("admission: %w", err)
	}
	rate, err := in.newRateLimiter(&cfg)
	if err != nil {
		return nil, err
	}
	in.rate.Store(rate)

	hopts := health.Options{
		Warmup:     cfg.Health.Warmup,
		Now:        opts.Now,
		Logger:     opts.Logger,
		Gatherer:   reg,
		Registerer: reg,
	}
	if cfg.Health.Deep {
		hopts.Deep = in.backend.probe
		hopts.DeepTimeout = cfg.Backend.Timeout
	}
	in.health = health.New(hopts)
	in.health.AddDependency(BackendName, in.guard.Status)
	in.health.SetLoad(func() (int, int, int) {
		return in.limiter.InFlight(), in.limiter.Limit(), in.limiter.QueueLen()
	})

	in.service = in.buildServiceHandler()
	if opts.TracerProvider != nil {
		in.service = otelhttp.NewHandler(in.service, "login", append(otelOptions(opts.TracerProvider),
			otelhttp.WithSpanNameFormatter(func(op string, r *http.Request) string { return op + " " + r.Method }))...)
	}
	return in, nil
}

// otelOptions are the instance's otelhttp options: tp, W3C trace
// context, no metrics (the instance's own are on /metrics).
func otelOptions(tp trace.TracerProvider) []otelhttp.Option {
	return []otelhttp.Option{
		otelhttp.WithTracerProvider(tp),
		otelhttp.WithPropagators(tracing.Propagator),
		otelhttp.WithMeterProvider(noop.NewMeterProvider()),
	}
}

// Health returns the instance's health server.
func (in *Instance) Health() *health.Server { return in.health }

// ReloadCertificates reloads the certificate files of tls, all or nothing
// (certs.Store.Reload); without tls it does nothing.
func (in *Instance) ReloadCertificates() error {
	if in.certs == nil {
		return nil
	}
	return in.certs.Reload()
}

// TLS reports whether the instance serves TLS.
func (in *Instance) TLS() bool { return in.certs != nil }

// Tokens returns the instance's token signer and verifier (Reload may
// replace it).
func (in *Instance) Tokens() *Tokens { return in.tokens.Load() }

// ServiceHandler returns the service port's handler.
func (in *Instance) ServiceHandler() http.Handler { return in.service }

func (in *Instance) newRateLimiter(cfg *Config) (*clientLimiter, error) {
	trusted, err := clientip.Parse(cfg.TrustedProxies)
	if err != nil {
		return nil, field.Prefix("trusted_proxies", err)
	}
	rate, err := newClientLimiter(cfg.RateLimit, trusted, in.now)
	if err != nil {
		return nil, fmt.Errorf("rate_limit: %w", err)
	}
	return rate, nil
}

// Reload applies the settings of the configuration load returns
// (validated) that can change while the instance serves: the signing and
// verify keys (token:, key files read again, so a rotated key takes
// effect), the per-client limit (rate_limit:, its buckets start afresh)
// and trusted_proxies. It is all or nothing: on error, load's included,
// nothing changed; either way the outcome is recorded in
// spillway_config_last_reload_successful. It returns the names of the
// other sections that differ from the running configuration: they need a
// restart (a rolling restart of the fleet), and are not applied.
func (in *Instance) Reload(load func() (*Config, error)) (needRestart []string, err error) {
	defer func() { in.metrics.reload.Record(err, in.now()) }()
	cfg, err := load()
	if err != nil {
		return nil, err
	}
	tokens, err := reloadTokens(cfg.Token, in.tokens.Load(), in.getenv, in.now)
	if err != nil {
		return nil, err
	}
	rate, err := in.newRateLimiter(cfg)
	if err != nil {
		return nil, err
	}
	in.tokens.Store(tokens)
	in.rate.Store(rate)
	old := in.cfg
	for _, d := range []struct {
		name     string
		old, new any
	}{
		{"listen", old.Listen, cfg.Listen},
		{"health_listen", old.HealthListen, cfg.HealthListen},
		{"backend", old.Backend, cfg.Backend},
		{"admission", old.Admission, cfg.Admission},
		{"health", old.Health, cfg.Health},
		{"shutdown_timeout", old.ShutdownTimeout, cfg.ShutdownTimeout},
		{"register", old.Register, cfg.Register},
		{"register_ttl", old.RegisterTTL, cfg.RegisterTTL},
		{"tls", old.TLS, cfg.TLS},
	} {
		if !reflect.DeepEqual(d.old, d.new) {
			needRestart = append(needRestart, d.name)
		}
	}
	return needRestart, nil
}

// Run serves the service port on svc and, unless health.shared_port is
// set, the health port on hl (which may then be nil). With register set,
// once it serves it registers the listeners' addresses there, and returns
// the error if that fails. It returns when ctx is done and shutdown has
// completed: /readyz turns 503, every answer says "Connection: close"
// (closeWhileDraining) and the registration is revoked, after
// health.drain_delay the service listener closes, in-flight requests get
// up to shutdown_timeout to finish, then the health server stops.
func (in *Instance) Run(ctx context.Context, svc, hl net.Listener) error {
	var draining atomic.Bool
	srv := &http.Server{
		Handler:           closeWhileDraining(&draining, in.service),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      in.cfg.Backend.Timeout + 10*time.Second,
		IdleTimeout:       90 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(in.log.Handler(), slog.LevelDebug),
	}
	// bg lives until the service has stopped: the guard's probe and the
	// health server outlive the drain.
	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBG()
	g, gctx := errgroup.WithContext(bg)
	g.Go(func() error { return in.guard.Run(gctx) })
	if in.certs != nil {
		srv.TLSConfig = in.certs.ServerConfig()
		g.Go(func() error { return in.certs.Run(gctx) })
	}
	if !in.cfg.Health.SharedPort {
		if hl == nil {
			return errors.New("health listener is nil")
		}
		if in.certs != nil {
			hl = tls.NewListener(hl, in.certs.ServerConfig())
		}
		g.Go(func() error { return in.health.Serve(gctx, hl) })
	}
	in.health.Start()

	capped, err := connlimit.New(svc, in.cfg.MaxConnections, connlimit.Options{Registerer: in.registry, Name: "spillway_login", TLS: in.certs != nil})
	if err != nil {
		return fmt.Errorf("connection cap: %w", err)
	}
	serveErr := make(chan error, 1)
	if in.certs != nil {
		go func() { serveErr <- srv.ServeTLS(capped, "", "") }()
	} else {
		go func() { serveErr <- srv.Serve(capped) }()
	}

	reg, err := in.register(ctx, svc.Addr(), hl)
	if err != nil {
		_ = srv.Close()
		<-serveErr
		stopBG()
		_ = g.Wait()
		in.backend.http.CloseIdleConnections()
		return err
	}
	if reg != nil {
		// After g.Wait below, which waits for Run.
		defer func() { _ = reg.Close() }()
		g.Go(func() error { return reg.Run(gctx) })
	}

	err = nil
	select {
	case err = <-serveErr:
		err = fmt.Errorf("service server: %w", err)
	case <-gctx.Done():
		err = errors.New("health server or guard stopped early")
	case <-ctx.Done():
		in.log.Info("draining", "drain_delay", in.cfg.Health.DrainDelay)
		draining.Store(true)
		in.health.Drain()
		t := time.NewTimer(in.cfg.Health.DrainDelay)
		if reg != nil {
			if derr := reg.Deregister(context.WithoutCancel(ctx)); derr != nil {
				in.log.Warn("deregister failed; the registration expires with its lease", "register_ttl", in.cfg.RegisterTTL, "error", derr)
			} else {
				in.log.Info("deregistered", "key", reg.Key())
			}
		}
		select {
		case <-t.C:
		case <-gctx.Done():
			t.Stop()
		}
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), in.cfg.ShutdownTimeout)
		if serr := srv.Shutdown(sctx); serr != nil {
			in.log.Warn("shutdown: in-flight requests cut off", "error", serr)
			_ = srv.Close()
		}
		cancel()
		<-serveErr // http.ErrServerClosed
	}
	_ = srv.Close()
	stopBG()
	if gerr := g.Wait(); gerr != nil && err == nil {
		err = gerr
	}
	in.backend.http.CloseIdleConnections()
	return err
}

// closeWhileDraining answers "Connection: close" once draining is set, and
// the server closes the connection after that answer. A keep-alive client
// (the load balancer, until it has seen /readyz fail) learns it from the
// answer and sends its next request on a new connection, instead of on one
// that Shutdown closes under it at the drain delay's end: a request written
// to a connection as the server closes it fails with nothing to tell whether
// it was handled, and a POST cannot be sent again. Connections idle when the
// drain begins stay open until Shutdown, since a client may be reusing one
// at that very moment (http.Server.SetKeepAlivesEnabled(false) would close
// them at once). Envoy's and HAProxy's HTTP/1.1 drains do the same.
func closeWhileDraining(draining *atomic.Bool, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if draining.Load() {
			w.Header()["Connection"] = []string{"close"}
		}
		next.ServeHTTP(w, r)
	})
}

// register registers the instance at cfg.Register, when it is set, with
// the addresses svc and hl are bound to (svc's for both when hl is nil);
// without cfg.Register it returns nil and nil.
func (in *Instance) register(ctx context.Context, svc net.Addr, hl net.Listener) (Registration, error) {
	if in.cfg.Register == "" {
		return nil, nil
	}
	target, err := membership.ParseURL(in.cfg.Register)
	if err != nil {
		return nil, fmt.Errorf("register: %w", err)
	}
	healthAddr := svc
	if hl != nil {
		healthAddr = hl.Addr()
	}
	rec := membership.Record{ID: in.id, Service: advertised(svc), Health: advertised(healthAddr), Started: in.now()}
	reg, err := in.registrar(ctx, target, rec, in.cfg.RegisterTTL, in.log)
	if err != nil {
		return nil, err
	}
	in.log.Info("registered", "key", reg.Key(), "service", rec.Service, "health", rec.Health, "register_ttl", in.cfg.RegisterTTL)
	return reg, nil
}

// advertised is addr as others reach it: an unspecified IP (0.0.0.0, ::)
// is replaced by the hostname.
func advertised(addr net.Addr) string {
	s := addr.String()
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return s
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		if h, err := os.Hostname(); err == nil && h != "" {
			return net.JoinHostPort(h, port)
		}
	}
	return s
}
