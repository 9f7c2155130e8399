package lb

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/httputil"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/errgroup"

	"github.com/spillway-dev/spillway/admission"
	"github.com/spillway-dev/spillway/health"
	"github.com/spillway-dev/spillway/internal/buildinfo"
	"github.com/spillway-dev/spillway/internal/certs"
	"github.com/spillway-dev/spillway/internal/clientip"
	"github.com/spillway-dev/spillway/internal/connlimit"
	"github.com/spillway-dev/spillway/internal/httpapi"
	"github.com/spillway-dev/spillway/internal/reload"
)

// maxEdgeLimit is the edge limiter's limit when nothing bounds it.
const maxEdgeLimit = 1 << 30

// Options are a Balancer's collaborators. The zero value is usable except
// for AdminToken.
type Options struct {
	// Logger receives the balancer's logs (snake_case keys). Default:
	// discard.
	Logger *slog.Logger
	// Registry receives the balancer's metrics and is what the admin API
	// serves at /metrics. Default: a registry of its own (never the
	// global one). It must not hold the health package's metrics
	// already: the balancer registers its own (New panics otherwise).
	Registry *prometheus.Registry
	// AdminToken is the bearer token every admin change needs (and every
	// admin read on a non-loopback admin listener). Required.
	AdminToken string
	// Discovery supplies the instances. Nil: the configuration's static
	// list, replaced by Reload.
	Discovery Discovery
	// Event, if set, is told of every routing decision an operator wants
	// to see on a dashboard: kind is one of "panic_on", "panic_off",
	// "shedding_on", "shedding_recovering", "shedding_off", "ejected".
	// It is called with the balancer's lock held: it must return quickly
	// and must not call back into the Balancer.
	Event func(kind, message string)
	// Peers, if set, gives this balancer its share of the fleet's reported
	// capacity when other balancers stand in front of the same instances:
	// the edge bound that follows the instances' reported limits becomes
	// max(1, floor(capacity × share)). A fixed admission.fallback_limit is
	// this balancer's own and is not split. Nil: the whole capacity.
	Peers Peers
	// Shared, if set, shares the operators' decisions (shedding
	// overrides, drains) with the other balancers in front of the same
	// fleet: a change on this balancer's admin API applies here at once
	// and is published; the others' changes are applied as they come,
	// with their origin on /status; the decisions in force when New is
	// called apply from the start, a drain as soon as its instance
	// appears. Nil: this balancer's decisions are its own.
	Shared Shared
	// Middleware, if set, wraps the proxy handler that Run serves, e.g. to
	// record every answer's outcome and latency. It is not applied to
	// ServeHTTP called directly.
	Middleware func(http.Handler) http.Handler
	// DataPlane, if set, receives a Plan after every evaluation, for a
	// data plane other than the balancer's own proxy (`spillway
	// controller` applies it to HAProxy; Run then has no proxy
	// listener). Publishing never blocks the evaluator. While a
	// recovery window ramp runs, the balancer evaluates at least every
	// shedding.recovery_window/20 (50ms to 1s) so that the plan's
	// shares rise in steps. A data plane cannot bound the requests in
	// flight per dependency, so with one shedding.recovery must be
	// "window" (New and Reload refuse "feedback").
	DataPlane *PlanFeed
	// TracerProvider, if set, traces the proxy (package tracing): a
	// server span per request, from the handler Run serves, and a client
	// span per attempt to an instance, whose W3C trace context
	// (traceparent) the instance receives. Nil: no tracing, and nothing
	// on the request path but a nil check.
	TracerProvider trace.TracerProvider
}

// ErrFeedbackNeedsProxy: shedding.recovery "feedback" with a DataPlane.
var ErrFeedbackNeedsProxy = errors.New(`shedding.recovery "feedback" needs the balancer's own proxy: with a data plane, use "window"`)

