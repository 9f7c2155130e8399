package health

import "time"

// Phase is where an instance stands in its readiness life cycle. Only
// PhaseReady gets traffic.
type Phase int

// The phases, in the only order they are passed through. PhaseDraining may
// also follow PhaseStarting or PhaseWarming directly, and is final.
const (
	PhaseStarting Phase = iota // not started yet: Start has not been called
	PhaseWarming               // started, within the warm-up period
	PhaseReady                 // started and warmed up: send traffic
	PhaseDraining              // shutting down: send no new traffic, for good
)

var phaseNames = [...]string{
	PhaseStarting: "starting",
	PhaseWarming:  "warming",
	PhaseReady:    "ready",
	PhaseDraining: "draining",
}

// String returns the phase's lowercase name, as in Report.Phase.
func (p Phase) String() string {
	if p < 0 || int(p) >= len(phaseNames) {
		return "unknown"
	}
	return phaseNames[p]
}

// Readiness is the readiness state machine behind /readyz: a plain value
// driven by two events, Start and Drain, and read at a time the caller
// supplies, so it can be tested and simulated without a clock.
//
//	starting ──Start──▶ warming ──(Warmup elapsed)──▶ ready
//	    └────────────────────┴──────────Drain───────────┴──▶ draining (final)
//
// The zero value is in PhaseStarting with no warm-up. A Readiness is not safe
// for concurrent use; Server guards its own.
type Readiness struct {
	// Warmup is how long after Start the instance stays in PhaseWarming
	// before it is ready. Zero or negative means ready at Start.
	Warmup time.Duration

	started   bool
	startedAt time.Time
	draining  bool
}

// Start begins the warm-up at now. It reports whether the call changed
// anything: a second Start, or a Start after Drain, is ignored.
func (r *Readiness) Start(now time.Time) bool {
	if r.started || r.draining {
		return false
	}
	r.started, r.startedAt = true, now
	return true
}

// Drain moves to PhaseDraining for good. It reports whether the call changed
// anything: a second Drain is ignored.
func (r *Readiness) Drain() bool {
	if r.draining {
		return false
	}
	r.draining = true
	return true
}

// Phase returns the phase at now. A now before Start (a clock that went
// backwards) is within the warm-up.
func (r *Readiness) Phase(now time.Time) Phase {
	switch {
	case r.draining:
		return PhaseDraining
	case !r.started:
		return PhaseStarting
	case r.Warmup > 0 && now.Sub(r.startedAt) < r.Warmup:
		return PhaseWarming
	default:
		return PhaseReady
	}
}

// ReadyFor returns how long the instance has been in PhaseReady at now: 0
// in any other phase.
func (r *Readiness) ReadyFor(now time.Time) time.Duration {
	if r.Phase(now) != PhaseReady {
		return 0
	}
	return max(now.Sub(r.startedAt.Add(max(r.Warmup, 0))), 0)
}
