// Package guard wraps every call to one dependency with a deadline, a
// circuit breaker, a bulkhead and a background recovery probe, and reports
// the dependency's state for /health.
//
// A Guard is made by New from a Config (zero fields take their defaults)
// and is safe for concurrent use; the zero Guard is not usable. Do runs one
// call under all protections and never queues: a call the Guard will not
// make fails at once with an error matching ErrUnavailable. Status gives
// the dependency's entry for health.Report.
//
// Run owns the only goroutine a Guard needs, the probe loop, and returns
// when its context is done; there is nothing to close. While the breaker
// is open or half-open, Run GETs Config.ProbeURL every
// Config.ProbeInterval (250ms by default), directly rather than as a
// trial call, and closes the breaker after Config.ProbeSuccesses
// successes in a row. So a recovered dependency is noticed within a
// fraction of a second, without waiting for Config.OpenInterval and even
// when no user request arrives (the load balancer sheds at the edge
// during an outage). User calls still act as trial calls once the
// breaker is half-open; without a probe URL, or without Run, recovery
// relies on them alone.
//
// Options.OnChange is called whenever Status changes, so that a health
// server can tell its watchers at once.
//
// The breaker trips on Config.ConsecutiveFailures failures in a row, or
// when the failure rate over the rolling Config.Window reaches
// Config.FailureRate once Config.MinRequests calls have completed. The
// caller's own cancellation never counts against the dependency.
//
// State changes are logged as "circuit breaker state changed" (keys
// dependency, from, to, last_error), and a close by the recovery probes
// as "circuit breaker closed by recovery probes" (the same keys, and
// probes). With Options.Registerer set, the Guard exports, each labelled
// dependency: spillway_guard_breaker_state{state} (1 for the state the
// breaker is in: closed, half-open or open; 0 for the other two),
// spillway_guard_calls_total{result},
// spillway_guard_probes_total{result},
// spillway_guard_state_changes_total{to},
// spillway_guard_probe_closes_total (those of the closes counted in
// state_changes_total{to="closed"} that the recovery probes made) and
// spillway_guard_in_flight.
package guard

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker/v2"

	"github.com/spillway-dev/spillway/health"
)

// ErrUnavailable is matched (errors.Is) by every error of Do that means
// "the dependency is unavailable": ErrOpen, ErrBulkheadFull, ErrTimeout and
// a failure returned by fn. The caller's own cancellation does not match.
var ErrUnavailable = errors.New("dependency unavailable")

// Sentinel errors of Do. Each matches ErrUnavailable too.
var (
	// ErrOpen: the breaker is open, or half-open with all its trial calls
	// in flight; fn was not called.
	ErrOpen error = unavailableError("circuit breaker open")
	// ErrBulkheadFull: Config.MaxConcurrent calls were already in flight;
	// fn was not called.
	ErrBulkheadFull error = unavailableError("bulkhead full")
	// ErrTimeout: Config.Timeout passed before fn returned. The error
	// also wraps fn's own error.
	ErrTimeout error = unavailableError("timed out")
)

// unavailableError is the type of the sentinels that match ErrUnavailable.
type unavailableError string

func (e unavailableError) Error() string { return string(e) }

func (e unavailableError) Is(target error) bool { return target == ErrUnavailable }

// failedError wraps a failure returned by fn so that it matches
// ErrUnavailable while errors.Is and errors.As still reach fn's error.
type failedError struct{ err error }

func (e failedError) Error() string { return e.err.Error() }

func (e failedError) Unwrap() error { return e.err }

func (e failedError) Is(target error) bool { return target == ErrUnavailable }

