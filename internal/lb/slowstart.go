package lb

import (
	"errors"
	"math"
	"time"

	"github.com/spillway-dev/spillway/internal/field"
)

// SlowStartConfig configures slow start: an instance that becomes routable
// (new, recovered from failed health checks, or back from ejection) gets a
// weight that ramps up over a window, so a fresh instance is not flooded.
type SlowStartConfig struct {
	// Window is the ramp's length. Default 10s (Envoy slow_start_window,
	// which has no default; HAProxy slowstart). 0 disables slow start.
	Window time.Duration `yaml:"window"`
	// Aggression shapes the ramp: weight = max(MinWeight, f^(1/Aggression))
	// with f the elapsed share of Window. 1 is linear, above 1 ramps faster
	// early. Default 1.0 (Envoy aggression). Must be positive.
	Aggression float64 `yaml:"aggression"`
	// MinWeight is the weight at the start of the ramp, in (0,1].
	// Default 0.1 (Envoy min_weight_percent 10).
	MinWeight float64 `yaml:"min_weight"`
}

// DefaultSlowStartConfig returns the defaults documented on
// SlowStartConfig.
func DefaultSlowStartConfig() SlowStartConfig {
	return SlowStartConfig{Window: 10 * time.Second, Aggression: 1, MinWeight: 0.1}
}

// Validate reports every invalid field.
func (c SlowStartConfig) Validate() error {
	var errs []error
	errs = append(errs, field.NonNegative("window", c.Window))
	if !(c.Aggression > 0) || math.IsInf(c.Aggression, 0) {
		errs = append(errs, field.New("aggression", c.Aggression, "must be positive"))
	}
	if !(c.MinWeight > 0 && c.MinWeight <= 1) {
		errs = append(errs, field.New("min_weight", c.MinWeight, "must be in (0, 1]"))
	}
	return errors.Join(errs...)
}

// Start returns the ramp of an instance that became routable at since.
func (c SlowStartConfig) Start(since time.Time) SlowStart {
	return SlowStart{cfg: c, since: since}
}

// SlowStart is one instance's ramp, a small immutable value. The zero value
// is no ramp: Weight is always 1. Safe to copy and to read concurrently.
type SlowStart struct {
	cfg   SlowStartConfig
	since time.Time
}

// Weight returns the instance's weight at now, in [MinWeight, 1]: Envoy's
// formula max(MinWeight, f^(1/Aggression)), f = (now − since) / Window,
// without Envoy's one-second floor on the elapsed time.
func (s SlowStart) Weight(now time.Time) float64 {
	w := s.cfg.Window
	if w <= 0 {
		return 1
	}
	el := now.Sub(s.since)
	if el >= w {
		return 1
	}
	minW := clampFraction(s.cfg.MinWeight, 0, 1)
	if el <= 0 {
		return minW
	}
	f := float64(el) / float64(w)
	if a := s.cfg.Aggression; a != 1 && a > 0 {
		f = math.Pow(f, 1/a)
	}
	return max(f, minW)
}

// Active reports whether the ramp is still under way at now.
func (s SlowStart) Active(now time.Time) bool {
	return s.cfg.Window > 0 && now.Sub(s.since) < s.cfg.Window
}

// Since returns when the instance became routable.
func (s SlowStart) Since() time.Time { return s.since }

// End returns when the weight reaches 1 (Since when disabled).
func (s SlowStart) End() time.Time { return s.since.Add(max(s.cfg.Window, 0)) }
