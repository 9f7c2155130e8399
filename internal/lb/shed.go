package lb

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spillway-dev/spillway/internal/field"

	"github.com/spillway-dev/spillway/health"
)

// ShedConfig configures dependency-aware edge shedding: when enough ready
// instances report the same dependency down, the balancer answers the
// requests that need it with a fast 503 itself instead of sending them to
// instances that can only fail them. spillway-specific: Envoy and HAProxy
// have no dependency votes; the recovery ramp is slow start applied to a
// dependency instead of an instance.
type ShedConfig struct {
	// Quorum is the share of ready instances, in [0,1], that must report a
	// dependency "down" for the balancer to shed it. Default 0.5 ("at least
	// half"; with 2 ready instances one vote is enough). 0 disables
	// automatic shedding; manual overrides still work (the 2018
	// configuration).
	Quorum float64 `yaml:"quorum"`
	// Recovery is how the admitted share returns to 1 once the votes fall
	// below the quorum: "feedback" (the default) ramps it by the outcomes
	// of the admitted requests (Ramp); "window" ramps it linearly over
	// RecoveryWindow.
	Recovery RecoveryMode `yaml:"recovery"`
	// Ramp configures the feedback ramp.
	Ramp RampConfig `yaml:"ramp"`
	// Stall configures stall detection while the dependency is ok
	// (stall.go).
	Stall StallConfig `yaml:"stall"`
	// RecoveryWindow is how long the admitted share takes to ramp from 0 to
	// 1 once the votes fall below the quorum, with recovery "window".
	// Default 5s. 0 reopens at once.
	RecoveryWindow time.Duration `yaml:"recovery_window"`
	// MaxRecoveryWindow caps the recovery window's doubling: each time
	// shedding resumes before a ramp completed, the next ramp is twice as
	// long, back to RecoveryWindow once a ramp completes. Default 40s
	// (three doublings: 8 × RecoveryWindow). Must be at least
	// RecoveryWindow.
	MaxRecoveryWindow time.Duration `yaml:"max_recovery_window"`
	// RetryAfter is a shed answer's Retry-After, in whole seconds (rounded
	// up): how soon the dependency's return can be noticed (the guards'
	// recovery probes) and let in (the feedback ramp). Not spread: clients
	// come back as spread as they came, the ramp paces their return, and
	// a spread only makes them wait longer (a longer echo of retries after
	// the return). Default 1s; at most 1h.
	RetryAfter time.Duration `yaml:"retry_after"`
}

// DefaultShedConfig returns the defaults documented on ShedConfig.
func DefaultShedConfig() ShedConfig {
	return ShedConfig{Quorum: 0.5, Recovery: RecoveryFeedback, Ramp: DefaultRampConfig(), Stall: DefaultStallConfig(),
		RecoveryWindow: 5 * time.Second, MaxRecoveryWindow: 40 * time.Second, RetryAfter: time.Second}
}

// Validate reports every invalid field.
func (c ShedConfig) Validate() error {
	var errs []error
	errs = append(errs, field.Fraction("quorum", c.Quorum, 0, 1), c.Recovery.validate(),
		field.Prefix("ramp", c.Ramp.Validate()), field.Prefix("stall", c.Stall.Validate()), field.NonNegative("recovery_window", c.RecoveryWindow))
	if c.MaxRecoveryWindow < c.RecoveryWindow {
		errs = append(errs, field.New("max_recovery_window", c.MaxRecoveryWindow, "must be at least recovery_window ("+c.RecoveryWindow.String()+")"))
	}
	errs = append(errs, field.Positive("retry_after", c.RetryAfter))
	if c.RetryAfter > time.Hour {
		errs = append(errs, field.New("retry_after", c.RetryAfter, "must be at most 1h"))
	}
	return errors.Join(errs...)
}

// Override is an operator's manual shedding switch for one dependency.
type Override string

const (
	// OverrideAuto follows the instances' votes (the default).
	OverrideAuto Override = "auto"
	// OverrideOn sheds every request that needs the dependency.
	OverrideOn Override = "on"
	// OverrideOff never sheds for the dependency: everything is admitted
	// at once, without a ramp.
	OverrideOff Override = "off"
)

// ParseOverride parses "auto", "on" or "off".
func ParseOverride(s string) (Override, error) {
	switch o := Override(s); o {
	case OverrideAuto, OverrideOn, OverrideOff:
		return o, nil
	}
	return "", fmt.Errorf("override %q: %w", s, ErrBadOverride)
}