// Options are the runtime collaborators of a Guard; they are not part of
// the file-facing Config.
type Options struct {
	// Name identifies the dependency in logs, in metrics (the dependency
	// label, so keep it a constant such as "backend") and in
	// health.Report.Dependencies. Required.
	Name string
	// Logger receives breaker state changes. Nil discards them.
	Logger *slog.Logger
	// Registerer receives the Guard's metrics. Nil means no metrics.
	Registerer prometheus.Registerer
	// Client sends the probes. Nil means a client of the Guard's own with
	// no keep-alives (each probe dials afresh) that does not follow
	// redirects (a 3xx is unhealthy).
	Client *http.Client
	// OnChange, if set, is called after Status changes: its State
	// (unknown, up, down) or its Breaker (closed, open, half-open), not
	// LastError or Since alone. A health server uses it to answer its
	// long-poll watchers at once.
	//
	// It is called without the Guard's locks, from Do or from Run, never
	// from Status, so it may call Status. It must not block: it runs on
	// a caller's request path or on the probe loop; a non-blocking send
	// or a broadcast to waiters is what it is for. It may be called from
	// several goroutines at once, several changes in quick succession
	// may be reported by one call, and a call may find that nothing
	// changed: read Status for the state itself.
	//
	// An open breaker turns half-open when the Guard next looks at it (a
	// call, Status, a metrics scrape, or Run, which looks every
	// Config.ProbeInterval while probing); that change is reported by
	// Do or Run, so OnChange needs Run for it when no call follows.
	OnChange func()
}

// Results of a call, the values of the result label of
// spillway_guard_calls_total and spillway_guard_probes_total.
const (
	resultSuccess          = "success"
	resultFailure          = "failure"
	resultTimeout          = "timeout"
	resultRejectedOpen     = "rejected_open"
	resultRejectedBulkhead = "rejected_bulkhead"
	resultCanceled         = "canceled"
)

var allResults = []string{
	resultSuccess, resultFailure, resultTimeout,
	resultRejectedOpen, resultRejectedBulkhead, resultCanceled,
}

// Outcomes reported to the breaker; only whether they are nil or excluded
// matters to it.
var (
	errOutcomeFailure  = errors.New("failure")
	errOutcomeExcluded = errors.New("excluded")
)

// errOwnTimeout is the cause of a call context ended by Config.Timeout,
// which tells it apart from the caller's own deadline.
var errOwnTimeout = errors.New("guard timeout")

// breaker is the Guard's circuit breaker.
type breaker = gobreaker.TwoStepCircuitBreaker[struct{}]

// Guard protects calls to one dependency. Make it with New.
type Guard struct {
	name      string
	cfg       Config
	log       *slog.Logger
	client    *http.Client
	ownClient bool
	onChange  func()
	settings  gobreaker.Settings      // of every breaker, but OnStateChange
	cb        atomic.Pointer[breaker] // the current breaker; Run's probes replace it to close it
	slots     chan struct{}           // bulkhead: one token per call in flight
	wake      chan struct{}           // breaker state changed; buffered 1, wakes Run
	running   atomic.Bool             // Run is running
	changed   atomic.Bool             // Status changed since OnChange was last called
	m         *metrics

	mu      sync.Mutex
	state   string          // health.DepUp, DepDown or DepUnknown
	since   time.Time       // when state last changed
	lastErr string          // most recent failure since the breaker last closed
	breaker gobreaker.State // the current breaker's state, as it last reported it
	opens   uint64          // times a breaker of this Guard has opened
}

// New validates cfg, after filling its zero fields with defaults, and
// returns a Guard for the dependency opts.Name. It fails if cfg is invalid,
// the name is empty, or the metrics cannot be registered (for example a
// second Guard of the same name on one Registerer).
func New(cfg Config, opts Options) (*Guard, error) {
	if opts.Name == "" {
		return nil, errors.New("guard: empty name")
	}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("guard %s: %w", opts.Name, err)
	}
	g := &Guard{
		name:     opts.Name,
		cfg:      cfg,
		log:      opts.Logger,
		client:   opts.Client,
		onChange: opts.OnChange,
		slots:    make(chan struct{}, cfg.MaxConcurrent),
		wake:     make(chan struct{}, 1),
		state:    health.DepUnknown,
		since:    time.Now(),
	}
	if g.log == nil {
		g.log = slog.New(slog.DiscardHandler)
	}
	if g.client == nil {
		g.client = newProbeClient(cfg.ProbeTimeout)
		g.ownClient = true
	}
	failures := uint64(cfg.ConsecutiveFailures)
	minRequests := uint64(cfg.MinRequests)
	g.settings = gobreaker.Settings{
		Name:         opts.Name,
		MaxRequests:  uint32(cfg.HalfOpenRequests),
		Interval:     cfg.Window,
		BucketPeriod: cfg.Window / windowBuckets,
		Timeout:      cfg.OpenInterval,
		ReadyToTrip: func(c gobreaker.Counts) bool {
			if uint64(c.ConsecutiveFailures) >= failures {
				return true
			}
			done := uint64(c.TotalSuccesses) + uint64(c.TotalFailures)
			return done >= minRequests && float64(c.TotalFailures)/float64(done) >= cfg.FailureRate
		},
		IsExcluded: func(err error) bool { return err == errOutcomeExcluded },
	}
	g.cb.Store(g.newBreaker())
	m, err := newMetrics(g, opts.Registerer)
	if err != nil {
		return nil, fmt.Errorf("guard %s: %w", opts.Name, err)
	}
	g.m = m
	return g, nil
}

