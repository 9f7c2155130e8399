package lb

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/spillway-dev/spillway/health"
)

// ErrUnknownInstance: no instance with that id is in the pool.
var ErrUnknownInstance = errors.New("unknown instance")

// Pool ties the policies together for a set of instances: each instance
// has a HealthState, an OutlierState, a slow-start ramp, its last /health
// report and an operator drain flag, and Evaluate turns them into the
// routing snapshot (published to Picker), the panic decision, the edge
// capacity bound and the shedding votes (fed to Shedder).
//
// Routable means: healthy by active checks, not ejected, not drained by an
// operator, and not reporting that it is draining. Drained and draining
// instances, and pending ones (never healthy yet), are out of the panic
// arithmetic entirely (see Member). Slow start begins whenever an instance
// becomes routable (new, recovered, un-ejected, undrained), timed from the
// event that made it routable (the passing check, the ejection's end, the
// undrain), not from the Evaluate that noticed it. The shedding voters are the instances
// that are healthy and whose fresh report says ready and not draining
// (ejected and operator-drained instances still vote: ejection and drain
// say nothing about what they see of their dependencies).
//
// Record* and Observe* change state but publish nothing: call Evaluate
// after a batch of them, and again no later than Eval.Next, which is when
// something changes by time alone (an ejection ends, a ramp moves the
// capacity bound, a report goes stale, a recovery ramp ends).
//
// A Pool is not safe for concurrent use: the caller holds the balancer's
// lock around every method. The Picker and Shedder it returns are safe for
// concurrent use without that lock.
type Pool struct {
	cfg     Config
	byID    map[string]*instance
	list    []*instance // by id
	picker  *Picker
	shedder *Shedder
	routes  *RouteTable
	// share is this balancer's part of the fleet's capacity (SetShare):
	// each candidate's cap is this share of its limit.
	share float64
	// seeded: the pool has had instances. The first set it gets is the
	// fleet as the balancer found it at start (see instance.initial).
	seeded bool

	// scratch reused by Evaluate
	active  []*instance
	members []Member
	idx     []int
	votes   []health.Report
	caps    []CapacityInput
	depBit  map[string]uint
}

type instance struct {
	id        string
	ep        *Endpoint
	health    *HealthState
	outlier   *OutlierState
	slow      SlowStart
	report    health.Report
	reportAt  time.Time
	hasReport bool
	// reportErr: why its last report could not be used (nil once one
	// could); lastWarn: when a reason was last logged, warned: which.
	reportErr *ReportProblem
	lastWarn  time.Time
	warned    string
	drained   bool
	undrained time.Time
	outAt     time.Time // last Evaluate that saw it drained or draining
	added     time.Time
	removed   bool
	// as of the last Evaluate
	routable  bool
	candidate bool
	weight    float64
	// initial: the instance was in the first set the pool got, the fleet
	// as the balancer found it at start. Until the pool first routes to
	// it (everRoutable), such an instance skips the part of its slow
	// start that its report says it has already served.
	initial      bool
	everRoutable bool
	// checks counts its active check results (CheckResult), for /metrics.
	checks [numCheckResults]uint64
}

// NewPool returns an empty pool for cfg (derived defaults resolved), or
// its validation error. routes is
// the shedding route table (nil: every path needs every dependency); rand
// feeds the Picker (nil: math/rand/v2).
func NewPool(cfg Config, routes *RouteTable, rand func() uint64) (*Pool, error) {
	cfg.Resolve()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	sh, err := NewShedder(cfg.Shedding, routes)
	if err != nil {
		return nil, err
	}
	return &Pool{cfg: cfg, byID: map[string]*instance{}, picker: NewPicker(rand), shedder: sh, routes: routes, depBit: map[string]uint{}, share: 1}, nil
}

