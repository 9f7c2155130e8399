package lb

import (
	"math/rand/v2"
	"slices"
	"sync/atomic"
	"time"
)

// cacheLine is the padding unit that keeps hot counters of different
// endpoints off each other's cache line.
const cacheLine = 64

// Endpoint is an instance as the picker sees it: an identity and a count of
// outstanding requests. It lives as long as the instance, across routing
// snapshots, so counts survive every Evaluate. Safe for concurrent use.
type Endpoint struct {
	id   string
	inst *instance // set by Pool; nil for a standalone endpoint
	_    [cacheLine - 24]byte

	outstanding atomic.Int64
	failing     atomic.Bool // Pool: a gateway-failure run is under way
	// failingFast: the instance answered a deliberate 503
	// dependency_unavailable since its last report (Pool keeps it).
	failingFast atomic.Bool
	_           [cacheLine - 10]byte
}

// NewEndpoint returns an endpoint with no outstanding request. id is the
// instance's service address (host:port), which the proxy dials.
func NewEndpoint(id string) *Endpoint { return &Endpoint{id: id} }

// ID returns the instance's service address.
func (e *Endpoint) ID() string { return e.id }

// Outstanding returns the number of requests picked and not yet released.
func (e *Endpoint) Outstanding() int64 { return e.outstanding.Load() }

// Acquire counts one more outstanding request. Pick does it for the
// endpoint it returns; Acquire is for requests routed some other way.
func (e *Endpoint) Acquire() { e.outstanding.Add(1) }

// Release ends one outstanding request. Call it exactly once for every
// endpoint that Pick returned (or Acquire counted), when the response is
// done or the attempt failed.
func (e *Endpoint) Release() { e.outstanding.Add(-1) }

// Failing reports whether a run of gateway failures is being counted for
// the instance (Pool keeps it current). The proxy uses it to skip taking
// the lock for Pool.ObserveResult on a success that has nothing to reset.
func (e *Endpoint) Failing() bool { return e.failing.Load() }

// FailingFast reports whether the instance failed a request fast for want
// of a dependency since its last report (Pool.ObserveFailingFast).
func (e *Endpoint) FailingFast() bool { return e.failingFast.Load() }

// Candidate is one entry of a routing snapshot.
type Candidate struct {
	Endpoint *Endpoint
	// SlowStart is the endpoint's ramp; the zero value is full weight.
	SlowStart SlowStart
	// Cap is this balancer's part of the instance's concurrency: its
	// reported limit × slow-start weight × the balancer's share of the
	// fleet (Pool.Evaluate). An endpoint with Cap requests outstanding is
	// full: the picker takes another while one has room (HAProxy's
	// per-server maxconn), so that the balancers together never ask an
	// instance for more than its limit. 0: no cap (limit unknown, or
	// panic).
	Cap float64
}

// full reports whether c's endpoint has its cap of requests outstanding.
func (c *Candidate) full() bool {
	return c.Cap > 0 && float64(c.Endpoint.outstanding.Load()+1) > c.Cap+1e-9
}

// Snapshot is an immutable set of candidates, built when routing state
// changes and swapped into a Picker. Slow-start weights are evaluated at
// pick time from each candidate's ramp, so a snapshot stays correct while
// ramps progress.
type Snapshot struct {
	cands []Candidate
	panic bool
	// impaired, when not nil, holds per candidate the dependencies (bits
	// of the snapshot's own index) it cannot reach now: its report says
	// them down, or, all bits, it failed a request fast for want of one
	// since. needs holds per route of routes the bits the route needs;
	// a path that matches none needs them all.
	impaired []uint64
	routes   *RouteTable
	needs    []uint64
}

// NewSnapshot returns a snapshot of a copy of cands; panicking records whether
// they were selected in panic mode.
func NewSnapshot(cands []Candidate, panicking bool) *Snapshot {
	return &Snapshot{cands: append([]Candidate(nil), cands...), panic: panicking}
}

// Len returns the number of candidates.
func (s *Snapshot) Len() int { return len(s.cands) }

// Panic reports whether the snapshot was selected in panic mode.
func (s *Snapshot) Panic() bool { return s.panic }

// Candidates returns a copy of the candidates.
func (s *Snapshot) Candidates() []Candidate { return append([]Candidate(nil), s.cands...) }

