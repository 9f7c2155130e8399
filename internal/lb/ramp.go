package lb

// This file holds the feedback recovery ramp: once a dependency's votes
// fall below the quorum, the share of its requests that the edge admits
// starts small and grows step by step while the admitted requests show a
// healthy dependency, holds while their latency climbs, and falls back on
// errors. TCP slow start (grow multiplicatively while nothing is lost,
// halve on loss) and Envoy's admission_control filter (admit by the
// success rate of recent requests) are the models. The policy is pure: it
// takes the step's outcomes and the time, and is tested on a fake clock.

import (
	"errors"
	"fmt"
	"math/bits"
	"sync/atomic"
	"time"

	"github.com/spillway-dev/spillway/internal/field"
)

// RecoveryMode is how the admitted share of a dependency's requests
// returns to 1 after shedding.
type RecoveryMode string

const (
	// RecoveryFeedback follows the dependency: the share grows by
	// RampConfig.Growth every RampConfig.Step while the admitted requests
	// succeed fast enough (the default).
	RecoveryFeedback RecoveryMode = "feedback"
	// RecoveryWindow follows the clock: the share grows linearly over
	// ShedConfig.RecoveryWindow, whatever the dependency does.
	RecoveryWindow RecoveryMode = "window"
)

// RampConfig configures the feedback recovery ramp (shedding.recovery
// feedback).
type RampConfig struct {
	// InitialShare is the share of the dependency's requests admitted in
	// the ramp's first step, in (0,1]. Default 0.1. Each ramp cut short by
	// renewed shedding halves the next ramp's initial share (down to
	// 1/64 of it), until a ramp completes.
	InitialShare float64 `yaml:"initial_share"`
	// Growth multiplies the share after each step whose admitted requests
	// all succeeded (at most 1% failed) within the latency bound. More
	// than 1, at most 16. Default 2: from 0.1, the share reaches 1 after
	// four good steps.
	Growth float64 `yaml:"growth"`
	// Step is how long the share stays put before the requests admitted at
	// it are judged. Default 100ms.
	Step time.Duration `yaml:"step"`
	// LatencyBound is the median latency (to the response headers) of the
	// successful admitted requests of a step above which the share holds
	// rather than grows; above twice the bound it falls back, as on
	// errors. 0 (the default) derives it: 4 × the dependency's median
	// latency while it was ok (or the lowest step median of the ramp, if
	// the balancer never saw it ok), at least 50ms.
	LatencyBound time.Duration `yaml:"latency_bound"`
}

// DefaultRampConfig returns the defaults documented on RampConfig.
func DefaultRampConfig() RampConfig {
	return RampConfig{InitialShare: 0.1, Growth: 2, Step: 100 * time.Millisecond}
}

// Validate reports every invalid field.
func (c RampConfig) Validate() error {
	var errs []error
	if !(c.InitialShare > 0 && c.InitialShare <= 1) {
		errs = append(errs, field.New("initial_share", c.InitialShare, "must be more than 0 and at most 1"))
	}
	if !(c.Growth > 1 && c.Growth <= 16) {
		errs = append(errs, field.New("growth", c.Growth, "must be more than 1 and at most 16"))
	}
	errs = append(errs, field.Positive("step", c.Step), field.NonNegative("latency_bound", c.LatencyBound))
	return errors.Join(errs...)
}

func (m RecoveryMode) validate() error {
	switch m {
	case RecoveryFeedback, RecoveryWindow:
		return nil
	}
	return field.New("recovery", string(m), fmt.Sprintf("must be %q or %q", RecoveryFeedback, RecoveryWindow))
}

// Tuning of the feedback ramp that is not worth a setting.
const (
	// rampFailureShare: a step with more failures than this share of its
	// outcomes falls back.
	rampFailureShare = 0.01
	// rampMinSamples: a step needs this many successes for its latency
	// to be judged; with fewer it is judged on failures alone.
	rampMinSamples = 5
	// rampBoundFactor and rampMinBound derive the latency bound.
	rampBoundFactor = 4
	rampMinBound    = 50 * time.Millisecond
	// rampMinShare floors a ramp's initial share, after halvings.
	rampMinShareDivisor = 64
	// baselineMinSamples and baselineMinSpan: a window of a dependency's
	// requests while it is ok updates its baseline latency once it holds
	// this many successes over this long.
	baselineMinSamples = 20
	baselineMinSpan    = time.Second
	// baselineWeight is the weight of a new window in the baseline's
	// moving average.
	baselineWeight = 0.2
)

