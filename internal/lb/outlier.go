package lb

import (
	"errors"
	"time"

	"github.com/spillway-dev/spillway/internal/field"
)

// OutlierConfig configures passive outlier ejection: an instance whose
// proxied requests fail at the gateway level several times in a row is
// taken out of rotation for a while, without waiting for health checks.
type OutlierConfig struct {
	// ConsecutiveGatewayFailures ejects an instance after this many gateway
	// failures in a row (connect refused or reset, response-header timeout,
	// 502/503/504 from the instance that is not spillway's own shed or
	// overload answer; the proxy classifies). Default 5 (Envoy
	// consecutive_gateway_failure). 0 disables ejection.
	ConsecutiveGatewayFailures int `yaml:"consecutive_gateway_failures"`
	// BaseEjectionTime is the first ejection's length; the n-th ejection
	// lasts n × BaseEjectionTime, capped at MaxEjectionTime. Default 10s:
	// Envoy's base_ejection_time is 30s, but here a dead process is also
	// caught by active checks within 7s, and most gateway failures are an
	// instance restarting, so a shorter first ejection gives capacity back
	// sooner while repeat offenders still back off (20s, 30s, ...).
	BaseEjectionTime time.Duration `yaml:"base_ejection_time"`
	// MaxEjectionTime caps one ejection. Default 300s (Envoy
	// max_ejection_time), or BaseEjectionTime if that is longer.
	MaxEjectionTime time.Duration `yaml:"max_ejection_time"`
	// MaxEjectedShare is the largest share of instances that may be ejected
	// at once, in [0,1]; an ejection that would exceed it is refused (the
	// instance stays in and is ejected on a later failure if room frees
	// up). Default 0.5, as issue 3 asks (Envoy max_ejection_percent defaults
	// to 10% and always allows one host; spillway does not, so a lone
	// instance is never ejected: active checks and panic mode cover it).
	MaxEjectedShare float64 `yaml:"max_ejected_share"`
}

// DefaultOutlierConfig returns the defaults documented on OutlierConfig.
func DefaultOutlierConfig() OutlierConfig {
	return OutlierConfig{
		ConsecutiveGatewayFailures: 5,
		BaseEjectionTime:           10 * time.Second,
		MaxEjectionTime:            300 * time.Second,
		MaxEjectedShare:            0.5,
	}
}

// Validate reports every invalid field.
func (c OutlierConfig) Validate() error {
	var errs []error
	if c.ConsecutiveGatewayFailures < 0 {
		errs = append(errs, field.New("consecutive_gateway_failures", c.ConsecutiveGatewayFailures, "must not be negative"))
	}
	errs = append(errs, field.Positive("base_ejection_time", c.BaseEjectionTime))
	if c.MaxEjectionTime < c.BaseEjectionTime {
		errs = append(errs, field.New("max_ejection_time", c.MaxEjectionTime, "must be at least base_ejection_time ("+c.BaseEjectionTime.String()+")"))
	}
	errs = append(errs, field.Fraction("max_ejected_share", c.MaxEjectedShare, 0, 1))
	return errors.Join(errs...)
}

// MayEject reports whether one more ejection keeps the ejected share within
// MaxEjectedShare, given how many of total instances are ejected now.
func (c OutlierConfig) MayEject(ejected, total int) bool {
	return total > 0 && float64(ejected+1) <= c.MaxEjectedShare*float64(total)+1e-9
}

// OutlierEvent is what a gateway failure did.
type OutlierEvent uint8

const (
	// OutlierCounted: the failure was counted; no threshold reached.
	OutlierCounted OutlierEvent = iota
	// OutlierEjected: the instance is now ejected.
	OutlierEjected
	// OutlierRefused: the threshold was reached but MaxEjectedShare refused
	// the ejection (Envoy's ejections_overflow).
	OutlierRefused
	// OutlierIgnored: detection is disabled or the instance is already
	// ejected (a request that was in flight when it was ejected).
	OutlierIgnored
)

var outlierEventNames = [...]string{"counted", "ejected", "refused", "ignored"}

func (e OutlierEvent) String() string {
	if int(e) < len(outlierEventNames) {
		return outlierEventNames[e]
	}
	return "invalid"
}

// OutlierState is one instance's passive outlier state.
//
// The ejection multiplier grows by one per ejection and, as in Envoy,
// decays: it drops by one for every BaseEjectionTime the instance spends
// back in service, so an instance that failed once long ago starts over at
// BaseEjectionTime. A success resets the consecutive count but does not end
// an ejection: ejection is time-based and ends at Update.
//
// An OutlierState is not safe for concurrent use.
type OutlierState struct {
	cfg         OutlierConfig
	consecutive int
	multiplier  int // current ejection multiplier, before decay
	total       int // ejections ever
	ejected     bool
	ejectedAt   time.Time
	until       time.Time
	unejectedAt time.Time
}

// NewOutlierState returns the state of an instance with no failures.
func NewOutlierState(c OutlierConfig) *OutlierState {
	return &OutlierState{cfg: c}
}

// Success records a successful proxied request: the consecutive count
// restarts.
func (o *OutlierState) Success() { o.consecutive = 0 }

// Failure records a gateway failure at now. mayEject says whether the fleet
// has room for one more ejection (OutlierConfig.MayEject).
func (o *OutlierState) Failure(now time.Time, mayEject bool) OutlierEvent {
	if o.cfg.ConsecutiveGatewayFailures <= 0 || o.ejected {
		return OutlierIgnored
	}
	o.consecutive++
	if o.consecutive < o.cfg.ConsecutiveGatewayFailures {
		return OutlierCounted
	}
	if !mayEject {
		return OutlierRefused
	}
	if o.multiplier > 0 && !o.unejectedAt.IsZero() && o.cfg.BaseEjectionTime > 0 {
		decay := int(now.Sub(o.unejectedAt) / o.cfg.BaseEjectionTime)
		o.multiplier = max(o.multiplier-decay, 0)
	}
	d := o.cfg.BaseEjectionTime * time.Duration(o.multiplier+1)
	if d >= o.cfg.MaxEjectionTime || d <= 0 { // d <= 0: overflow
		d = o.cfg.MaxEjectionTime
	} else {
		o.multiplier++ // stop growing at the cap
	}
	o.ejected, o.ejectedAt, o.until = true, now, now.Add(d)
	o.consecutive = 0
	o.total++
	return OutlierEjected
}

// Update ends an ejection whose time has passed at now and reports whether
// it did. The instance is back in service from EjectedUntil.
func (o *OutlierState) Update(now time.Time) (unejected bool) {
	if !o.ejected || now.Before(o.until) {
		return false
	}
	o.ejected, o.unejectedAt, o.consecutive = false, o.until, 0
	return true
}

// Ejected reports whether the instance is ejected at now. It does not
// change state; Update does.
func (o *OutlierState) Ejected(now time.Time) bool { return o.ejected && now.Before(o.until) }

// EjectedUntil returns the end of the current or last ejection (zero if
// never ejected).
func (o *OutlierState) EjectedUntil() time.Time { return o.until }

// Consecutive returns the current run of gateway failures.
func (o *OutlierState) Consecutive() int { return o.consecutive }

// Ejections returns how many times the instance has been ejected.
func (o *OutlierState) Ejections() int { return o.total }
