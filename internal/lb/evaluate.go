package lb

// This file holds Pool.Evaluate: the one step that turns the pool's
// observations into a published snapshot, shedding decisions and the
// impairment mark.

import (
	"time"

	"github.com/spillway-dev/spillway/health"
)

// Eval is the outcome of Pool.Evaluate.
type Eval struct {
	// Instances is the number of instances in the pool; Members those not
	// drained, draining or pending (the panic threshold's denominator).
	Instances, Members int
	// Unchecked counts the instances without a health check result yet.
	Unchecked int
	// Routable members, and Ejected ones among Members.
	Routable, Ejected int
	// Candidates is the size of the published snapshot.
	Candidates int
	// Panic: the routable share is below the panic threshold.
	Panic bool
	// Capacity is the edge bound on proxied requests in flight, valid when
	// Bounded (see CapacityConfig).
	Capacity int
	Bounded  bool
	// Next is when to evaluate again at the latest; zero when nothing
	// changes by time alone.
	Next time.Time
}

// capacityTick is how often the capacity bound is refreshed while a ramp
// is under way: Window/20, within [50ms, 1s].
func capacityTick(w time.Duration) time.Duration {
	return min(max(w/20, 50*time.Millisecond), time.Second)
}

// Evaluate applies time (ends ejections that are over), decides what is
// routable and whether the pool is in panic, publishes the routing
// snapshot to the Picker, feeds the shedding votes to the Shedder and
// returns the outcome.
func (p *Pool) Evaluate(now time.Time) Eval {
	maxAge := p.cfg.HealthCheck.ReportMaxAge
	ev := Eval{Instances: len(p.list)}
	p.active, p.members = p.active[:0], p.members[:0]
	for _, in := range p.list {
		in.outlier.Update(now)
		in.candidate, in.weight = false, 0
		if !in.health.Checked() {
			ev.Unchecked++
		}
		if in.excluded(now, maxAge) {
			in.routable, in.outAt = false, now
			continue
		}
		if in.health.Pending() {
			in.routable = false
			continue
		}
		ejected := in.outlier.Ejected(now)
		r := in.health.Healthy() && !ejected
		if r && !in.routable {
			in.slow = p.cfg.SlowStart.Start(in.rampStart(now, maxAge))
			in.everRoutable = true
		}
		in.routable = r
		if r {
			ev.Routable++
		}
		if ejected {
			ev.Ejected++
		}
		p.active = append(p.active, in)
		p.members = append(p.members, Member{Routable: r, AcceptsConnections: in.health.AcceptsConnections()})
	}
	ev.Members = len(p.active)
	p.idx, ev.Panic = p.cfg.Panic.Select(p.members, p.idx[:0])

	cands := make([]Candidate, 0, len(p.idx))
	p.caps = p.caps[:0]
	ramping := false
	for _, i := range p.idx {
		in := p.active[i]
		c := Candidate{Endpoint: in.ep}
		w := 1.0
		if !ev.Panic { // panic fails open: every candidate at full weight
			c.SlowStart = in.slow
			w = in.slow.Weight(now)
			ramping = ramping || in.slow.Active(now)
		}
		in.candidate, in.weight = true, w
		limit := 0
		if in.fresh(now, maxAge) {
			limit = in.report.Limit
		}
		// An instance without a reported limit is capped at the one
		// assumed for it (admission.unknown_instance_limit), as the edge
		// bound counts it: else the pick could send it more than that
		// while another has room (seen at 10× overload: 93 % of the
		// fleet's capacity as goodput instead of 98 %).
		capLimit := limit
		if capLimit <= 0 {
			capLimit = p.cfg.Admission.UnknownInstanceLimit
		}
		if capLimit > 0 && !ev.Panic {
			c.Cap = float64(capLimit) * w * p.share
		}
		cands = append(cands, c)
		p.caps = append(p.caps, CapacityInput{Limit: limit, Weight: w})
	}
	ev.Candidates = len(cands)
	snap := &Snapshot{cands: cands, panic: ev.Panic}
	p.impairment(snap, now)
	p.picker.Store(snap)
	ev.Capacity, ev.Bounded = p.cfg.Admission.Bound(p.caps)

	p.votes = p.votes[:0]
	for _, in := range p.list {
		if in.health.Healthy() && in.fresh(now, maxAge) && in.report.Ready && !in.report.Draining {
			p.votes = append(p.votes, in.report)
		}
	}
	p.shedder.Update(now, p.votes)

	next := func(t time.Time) {
		if t.After(now) && (ev.Next.IsZero() || t.Before(ev.Next)) {
			ev.Next = t
		}
	}
	for _, in := range p.list {
		if in.outlier.Ejected(now) {
			next(in.outlier.EjectedUntil())
		}
		if in.hasReport {
			next(in.reportAt.Add(maxAge + 1))
		}
	}
	if ramping {
		next(now.Add(capacityTick(p.cfg.SlowStart.Window)))
	}
	next(p.shedder.next(now))
	return ev
}

// impairment fills snap's impaired and needs: for each candidate, the
// dependencies it cannot reach (its fresh report says them down, or it
// failed fast since its last report), and for each route the ones it
// needs, over an index of the names that some candidate reports down and
// those the routes name. snap.impaired stays nil when no candidate is
// impaired.
func (p *Pool) impairment(snap *Snapshot, now time.Time) {
	clear(p.depBit)
	var impaired []uint64
	for j, c := range snap.cands {
		in := c.Endpoint.inst
		var m uint64
		if c.Endpoint.failingFast.Load() {
			m = ^uint64(0)
		} else if in != nil && in.fresh(now, p.cfg.HealthCheck.ReportMaxAge) {
			for name, d := range in.report.Dependencies {
				if d.State != health.DepDown {
					continue
				}
				b, ok := p.depBit[name]
				if !ok {
					if len(p.depBit) == 64 {
						continue // beyond the index: not avoided
					}
					b = uint(len(p.depBit))
					p.depBit[name] = b
				}
				m |= 1 << b
			}
		}
		if m != 0 && impaired == nil {
			impaired = make([]uint64, len(snap.cands))
		}
		if impaired != nil {
			impaired[j] = m
		}
	}
	if impaired == nil {
		return
	}
	snap.impaired, snap.routes = impaired, p.routes
	if p.routes == nil {
		return
	}
	snap.needs = make([]uint64, len(p.routes.routes))
	for i, r := range p.routes.routes {
		if r.All {
			snap.needs[i] = ^uint64(0)
			continue
		}
		for _, name := range r.Dependencies {
			b, ok := p.depBit[name]
			if !ok { // reported down by nobody: a bit all the same, for fast failures
				if len(p.depBit) == 64 {
					snap.needs[i] = ^uint64(0)
					continue
				}
				b = uint(len(p.depBit))
				p.depBit[name] = b
			}
			snap.needs[i] |= 1 << b
		}
	}
}