// SetShare sets this balancer's share of the fleet's capacity, in (0, 1]
// (anything else counts as 1), for the next Evaluate: each candidate's
// cap is that share of its reported limit.
func (p *Pool) SetShare(share float64) {
	if !(share > 0) || share > 1 {
		share = 1
	}
	p.share = share
}

// SetRoutes replaces the route table (a reload) of the shedder and of the
// picker's impairment rule. Call Evaluate afterwards.
func (p *Pool) SetRoutes(rt *RouteTable) {
	p.routes = rt
	p.shedder.SetRoutes(rt)
}

// Picker returns the picker that Evaluate publishes to.
func (p *Pool) Picker() *Picker { return p.picker }

// Shedder returns the shedder that Evaluate feeds.
func (p *Pool) Shedder() *Shedder { return p.shedder }

// Config returns the pool's configuration.
func (p *Pool) Config() Config { return p.cfg }

// Reconfigure applies a new configuration (a reload) and keeps every
// instance's state: counts are judged against the new thresholds from the
// next event on; ramps under way keep their length.
func (p *Pool) Reconfigure(cfg Config) error {
	cfg.Resolve()
	if err := cfg.Validate(); err != nil {
		return err
	}
	if err := p.shedder.SetConfig(cfg.Shedding); err != nil {
		return err
	}
	p.cfg = cfg
	for _, in := range p.list {
		in.health.setThresholds(cfg.HealthCheck)
		in.outlier.cfg = cfg.Outlier
	}
	return nil
}

// Add adds a new instance, pending its first check, and reports whether it
// was not already there. id is its service address.
func (p *Pool) Add(id string, now time.Time) bool {
	if id == "" || p.byID[id] != nil {
		return false
	}
	in := &instance{
		id:      id,
		ep:      NewEndpoint(id),
		health:  NewHealthState(p.cfg.HealthCheck),
		outlier: NewOutlierState(p.cfg.Outlier),
		added:   now,
	}
	in.ep.inst = in
	p.byID[id] = in
	i, _ := slices.BinarySearchFunc(p.list, id, func(x *instance, id string) int { return strings.Compare(x.id, id) })
	p.list = slices.Insert(p.list, i, in)
	return true
}

// Remove removes an instance and reports whether it was there. Requests in
// flight on it finish normally and release its endpoint.
func (p *Pool) Remove(id string) bool {
	in := p.byID[id]
	if in == nil {
		return false
	}
	in.removed = true
	delete(p.byID, id)
	p.list = slices.DeleteFunc(p.list, func(x *instance) bool { return x == in })
	return true
}

// Sync makes the pool's instances exactly ids (a discovery update or a
// reload): new ones are added, missing ones removed, the others keep their
// state.
func (p *Pool) Sync(ids []string, now time.Time) (added, removed int) {
	want := make(map[string]bool, len(ids))
	for _, id := range ids {
		want[id] = true
	}
	for _, in := range slices.Clone(p.list) {
		if !want[in.id] && p.Remove(in.id) {
			removed++
		}
	}
	for _, id := range ids {
		if p.Add(id, now) {
			added++
			p.byID[id].initial = !p.seeded
		}
	}
	p.seeded = p.seeded || len(p.list) > 0
	return added, removed
}

// IDs returns the instances' ids, sorted.
func (p *Pool) IDs() []string {
	out := make([]string, len(p.list))
	for i, in := range p.list {
		out[i] = in.id
	}
	return out
}

// Endpoint returns the instance's endpoint.
func (p *Pool) Endpoint(id string) (*Endpoint, bool) {
	in := p.byID[id]
	if in == nil {
		return nil, false
	}
	return in.ep, true
}

// RecordCheck feeds an active check's result. changed reports whether the
// instance's health flipped; ok is false for an unknown id (an instance
// removed while its check was running).
func (p *Pool) RecordCheck(id string, now time.Time, r CheckResult) (changed, ok bool) {
	in := p.byID[id]
	if in == nil {
		return false, false
	}
	if r < numCheckResults {
		in.checks[r]++
	}
	return in.health.Record(now, r), true
}

