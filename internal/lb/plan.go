package lb

// This file holds the data-plane seam: the Plan a Balancer publishes after
// every evaluation, for a data plane other than its own proxy (`spillway
// controller` applies it to HAProxy), and the PlanFeed that carries it.

import (
	"math"
	"slices"
	"strings"
	"sync/atomic"
	"time"
)

// ServerState is the state a data plane should give an instance's server.
type ServerState string

// The states of a PlanInstance. They are HAProxy's administrative states
// ("set server B/S state ..."), which any data plane can map.
const (
	// ServerUnknown: the instance has had no health check yet; the data
	// plane leaves its server as it finds it (its own checks decide), so
	// that a data plane that restarts does not flap.
	ServerUnknown ServerState = ""
	// ServerReady: routable (or, in panic, a candidate that accepts
	// connections): the server takes new requests at Weight.
	ServerReady ServerState = "ready"
	// ServerDrain: the instance's process answers but it gets no new
	// requests: drained by an operator, draining by its own report,
	// ejected as an outlier, or failing its readiness check. Requests
	// in flight finish, and the data plane's own checks stay on.
	ServerDrain ServerState = "drain"
	// ServerMaint: the instance does not accept connections (its last
	// check could not connect, even once, even while its health state
	// has not reached the unhealthy threshold): no traffic at all.
	ServerMaint ServerState = "maint"
)

// FullWeight is a PlanInstance's weight at the end of its slow start.
const FullWeight = 100

// Plan is what the balancer decided at one evaluation, for a data plane
// to apply: a plain value, sharing nothing with the balancer (every
// slice is the Plan's own).
type Plan struct {
	// At is the evaluation's time.
	At time.Time
	// Panic: the routable share is below the panic threshold and every
	// instance that accepts connections is ready at full weight.
	Panic bool
	// Settled: this plan, or an earlier one of the same balancer, had
	// every instance checked at least once (none ServerUnknown). Before
	// that the dependencies' shares rest on the reports of only some
	// instances, or none (a share of 1): a data plane that already sheds
	// (a controller restarted mid-outage) keeps its shares until the plan
	// is settled, so that it does not admit everything for the time of
	// the first checks.
	Settled bool
	// Instances by id (service address).
	Instances []PlanInstance
	// Dependencies are the shedding states, by name.
	Dependencies []PlanDependency
	// Routes are the admitted shares by path prefix, longest first, then
	// "/" (the paths no route matches: every dependency) unless a route
	// is "/" itself: the lines of HAProxy's share map, in its order.
	Routes []PlanRoute
}

// PlanInstance is one instance's part of a Plan.
type PlanInstance struct {
	// ID is the service address; Health the health port's address ("" if
	// the balancer does not check it).
	ID, Health string
	// State is the server state the data plane should set.
	State ServerState
	// Weight, for a ServerReady instance, is its slow-start weight in
	// 1..FullWeight (FullWeight once the ramp is over, and in panic); 0
	// otherwise: the data plane leaves the weight as it is.
	Weight int
	// MaxConn, for a ServerReady instance, is the requests it should get
	// at once: its reported limit × its weight × this balancer's share of
	// the fleet, rounded up; 0: unbounded (no fresh reported limit, or
	// panic).
	MaxConn int
}

// PlanDependency is one dependency's shedding state in a Plan.
type PlanDependency struct {
	Name  string
	State ShedState
	// Share is the admitted share of the requests that need it, in
	// [0,1]: 1 while ok, 0 while shedding, rising while recovering.
	Share float64
}

// PlanRoute is one path prefix's admitted share: the least Share of the
// dependencies its requests need (1 when none).
type PlanRoute struct {
	Prefix string
	Share  float64
}

// Instance returns the plan's instance id, if it has it.
func (p *Plan) Instance(id string) (PlanInstance, bool) {
	i, ok := slices.BinarySearchFunc(p.Instances, id, func(in PlanInstance, id string) int { return strings.Compare(in.ID, id) })
	if !ok {
		return PlanInstance{}, false
	}
	return p.Instances[i], true
}

// Route returns the admitted share of prefix, if the plan has it.
func (p *Plan) Route(prefix string) (float64, bool) {
	for _, r := range p.Routes {
		if r.Prefix == prefix {
			return r.Share, true
		}
	}
	return 0, false
}

// Share returns the least share of the named dependencies (of all of them
// when all), 1 when there is none: the share of a request that needs
// them.
func (p *Plan) Share(deps []string, all bool) float64 {
	s := 1.0
	for _, d := range p.Dependencies {
		if all || slices.Contains(deps, d.Name) {
			s = min(s, d.Share)
		}
	}
	return s
}