// Balancer is the load balancer runtime: a reverse proxy that asks the
// policies of this package, for every request, whether to serve, where, or
// to answer 503 itself, and the goroutines that keep the policies fed.
//
// Build it with New and call Run once. Run owns every goroutine the
// balancer starts: the discovery watch, one health-check loop per instance,
// the evaluator that re-evaluates the pool when time alone changes it, and
// the two HTTP servers. Handler, AdminHandler, Reload and Status are safe
// for concurrent use at any time.
//
// Locking: mu guards the Pool and the bookkeeping around it (checkers, the
// last Eval, what was last logged). The request path never takes it except
// to record a gateway failure (or the first success after one): it reads
// the Picker, the Shedder, the limiter, the retry budget and the settings
// through atomics.
type Balancer struct {
	log     *slog.Logger
	reg     *prometheus.Registry
	token   httpapi.Token
	m       *metrics
	picker  *Picker
	shedder *Shedder
	proxy   *httputil.ReverseProxy
	checks  *http.Client // health checks: a transport of their own
	static  *Static      // nil when Options.Discovery was given
	disc    Discovery
	peers   Peers  // nil: alone
	shared  Shared // nil: decisions are this balancer's own
	// sharedSelf is this balancer's id among those sharing decisions.
	sharedSelf string
	wake       chan struct{} // the evaluator's next deadline moved
	health     *health.Server
	hurry      chan struct{} // Hurry's steps
	// evaluated is signalled after every evaluation, for
	// awaitFirstChecks.
	evaluated chan struct{}
	stage     atomic.Int32 // stageStarting...; read per request
	upgrades  upgradeSet
	// access is the access log, nil when off; set by New, never
	// replaced (a reload reopens its file).
	access *accessLog
	// tracer is Options.TracerProvider; traced sends an attempt with its
	// client span. Both nil when tracing is off.
	tracer trace.TracerProvider
	traced http.RoundTripper

	set       atomic.Pointer[settings]
	limiter   atomic.Pointer[admission.Limiter]
	budget    atomic.Pointer[RetryBudget]
	transport atomic.Pointer[sender]
	// TLS and HTTP/2 (tls.go): to instances, fixed at New; at the edge,
	// nil stores where TLS is off.
	upTLS      *tls.Config // transport.tls; nil: off
	scheme     string      // of the URLs to instances: http or https
	certs      *certs.Store
	adminCerts *certs.Store
	answers    atomic.Pointer[map[string]*answer] // shed answers by dependency
	buffered   atomic.Int64                       // bytes reserved by bodies being read

	mu        sync.Mutex
	pool      *Pool
	ev        Eval
	edgeLimit int       // applied to the limiter; maxEdgeLimit when unbounded
	share     PeerShare // this balancer's part of the fleet's capacity
	// decisions are the operators' decisions in force (Shared's, or this
	// balancer's own without one); their maps are replaced, never
	// changed in place.
	decisions SharedDecisions
	next      time.Time
	checkers  map[string]*checkerHandle // by instance id
	shedState map[string]loggedDep      // as last logged
	retired   []*sender                 // replaced by a reload; closed at stop
	running   bool
	// discovered: discovery has given its first set.
	discovered bool
	checkWG    sync.WaitGroup

	event      func(kind, message string)
	middleware func(http.Handler) http.Handler
	plans      *PlanFeed // nil: no data plane
	settled    bool      // a published Plan had every instance checked (Plan.Settled)
}

type checkerHandle struct {
	inst   Instance
	cancel context.CancelFunc
}