// ErrBadOverride: an override other than auto, on or off.
var ErrBadOverride = errors.New("not auto, on or off")

// ShedState is a dependency's edge shedding state.
type ShedState string

const (
	ShedOK         ShedState = "ok"         // every request admitted
	ShedShedding   ShedState = "shedding"   // every request that needs it answered 503 at the edge
	ShedRecovering ShedState = "recovering" // requests admitted through a congestion window, or a share ramping from 0 to 1
)

// DependencyStatus is one dependency's shedding status, for the admin API.
type DependencyStatus struct {
	Name     string    `json:"name"`
	State    ShedState `json:"state"`
	Override Override  `json:"override"`
	// OverrideOrigin, for an override other than auto, is the balancer
	// whose admin API set it: its id, or "local" when the override is
	// not shared (Balancer.Status fills it in); OverrideAt is when;
	// OverridePending: set here while etcd was out of reach, not shared
	// yet. Without an override the state is decided here, from the
	// instances' reports.
	OverrideOrigin  string    `json:"override_origin,omitempty"`
	OverrideAt      time.Time `json:"override_at,omitzero"`
	OverridePending bool      `json:"override_pending,omitempty"`
	// Admitted is the share of requests needing it that are admitted: now
	// (ok, shedding, a window ramp), or since the feedback ramp began.
	Admitted float64 `json:"admitted_share"`
	// Recovery is the ramp's mode while recovering.
	Recovery RecoveryMode `json:"recovery,omitempty"`
	// Window and InFlight are the feedback ramp's congestion window and
	// the requests in flight through it (InFlight: all of them while ok); LastStep what its last answer
	// did to it; LatencyBound the latency it holds answers to (0: none
	// known yet).
	Window       float64       `json:"window,omitempty"`
	InFlight     int           `json:"in_flight,omitempty"`
	LastStep     RampStep      `json:"last_step,omitempty"`
	LatencyBound time.Duration `json:"latency_bound_ns,omitempty"`
	// Baseline is the dependency's median latency while ok (0: not
	// measured yet); the feedback ramp's bound derives from it.
	Baseline time.Duration `json:"baseline_ns,omitempty"`
	// Tail is its p99 latency while ok, measured the same way; the stall
	// time derives from it.
	Tail time.Duration `json:"tail_ns,omitempty"`
	// StallTime is the stall time while ok (0: stall detection off or the
	// baseline not known yet); Stalled says whether the dependency is
	// stalled now; Stalls counts the requests refused as stalled since it
	// was first seen (stall.go). InFlight, while ok, is its requests in
	// flight.
	StallTime time.Duration `json:"stall_time_ns,omitempty"`
	Stalled   bool          `json:"stalled,omitempty"`
	Stalls    int64         `json:"stalls"`
	// Since is when State was entered (zero if always ok).
	Since time.Time `json:"since,omitzero"`
	// RecoveryEnd is when a recovery window ramp reaches 1 (zero unless
	// recovering by the window).
	RecoveryEnd time.Time `json:"recovery_end,omitzero"`
	// Down and Ready are the last vote: ready instances reporting it down,
	// out of ready instances with a fresh report.
	Down  int `json:"down"`
	Ready int `json:"ready"`
	// Flaps counts ramps cut short by renewed shedding since the last
	// completed ramp; the next window ramp lasts RecoveryWindow × 2^Flaps,
	// the next feedback ramp starts with InitialWindow / 2^Flaps.
	Flaps int `json:"flaps"`
}

// maxDependencies bounds the dependencies a Shedder tracks; names beyond it
// in reports are ignored (they come from our own instances, so this is a
// guard, not a limit anyone should meet).
const maxDependencies = 64

