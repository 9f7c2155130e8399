package lb

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/spillway-dev/spillway/internal/field"
)

// AdmissionConfig configures the edge bound on proxied requests in
// flight: the number the balancer lets in at once follows what the fleet
// reports it can carry (Σ limit × slow-start weight over the candidates)
// instead of a fixed number. Envoy's slow start has no counterpart ("when
// all the endpoints are relatively new … slow start is not very
// effective"); this bound is what protects a fleet that is new as a
// whole, the incident's recovery phase.
type AdmissionConfig struct {
	// QueueSize is how many requests may wait for a slot once the bound
	// is reached; the excess gets 503 overloaded at once. Default 128. 0:
	// no queue.
	QueueSize int `yaml:"queue_size"`
	// QueueTimeout is how long a request may wait in the queue. Default
	// 100ms.
	QueueTimeout time.Duration `yaml:"queue_timeout"`
	// RetryAfter is the Retry-After of an overloaded answer, whole
	// seconds, at least 1. Default 1s.
	RetryAfter time.Duration `yaml:"retry_after"`
	// FallbackLimit is the bound used when some candidate reports no
	// limit (no fresh /health, or no admission control). Default 0: no
	// edge bound then.
	FallbackLimit int `yaml:"fallback_limit"`
	// UnknownInstanceLimit is the concurrency limit assumed for a
	// candidate that reports none, instead of falling back to
	// FallbackLimit. Default 0: such a candidate makes the bound
	// unbounded (Bound returns bounded=false) rather than guessed.
	UnknownInstanceLimit int `yaml:"unknown_instance_limit"`
}

// DefaultAdmissionConfig returns the defaults documented on
// AdmissionConfig.
func DefaultAdmissionConfig() AdmissionConfig {
	return AdmissionConfig{QueueSize: 128, QueueTimeout: 100 * time.Millisecond, RetryAfter: time.Second}
}

// Validate reports every invalid field.
func (c AdmissionConfig) Validate() error {
	var errs []error
	if c.QueueSize < 0 || c.QueueSize > 1<<20 {
		errs = append(errs, field.New("queue_size", c.QueueSize, "must be from 0 to 1048576"))
	}
	errs = append(errs, field.Positive("queue_timeout", c.QueueTimeout), field.Positive("retry_after", c.RetryAfter))
	if c.FallbackLimit < 0 || c.FallbackLimit > maxEdgeLimit {
		errs = append(errs, field.New("fallback_limit", c.FallbackLimit, fmt.Sprintf("must be from 0 (no bound) to %d", maxEdgeLimit)))
	}
	if c.UnknownInstanceLimit < 0 {
		errs = append(errs, field.New("unknown_instance_limit", c.UnknownInstanceLimit, "must not be negative"))
	}
	return errors.Join(errs...)
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
// a candidate's limit is unknown and UnknownInstanceLimit is 0: the caller then
// applies no edge bound. Pool passes the routable instances with their
// slow-start weights; in panic it passes every panic candidate with weight
// 1, the same weights the picker uses, so failing-open also opens the
// bound to what the instances themselves admit.
func (c AdmissionConfig) Bound(in []CapacityInput) (bound int, bounded bool) {
	if len(in) == 0 {
		return 0, true
	}
	sum := 0.0
	for _, x := range in {
		l := x.Limit
		if l <= 0 {
			l = c.UnknownInstanceLimit
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