// RecordReport stores the instance's latest /health report, received at
// now. The pool keeps rep, its Dependencies map included: the caller must
// not modify it afterwards. The report supersedes what ObserveFailingFast
// inferred.
func (p *Pool) RecordReport(id string, now time.Time, rep health.Report) bool {
	in := p.byID[id]
	if in == nil {
		return false
	}
	in.report, in.reportAt, in.hasReport = rep, now, true
	in.reportErr = nil
	in.ep.failingFast.Store(false)
	return true
}

// ReportProblem is why an instance's report could not be used, for the
// admin API: a reason of health.UnusableReasons, the detail, and since
// when reports have failed for that reason.
type ReportProblem struct {
	Reason string    `json:"reason"`
	Detail string    `json:"detail"`
	Since  time.Time `json:"since"`
	// Count is the failed fetches since Since.
	Count int `json:"count"`
}

// ReportWarnInterval is the least time between two WARNs about one
// instance's unusable report while the reason stays the same.
const ReportWarnInterval = time.Minute

// RecordReportError records at now that the instance's report could not
// be used, for reason (one of health.UnusableReasons) with detail. The
// last usable report stays until it goes stale. warn reports whether to
// log it: a reason other than the one last logged, or ReportWarnInterval
// since the last WARN. So an instance logs at most once a minute while
// its reports keep failing for one reason, even if a usable report comes
// in between. An unreachable report of an instance that is not healthy
// (stopped, killed, not started yet) is recorded but not logged: the
// active check's own WARN says that. The state lives in the instance, so it is bounded by the
// pool's instances and goes with them.
func (p *Pool) RecordReportError(id string, now time.Time, reason, detail string) (warn, ok bool) {
	in := p.byID[id]
	if in == nil {
		return false, false
	}
	if in.reportErr == nil || in.reportErr.Reason != reason {
		in.reportErr = &ReportProblem{Reason: reason, Since: now}
	}
	in.reportErr.Detail = detail
	in.reportErr.Count++
	if reason == health.UnusableUnreachable && !in.health.Healthy() {
		return false, true // down, not a report problem: the check's WARN says so
	}
	if reason != in.warned || in.lastWarn.IsZero() || now.Sub(in.lastWarn) >= ReportWarnInterval {
		in.lastWarn, in.warned = now, reason
		return true, true
	}
	return false, true
}

// HasReport reports whether the instance has sent a report yet.
func (p *Pool) HasReport(id string) bool {
	in := p.byID[id]
	return in != nil && in.hasReport
}

// ObserveFailingFast records that ep answered a request with a deliberate
// 503 dependency_unavailable: it cannot reach a dependency now. Until its
// next report says which, the picker avoids it for every request that
// needs a dependency, while other candidates can take them (see Picker).
// It never ejects. It reports whether this is news: call Evaluate then.
// The proxy may skip the call (and the lock) when ep.FailingFast().
func (p *Pool) ObserveFailingFast(ep *Endpoint) bool {
	in := ep.inst
	if in == nil || in.removed {
		return false
	}
	return !ep.failingFast.Swap(true)
}

// ObserveSuccess records a proxied request on ep that did not fail at the
// gateway level. When ep.Failing() is false there is nothing to reset and
// the proxy may skip the call (and the lock).
func (p *Pool) ObserveSuccess(ep *Endpoint) {
	in := ep.inst
	if in == nil || in.removed {
		return
	}
	in.outlier.Success()
	ep.failing.Store(false)
}