// Shedder decides, per dependency, whether the edge sheds requests that
// need it, from the /health reports of ready instances.
//
// State machine per dependency, evaluated at each Update:
//
//	ok/recovering → shedding   when down ≥ Quorum × ready, or override on
//	shedding → recovering      when down < Quorum × ready (override auto):
//	                           through a congestion window (feedback,
//	                           ramp.go) or a share (now − since)/window
//	recovering → ok            when the window is calm (feedback) or the
//	                           recovery window has elapsed
//	any → ok                   with override off, at once
//
// Flapping. Instances already damp their own reports (a breaker reports
// down while open and half-open and closes only after successful probes),
// so the balancer adds no dwell time of its own: that would only delay
// shedding in an outage or the return of traffic. Instead: (1) shedding
// resumes at once whenever the quorum is met again, even mid-ramp, since
// a dependency reported down must not receive traffic; (2) a ramp cut short
// that way halves the next feedback ramp's initial window, or doubles the
// next window ramp (up to MaxRecoveryWindow), which breaks
// the classic cycle where the ramp itself overloads a barely-recovered
// backend; a completed ramp resets it. (3) With no ready instance (no
// fresh report) there is no vote and the state is held rather than
// guessed.
//
// Writers (Update, SetOverride, SetRoutes, SetConfig, Status) serialise on
// an internal mutex; readers (Enter, Admit, Blocked) read an immutable
// view through an atomic pointer and compute window ramps from now; they
// neither allocate nor lock, except the mutex of a recovering
// dependency's congestion window. Safe for concurrent use.
type Shedder struct {
	mu     sync.Mutex
	cfg    ShedConfig
	deps   map[string]*depState
	routes *RouteTable
	view   atomic.Pointer[shedView]
}

type depState struct {
	name     string
	override Override
	state    ShedState
	since    time.Time
	window   time.Duration // the running window ramp's length; 0 for a feedback ramp
	flaps    int
	autoDown bool
	down     int
	ready    int
	inRoutes bool

	// The feedback ramp's congestion window while recovering (ramp.go).
	win *rampWindow
	// The outcomes of the requests that need it since obs.from, and its
	// median latency while ok (0: not measured yet).
	obs      *outcomes
	baseline time.Duration
	tail     time.Duration // its p99 latency while ok, likewise
	// Its requests in flight, for stall detection (stall.go).
	flow *flow
}

type shedView struct {
	deps      map[string]*depView
	all       []*depView // by name
	routes    *RouteTable
	routeDeps [][]*depView // per routes.routes index
}

type depView struct {
	name   string
	shed   bool
	from   time.Time     // window ramp start
	window time.Duration // > 0 while recovering by the window
	win    *rampWindow   // not nil while recovering by feedback
	obs    *outcomes     // where the proxy records outcomes while ok
	flow   *flow         // its requests in flight
	stall  time.Duration // stall time while ok; 0: not judged
	minIn  int           // StallConfig.MinInFlight
}

// admit reports whether a request with uniform u in [0,1) is admitted,
// without taking a slot of a congestion window (Enter does).
func (d *depView) admit(now time.Time, u float64) bool {
	switch {
	case d.shed:
		return false
	case d.win != nil:
		return d.win.open()
	case d.window <= 0:
		return true
	}
	el := now.Sub(d.from)
	if el >= d.window {
		return true
	}
	return el > 0 && u < float64(el)/float64(d.window)
}

// NewShedder returns a Shedder in which every dependency is ok, or the
// validation error of cfg. routes may be nil (no routes: every path needs
// every dependency).
func NewShedder(cfg ShedConfig, routes *RouteTable) (*Shedder, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Shedder{cfg: cfg, deps: map[string]*depState{}}
	s.SetRoutes(routes)
	return s, nil
}

// SetConfig replaces the configuration (a reload). Running ramps keep
// their length.
func (s *Shedder) SetConfig(cfg ShedConfig) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cfg = cfg
	return nil
}