// newBreaker returns a fresh, closed breaker whose state changes reach
// onStateChange.
func (g *Guard) newBreaker() *breaker {
	st := g.settings
	var cb *breaker
	st.OnStateChange = func(_ string, from, to gobreaker.State) { g.onStateChange(cb, from, to) }
	cb = gobreaker.NewTwoStepCircuitBreaker[struct{}](st)
	return cb
}

// Name returns the dependency's name, Options.Name.
func (g *Guard) Name() string { return g.name }

// Do calls fn under the Guard's protections and returns nil or an error
// that tells the caller why:
//
//   - ErrBulkheadFull or ErrOpen (wrapped) when the call was not made;
//   - ErrTimeout (wrapped, together with fn's error) when Config.Timeout
//     ended the call;
//   - fn's error (wrapped, reachable with errors.Is and errors.As) when fn
//     failed;
//   - ctx.Err() itself when the caller's context ended (canceled, or its
//     own deadline passed) before fn succeeded. Such a call is neither a
//     success nor a failure for the breaker.
//
// All but the last match ErrUnavailable. fn gets a context whose deadline
// is the smaller of Config.Timeout and ctx's deadline; fn must honour it
// (an http.Client request made with it does): Do returns when fn returns
// and does not abandon it. If fn panics, the call counts as a failure, its
// bulkhead slot is released and the panic goes on.
func (g *Guard) Do(ctx context.Context, fn func(ctx context.Context) error) error {
	if err := ctx.Err(); err != nil {
		g.m.calls.WithLabelValues(resultCanceled).Inc()
		return err
	}
	select {
	case g.slots <- struct{}{}:
	default:
		g.m.calls.WithLabelValues(resultRejectedBulkhead).Inc()
		return fmt.Errorf("guard %s: %w", g.name, ErrBulkheadFull)
	}
	defer func() { <-g.slots }()
	result, err := g.call(ctx, g.cfg.Timeout, fn)
	g.m.calls.WithLabelValues(result).Inc()
	return err
}

// call runs fn through the breaker with the given timeout and returns the
// call's result label and Do's error.
func (g *Guard) call(ctx context.Context, timeout time.Duration, fn func(context.Context) error) (string, error) {
	defer g.notify()
	// done reports to the breaker that admitted the call, even if Run
	// has replaced it since.
	done, err := g.cb.Load().Allow()
	if err != nil {
		// gobreaker.ErrOpenState, or ErrTooManyRequests when the
		// half-open breaker's trial calls are all in flight.
		return resultRejectedOpen, fmt.Errorf("guard %s: %w", g.name, ErrOpen)
	}
	cctx, cancel := context.WithTimeoutCause(ctx, timeout, errOwnTimeout)
	defer cancel()

	returned := false
	defer func() {
		if !returned { // fn panicked
			g.failed("panic in call")
			done(errOutcomeFailure)
		}
	}()
	ferr := fn(cctx)
	returned = true

	switch {
	case ferr == nil:
		done(nil)
		g.succeeded()
		return resultSuccess, nil
	case ctx.Err() != nil:
		done(errOutcomeExcluded)
		return resultCanceled, ctx.Err()
	case errors.Is(context.Cause(cctx), errOwnTimeout):
		err := fmt.Errorf("%w after %s: %w", ErrTimeout, timeout, ferr)
		g.failed(err.Error())
		done(errOutcomeFailure)
		return resultTimeout, fmt.Errorf("guard %s: %w", g.name, err)
	default:
		g.failed(ferr.Error())
		done(errOutcomeFailure)
		return resultFailure, fmt.Errorf("guard %s: %w", g.name, failedError{ferr})
	}
}

