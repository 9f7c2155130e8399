package health

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
)

// Defaults for the zero fields of Options.
const (
	// DefaultCheckTimeout bounds the liveness checks of one /livez request.
	DefaultCheckTimeout = time.Second
	// DefaultDeepTimeout bounds one Options.Deep call: the 5 s the 2018
	// service waited on its backend before giving up.
	DefaultDeepTimeout = 5 * time.Second
)

// maxLastError caps Dependency.LastError in a Report, so one verbose error
// cannot bloat every /health response.
const maxLastError = 256

// Options configures a Server. The zero value is a shallow server with no
// warm-up, no metrics and no logging.
type Options struct {
	// Warmup is how long after Start /readyz keeps answering 503 so that the
	// instance can fill its caches and pools before it takes traffic.
	// Default 0: ready as soon as Start is called. Negative means 0.
	Warmup time.Duration

	// Now is the clock the warm-up is measured on. Default time.Now; tests
	// and simulations pass a fake.
	Now func() time.Time

	// Logger receives phase changes and failing or recovering checks (each
	// logged on change, not on every probe). Default: discard.
	Logger *slog.Logger

	// Gatherer is served at /metrics, typically the service's own registry.
	// Default nil: /metrics answers 404.
	Gatherer prometheus.Gatherer

	// Registerer, if set, gets this server's metrics:
	// spillway_health_ready, spillway_health_draining (gauges, 0 or 1) and
	// spillway_health_responses_total{path,code}. New panics if they are
	// already registered there. Default nil: not registered.
	Registerer prometheus.Registerer

	// CheckTimeout bounds all liveness checks of one /livez request
	// together. Default DefaultCheckTimeout (1 s).
	CheckTimeout time.Duration

	// Deep, when set, is called by every /livez and /readyz request, with a
	// context bounded by DeepTimeout, and its error turns the answer into
	// 503. Default nil: shallow checks only.
	//
	// This is the 2018 incident's anti-pattern, kept only so the drill can
	// reproduce it; never set it in production. A deep check that reaches a
	// dependency makes every instance report itself dead when that shared
	// dependency is down: the load balancer removes them all and the fleet
	// replaces healthy instances, which cannot recover while the dependency
	// stays down. And when the dependency hangs, each probe holds a
	// goroutine for DeepTimeout, so health answers slowly just when it
	// matters. Dependency state belongs in /health (AddDependency), where
	// the load balancer can tell "this instance is broken" from "the
	// backend is down".
	Deep func(ctx context.Context) error

	// DeepTimeout bounds one Deep call. Default DefaultDeepTimeout (5 s).
	// Unused without Deep.
	DeepTimeout time.Duration
}

// Server is an instance's health server: it answers the instance's health
// questions on a port of its own (Serve) or as a Handler; see the package
// documentation for the contract of each endpoint. Build one with New.
type Server struct {
	now          func() time.Time
	log          *slog.Logger
	checkTimeout time.Duration
	deep         func(context.Context) error
	deepTimeout  time.Duration
	deepFailing  atomic.Bool // for logging on change only

	mu        sync.Mutex // guards readiness; held only inside this package
	readiness Readiness

	regMu  sync.Mutex                       // serialises the copy-on-write registrations below
	deps   atomic.Pointer[[]dependency]     // read lock-free by Report
	checks atomic.Pointer[[]*livenessCheck] // read lock-free by /livez
	gates  atomic.Pointer[[]*readinessGate] // read lock-free by /readyz and Report
	load   atomic.Pointer[loadFunc]

	metrics metrics
	handler http.Handler
	changes changes // wakes /health long polls (watch.go)
}

type dependency struct {
	name   string
	status func() Dependency
}

type livenessCheck struct {
	name     string
	check    func(context.Context) error
	failBody []byte      // the /livez body when this check fails
	failing  atomic.Bool // for logging on change only
}

type readinessGate struct {
	name     string
	ready    func() error
	failBody []byte      // the /readyz body when this gate is closed
	failing  atomic.Bool // for logging on change only
}

type loadFunc func() (inFlight, limit, queue int)