// copy (Resolve) and fails if that does not pass Validate, or opts lacks
// the admin token. Start cfg from DefaultConfig.
func New(cfg Config, opts Options) (*Balancer, error) {
	cfg.Resolve()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if opts.AdminToken == "" {
		return nil, errors.New("lb: no admin token")
	}
	if opts.DataPlane != nil && cfg.Shedding.Recovery == RecoveryFeedback {
		return nil, fmt.Errorf("lb: %w", ErrFeedbackNeedsProxy)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Registry == nil {
		opts.Registry = prometheus.NewRegistry()
	}
	set := newSettings(&cfg)
	routes, err := NewRouteTable(cfg.shedRoutes())
	if err != nil {
		return nil, err
	}
	pool, err := NewPool(set.cfg, routes, nil)
	if err != nil {
		return nil, err
	}
	b := &Balancer{
		log:        opts.Logger,
		reg:        opts.Registry,
		token:      httpapi.NewToken(opts.AdminToken),
		picker:     pool.Picker(),
		shedder:    pool.Shedder(),
		pool:       pool,
		disc:       opts.Discovery,
		peers:      opts.Peers,
		shared:     opts.Shared,
		share:      alone,
		wake:       make(chan struct{}, 1),
		hurry:      make(chan struct{}, 2),
		evaluated:  make(chan struct{}, 1),
		checkers:   map[string]*checkerHandle{},
		shedState:  map[string]loggedDep{},
		edgeLimit:  maxEdgeLimit,
		event:      opts.Event,
		middleware: opts.Middleware,
		plans:      opts.DataPlane,
	}
	if b.event == nil {
		b.event = func(string, string) {}
	}
	if b.peers != nil {
		sh, _ := b.peers.Share()
		b.share = sh.normalized()
	}
	if b.shared != nil {
		// The fleet's overrides from the start; its drains as the
		// instances appear (setInstances).
		b.sharedSelf = b.shared.Status().Self
		b.decisions, _ = b.shared.Current()
		now := time.Now()
		for name, o := range b.decisions.Overrides {
			if err := b.shedder.SetOverride(name, o.Mode, now); err != nil {
				b.log.Warn("shared: shedding override not applied", "dependency", name, "mode", string(o.Mode), "error", err)
			}
		}
	}
	if b.disc == nil {
		b.static = NewStatic(cfg.Instances)
		b.disc = b.static
	}
	b.set.Store(set)
	lim, err := newEdgeLimiter(&cfg, maxEdgeLimit)
	if err != nil {
		return nil, err
	}
	b.limiter.Store(lim)
	budget, err := NewRetryBudget(set.cfg.RetryBudget)
	if err != nil {
		return nil, err
	}
	b.budget.Store(budget)
	if b.upTLS, err = upstreamTLS(cfg.Transport); err != nil {
		return nil, err
	}
	b.scheme = upstreamScheme(cfg.Transport)
	if err := b.newCertStores(&cfg); err != nil {
		return nil, err
	}
	b.transport.Store(newTransport(&cfg, set, b.upTLS))
	b.proxy = b.newReverseProxy()
	if opts.TracerProvider != nil {
		b.tracer = opts.TracerProvider
		b.traced = otelhttp.NewTransport(currentTransport{b}, b.otelOptions()...)
	}
	b.checks = newCheckClient(cfg.Transport, b.upTLS)
	b.answers.Store(&map[string]*answer{})
	b.m = newMetrics(b)
	b.m.bindRoutes(set)
	b.m.share.Store(math.Float64bits(b.share.Share))
	for _, c := range []prometheus.Collector{b.m, b.m.duration} {
		if err := b.reg.Register(c); err != nil {
			return nil, fmt.Errorf("lb: register metrics: %w", err)
		}
	}
	if b.m.reload, err = reload.New(b.reg, time.Now()); err != nil {
		return nil, fmt.Errorf("lb: %w", err)
	}
	if err := buildinfo.Register(b.reg); err != nil {
		return nil, fmt.Errorf("lb: %w", err)
	}
	// The balancer's own /livez and /readyz, the instances' contract:
	// starting until Run serves, draining once it stops. Its gauges
	// spillway_health_ready and spillway_health_draining go to the same
	// registry.
	b.health = health.New(health.Options{Registerer: b.reg})
	// Last: the only step that opens a file (Run closes it).
	if b.access, err = newAccessLog(cfg.AccessLog, b.reg); err != nil {
		return nil, fmt.Errorf("lb: %w", err)
	}
	return b, nil
}

// Run serves the proxy on ln (nil: no proxy, for a balancer whose
// Options.DataPlane carries the traffic) and the admin API on admin (nil:
// no admin listener), runs discovery, health checks and the evaluator, and returns
// when ctx is done and everything has stopped. It starts serving the proxy
// once every instance has had its first health check (see lifecycle.go).
// When ctx is done it drains: /readyz answers 503 while the proxy serves
// on for server.drain_delay; then the proxy's listener closes and the
// requests in flight get server.shutdown_timeout to finish; then the admin
// API and the checkers stop. Hurry cuts a step short. Run returns early,
// without a drain delay, with an error if a server fails. It may be called
// once.
func (b *Balancer) Run(ctx context.Context, ln, admin net.Listener) error {
	b.mu.Lock()
	if b.running {
		b.mu.Unlock()
		return errors.New("lb: Run called twice")
	}
	b.running = true
	b.mu.Unlock()
	defer b.stage.Store(stageStopped)

	set := b.set.Load()
	var handler http.Handler = b
	if b.middleware != nil {
		handler = b.middleware(b)
	}
	if b.tracer != nil {
		handler = otelhttp.NewHandler(handler, "lb", b.otelOptions()...)
	}
	// Requests outlive ctx: they are cut off (reqCtx canceled) only when
	// the shutdown timeout is over.
	reqCtx, cutRequests := context.WithCancel(context.WithoutCancel(ctx))
	defer cutRequests()
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: set.cfg.Server.ReadHeaderTimeout,
		ReadTimeout:       set.cfg.Server.ReadTimeout,
		WriteTimeout:      set.cfg.Server.WriteTimeout,
		IdleTimeout:       set.cfg.Server.IdleTimeout,
		MaxHeaderBytes:    set.cfg.Server.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(b.log.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return reqCtx },
	}
	srv.Protocols = new(http.Protocols)
	srv.Protocols.SetHTTP1(true)
	if b.certs != nil {
		// HTTP/2 by ALPN (ServeTLS offers h2 and http/1.1).
		srv.Protocols.SetHTTP2(true)
		srv.TLSConfig = b.certs.ServerConfig()
	}
	if set.cfg.Server.H2C {
		srv.Protocols.SetUnencryptedHTTP2(true)
	}
	if b.certs != nil || set.cfg.Server.H2C {
		srv.HTTP2 = &http.HTTP2Config{
			SendPingTimeout:  set.cfg.Server.IdleTimeout,
			PingTimeout:      5 * time.Second,
			WriteByteTimeout: 10 * time.Second,
		}
	}
	serveErr := make(chan error, 2)
	if ln != nil {
		capped, err := connlimit.New(ln, set.cfg.Server.MaxConnections, connlimit.Options{Registerer: b.reg, Name: "spillway_lb", TLS: b.certs != nil})
		if err != nil {
			return fmt.Errorf("lb: %w", err)
		}
		ln = proxyProtocolListener(capped, set.cfg.Server.ProxyProtocol, func() clientip.Trusted { return b.set.Load().trusted }, set.cfg.Server.ReadHeaderTimeout)
	}
	pending := 0 // servers serving
	var asrv *http.Server
	if admin != nil {
		asrv = &http.Server{
			Handler:           httpapi.GuardLoopback(httpapi.IsLoopback(admin.Addr()), b.AdminHandler(!httpapi.IsLoopback(admin.Addr()))),
			ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout:       10 * time.Second,
			WriteTimeout:      30 * time.Second,
			IdleTimeout:       60 * time.Second,
			MaxHeaderBytes:    16 << 10,
			ErrorLog:          slog.NewLogLogger(b.log.Handler(), slog.LevelDebug),
		}
		pending++
		if b.adminCerts != nil {
			asrv.TLSConfig = b.adminCerts.ServerConfig()
			go func() { serveErr <- asrv.ServeTLS(admin, "", "") }()
		} else {
			go func() { serveErr <- asrv.Serve(admin) }()
		}
	}

	// Background work outlives the drain: routing stays current while
	// in-flight requests finish.
	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBG()
	g, gctx := errgroup.WithContext(bg)
	g.Go(func() error {
		err := b.disc.Watch(gctx, func(insts []Instance) { b.setInstances(gctx, insts) })
		if err != nil && gctx.Err() == nil {
			return fmt.Errorf("lb: discovery: %w", err)
		}
		return nil
	})
	g.Go(func() error { return b.runEvaluator(gctx) })
	if b.access != nil {
		// Closed, with its last lines written, once every request has
		// ended (below).
		stopAccess := make(chan struct{})
		accessDone := make(chan struct{})
		go func() {
			defer close(accessDone)
			b.access.run(stopAccess)
		}()
		defer func() {
			close(stopAccess)
			<-accessDone
			b.access.close()
		}()
	}
	if b.peers != nil {
		g.Go(func() error { return b.runPeers(gctx) })
	}
	if b.shared != nil {
		g.Go(func() error { return b.runShared(gctx) })
	}
	for _, st := range []*certs.Store{b.certs, b.adminCerts} {
		if st != nil {
			g.Go(func() error { return st.Run(gctx) })
		}
	}

	b.awaitFirstChecks(ctx, gctx, 2*set.cfg.HealthCheck.Timeout)
	serving := ctx.Err() == nil && gctx.Err() == nil
	if serving {
		if ln != nil {
			pending++
			if b.certs != nil {
				go func() { serveErr <- srv.ServeTLS(ln, "", "") }()
			} else {
				go func() { serveErr <- srv.Serve(ln) }()
			}
		}
		b.stage.Store(stageServing)
		b.health.Start()
		b.mu.Lock()
		ev := b.ev
		b.mu.Unlock()
		b.log.Info("serving", "instances", ev.Instances, "routable", ev.Routable)
	} else if ln != nil {
		ln.Close()
	}

	var err error
	select {
	case err = <-serveErr:
		pending--
		err = fmt.Errorf("lb: server stopped: %w", err)
	case <-gctx.Done():
		err = errors.New("lb: discovery or evaluator stopped early")
	case <-ctx.Done():
	}
	b.stage.Store(stageDraining)
	b.health.Drain()
	delay := set.cfg.Server.DrainDelay
	if !serving || err != nil || ln == nil {
		delay = 0 // nothing to drain, or nothing left to serve with
	}
	b.log.Info("stopping: /readyz answers 503", "drain_delay", delay, "shutdown_timeout", set.cfg.Server.ShutdownTimeout)
	b.drain(delay)
	b.stage.Store(stageStopping)
	if !serving || ln == nil {
		srv = nil
	}
	b.shutdown(ctx, srv, set.cfg.Server.ShutdownTimeout, cutRequests)
	if asrv != nil {
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		if asrv.Shutdown(actx) != nil {
			_ = asrv.Close()
		}
		cancel()
	}
	for range pending {
		<-serveErr // http.ErrServerClosed
	}
	stopBG()
	if gerr := g.Wait(); gerr != nil && err == nil {
		err = gerr
	}
	b.mu.Lock()
	for id, h := range b.checkers {
		h.cancel()
		delete(b.checkers, id)
	}
	retired := b.retired
	b.retired = nil
	b.mu.Unlock()
	b.checkWG.Wait()
	b.transport.Load().CloseIdleConnections()
	for _, t := range retired {
		t.CloseIdleConnections()
	}
	b.checks.CloseIdleConnections()
	b.log.Info("stopped")
	return err
}