// failed records a failure before it is reported to the breaker, so that a
// state change it causes logs it as last_error.
func (g *Guard) failed(msg string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.lastErr = msg
	g.leaveUnknownLocked()
}

// succeeded records a success after it was reported to the breaker.
func (g *Guard) succeeded() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.leaveUnknownLocked()
}

// leaveUnknownLocked marks the first outcome: the closed breaker's state
// turns from unknown to up. Later states are set by onStateChange and
// closeByProbes.
func (g *Guard) leaveUnknownLocked() {
	if g.state == health.DepUnknown {
		g.setStateLocked(health.DepUp)
	}
}

// setStateLocked sets the dependency's state; Status has changed.
func (g *Guard) setStateLocked(state string) {
	if g.state != state {
		g.state = state
		g.since = time.Now()
	}
	g.changed.Store(true)
}

// notify calls Options.OnChange if Status has changed since it last did.
// It must be called without g.mu, and never from Status.
func (g *Guard) notify() {
	if g.onChange != nil && g.changed.Load() && g.changed.CompareAndSwap(true, false) {
		g.onChange()
	}
}

// onStateChange is the OnStateChange of breaker cb: it runs with cb's lock
// held, so it must not call the breaker, nor OnChange (which may call
// Status); it wakes Run, which calls OnChange unless a call does first.
// The changes of a breaker that Run has replaced are ignored: they are
// outcomes of calls it admitted before, which no longer matter.
func (g *Guard) onStateChange(cb *breaker, from, to gobreaker.State) {
	state := health.DepDown
	if to == gobreaker.StateClosed {
		state = health.DepUp
	}
	g.mu.Lock()
	if g.cb.Load() != cb {
		g.mu.Unlock()
		return
	}
	lastErr := g.lastErr
	switch to {
	case gobreaker.StateClosed:
		g.lastErr = ""
	case gobreaker.StateOpen:
		g.opens++
	}
	g.breaker = to
	g.setStateLocked(state)
	g.mu.Unlock()

	g.m.stateChanges.WithLabelValues(to.String()).Inc()
	level := slog.LevelInfo
	if to == gobreaker.StateOpen {
		level = slog.LevelWarn
	}
	g.log.LogAttrs(context.Background(), level, "circuit breaker state changed",
		slog.String("dependency", g.name),
		slog.String("from", from.String()),
		slog.String("to", to.String()),
		slog.String("last_error", lastErr))
	g.wakeRun()
}

// wakeRun tells Run that the breaker's state changed.
func (g *Guard) wakeRun() {
	select {
	case g.wake <- struct{}{}:
	default:
	}
}

// breakerState returns the current breaker's state and the number of
// times a breaker has opened. Asking the breaker, without g.mu, is what
// turns an expired open breaker half-open, through onStateChange.
func (g *Guard) breakerState() (gobreaker.State, uint64) {
	g.cb.Load().State()
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.breaker, g.opens
}

// Status returns the dependency's entry for health.Report: State is up
// when the breaker is closed and a call or probe has completed, unknown
// when it is closed and none has, and down when it is open or half-open;
// Breaker is "closed", "open" or "half-open"; Since is when State last
// changed (New's time while unknown); LastError is the most recent failure
// since the breaker last closed.
func (g *Guard) Status() health.Dependency {
	// Ask the breaker first, without g.mu: this is what turns an expired
	// open breaker half-open, and that calls onStateChange.
	g.cb.Load().State()
	g.mu.Lock()
	defer g.mu.Unlock()
	return health.Dependency{
		State:     g.state,
		Breaker:   g.breaker.String(),
		Since:     g.since,
		LastError: g.lastErr,
	}
}