// New returns a Server in PhaseStarting: /readyz answers 503 until Start
// is called and the warm-up has elapsed. It panics if Options.Registerer
// already holds this package's metrics.
func New(opts Options) *Server {
	s := &Server{
		now:          opts.Now,
		log:          opts.Logger,
		checkTimeout: opts.CheckTimeout,
		deep:         opts.Deep,
		deepTimeout:  opts.DeepTimeout,
		readiness:    Readiness{Warmup: max(opts.Warmup, 0)},
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.checkTimeout <= 0 {
		s.checkTimeout = DefaultCheckTimeout
	}
	if s.deepTimeout <= 0 {
		s.deepTimeout = DefaultDeepTimeout
	}
	s.metrics = newMetrics(s, opts.Registerer)
	s.handler = newHandler(s, opts.Gatherer)
	if s.deep != nil {
		s.log.Warn("health: deep checks enabled on /livez and /readyz (the 2018 anti-pattern)",
			"deep_timeout", s.deepTimeout)
	}
	return s
}

// Start begins the warm-up: /readyz answers 200 once Options.Warmup has
// elapsed. Calling it again, or after Drain, does nothing.
func (s *Server) Start() {
	now := s.now()
	s.mu.Lock()
	changed := s.readiness.Start(now)
	s.mu.Unlock()
	if changed {
		s.log.Info("health: started", "warmup", s.readiness.Warmup)
		s.Notify()
	}
}

// Drain turns /readyz to 503 for good, so the load balancer stops sending
// new traffic before the service shuts down. Keep serving the health port
// until the load balancer has noticed (a few probe intervals). Calling it
// again does nothing.
func (s *Server) Drain() {
	s.mu.Lock()
	changed := s.readiness.Drain()
	s.mu.Unlock()
	if changed {
		s.log.Info("health: draining")
		s.Notify()
	}
}

// Phase returns the readiness phase now.
func (s *Server) Phase() Phase {
	now := s.now()
	s.mu.Lock()
	p := s.readiness.Phase(now)
	s.mu.Unlock()
	return p
}

// Ready reports whether the instance should get traffic now: started,
// warmed up, not draining and every readiness gate open
// (AddReadinessGate). It ignores Options.Deep and dependencies.
func (s *Server) Ready() bool { return s.Phase() == PhaseReady && s.closedGate() == nil }

// Draining reports whether Drain has been called.
func (s *Server) Draining() bool { return s.Phase() == PhaseDraining }

// AddDependency registers a dependency whose state /health reports under
// name. status is called on every /health request and Report call, from
// any goroutine: it must be fast and must not block (a circuit-breaker
// guard's Status, reading its state, is the intended source). A returned
// empty State is reported as DepUnknown. Dependencies never affect /livez or
// /readyz.
//
// It panics if name is empty or already registered, or status is nil.
func (s *Server) AddDependency(name string, status func() Dependency) {
	if name == "" || status == nil {
		panic("health: AddDependency needs a name and a status func")
	}
	s.regMu.Lock()
	defer s.regMu.Unlock()
	var old []dependency
	if p := s.deps.Load(); p != nil {
		old = *p
	}
	if slices.ContainsFunc(old, func(d dependency) bool { return d.name == name }) {
		panic(fmt.Sprintf("health: dependency %q registered twice", name))
	}
	deps := append(slices.Clip(old), dependency{name: name, status: status})
	s.deps.Store(&deps)
}

// AddLivenessCheck registers a check that /livez runs, in registration
// order, on every request; the first to return an error makes /livez answer
// 503 naming it (the error itself is logged, never served). A check answers
// "can this process still work?" about the process alone (a stuck event
// loop, an exhausted resource): it must not call dependencies, must honour
// ctx (all checks of one request share Options.CheckTimeout) and should
// return in microseconds. Liveness checks do not affect /readyz.
//
// It panics if name is empty or already registered, or check is nil.
func (s *Server) AddLivenessCheck(name string, check func(ctx context.Context) error) {
	if name == "" || check == nil {
		panic("health: AddLivenessCheck needs a name and a check func")
	}
	s.regMu.Lock()
	defer s.regMu.Unlock()
	var old []*livenessCheck
	if p := s.checks.Load(); p != nil {
		old = *p
	}
	if slices.ContainsFunc(old, func(l *livenessCheck) bool { return l.name == name }) {
		panic(fmt.Sprintf("health: liveness check %q registered twice", name))
	}
	checks := append(slices.Clip(old), &livenessCheck{
		name:     name,
		check:    check,
		failBody: fmt.Appendf(nil, "liveness check %q failed\n", name),
	})
	s.checks.Store(&checks)
}

// AddReadinessGate registers a gate that /readyz, Ready and Report consult
// while the phase is PhaseReady: while ready returns an error, /readyz
// answers 503 naming the gate (the error is logged on change, never
// served), and Report.Ready is false with ReadyForSeconds 0; Phase and
// Report.Phase are unchanged. It is for readiness this process does not
// own, such as that of the service a sidecar stands beside. ready is
// called on every such request from any goroutine: it must be fast and
// must not block (it reads state its owner keeps up to date in the
// background). The owner calls Notify when the answer changes, so that
// /health long polls answer at once; Report.Version covers Ready. Gates
// do not affect /livez.
//
// It panics if name is empty or already registered, or ready is nil.
func (s *Server) AddReadinessGate(name string, ready func() error) {
	if name == "" || ready == nil {
		panic("health: AddReadinessGate needs a name and a ready func")
	}
	s.regMu.Lock()
	defer s.regMu.Unlock()
	var old []*readinessGate
	if p := s.gates.Load(); p != nil {
		old = *p
	}
	if slices.ContainsFunc(old, func(g *readinessGate) bool { return g.name == name }) {
		panic(fmt.Sprintf("health: readiness gate %q registered twice", name))
	}
	gates := append(slices.Clip(old), &readinessGate{
		name:     name,
		ready:    ready,
		failBody: fmt.Appendf(nil, "readiness gate %q closed\n", name),
	})
	s.gates.Store(&gates)
}

// closedGate returns the first readiness gate that is closed, or nil,
// logging each gate's changes.
func (s *Server) closedGate() *readinessGate {
	p := s.gates.Load()
	if p == nil {
		return nil
	}
	for _, g := range *p {
		if err := g.ready(); err != nil {
			if g.failing.CompareAndSwap(false, true) {
				s.log.Warn("health: readiness gate closed", "gate", g.name, "err", err)
			}
			return g
		}
		if g.failing.CompareAndSwap(true, false) {
			s.log.Info("health: readiness gate open", "gate", g.name)
		}
	}
	return nil
}

// SetLoad sets where /health reads the service's load from, typically its
// admission limiter: requests in flight, the concurrency limit and the queue
// length. load is called on every /health request from any goroutine and
// must be fast. A nil load reports zeros. Calling it again replaces load.
func (s *Server) SetLoad(load func() (inFlight, limit, queue int)) {
	if load == nil {
		s.load.Store(nil)
		return
	}
	f := loadFunc(load)
	s.load.Store(&f)
}

// Report returns the document /health serves: readiness, load and the state
// of every registered dependency. Report.Ready is the shallow readiness of
// Ready (readiness gates included): it never calls Options.Deep.
func (s *Server) Report() Report {
	now := s.now()
	s.mu.Lock()
	p := s.readiness.Phase(now)
	readyFor := s.readiness.ReadyFor(now)
	s.mu.Unlock()
	ready := p == PhaseReady && s.closedGate() == nil
	if !ready {
		readyFor = 0
	}
	r := Report{
		Ready:           ready,
		Draining:        p == PhaseDraining,
		Phase:           p.String(),
		ReadyForSeconds: readyFor.Seconds(),
	}
	if load := s.load.Load(); load != nil {
		r.InFlight, r.Limit, r.Queue = (*load)()
	}
	var deps []dependency
	if p := s.deps.Load(); p != nil {
		deps = *p
	}
	r.Dependencies = make(map[string]Dependency, len(deps))
	for _, d := range deps {
		dep := d.status()
		if dep.State == "" {
			dep.State = DepUnknown
		}
		dep.LastError = truncateUTF8(dep.LastError, maxLastError)
		r.Dependencies[d.name] = dep
	}
	r.Version = reportVersion(&r, deps)
	return r
}

// truncateUTF8 cuts s to at most n bytes without splitting a rune.
func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// runLivenessChecks runs checks in order and returns the first that fails,
// or nil.
func (s *Server) runLivenessChecks(ctx context.Context, checks []*livenessCheck) *livenessCheck {
	ctx, cancel := context.WithTimeout(ctx, s.checkTimeout)
	defer cancel()
	for _, l := range checks {
		err := l.check(ctx)
		if err != nil {
			if l.failing.CompareAndSwap(false, true) {
				s.log.Warn("health: liveness check failing", "check", l.name, "err", err)
			}
			return l
		}
		if l.failing.CompareAndSwap(true, false) {
			s.log.Info("health: liveness check recovered", "check", l.name)
		}
	}
	return nil
}

// deepOK calls Options.Deep, bounded by DeepTimeout, and reports whether it
// succeeded. Only called when Deep is set.
func (s *Server) deepOK(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, s.deepTimeout)
	defer cancel()
	err := s.deep(ctx)
	if err != nil {
		if s.deepFailing.CompareAndSwap(false, true) {
			s.log.Warn("health: deep check failing", "err", err)
		}
		return false
	}
	if s.deepFailing.CompareAndSwap(true, false) {
		s.log.Info("health: deep check recovered")
	}
	return true
}
