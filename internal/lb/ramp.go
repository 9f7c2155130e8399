package lb

// This file holds the feedback recovery ramp. Once a dependency's votes
// fall below the quorum, the balancer lets its requests through a
// congestion window, as TCP does after a loss: the requests in flight
// that need it are bounded by a window that starts small and grows by one
// for every request that comes back in time (so it doubles every round
// trip: slow start), stops growing while they come back late, and halves
// when they fail or come back very late. A request over the window gets
// the fast 503 of a shed one. The window follows what the dependency
// serves, not the clock: a backend that is fully back is at full traffic
// within a few round trips, one that can only take part of the surge gets
// that part, with its queue kept short. Envoy's admission_control filter
// (reject by the recent success rate) is the other reference.
//
// The policy is pure: rampWindow takes the time of every event and is
// tested on a fake clock.

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spillway-dev/spillway/internal/field"
)

// RecoveryMode is how traffic to a dependency returns after shedding.
type RecoveryMode string

const (
	// RecoveryFeedback follows the dependency through a congestion window
	// (RampConfig; the default).
	RecoveryFeedback RecoveryMode = "feedback"
	// RecoveryWindow follows the clock: the admitted share grows linearly
	// over ShedConfig.RecoveryWindow, whatever the dependency does.
	RecoveryWindow RecoveryMode = "window"
)

func (m RecoveryMode) validate() error {
	switch m {
	case RecoveryFeedback, RecoveryWindow:
		return nil
	}
	return field.New("recovery", string(m), fmt.Sprintf("must be %q or %q", RecoveryFeedback, RecoveryWindow))
}

// RampConfig configures the feedback recovery ramp (shedding.recovery
// feedback).
type RampConfig struct {
	// InitialWindow is how many requests needing the dependency may be in
	// flight when the ramp starts; each that comes back in time lets one
	// more in. Default 4. Each ramp cut short by renewed shedding halves
	// the next ramp's, down to 1, until a ramp completes.
	InitialWindow int `yaml:"initial_window"`
	// LatencyBound is the latency (to the response headers) above which a
	// request counts as late: the window stops growing; above twice the
	// bound it halves, as on a failure. 0 (the default) derives it: 4 ×
	// the dependency's median latency while it was ok, as the balancer
	// measured it (or, if it never saw it ok, 4 × the fastest answer of
	// the ramp), at least 50ms.
	LatencyBound time.Duration `yaml:"latency_bound"`
	// Calm is how long the window must go without refusing a request,
	// and without a late or failed answer, for the ramp to end. Default
	// 500ms.
	Calm time.Duration `yaml:"calm"`
}

// DefaultRampConfig returns the defaults documented on RampConfig.
func DefaultRampConfig() RampConfig {
	return RampConfig{InitialWindow: 4, Calm: 500 * time.Millisecond}
}

// MaxRampWindow bounds InitialWindow and the window itself.
const MaxRampWindow = 1 << 20

// Validate reports every invalid field.
func (c RampConfig) Validate() error {
	var errs []error
	if c.InitialWindow < 1 || c.InitialWindow > MaxRampWindow {
		errs = append(errs, field.New("initial_window", c.InitialWindow, fmt.Sprintf("must be from 1 to %d", MaxRampWindow)))
	}
	errs = append(errs, field.NonNegative("latency_bound", c.LatencyBound), field.Positive("calm", c.Calm))
	return errors.Join(errs...)
}

// Tuning of the ramp that is not worth a setting.
const (
	// rampBoundFactor and rampMinBound derive the latency bound.
	rampBoundFactor = 4
	rampMinBound    = 50 * time.Millisecond
	// baselineMinSamples and baselineMinSpan: a window of a dependency's
	// requests while it is ok updates its baseline latency once it holds
	// this many successes over this long; baselineFailureShare is the most
	// failures it may hold.
	baselineMinSamples   = 20
	baselineMinSpan      = time.Second
	baselineFailureShare = 0.01
	// baselineWeight is the weight of a new window in the baseline's
	// moving average.
	baselineWeight = 0.2
)

// RampStep is what the feedback ramp last did with its window.
type RampStep string

const (
	RampGrow    RampStep = "grow"     // an answer in time: the window grows
	RampHold    RampStep = "hold"     // a late answer: the window holds
	RampBackOff RampStep = "back_off" // a failure or a very late answer: the window halves
)

// latencyBound returns the bound an answer's latency is held to:
// cfg.LatencyBound if set, else derived from the baseline (the median
// latency while ok) or, without one, the fastest answer of the ramp; 0
// when neither is known.
func latencyBound(cfg RampConfig, baseline, fastest time.Duration) time.Duration {
	if cfg.LatencyBound > 0 {
		return cfg.LatencyBound
	}
	ref := baseline
	if ref <= 0 {
		ref = fastest
	}
	if ref <= 0 {
		return 0
	}
	return max(rampBoundFactor*ref, rampMinBound)
}

// rampWindow is one dependency's congestion window while it recovers.
// Safe for concurrent use: the proxy acquires and releases slots from
// every request's goroutine.
type rampWindow struct {
	cfg      RampConfig
	baseline time.Duration // the dependency's median latency while ok; 0 unknown

	mu        sync.Mutex
	cwnd      float64 // requests allowed in flight
	ssthresh  float64 // slow start below it, +1/cwnd per answer above
	inFlight  int
	peak      int           // the most in flight at once during the ramp
	fastest   time.Duration // of the ramp's successes
	bound     time.Duration // latencyBound of the moment
	cutAt     time.Time     // the last halving: answers to requests sent before it cannot halve again
	calmSince time.Time     // the last refusal, late or failed answer, or halving
	admitted  int64
	refused   int64
	last      RampStep
}