// RampStep is what a step of the feedback ramp decided.
type RampStep string

const (
	RampGrow    RampStep = "grow"     // the step went well: the share grows
	RampHold    RampStep = "hold"     // latency above the bound: the share stays
	RampBackOff RampStep = "back_off" // failures, or latency above twice the bound: the share halves
)

// stepSample is what the requests admitted during a step showed.
type stepSample struct {
	ok, failed int64
	median     time.Duration // of the successes; 0 when there were none
}

// rampDecision is the feedback ramp's rule: the next share, from the
// share of the step that ended, its sample and the latency bound (0: none
// known yet). floor is the least share it falls back to.
func rampDecision(cfg RampConfig, share, floor float64, s stepSample, bound time.Duration) (float64, RampStep) {
	total := s.ok + s.failed
	switch {
	case s.failed > 0 && float64(s.failed) > rampFailureShare*float64(total):
		return max(share/2, floor), RampBackOff
	case bound > 0 && s.ok >= rampMinSamples && s.median > 2*bound:
		return max(share/2, floor), RampBackOff
	case bound > 0 && s.ok >= rampMinSamples && s.median > bound:
		return share, RampHold
	}
	return min(share*cfg.Growth, 1), RampGrow
}

// latencyBound returns the bound a step's median latency is held to:
// cfg.LatencyBound if set, else derived from the baseline (the median
// latency while ok) or, without one, the ramp's lowest step median; 0
// when neither is known.
func latencyBound(cfg RampConfig, baseline, rampLow time.Duration) time.Duration {
	if cfg.LatencyBound > 0 {
		return cfg.LatencyBound
	}
	ref := baseline
	if ref <= 0 {
		ref = rampLow
	}
	if ref <= 0 {
		return 0
	}
	return max(rampBoundFactor*ref, rampMinBound)
}

// initialShare is a ramp's first share after flaps ramps cut short.
func initialShare(cfg RampConfig, flaps int) float64 {
	return max(cfg.InitialShare/float64(uint64(1)<<min(flaps, 6)), cfg.InitialShare/rampMinShareDivisor)
}

// latencyBuckets: a log-scale histogram of microseconds with four buckets
// per power of two (a bucket's bounds are within 19% of each other), up
// to 2^28 µs (4.5 minutes).
const latencyBuckets = 4 * 28

// outcomes counts the outcomes of the proxied requests that need one
// dependency over a window (a ramp step, or a baseline window), from any
// goroutine, without a lock.
type outcomes struct {
	from   time.Time
	ok     atomic.Int64
	failed atomic.Int64
	hist   [latencyBuckets]atomic.Int32 // latencies of the successes
}

func bucketOf(d time.Duration) int {
	us := uint64(max(d.Microseconds(), 0))
	if us < 4 {
		return int(us)
	}
	e := bits.Len64(us) - 1 // ≥ 2
	i := 4*(e-1) + int(us>>(e-2)&3)
	return min(i, latencyBuckets-1)
}

// bucketLow returns the lower bound of bucket i.
func bucketLow(i int) time.Duration {
	if i < 4 {
		return time.Duration(i) * time.Microsecond
	}
	e, m := i/4+1, i%4
	return time.Duration((4+m)<<(e-2)) * time.Microsecond
}

// add records one request's outcome; latency counts for successes only.
func (o *outcomes) add(latency time.Duration, failed bool) {
	if failed {
		o.failed.Add(1)
		return
	}
	o.ok.Add(1)
	o.hist[bucketOf(latency)].Add(1)
}

// sample summarises the window. Requests recorded while it runs may or
// may not be in it.
func (o *outcomes) sample() stepSample {
	s := stepSample{ok: o.ok.Load(), failed: o.failed.Load()}
	var n int64
	for i := range o.hist {
		n += int64(o.hist[i].Load())
	}
	half, cum := (n+1)/2, int64(0)
	for i := range o.hist {
		if cum += int64(o.hist[i].Load()); n > 0 && cum >= half {
			s.median = (bucketLow(i) + bucketLow(i+1)) / 2 // the bucket's middle: within 10%
			break
		}
	}
	return s
}