// ObserveFailure records a gateway failure of a proxied request on ep at
// now (the proxy classifies: see OutlierConfig). On OutlierEjected, call
// Evaluate to take the instance out of the snapshot.
func (p *Pool) ObserveFailure(ep *Endpoint, now time.Time) OutlierEvent {
	in := ep.inst
	if in == nil || in.removed {
		return OutlierIgnored
	}
	ejected, total := 0, 0
	for _, x := range p.list {
		if x.excluded(now, p.cfg.HealthCheck.ReportMaxAge) {
			continue
		}
		total++
		if x.outlier.Ejected(now) {
			ejected++
		}
	}
	ev := in.outlier.Failure(now, p.cfg.Outlier.MayEject(ejected, total))
	ep.failing.Store(in.outlier.Consecutive() > 0)
	return ev
}

// SetDrained sets the operator's drain flag at now: a drained instance gets
// no new requests and is out of the panic arithmetic; undrained, it starts
// a slow start. Call Evaluate afterwards.
func (p *Pool) SetDrained(id string, drained bool, now time.Time) error {
	in := p.byID[id]
	if in == nil {
		return fmt.Errorf("instance %q: %w", id, ErrUnknownInstance)
	}
	if in.drained && !drained {
		in.undrained = now
	}
	in.drained = drained
	return nil
}

// Drained reports whether the instance is drained by an operator, and
// whether the pool knows it.
func (p *Pool) Drained(id string) (drained, known bool) {
	in := p.byID[id]
	if in == nil {
		return false, false
	}
	return in.drained, true
}

// routableSince returns when the instance last became routable: the latest
// of the events that could have kept it out, capped at now.
func (in *instance) routableSince(now time.Time) time.Time {
	t := in.health.Since()
	if in.outlier.Ejections() > 0 {
		if u := in.outlier.EjectedUntil(); u.After(t) {
			t = u
		}
	}
	if in.undrained.After(t) {
		t = in.undrained
	}
	if in.outAt.After(t) {
		t = in.outAt
	}
	if t.IsZero() || t.After(now) {
		return now
	}
	return t
}

// rampStart is when the instance's slow start began: when it became
// routable or, for an instance of the balancer's initial set the first
// time it is routed to, when it became ready by its own report, if that is
// earlier. A balancer that restarts in front of a running fleet then sends
// each warm instance its full share at once, as HAProxy does across a
// reload, instead of capping the whole fleet at the ramp's minimum; a
// fresh instance, whose report says it has just become ready, ramps as
// usual, and so does any instance added later. The report gives a
// duration, so the instance's clock does not matter.
func (in *instance) rampStart(now time.Time, maxAge time.Duration) time.Time {
	t := in.routableSince(now)
	if !in.initial || in.everRoutable || !in.fresh(now, maxAge) || !in.report.Ready || in.report.ReadyForSeconds <= 0 {
		return t
	}
	ready := in.reportAt.Add(-time.Duration(in.report.ReadyForSeconds * float64(time.Second)))
	if ready.Before(t) {
		return ready
	}
	return t
}

func (in *instance) fresh(now time.Time, maxAge time.Duration) bool {
	return in.hasReport && now.Sub(in.reportAt) <= maxAge
}

// excluded: drained by the operator or draining by its own report.
func (in *instance) excluded(now time.Time, maxAge time.Duration) bool {
	return in.drained || (in.fresh(now, maxAge) && in.report.Draining)
}

// InstanceState summarises an instance for operators.
type InstanceState string

const (
	InstancePending   InstanceState = "pending"   // never healthy yet
	InstanceHealthy   InstanceState = "healthy"   // routable
	InstanceUnhealthy InstanceState = "unhealthy" // failed active checks
	InstanceEjected   InstanceState = "ejected"   // passive outlier ejection
	InstanceDraining  InstanceState = "draining"  // its report says it is shutting down
	InstanceDrained   InstanceState = "drained"   // drained by an operator
)

// instanceStates are every InstanceState, the values of
// spillway_lb_instance_state's state label.
var instanceStates = [...]InstanceState{InstancePending, InstanceHealthy, InstanceUnhealthy, InstanceEjected, InstanceDraining, InstanceDrained}