// newRampWindow starts a ramp at now with the initial window for flaps
// ramps cut short in a row.
func newRampWindow(cfg RampConfig, baseline time.Duration, flaps int, now time.Time) *rampWindow {
	w := &rampWindow{
		cfg:       cfg,
		baseline:  baseline,
		cwnd:      max(float64(cfg.InitialWindow)/float64(uint64(1)<<min(flaps, 20)), 1),
		ssthresh:  MaxRampWindow,
		calmSince: now,
	}
	w.bound = latencyBound(cfg, baseline, 0)
	return w
}

// open reports whether a request would be let in now, without taking a
// slot.
func (w *rampWindow) open() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return float64(w.inFlight) < w.cwnd
}

// acquire takes a slot for a request at now, or refuses it.
func (w *rampWindow) acquire(now time.Time) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if float64(w.inFlight) >= w.cwnd {
		w.refused++
		w.calmSince = now
		return false
	}
	w.inFlight++
	w.peak = max(w.peak, w.inFlight)
	w.admitted++
	return true
}

// done gives back the slot of a request sent at start. If an instance
// answered it (answered) at now, failed (a 5xx or a gateway failure) or
// not, the window moves by it; otherwise (it never reached one) not.
func (w *rampWindow) done(start, now time.Time, answered, failed bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.inFlight--
	if !answered {
		return
	}
	latency := now.Sub(start)
	if !failed && (w.fastest == 0 || latency < w.fastest) {
		w.fastest = latency
		w.bound = latencyBound(w.cfg, w.baseline, w.fastest)
	}
	switch {
	case failed || (w.bound > 0 && latency > 2*w.bound):
		w.calmSince = now
		if start.Before(w.cutAt) {
			return // sent before the last halving: it was counted then
		}
		w.ssthresh = max(w.cwnd/2, 1)
		w.cwnd, w.cutAt, w.last = w.ssthresh, now, RampBackOff
	case w.bound > 0 && latency > w.bound:
		w.calmSince, w.last = now, RampHold
	default:
		if w.cwnd < w.ssthresh {
			w.cwnd++
		} else {
			w.cwnd += 1 / w.cwnd
		}
		// A window far above what was ever used would say nothing about
		// the dependency (RFC 7661): at most twice the peak, plus the
		// initial window.
		w.cwnd = min(w.cwnd, 2*float64(w.peak)+float64(w.cfg.InitialWindow), MaxRampWindow)
		w.last = RampGrow
	}
}

// calmAt returns when the ramp ends if nothing happens meanwhile: Calm
// after the last refusal, late or failed answer.
func (w *rampWindow) calmAt() time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.calmSince.Add(w.cfg.Calm)
}

// rampState is a rampWindow's figures for the admin API.
type rampState struct {
	window, admittedShare float64
	inFlight              int
	bound                 time.Duration
	last                  RampStep
}

func (w *rampWindow) state() rampState {
	w.mu.Lock()
	defer w.mu.Unlock()
	st := rampState{window: w.cwnd, inFlight: w.inFlight, bound: w.bound, last: w.last, admittedShare: 1}
	if n := w.admitted + w.refused; n > 0 {
		st.admittedShare = float64(w.admitted) / float64(n)
	}
	return st
}

// latencyBuckets: a log-scale histogram of microseconds with four buckets
// per power of two (a bucket's bounds are within 19% of each other), up
// to 2^28 µs (4.5 minutes).
const latencyBuckets = 4 * 28

// outcomes counts the outcomes of the proxied requests that need one
// dependency over a window of time while it is ok, from any goroutine,
// without a lock: its baseline latency comes from them.
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

// sample is what a window of outcomes showed.
type sample struct {
	ok, failed int64
	median     time.Duration // of the successes; 0 when there were none
	p99        time.Duration // likewise
}

// sample summarises the window. Requests recorded while it runs may or
// may not be in it.
func (o *outcomes) sample() sample {
	s := sample{ok: o.ok.Load(), failed: o.failed.Load()}
	var counts [latencyBuckets]int64
	var n int64
	for i := range o.hist {
		counts[i] = int64(o.hist[i].Load())
		n += counts[i]
	}
	s.median = quantileOf(&counts, n, 0.5)
	s.p99 = quantileOf(&counts, n, 0.99)
	return s
}

// quantileOf returns the nearest-rank q-quantile of n latencies counted
// in buckets: the middle of its bucket (within 10%); 0 for none.
func quantileOf(counts *[latencyBuckets]int64, n int64, q float64) time.Duration {
	if n == 0 {
		return 0
	}
	rank, cum := int64(math.Ceil(q*float64(n))), int64(0)
	for i := range counts {
		if cum += counts[i]; cum >= rank {
			return (bucketLow(i) + bucketLow(i+1)) / 2
		}
	}
	return 0
}

// fold returns the baseline after a window of successes with median m:
// the first window's median, then a moving average.
func fold(baseline, m time.Duration) time.Duration {
	if baseline == 0 {
		return m
	}
	return time.Duration((1-baselineWeight)*float64(baseline) + baselineWeight*float64(m))
}
