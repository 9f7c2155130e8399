package admission

import (
	"math"
	"time"
)

// aimd is the adaptive limit policy: additive increase, multiplicative
// decrease. It is a plain value driven by the times it is given; it does no
// I/O, reads no clock and is not safe for concurrent use (the Limiter
// guards it with its mutex).
//
// On a success below the latency target while at least half the limit is
// in use, the limit grows by 1/limit, so about one slot per round trip of a
// full window (as TCP's congestion avoidance). Growth is skipped when the
// limit is not the bottleneck, so an idle service does not drift to
// maxLimit and lose its protection.
//
// On an overload signal (latency above target, or Dropped) the limit is
// multiplied by backoff (rounded down, at least minLimit) — but at most once
// per round trip: a signal from a request admitted before the last decrease
// is ignored, since that decrease already answered the load it saw. One
// burst therefore costs one step, not one step per request in it.
type aimd struct {
	minLimit, maxLimit float64
	target             time.Duration
	backoff            float64

	limit        float64
	lastDecrease time.Time
}

func newAIMD(cfg Config) *aimd {
	return &aimd{
		minLimit: float64(cfg.MinLimit),
		maxLimit: float64(cfg.MaxLimit),
		target:   cfg.LatencyTarget,
		backoff:  cfg.Backoff,
		limit:    float64(cfg.Limit),
	}
}

// observe folds one finished request into the limit: start is when it was
// admitted, now when it finished, inFlight the number in flight counting
// it, o its outcome.
func (a *aimd) observe(start, now time.Time, inFlight int, o Outcome) {
	switch {
	case o == Ignore:
	case o == Dropped || now.Sub(start) > a.target:
		if !start.After(a.lastDecrease) {
			return
		}
		a.limit = max(a.minLimit, math.Floor(a.limit*a.backoff))
		a.lastDecrease = now
	case 2*float64(inFlight) >= a.limit:
		a.limit = min(a.maxLimit, a.limit+1/a.limit)
	}
}

// current is the whole number of requests the limit admits.
func (a *aimd) current() int { return int(a.limit) }

// set moves the limit to n, clamped to minLimit..maxLimit, and returns the
// limit now in force.
func (a *aimd) set(n int) int {
	a.limit = min(a.maxLimit, max(a.minLimit, float64(n)))
	return a.current()
}