// Picker chooses an instance for each request by the power of two choices
// on weighted outstanding requests.
//
// It draws two distinct candidates uniformly at random and keeps the one
// with the lower (outstanding + 1) / weight, the weight being the
// slow-start weight at now. Uniform draws then a weighted comparison (rather
// than weighted draws then a plain comparison) because:
//   - weights change continuously during ramps; comparing needs only the two
//     drawn weights, while weighted drawing would need an alias table or a
//     prefix sum rebuilt as weights move;
//   - under load it drives outstanding_i toward proportional to weight_i,
//     the same law as the edge capacity bound (Σ limit × weight), so a
//     warming instance holds a weight-sized share of concurrency; this is
//     Envoy least_request's scoring, weight / (active + 1), with bias 1;
//   - at light load a warming instance gets less than its weight's share
//     (it loses ties against idle peers), which errs on the side the ramp
//     exists for.
//
// The +1 keeps an idle instance's weight meaningful.
//
// Impaired instances. An instance that cannot reach a dependency a
// request needs while others can (its own network path, its own breaker)
// is not chosen for that request: its fast 503s would keep its
// outstanding count lowest and win every comparison, a black hole. Such
// candidates are left out of the draw for requests whose route needs the
// dependency, and kept for the routes that do not. If every candidate is
// impaired for a request (the dependency is down for the whole fleet,
// which the edge sheds), the draw is over all of them: impairment is a
// preference, never an ejection.
//
// Pick takes no lock and does not allocate: the snapshot is read through
// an atomic pointer, the count is an atomic on the endpoint. Safe for
// concurrent use. The zero Picker is empty and draws from math/rand/v2.
type Picker struct {
	snap atomic.Pointer[Snapshot]
	rand func() uint64
}

// NewPicker returns a picker with an empty snapshot. rand supplies the
// random bits for each pick and must be safe for concurrent use if Pick is
// called concurrently; nil means math/rand/v2's Uint64 (lock-free,
// per-thread state). Tests pass a seeded source for determinism.
func NewPicker(rand func() uint64) *Picker {
	p := &Picker{rand: rand}
	p.snap.Store(&Snapshot{})
	return p
}

// Store makes s the snapshot for all later picks. A nil s is empty.
func (p *Picker) Store(s *Snapshot) {
	if s == nil {
		s = &Snapshot{}
	}
	p.snap.Store(s)
}

// Load returns the current snapshot (never nil).
func (p *Picker) Load() *Snapshot {
	if s := p.snap.Load(); s != nil {
		return s
	}
	return &Snapshot{}
}

// Pick chooses a candidate for a request that needs every dependency (see
// PickFor).
func (p *Picker) Pick(now time.Time, exclude *Endpoint) (e *Endpoint, ok bool) {
	return p.PickFor(now, exclude, "")
}

// PickFor chooses a candidate for a request for path, counts one
// outstanding request on it and returns it; the caller must Release it.
// exclude, if non-nil, is never returned: it is the instance a retry must
// avoid. ok is false when no candidate is left. Candidates impaired for a
// dependency the path's route needs are avoided while others remain; ""
// needs every dependency.
func (p *Picker) PickFor(now time.Time, exclude *Endpoint, path string) (e *Endpoint, ok bool) {
	s := p.snap.Load()
	if s == nil {
		return nil, false
	}
	if s.impaired != nil {
		if e, ok := s.pickUnimpaired(now, exclude, s.need(path), p.rand); ok {
			return e, true
		}
	}
	c := s.cands
	ex := -1
	if exclude != nil {
		for i := range c {
			if c[i].Endpoint == exclude {
				ex = i
				break
			}
		}
	}
	m := len(c)
	if ex >= 0 {
		m--
	}
	var i int
	switch {
	case m <= 0:
		return nil, false
	case m == 1:
		if ex == 0 {
			i = 1
		}
	default:
		var r uint64
		if p.rand != nil {
			r = p.rand()
		} else {
			r = rand.Uint64()
		}
		a := int(uint64(uint32(r)) * uint64(m) >> 32) // uniform in [0,m)
		b := int((r >> 32) * uint64(m-1) >> 32)       // uniform in [0,m-1)
		if b >= a {                                   // distinct from a
			b++
		}
		if ex >= 0 { // map [0,m) onto the candidates without ex
			if a >= ex {
				a++
			}
			if b >= ex {
				b++
			}
		}
		i = s.better(now, a, b)
	}
	return s.take(now, i, func(j int) bool { return j != ex }), true
}

// need returns the dependency bits a request for path needs.
func (s *Snapshot) need(path string) uint64 {
	if path != "" {
		if i := s.routes.match(path); i >= 0 && i < len(s.needs) {
			return s.needs[i]
		}
	}
	return ^uint64(0)
}

// usable reports whether candidate i may serve a request needing need.
func (s *Snapshot) usable(i int, need uint64) bool {
	m := s.impaired[i]
	if s.cands[i].Endpoint.failingFast.Load() {
		m = ^uint64(0) // which dependency is unknown until its next report
	}
	return m&need == 0
}

// pickUnimpaired is Pick's draw among the candidates usable for need (and
// not exclude). ok is false when every candidate is impaired, or the only
// usable one is exclude: the caller then draws among all.
func (s *Snapshot) pickUnimpaired(now time.Time, exclude *Endpoint, need uint64, rnd func() uint64) (*Endpoint, bool) {
	return s.pickWhere(now, func(i int) bool { return s.cands[i].Endpoint != exclude && s.usable(i, need) }, rnd)
}