// setInstances makes the balancer's instances exactly insts (a discovery
// update): new ones are added pending their first check, with a checker
// each; missing ones are removed and their checker stopped (requests in
// flight on them finish); the others keep their state. Invalid and
// duplicate entries are skipped and logged.
func (b *Balancer) setInstances(ctx context.Context, insts []Instance) {
	valid := make([]Instance, 0, len(insts))
	seen := make(map[string]bool, len(insts))
	for i, in := range insts {
		err := errors.Join(checkDialAddr("service", in.Service), checkDialAddr("health", in.Health))
		switch {
		case err != nil:
			b.log.Warn("discovery: instance skipped", "index", i, "error", err)
		case seen[in.Service]:
			b.log.Warn("discovery: duplicate instance skipped", "index", i, "instance", in.Service)
		case len(valid) >= MaxInstances:
			b.log.Warn("discovery: too many instances; the rest are skipped", "max", MaxInstances)
		default:
			seen[in.Service] = true
			valid = append(valid, in)
		}
	}
	ids := make([]string, len(valid))
	for i, in := range valid {
		ids[i] = in.Service
	}
	now := time.Now()
	b.mu.Lock()
	defer b.mu.Unlock()
	added, removed := b.pool.Sync(ids, now)
	b.discovered = true
	if b.shared == nil && removed > 0 {
		// A balancer's own drain ends with its instance; a shared one
		// waits for the instance to come back (or an undrain).
		for id := range b.decisions.Drains {
			if !seen[id] {
				b.setLocalDrainLocked(id, false, now)
			}
		}
	}
	b.applyDrainsLocked(now)
	want := make(map[string]Instance, len(valid))
	for _, in := range valid {
		want[in.Service] = in
	}
	for id, h := range b.checkers {
		if in, ok := want[id]; !ok || in != h.inst {
			h.cancel()
			delete(b.checkers, id)
		}
	}
	for _, in := range valid {
		if _, ok := b.checkers[in.Service]; ok || ctx.Err() != nil {
			continue
		}
		cctx, cancel := context.WithCancel(ctx)
		b.checkers[in.Service] = &checkerHandle{inst: in, cancel: cancel}
		b.checkWG.Go(func() { b.runCheckLoop(cctx, in) })
		b.checkWG.Go(func() { b.runReportLoop(cctx, in) })
	}
	b.evaluateLocked(now)
	if added > 0 || removed > 0 {
		b.log.Info("instances updated", "added", added, "removed", removed, "total", len(valid))
	}
}
