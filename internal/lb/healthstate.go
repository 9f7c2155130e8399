package lb

import (
	"errors"
	"fmt"
	"time"

	"github.com/spillway-dev/spillway/internal/field"
)

// HealthConfig configures active health checking of each instance's health
// port (/readyz for routing, /health for the dependency report).
type HealthConfig struct {
	// Interval between two checks of one instance, before jitter.
	// Default 2s (HAProxy inter 2s).
	Interval time.Duration `yaml:"interval"`
	// Timeout for one check (and one report fetch); a check that takes
	// longer is a failure (CheckTimeout). Default 1s, or Interval if that
	// is shorter. Must not exceed Interval.
	Timeout time.Duration `yaml:"timeout"`
	// Jitter spreads checks so instances are not probed in lockstep: each
	// wait is Interval × (1 ± Jitter), see JitteredInterval. A fraction in
	// [0, 0.5]. Default 0.1 (Envoy interval_jitter_percent, HAProxy
	// spread-checks; both default to 0).
	Jitter float64 `yaml:"jitter"`
	// HealthyThreshold is the number of consecutive passes that return an
	// instance that went unhealthy to service. Default 2 (Envoy
	// healthy_threshold, HAProxy rise 2). An instance that has never been
	// healthy needs one pass: see HealthState.
	HealthyThreshold int `yaml:"healthy_threshold"`
	// UnhealthyThreshold is the number of consecutive failures (answers
	// other than 2xx, timeouts, connect errors) that take a healthy
	// instance out of service. Default 3 (Envoy unhealthy_threshold,
	// HAProxy fall 3). Worst-case detection is Interval × UnhealthyThreshold
	// + Timeout: 7s with the defaults.
	UnhealthyThreshold int `yaml:"unhealthy_threshold"`
	// ReadyPath is GET on the health address for routing: 2xx passes.
	// Default "/readyz". Any path works (the 2018 configuration checks the
	// service port).
	ReadyPath string `yaml:"ready_path"`
	// ReportPath is GET on the health address for the JSON dependency
	// report (health.Report), watched with its long poll: a change
	// arrives within a round trip, a quiet instance is asked once per
	// Interval (runReportLoop). Default "/health". "" fetches none: no
	// shedding votes and no reported capacity (the 2018 configuration).
	ReportPath string `yaml:"report_path"`
	// ReportMaxAge is how old an instance's last /health report may be and
	// still count: older reports give no shedding vote and no concurrency
	// limit. Default 5 × Interval (10s).
	ReportMaxAge time.Duration `yaml:"report_max_age"`
}

// DefaultHealthConfig returns the defaults documented on HealthConfig.
func DefaultHealthConfig() HealthConfig {
	return HealthConfig{
		Interval:           2 * time.Second,
		Timeout:            time.Second,
		Jitter:             0.1,
		HealthyThreshold:   2,
		UnhealthyThreshold: 3,
		ReadyPath:          "/readyz",
		ReportPath:         "/health",
		ReportMaxAge:       10 * time.Second,
	}
}

// Validate reports every invalid field.
func (c HealthConfig) Validate() error {
	var errs []error
	errs = append(errs, field.Positive("interval", c.Interval), field.Positive("timeout", c.Timeout))
	if c.Timeout > c.Interval && c.Interval > 0 {
		errs = append(errs, field.New("timeout", c.Timeout, "must not exceed interval ("+c.Interval.String()+")"))
	}
	errs = append(errs, field.Fraction("jitter", c.Jitter, 0, 0.5))
	if c.HealthyThreshold < 1 {
		errs = append(errs, field.New("healthy_threshold", c.HealthyThreshold, "must be at least 1"))
	}
	if c.UnhealthyThreshold < 1 {
		errs = append(errs, field.New("unhealthy_threshold", c.UnhealthyThreshold, "must be at least 1"))
	}
	errs = append(errs, field.Positive("report_max_age", c.ReportMaxAge),
		checkPath("ready_path", c.ReadyPath, false), checkPath("report_path", c.ReportPath, true))
	return errors.Join(errs...)
}

// NextInterval returns the wait before the next check: Interval with
// Jitter applied, u being a uniform random number in [0,1).
func (c HealthConfig) NextInterval(u float64) time.Duration {
	return JitteredInterval(c.Interval, c.Jitter, u)
}