// PickAvoiding is PickFor for a request's later retries: it never returns
// an endpoint in avoid (the instances the request already failed on), and
// prefers, as PickFor does, candidates not impaired for path. ok is false
// when every candidate is in avoid. Retries are rare: it scans.
func (p *Picker) PickAvoiding(now time.Time, avoid []*Endpoint, path string) (e *Endpoint, ok bool) {
	s := p.snap.Load()
	if s == nil {
		return nil, false
	}
	allowed := func(i int) bool { return !slices.Contains(avoid, s.cands[i].Endpoint) }
	if s.impaired != nil {
		need := s.need(path)
		if e, ok := s.pickWhere(now, func(i int) bool { return allowed(i) && s.usable(i, need) }, p.rand); ok {
			return e, true
		}
	}
	return s.pickWhere(now, allowed, p.rand)
}

// pickWhere is the power of two choices among the candidates i for which
// ok(i) holds; ok is false when there is none.
func (s *Snapshot) pickWhere(now time.Time, ok func(i int) bool, rnd func() uint64) (*Endpoint, bool) {
	var r uint64
	if rnd != nil {
		r = rnd()
	} else {
		r = rand.Uint64()
	}
	n := len(s.cands)
	// Two distinct usable candidates, drawn uniformly by rejection (a few
	// tries: impaired instances are usually few), else found by a scan.
	first, second := -1, -1
	for try := 0; try < 16 && second < 0; try++ {
		r = mix(r)
		i := int(uint64(uint32(r)) * uint64(n) >> 32)
		switch {
		case !ok(i):
		case first < 0:
			first = i
		case i != first:
			second = i
		}
	}
	for i := 0; i < n && second < 0; i++ {
		switch {
		case !ok(i):
		case first < 0:
			first = i
		case i != first:
			second = i
		}
	}
	if first < 0 {
		return nil, false
	}
	i := first
	if second >= 0 {
		i = s.better(now, first, second)
	}
	return s.take(now, i, ok), true
}

// better is the power of two choices between candidates a and b: the one
// with the lower (outstanding + 1) / weight (a on a tie); a full one
// (Candidate.Cap) loses to one that is not.
func (s *Snapshot) better(now time.Time, a, b int) int {
	ca, cb := &s.cands[a], &s.cands[b]
	if fa, fb := ca.full(), cb.full(); fa != fb {
		if fa {
			return b
		}
		return a
	}
	sa := float64(ca.Endpoint.outstanding.Load()+1) * cb.SlowStart.Weight(now)
	sb := float64(cb.Endpoint.outstanding.Load()+1) * ca.SlowStart.Weight(now)
	// (oa+1)/wa <= (ob+1)/wb without dividing.
	if sa <= sb {
		return a
	}
	return b
}

// take counts one more outstanding request on candidate i and returns its
// endpoint; when i is full (or fills first: the count is taken by
// compare-and-swap, so concurrent picks never pass a cap), on the least
// loaded allowed candidate with room, and on i past its cap only when
// none has room.
func (s *Snapshot) take(now time.Time, i int, allowed func(int) bool) *Endpoint {
	for range 4 {
		if s.cands[i].acquire() {
			return s.cands[i].Endpoint
		}
		j := s.roomFor(now, i, allowed)
		if j == i {
			break
		}
		i = j
	}
	e := s.cands[i].Endpoint
	e.outstanding.Add(1)
	return e
}

// acquire counts one more outstanding request on c's endpoint unless
// that would take it past its cap.
func (c *Candidate) acquire() bool {
	e := c.Endpoint
	if c.Cap <= 0 {
		e.outstanding.Add(1)
		return true
	}
	for {
		o := e.outstanding.Load()
		if float64(o+1) > c.Cap+1e-9 {
			return false
		}
		if e.outstanding.CompareAndSwap(o, o+1) {
			return true
		}
	}
}

// roomFor is the candidate to take when the drawn one, i, is full: the
// least loaded by (outstanding + 1) / weight among those allowed that are
// not full, or i itself when every one is (the edge bound admitted a
// little more than the caps add up to: they are rounded per instance).
// A scan, but only under saturation.
func (s *Snapshot) roomFor(now time.Time, i int, allowed func(int) bool) int {
	best, bestScore := i, 0.0
	for j := range s.cands {
		c := &s.cands[j]
		if !allowed(j) || c.full() {
			continue
		}
		w := c.SlowStart.Weight(now)
		if !(w > 0) {
			continue
		}
		score := float64(c.Endpoint.outstanding.Load()+1) / w
		if best == i || score < bestScore {
			best, bestScore = j, score
		}
	}
	return best
}

// mix is splitmix64's step: fresh bits from the previous draw, for the
// rejection loop, without another call to the random source.
func mix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}