// SetRoutes replaces the route table (a reload). Dependencies named in it
// are tracked from now on, reported or not.
func (s *Shedder) SetRoutes(rt *RouteTable) {
	if rt == nil {
		rt = &RouteTable{}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.routes = rt
	for _, d := range s.deps {
		d.inRoutes = false
	}
	for _, r := range rt.routes {
		for _, name := range r.Dependencies {
			if d := s.depLocked(name, time.Time{}, true); d != nil {
				d.inRoutes = true
			}
		}
	}
	s.publishLocked()
}

// depLocked returns name's state, creating it if there is room or force;
// nil for a name that is not ValidDependencyName.
func (s *Shedder) depLocked(name string, now time.Time, force bool) *depState {
	if d, ok := s.deps[name]; ok {
		return d
	}
	if !ValidDependencyName(name) {
		return nil
	}
	if !force && len(s.deps) >= maxDependencies {
		return nil
	}
	d := &depState{name: name, override: OverrideAuto, state: ShedOK, since: now, obs: &outcomes{from: now}, flow: &flow{}}
	s.deps[name] = d
	return d
}

// Update takes the latest /health reports of the ready instances (ready,
// not draining, fresh; Pool selects them) and moves every dependency's
// state at now. A report that does not list a dependency counts as a vote
// that it is not down.
func (s *Shedder) Update(now time.Time, reports []health.Report) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, d := range s.deps {
		d.down = 0
	}
	seen := make(map[string]bool, len(s.deps))
	for i := range reports {
		for name, dep := range reports[i].Dependencies {
			d := s.depLocked(name, now, false)
			if d == nil {
				continue
			}
			seen[name] = true
			if dep.State == health.DepDown {
				d.down++
			}
		}
	}
	ready := len(reports)
	for name, d := range s.deps {
		d.ready = ready
		switch {
		case s.cfg.Quorum <= 0:
			d.autoDown = false
		case ready > 0:
			d.autoDown = float64(d.down) >= s.cfg.Quorum*float64(ready)-1e-9
		} // no vote: hold
		s.stepLocked(d, now)
		if ready > 0 && !seen[name] && !d.inRoutes && d.state == ShedOK && d.override == OverrideAuto {
			delete(s.deps, name) // gone from every report: stop tracking
		}
	}
	s.publishLocked()
}

// SetOverride sets dep's manual override at now. Overriding a dependency
// not seen yet tracks it from now on.
func (s *Shedder) SetOverride(dep string, o Override, now time.Time) error {
	if _, err := ParseOverride(string(o)); err != nil {
		return err
	}
	if !ValidDependencyName(dep) {
		return field.New("dependency", dep, dependencyNameRule)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.depLocked(dep, now, false)
	if d == nil {
		return fmt.Errorf("dependency %q: more than %d dependencies tracked", dep, maxDependencies)
	}
	d.override = o
	s.stepLocked(d, now)
	s.publishLocked()
	return nil
}

// Overrides returns the overrides other than auto, by dependency.
func (s *Shedder) Overrides() map[string]Override {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]Override{}
	for name, d := range s.deps {
		if d.override != OverrideAuto {
			out[name] = d.override
		}
	}
	return out
}

func (s *Shedder) stepLocked(d *depState, now time.Time) {
	if d.state == ShedRecovering && d.window > 0 && !now.Before(d.since.Add(d.window)) {
		d.okLocked(d.since.Add(d.window))
	}
	s.observeLocked(d, now)
	want := d.autoDown
	switch d.override {
	case OverrideOn:
		want = true
	case OverrideOff:
		want = false
	}
	switch {
	case want && d.state != ShedShedding:
		if d.state == ShedRecovering && d.override == OverrideAuto {
			d.flaps++
		}
		d.state, d.since, d.window, d.win = ShedShedding, now, 0, nil
	case !want && d.state == ShedShedding:
		switch {
		case d.override == OverrideOff:
			d.okLocked(now)
		case s.cfg.Recovery == RecoveryFeedback:
			d.state, d.since, d.window = ShedRecovering, now, 0
			d.win = newRampWindow(s.cfg.Ramp, d.baseline, d.flaps, now)
		default:
			if w := s.recoveryWindowLocked(d.flaps); w > 0 {
				d.state, d.since, d.window = ShedRecovering, now, w
			} else {
				d.okLocked(now)
			}
		}
	case !want && d.state == ShedRecovering && d.override == OverrideOff:
		d.okLocked(now)
	}
}

// okLocked makes d ok at t: every request admitted, the baseline measured
// anew from t. A completed ramp forgets the flaps.
func (d *depState) okLocked(t time.Time) {
	if d.state == ShedRecovering && d.override == OverrideAuto {
		d.flaps = 0
	}
	d.state, d.since, d.window, d.win = ShedOK, t, 0, nil
	d.obs = &outcomes{from: t}
}

// observeLocked ends a feedback ramp whose window has been calm long
// enough, and while ok folds a window of outcomes long enough into the
// baseline latency.
func (s *Shedder) observeLocked(d *depState, now time.Time) {
	switch {
	case d.state == ShedRecovering && d.win != nil:
		if !now.Before(d.win.calmAt()) {
			d.okLocked(now)
		}
	case d.state == ShedOK:
		if now.Sub(d.obs.from) < baselineMinSpan {
			return
		}
		smp := d.obs.sample()
		if smp.ok >= baselineMinSamples && float64(smp.failed) <= baselineFailureShare*float64(smp.ok+smp.failed) {
			d.baseline = fold(d.baseline, smp.median)
			d.tail = fold(d.tail, smp.p99)
		}
		d.obs = &outcomes{from: now}
	}
}