// JitteredInterval returns interval × (1 + jitter × (2u − 1)), that is a
// duration uniformly spread over interval ± jitter × interval when u is
// uniform in [0,1). jitter is clamped to [0,1]; the result is at least 1ns.
func JitteredInterval(interval time.Duration, jitter, u float64) time.Duration {
	jitter = clampFraction(jitter, 0, 1)
	u = clampFraction(u, 0, 1)
	d := time.Duration(float64(interval) * (1 + jitter*(2*u-1)))
	if d < 1 {
		d = 1
	}
	return d
}

// CheckResult is the outcome of one active health check, as classified by
// the poller.
type CheckResult uint8

const (
	// CheckNone: no check has completed yet.
	CheckNone CheckResult = iota
	// CheckPass: the readiness endpoint answered 2xx within the timeout.
	CheckPass
	// CheckFail: the instance answered, but not 2xx (warming up, draining,
	// overloaded). A failure; the instance accepts connections.
	CheckFail
	// CheckTimeout: no complete answer within the timeout after the
	// connection was made. A failure; the instance accepts connections
	// (its health server is slow, not gone).
	CheckTimeout
	// CheckConnectError: connection refused or reset, host unreachable, or
	// the dial timed out. A failure, and the instance does not accept
	// connections, so panic mode leaves it out.
	CheckConnectError

	numCheckResults
)

var checkResultNames = [numCheckResults]string{"none", "pass", "fail", "timeout", "connect_error"}

// String returns the snake_case name used in logs and status.
func (r CheckResult) String() string {
	if int(r) < len(checkResultNames) {
		return checkResultNames[r]
	}
	return "invalid"
}

// MarshalText encodes r as its String.
func (r CheckResult) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// UnmarshalText decodes the names MarshalText produces.
func (r *CheckResult) UnmarshalText(b []byte) error {
	for i, name := range checkResultNames {
		if string(b) == name {
			*r = CheckResult(i)
			return nil
		}
	}
	return fmt.Errorf("check result %q: unknown", b)
}

// HealthState is one instance's active health state machine: consecutive
// passes and failures against the thresholds of HealthConfig.
//
// A new instance is unhealthy (not routable) until a check passes. Like
// Envoy, which needs a single pass "during startup", spillway admits an
// instance that has never been healthy on its first pass; unlike Envoy,
// that holds until the first pass, not just for the very first check,
// because /readyz already encodes warm-up: an instance that answered "not
// ready" while warming is ready the moment it says so, and slow start then
// protects it. Once it has been healthy, returning needs HealthyThreshold
// consecutive passes.
//
// A HealthState is not safe for concurrent use.
type HealthState struct {
	rise, fall  int
	healthy     bool
	everHealthy bool
	passes      int // consecutive
	fails       int // consecutive
	last        CheckResult
	lastAt      time.Time
	since       time.Time
}

// NewHealthState returns the state of a new, never-checked instance.
// Thresholds below 1 are treated as 1.
func NewHealthState(c HealthConfig) *HealthState {
	h := &HealthState{}
	h.setThresholds(c)
	return h
}

func (h *HealthState) setThresholds(c HealthConfig) {
	h.rise, h.fall = max(c.HealthyThreshold, 1), max(c.UnhealthyThreshold, 1)
}

// Record feeds the result of a check completed at now and reports whether
// Healthy changed. CheckNone is ignored.
func (h *HealthState) Record(now time.Time, r CheckResult) (changed bool) {
	if r == CheckNone || r > CheckConnectError {
		return false
	}
	h.last, h.lastAt = r, now
	if r == CheckPass {
		h.fails = 0
		h.passes++
		if !h.healthy && (!h.everHealthy || h.passes >= h.rise) {
			h.healthy, h.everHealthy, h.since = true, true, now
			return true
		}
		return false
	}
	h.passes = 0
	h.fails++
	if h.healthy && h.fails >= h.fall {
		h.healthy, h.since = false, now
		return true
	}
	return false
}

// Healthy reports whether the instance passes active health checks.
func (h *HealthState) Healthy() bool { return h.healthy }

// AcceptsConnections reports whether the last check reached the instance's
// process (any result but CheckConnectError). It is false before the first
// check. Panic mode routes only to instances that accept connections.
func (h *HealthState) AcceptsConnections() bool {
	return h.last != CheckNone && h.last != CheckConnectError
}

// Last returns the last check's result and completion time.
func (h *HealthState) Last() (CheckResult, time.Time) { return h.last, h.lastAt }

// Since returns when Healthy last changed (zero if it never has).
func (h *HealthState) Since() time.Time { return h.since }

// Pending reports whether the instance has never been healthy: new, or
// still warming up since it was added.
func (h *HealthState) Pending() bool { return !h.everHealthy }

// Checked reports whether any check has completed.
func (h *HealthState) Checked() bool { return h.last != CheckNone }
