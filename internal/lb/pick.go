package lb

import (
	"math/rand/v2"
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
	_           [cacheLine - 9]byte
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

// Candidate is one entry of a routing snapshot.
type Candidate struct {
	Endpoint *Endpoint
	// SlowStart is the endpoint's ramp; the zero value is full weight.
	SlowStart SlowStart
}

// Snapshot is an immutable set of candidates, built when routing state
// changes and swapped into a Picker. Slow-start weights are evaluated at
// pick time from each candidate's ramp, so a snapshot stays correct while
// ramps progress.
type Snapshot struct {
	cands []Candidate
	panic bool
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
// The +1 keeps an idle instance's weight meaningful. Pick takes no lock and
// does not allocate: the snapshot is read through an atomic pointer, the
// count is an atomic on the endpoint. Safe for concurrent use. The zero
// Picker is empty and draws from math/rand/v2.
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

// Pick chooses a candidate, counts one outstanding request on it and
// returns it; the caller must Release it. exclude, if non-nil, is never
// returned: it is the instance a retry must avoid. ok is false when no
// candidate is left.
func (p *Picker) Pick(now time.Time, exclude *Endpoint) (e *Endpoint, ok bool) {
	s := p.snap.Load()
	if s == nil {
		return nil, false
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
		ca, cb := &c[a], &c[b]
		sa := float64(ca.Endpoint.outstanding.Load()+1) * cb.SlowStart.Weight(now)
		sb := float64(cb.Endpoint.outstanding.Load()+1) * ca.SlowStart.Weight(now)
		// (oa+1)/wa <= (ob+1)/wb without dividing.
		if sa <= sb {
			i = a
		} else {
			i = b
		}
	}
	e = c[i].Endpoint
	e.outstanding.Add(1)
	return e, true
}