func (s *Shedder) recoveryWindowLocked(flaps int) time.Duration {
	w := s.cfg.RecoveryWindow
	for i := 0; i < flaps && w < s.cfg.MaxRecoveryWindow; i++ {
		w *= 2
	}
	return min(w, max(s.cfg.MaxRecoveryWindow, s.cfg.RecoveryWindow))
}

func (s *Shedder) publishLocked() {
	v := &shedView{deps: make(map[string]*depView, len(s.deps)), routes: s.routes}
	for name, d := range s.deps {
		dv := &depView{name: name, shed: d.state == ShedShedding, win: d.win, obs: d.obs, flow: d.flow}
		if d.state == ShedOK {
			dv.stall, dv.minIn = s.cfg.Stall.stallTime(d.tail), s.cfg.Stall.MinInFlight
		}
		if d.state == ShedRecovering && d.window > 0 {
			dv.from, dv.window = d.since, d.window
		}
		v.deps[name] = dv
		v.all = append(v.all, dv)
	}
	slices.SortFunc(v.all, func(a, b *depView) int { return strings.Compare(a.name, b.name) })
	v.routeDeps = make([][]*depView, len(s.routes.routes))
	for i, r := range s.routes.routes {
		if r.All {
			v.routeDeps[i] = v.all
			continue
		}
		for _, name := range r.Dependencies {
			v.routeDeps[i] = append(v.routeDeps[i], v.deps[name])
		}
	}
	s.view.Store(v)
}

// Status returns every tracked dependency's status at now, by name.
func (s *Shedder) Status(now time.Time) []DependencyStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]DependencyStatus, 0, len(s.deps))
	for _, d := range s.deps {
		if d.state == ShedRecovering && d.window > 0 && !now.Before(d.since.Add(d.window)) {
			d.okLocked(d.since.Add(d.window))
		}
		st := DependencyStatus{
			Name: d.name, State: d.state, Override: d.override, Since: d.since,
			Down: d.down, Ready: d.ready, Flaps: d.flaps, Baseline: d.baseline, Tail: d.tail,
		}
		st.Stalls = d.flow.stalls.Load()
		switch {
		case d.state == ShedOK:
			st.Admitted = 1
			st.StallTime = s.cfg.Stall.stallTime(d.tail)
			st.InFlight = int(d.flow.inFlight.Load())
			st.Stalled = d.flow.silent(now, st.StallTime, s.cfg.Stall.MinInFlight)
		case d.state == ShedRecovering && d.window > 0:
			st.Recovery = RecoveryWindow
			st.Admitted = float64(now.Sub(d.since)) / float64(d.window)
			st.Admitted = clampFraction(st.Admitted, 0, 1)
			st.RecoveryEnd = d.since.Add(d.window)
		case d.state == ShedRecovering:
			w := d.win.state()
			st.Recovery, st.Admitted, st.Window, st.InFlight = RecoveryFeedback, w.admittedShare, w.window, w.inFlight
			st.LastStep, st.LatencyBound = w.last, w.bound
		}
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b DependencyStatus) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// next returns the earliest time after now at which a state changes by
// time alone (a ramp completing), or zero.
func (s *Shedder) next(now time.Time) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	var t time.Time
	for _, d := range s.deps {
		if d.state != ShedRecovering {
			continue
		}
		var end time.Time
		if d.window > 0 {
			end = d.since.Add(d.window)
		} else {
			// The calm that ends the ramp; its start moves with every
			// refusal, so look again soon after.
			end = d.win.calmAt()
			if soon := now.Add(s.cfg.Ramp.Calm / 4); end.Before(soon) {
				end = soon
			}
		}
		if end.After(now) && (t.IsZero() || end.Before(t)) {
			t = end
		}
	}
	return t
}

// Ticket is one request's passage through the shedder (Enter): the
// congestion windows it holds a slot of, and where its outcome goes. Its
// zero value holds nothing. Call Done exactly once.
type Ticket struct {
	deps []*depView // the path's dependencies, as of Enter
	win  *rampWindow
	more []*rampWindow // a second recovering dependency, and more: rare
	at   time.Time
	// flows: the request is counted in flight to each of deps since sent
	// (Sent; stall.go).
	flows bool
	sent  time.Time
}
