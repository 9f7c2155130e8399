// Package timeline records what happened to requests, second by second:
// how many ended in each outcome (health.Outcome, as health.Classify
// files answers), and the latency distribution of the successful and of
// the failed ones. The load balancer's dashboard and the drill's report
// both read their charts from it.
//
// A Recorder keeps a ring of the last N seconds; older seconds are
// forgotten, so its memory is fixed at creation. Latencies go into
// HdrHistograms with one significant digit (about 10% resolution, 3 KiB a
// histogram), enough to chart a p99 without costing a small machine
// megabytes per minute. The clock is injected.
//
// A Recorder is safe for concurrent use. It starts no goroutines and needs
// no closing.
package timeline

import (
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/spillway-dev/spillway/health"
)

const numOutcomes = len(health.Outcomes)

// Latency range recorded, in microseconds; values outside are clamped.
const (
	minMicros = 1
	maxMicros = 120 * 1_000_000
)

type second struct {
	unix   int64 // the second this slot holds; 0 when empty
	counts [numOutcomes]uint64
	ok     *hdrhistogram.Histogram // latency of OK
	failed *hdrhistogram.Histogram // latency of every other outcome
}

func newHist() *hdrhistogram.Histogram { return hdrhistogram.New(minMicros, maxMicros, 1) }

// Recorder is a ring of per-second counts and latency histograms.
type Recorder struct {
	now func() time.Time

	mu    sync.Mutex
	ring  []second
	total [numOutcomes]uint64
}

// New returns a Recorder keeping the last seconds seconds (at least 1).
// now defaults to time.Now.
func New(seconds int, now func() time.Time) *Recorder {
	if now == nil {
		now = time.Now
	}
	seconds = max(seconds, 1)
	r := &Recorder{now: now, ring: make([]second, seconds)}
	for i := range r.ring {
		r.ring[i].ok = newHist()
		r.ring[i].failed = newHist()
	}
	return r
}

// slotLocked returns the slot for unix second s, clearing it if it held an
// older second.
func (r *Recorder) slotLocked(s int64) *second {
	sl := &r.ring[int(s%int64(len(r.ring)))]
	if sl.unix != s {
		sl.unix = s
		sl.counts = [numOutcomes]uint64{}
		sl.ok.Reset()
		sl.failed.Reset()
	}
	return sl
}

// Observe records one request that ended with o after d.
func (r *Recorder) Observe(o health.Outcome, d time.Duration) {
	if int(o) >= numOutcomes {
		return
	}
	us := min(max(d.Microseconds(), minMicros), maxMicros)
	s := r.now().Unix()
	r.mu.Lock()
	sl := r.slotLocked(s)
	sl.counts[o]++
	r.total[o]++
	if o == health.OutcomeOK {
		_ = sl.ok.RecordValue(us)
	} else {
		_ = sl.failed.RecordValue(us)
	}
	r.mu.Unlock()
}

// Point is one second of a Series.
type Point struct {
	// Time is the start of the second.
	Time time.Time `json:"t"`
	// Counts maps each outcome's name to its count in that second.
	Counts map[string]uint64 `json:"counts"`
	// Total is the sum of Counts.
	Total uint64 `json:"total"`
	// OKP50Ms, OKP99Ms: latency percentiles of OK requests, milliseconds
	// (0 when none).
	OKP50Ms float64 `json:"ok_p50_ms"`
	OKP99Ms float64 `json:"ok_p99_ms"`
	// FailedP50Ms, FailedP99Ms: the same for every other outcome.
	FailedP50Ms float64 `json:"failed_p50_ms"`
	FailedP99Ms float64 `json:"failed_p99_ms"`
}

// Series returns the last n complete seconds (the current, partial second
// excluded), oldest first; seconds with no request are included with zero
// counts so that a chart's time axis has no gaps. n is capped at the ring's
// size less one.
func (r *Recorder) Series(n int) []Point {
	n = min(n, len(r.ring)-1)
	if n <= 0 {
		return nil
	}
	cur := r.now().Unix()
	out := make([]Point, 0, n)
	r.mu.Lock()
	defer r.mu.Unlock()
	for s := cur - int64(n); s < cur; s++ {
		p := Point{Time: time.Unix(s, 0).UTC(), Counts: make(map[string]uint64, numOutcomes)}
		sl := &r.ring[int(s%int64(len(r.ring)))]
		for _, o := range health.Outcomes {
			var c uint64
			if sl.unix == s {
				c = sl.counts[o]
			}
			p.Counts[o.String()] = c
			p.Total += c
		}
		if sl.unix == s {
			p.OKP50Ms, p.OKP99Ms = quantileMs(sl.ok, 50), quantileMs(sl.ok, 99)
			p.FailedP50Ms, p.FailedP99Ms = quantileMs(sl.failed, 50), quantileMs(sl.failed, 99)
		}
		out = append(out, p)
	}
	return out
}

// Totals returns the count of each outcome since the Recorder was made.
func (r *Recorder) Totals() map[string]uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := make(map[string]uint64, numOutcomes)
	for _, o := range health.Outcomes {
		m[o.String()] = r.total[o]
	}
	return m
}

func quantileMs(h *hdrhistogram.Histogram, q float64) float64 {
	if h.TotalCount() == 0 {
		return 0
	}
	return float64(h.ValueAtQuantile(q)) / 1000
}
