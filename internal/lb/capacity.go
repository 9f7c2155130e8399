package lb

import (
	"errors"
	"math"
)

// CapacityConfig configures the edge capacity bound: the number of proxied
// requests the balancer lets in flight, which follows what the fleet
// reports it can carry instead of a fixed number. Envoy's slow start has no
// counterpart ("when all the endpoints are relatively new … slow start is
// not very effective"); this bound is what protects a fleet that is new as
// a whole, the incident's recovery phase.
type CapacityConfig struct {
	// UnknownLimit is the concurrency limit assumed for a candidate that
	// reports none (no fresh /health report yet, or limit 0 because it runs
	// without admission control). Default 0: such a candidate makes the
	// bound unbounded (Bound returns bounded=false) rather than guessed.
	UnknownLimit int
}

// DefaultCapacityConfig returns the defaults documented on CapacityConfig.
func DefaultCapacityConfig() CapacityConfig { return CapacityConfig{} }

// Validate reports every invalid field.
func (c CapacityConfig) Validate() error {
	if c.UnknownLimit < 0 {
		return errors.Join(fieldErr("unknown_limit", c.UnknownLimit, "must not be negative"))
	}
	return nil
}

// CapacityInput is one candidate's contribution.
type CapacityInput struct {
	// Limit is the instance's reported concurrency limit (health.Report
	// Limit); 0 means unknown.
	Limit int
	// Weight is its slow-start weight in [0,1]: 1 once warm.
	Weight float64
}

// Bound returns round(Σ Limit × Weight) over the candidates, at least 1
// when there is any candidate, 0 when there is none. bounded is false when
// a candidate's limit is unknown and UnknownLimit is 0: the caller then
// applies no edge bound. Pool passes the routable instances with their
// slow-start weights; in panic it passes every panic candidate with weight
// 1, the same weights the picker uses, so failing-open also opens the
// bound to what the instances themselves admit.
func (c CapacityConfig) Bound(in []CapacityInput) (bound int, bounded bool) {
	if len(in) == 0 {
		return 0, true
	}
	sum := 0.0
	for _, x := range in {
		l := x.Limit
		if l <= 0 {
			l = c.UnknownLimit
		}
		if l <= 0 {
			return 0, false
		}
		sum += float64(l) * clampFraction(x.Weight, 0, 1)
	}
	b := math.Round(sum)
	if b > math.MaxInt32 {
		b = math.MaxInt32
	}
	return max(int(b), 1), true
}
