package lb

// This file holds stall detection: the bound on how many requests the
// edge lets pile up on a dependency that has stopped answering. Shedding
// by votes needs the instances to notice first, and an instance notices a
// hung or very slow dependency only when its calls time out (the guard's
// timeout, 1s by default); until then every request sent in waits for
// that timeout. So while a dependency is ok the balancer watches its
// requests' progress itself: when none of those in flight to it has been
// answered for the stall time (StallConfig.Factor × its p99 latency)
// while at least MinInFlight are in flight, it stops sending more and
// answers them a fast 503 overloaded, until an answer comes back or fewer
// are in flight (the stuck ones failing at their timeout do not count:
// by then the instances' breakers have opened and answer fast). A hang
// then costs the requests sent in the first stall time, not those of a
// whole timeout; a healthy dependency answers every few milliseconds
// under load and is never stalled, and a pause (a backend's GC) costs
// only the requests that arrive during it. Silence is judged only while
// requests keep coming (at least one per half stall time): a pause of the
// balancer's own process, or a trickle of requests, says nothing. TCP's retransmission timer,
// which also judges silence against the measured round trip, is the
// reference; Envoy's adaptive_concurrency filter bounds concurrency by
// latency the same way but from periodic minimum-RTT measurements.
//
// The decision is pure (stalled takes now); the counters are atomics the
// proxy updates from every request's goroutine.

import (
	"errors"
	"sync/atomic"
	"time"

	"github.com/spillway-dev/spillway/internal/field"
)

// StallConfig configures stall detection (shedding.stall).
type StallConfig struct {
	// Factor times the dependency's p99 latency while ok (as the
	// balancer measures it, to the response headers, averaged over
	// seconds) is the stall time: a dependency with requests in flight
	// and no answer for that long is stalled. Default 1.5, at most 100; 0 disables stall detection. Nothing is
	// judged before the median is known (a second of traffic).
	Factor float64 `yaml:"factor"`
	// MinTime is the shortest stall time, for very fast dependencies.
	// Default 20ms.
	MinTime time.Duration `yaml:"min_time"`
	// MinInFlight is how many requests must be in flight to the
	// dependency for silence to count as a stall: fewer stuck requests
	// cost little, and a quiet balancer's lone slow request is not a
	// stall. Default 4.
	MinInFlight int `yaml:"min_in_flight"`
}

// DefaultStallConfig returns the defaults documented on StallConfig.
func DefaultStallConfig() StallConfig {
	return StallConfig{Factor: 1.5, MinTime: 20 * time.Millisecond, MinInFlight: 4}
}

// Validate reports every invalid field.
func (c StallConfig) Validate() error {
	return errors.Join(field.Fraction("factor", c.Factor, 0, 100), field.Positive("min_time", c.MinTime),
		field.Between("min_in_flight", c.MinInFlight, 1, 1<<20))
}

// stallTime returns the stall time for a dependency with p99 latency
// tail, 0 when stall detection is off or tail is not known yet.
func (c StallConfig) stallTime(tail time.Duration) time.Duration {
	if c.Factor <= 0 || tail <= 0 {
		return 0
	}
	return max(time.Duration(c.Factor*float64(tail)), c.MinTime)
}

// flow follows one dependency's requests in flight through the edge and
// when one last made progress. It lives as long as the dependency is
// tracked, so a request leaves the flow it entered.
type flow struct {
	inFlight atomic.Int64
	progress atomic.Int64 // unix ns: the last answer, or when requests began to be in flight
	arrival  atomic.Int64 // unix ns: the last request judged
	stalls   atomic.Int64 // requests refused as stalled
}

// enter counts a request in at now; the first in flight after none starts
// the silence from now.
func (f *flow) enter(now time.Time) {
	if f.inFlight.Add(1) == 1 {
		f.progress.Store(now.UnixNano())
	}
}

// leave counts out a request sent at start. If it was answered at end (an
// answer or a failure at the gateway), that is progress, unless it failed
// later than stall after it was sent: a call that timed out at the
// instance says the dependency has stopped answering, not that it came
// back. A success, however late, is progress (a backend working through a
// queue answers), as is a prompt failure. With stall 0 (not judged) every
// answer is progress.
func (f *flow) leave(start, end time.Time, answered, failed bool, stall time.Duration) {
	f.inFlight.Add(-1)
	if !answered || (failed && stall > 0 && end.Sub(start) > stall) {
		return
	}
	t := end.UnixNano()
	for {
		p := f.progress.Load()
		if t <= p || f.progress.CompareAndSwap(p, t) {
			return
		}
	}
}

// silent reports whether the flow is stalled at now: at least
// minInFlight in flight and no progress for stall (0: never).
func (f *flow) silent(now time.Time, stall time.Duration, minInFlight int) bool {
	return stall > 0 && f.inFlight.Load() >= int64(minInFlight) &&
		now.UnixNano()-f.progress.Load() > int64(stall)
}

// stalled reports whether a request at now must be refused, as silent
// does, and counts it if so. A request that comes more than half the
// stall time after the one before restarts the silence from now instead:
// either the balancer itself was not running (a pause of its process: the
// answers are waiting in its sockets, not missing) or requests are too
// sparse for their silence to say anything.
func (f *flow) stalled(now time.Time, stall time.Duration, minInFlight int) bool {
	if stall <= 0 {
		return false
	}
	t := now.UnixNano()
	if prev := f.arrival.Swap(t); t-prev > int64(stall/2) {
		f.progress.Store(max(f.progress.Load(), t))
		return false
	}
	if !f.silent(now, stall, minInFlight) {
		return false
	}
	f.stalls.Add(1)
	return true
}