// InstanceStatus is one instance's state for the admin API, as of the last
// Evaluate for Routable, Candidate and Weight.
type InstanceStatus struct {
	ID       string        `json:"id"`
	State    InstanceState `json:"state"`
	Routable bool          `json:"routable"`
	// Candidate: in the routing snapshot (in panic, also when not routable).
	Candidate   bool    `json:"candidate"`
	Weight      float64 `json:"weight"`
	Outstanding int64   `json:"in_flight"`
	// SlowStartEnd is when its weight reaches 1 (zero if not ramping).
	SlowStartEnd        time.Time      `json:"slow_start_end,omitzero"`
	LastCheck           CheckResult    `json:"last_check"`
	LastCheckAt         time.Time      `json:"last_check_at,omitzero"`
	HealthSince         time.Time      `json:"health_since,omitzero"`
	Ejections           int            `json:"ejections"`
	EjectedUntil        time.Time      `json:"ejected_until,omitzero"`
	ConsecutiveFailures int            `json:"consecutive_gateway_failures"`
	Report              *health.Report `json:"report,omitempty"`
	ReportAt            time.Time      `json:"report_at,omitzero"`
	// ReportError is why its latest report could not be used; absent
	// once one could.
	ReportError *ReportProblem `json:"report_error,omitempty"`
	Added       time.Time      `json:"added"`
}

// Status returns every instance's status at now, by id.
func (p *Pool) Status(now time.Time) []InstanceStatus {
	out := make([]InstanceStatus, 0, len(p.list))
	for _, in := range p.list {
		last, lastAt := in.health.Last()
		st := InstanceStatus{
			ID: in.id, Routable: in.routable, Candidate: in.candidate, Weight: in.weight,
			Outstanding: in.ep.Outstanding(), LastCheck: last, LastCheckAt: lastAt,
			HealthSince: in.health.Since(), Ejections: in.outlier.Ejections(),
			ConsecutiveFailures: in.outlier.Consecutive(), Added: in.added,
		}
		if in.routable && in.slow.Active(now) {
			st.SlowStartEnd = in.slow.End()
		}
		if in.outlier.Ejected(now) {
			st.EjectedUntil = in.outlier.EjectedUntil()
		}
		if in.hasReport {
			rep := in.report
			rep.Dependencies = maps.Clone(rep.Dependencies)
			st.Report, st.ReportAt = &rep, in.reportAt
		}
		if in.reportErr != nil {
			pr := *in.reportErr
			st.ReportError = &pr
		}
		st.State = p.stateLocked(in, now)
		out = append(out, st)
	}
	return out
}

// stateLocked is in's state at now.
func (p *Pool) stateLocked(in *instance, now time.Time) InstanceState {
	switch {
	case in.drained:
		return InstanceDrained
	case in.excluded(now, p.cfg.HealthCheck.ReportMaxAge):
		return InstanceDraining
	case in.outlier.Ejected(now):
		return InstanceEjected
	case in.health.Healthy():
		return InstanceHealthy
	case in.health.Since().IsZero():
		return InstancePending
	default:
		return InstanceUnhealthy
	}
}

// InstanceFigures are one instance's figures for /metrics.
type InstanceFigures struct {
	ID        string
	State     InstanceState
	InFlight  int64
	Ejections int
	// Checks counts its active check results since it joined the pool,
	// indexed by CheckResult.
	Checks [numCheckResults]uint64
}

// Figures returns every instance's figures at now, by id: what Status
// gives, without the copies of the reports.
func (p *Pool) Figures(now time.Time) []InstanceFigures {
	out := make([]InstanceFigures, len(p.list))
	for i, in := range p.list {
		out[i] = InstanceFigures{ID: in.id, State: p.stateLocked(in, now), InFlight: in.ep.Outstanding(),
			Ejections: in.outlier.Ejections(), Checks: in.checks}
	}
	return out
}