// PlanFeed hands the balancer's latest Plan to a data plane without ever
// blocking the balancer: Publish stores the Plan and signals a
// one-element channel; the data plane's goroutine waits on Ready and
// reads Latest, so plans it had no time for are skipped, never queued.
// Build it with NewPlanFeed; safe for concurrent use.
type PlanFeed struct {
	latest atomic.Pointer[Plan]
	ready  chan struct{}
}

// NewPlanFeed returns an empty feed.
func NewPlanFeed() *PlanFeed { return &PlanFeed{ready: make(chan struct{}, 1)} }

// Publish makes p the latest plan. It never blocks.
func (f *PlanFeed) Publish(p Plan) {
	f.latest.Store(&p)
	select {
	case f.ready <- struct{}{}:
	default:
	}
}

// Ready receives after a Publish that the reader has not seen yet.
func (f *PlanFeed) Ready() <-chan struct{} { return f.ready }

// Latest returns the latest plan, and false before the first.
func (f *PlanFeed) Latest() (Plan, bool) {
	p := f.latest.Load()
	if p == nil {
		return Plan{}, false
	}
	return *p, true
}

// allChecked reports whether the instances are at least one and all
// checked (Plan.Settled).
func allChecked(insts []PlanInstance) bool {
	for _, in := range insts {
		if in.State == ServerUnknown {
			return false
		}
	}
	return len(insts) > 0
}

// planInstances returns the instances' part of a Plan as of the last
// Evaluate (ev its outcome), by id; health gives an id's health address.
func (p *Pool) planInstances(now time.Time, ev Eval, health func(id string) string) []PlanInstance {
	maxAge := p.cfg.HealthCheck.ReportMaxAge
	out := make([]PlanInstance, 0, len(p.list))
	for _, in := range p.list {
		pi := PlanInstance{ID: in.id, Health: health(in.id)}
		switch {
		case in.health.Checked() && !in.health.AcceptsConnections():
			// Its last check could not connect: out at once, before
			// the unhealthy threshold takes it out of this balancer's
			// rotation too. spillway lb retries a failed dial on
			// another instance; a data plane's server would take
			// connections that fail until then.
			pi.State = ServerMaint
		case in.candidate:
			pi.State = ServerReady
			pi.Weight = max(1, int(math.Round(in.weight*FullWeight)))
			if in.fresh(now, maxAge) && in.report.Limit > 0 && !ev.Panic {
				pi.MaxConn = max(1, int(math.Ceil(float64(in.report.Limit)*in.weight*p.share)))
			}
		case !in.health.Checked():
			pi.State = ServerUnknown
		case !in.health.AcceptsConnections():
			pi.State = ServerMaint
		default:
			// Drained, draining, ejected, or not (yet) ready: it answers,
			// it gets nothing new.
			pi.State = ServerDrain
		}
		out = append(out, pi)
	}
	return out // p.list is by id
}

// planShares returns the dependencies' and the routes' admitted shares at
// now, and whether a share is moving with time (a window ramp).
func (s *Shedder) planShares(now time.Time) (deps []PlanDependency, routes []PlanRoute, moving bool) {
	v := s.view.Load()
	share := func(d *depView) float64 {
		switch {
		case d == nil:
			return 1
		case d.shed:
			return 0
		case d.win != nil:
			// A feedback ramp has no share; a data plane cannot run
			// one (New refuses it), so this is only a reload's
			// leftover: admit while its window is open.
			if d.win.open() {
				return 1
			}
			return 0
		case d.window > 0:
			el := now.Sub(d.from)
			moving = moving || el < d.window
			return clampFraction(float64(el)/float64(d.window), 0, 1)
		}
		return 1
	}
	deps = make([]PlanDependency, 0, len(v.all))
	for _, d := range v.all {
		pd := PlanDependency{Name: d.name, State: ShedOK, Share: share(d)}
		switch {
		case d.shed:
			pd.State = ShedShedding
		case d.win != nil || d.window > 0:
			pd.State = ShedRecovering
		}
		deps = append(deps, pd)
	}
	least := func(ds []*depView) float64 {
		m := 1.0
		for _, d := range ds {
			m = min(m, share(d))
		}
		return m
	}
	root := false
	for i, r := range v.routes.routes {
		routes = append(routes, PlanRoute{Prefix: r.Prefix, Share: least(v.routeDeps[i])})
		root = root || r.Prefix == "/"
	}
	if !root {
		routes = append(routes, PlanRoute{Prefix: "/", Share: least(v.all)})
	}
	return deps, routes, moving
}
