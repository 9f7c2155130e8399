package main

import (
	"math"
	"slices"
	"time"

	"github.com/spillway-dev/spillway/health"
	"github.com/spillway-dev/spillway/internal/backendsim"
)

// The pure layer: a trial's per-attempt records and the backend's
// per-second pool figures in, its measurements out. Nothing here reads a
// clock or does I/O.

// Parameters of the measurements.
const (
	// recoveryGrid is the step of the candidate recovery times and of the
	// windows' starts.
	recoveryGrid = 100 * time.Millisecond
	// recoveryWindow is the length of each window that must be ok.
	recoveryWindow = time.Second
	// recoveryOKPermille: a window is ok when at least this many per
	// thousand of the attempts that started in it were ok.
	recoveryOKPermille = 990
	// peakSpan is how long after the return the pool's peaks are taken
	// over.
	peakSpan = 5 * time.Second
	// queueGrace is how long after the return the backend's queue 503s
	// are not counted.
	queueGrace = time.Second
	// failedQuantile is the quantile of failedP99.
	failedQuantile = 0.99
	// settle is how long after the break the outage is detected: the
	// instances' backend timeout (1 s) must run out before anything can
	// tell a hang from a slow answer, and a front door then needs its own
	// check or report. failed_p99_settled_ms leaves these attempts out.
	settle = 2 * time.Second
)

// Record is one attempt of the load: when it started, as an offset from the
// start of the load, how it ended and how long it took.
type Record struct {
	At      time.Duration
	Outcome health.Outcome
	Latency time.Duration
}

// Marks are the moments of a trial, as offsets from the start of the load:
// the backend broke at Break and returned at Return (R); the load started
// its last attempt before End. An instance first reported a dependency
// down at Reported, and the front door was first seen shedding at
// DoorShed (0: never seen, or a door that cannot be asked).
type Marks struct {
	Break    time.Duration `json:"break_ns"`
	Return   time.Duration `json:"return_ns"`
	End      time.Duration `json:"end_ns"`
	Reported time.Duration `json:"reported_ns,omitempty"`
	DoorShed time.Duration `json:"door_shed_ns,omitempty"`
}

// Recovery is the answer of recoverTime.
type Recovery struct {
	// After is the time from the return to recovery, a multiple of
	// recoveryGrid; meaningless unless Recovered.
	After time.Duration
	// Recovered is false when some window is not ok up to the last one
	// that fits in the load ("never").
	Recovered bool
}

// Seconds returns After in seconds, or +Inf when not Recovered.
func (r Recovery) Seconds() float64 {
	if !r.Recovered {
		return math.Inf(1)
	}
	return r.After.Seconds()
}

// recoverTime is the time from the backend's return to recovery: the
// smallest t ≥ 0 on the recoveryGrid such that every window [R+t+k·grid,
// +recoveryWindow) (k ≥ 0) that ends no later than the end of the load has
// at least 99 % of its attempts, by start time, ok. A window without any
// attempt is ok. When even the last window that fits is not ok, or none
// fits after the return, the load never recovered.
func recoverTime(recs []Record, m Marks) Recovery {
	if m.End-m.Return < recoveryWindow {
		return Recovery{}
	}
	// Slot j holds the attempts that started in [R+j·grid, R+(j+1)·grid);
	// window k spans the slots k .. k+per-1.
	per := int(recoveryWindow / recoveryGrid)
	windows := int((m.End-m.Return-recoveryWindow)/recoveryGrid) + 1
	slots := windows + per - 1
	ok := make([]int, slots)
	all := make([]int, slots)
	for _, r := range recs {
		if r.At < m.Return {
			continue
		}
		j := int((r.At - m.Return) / recoveryGrid)
		if j >= slots {
			continue
		}
		all[j]++
		if r.Outcome == health.OutcomeOK {
			ok[j]++
		}
	}
	lastBad := -1
	var sumOK, sumAll int
	for j := range slots {
		sumOK += ok[j]
		sumAll += all[j]
		if j >= per {
			sumOK -= ok[j-per]
			sumAll -= all[j-per]
		}
		if k := j - per + 1; k >= 0 && sumOK*1000 < recoveryOKPermille*sumAll {
			lastBad = k
		}
	}
	if lastBad+1 >= windows {
		return Recovery{}
	}
	return Recovery{After: time.Duration(lastBad+1) * recoveryGrid, Recovered: true}
}

// failedP99 is the 99th percentile (nearest rank) of the latency of the
// attempts that were not ok and started during the outage, [Break,
// Return), and how many there were; 0, 0 when there were none.
func failedP99(recs []Record, m Marks, from time.Duration) (time.Duration, int) {
	var lat []time.Duration
	for _, r := range recs {
		if r.Outcome != health.OutcomeOK && r.At >= m.Break+from && r.At < m.Return {
			lat = append(lat, r.Latency)
		}
	}
	return quantile(lat, failedQuantile), len(lat)
}

// quantile is the nearest-rank q-quantile of xs (which it sorts), 0 for
// none.
func quantile(xs []time.Duration, q float64) time.Duration {
	if len(xs) == 0 {
		return 0
	}
	slices.Sort(xs)
	i := int(math.Ceil(q*float64(len(xs)))) - 1
	return xs[min(max(i, 0), len(xs)-1)]
}

// outcomeCounts counts the records by outcome.
func outcomeCounts(recs []Record) [len(health.Outcomes)]int64 {
	var n [len(health.Outcomes)]int64
	for _, r := range recs {
		if int(r.Outcome) < len(n) {
			n[r.Outcome]++
		}
	}
	return n
}

// PoolFigures are the backend's worker pool after the return.
type PoolFigures struct {
	// PeakBusy and PeakQueued are the highest per-second peaks over the
	// seconds that overlap [R, R+5s).
	PeakBusy   int `json:"peak_busy"`
	PeakQueued int `json:"peak_queued"`
	// Queue503After1s sums QueueTimeout and QueueFull over the seconds
	// that lie mostly after R+1s: those that start at or after R+0.5s.
	Queue503After1s uint64 `json:"queue_503_after_1s"`
	// Seconds is how many seconds the figures were taken from; 0 means
	// the backend's figures did not cover the span.
	Seconds int `json:"seconds"`
}

// poolAfter reads the pool's per-second figures (whose Start is the
// second's wall-clock beginning) after the return, at wall time ret. The
// pool keeps whole seconds only, so the spans are rounded to them: the
// peaks may include up to a second before R, when only the outage's
// leftovers reach the backend, and the queue 503s leave out at most half
// a second after R+1s and take in at most half a second before it.
func poolAfter(secs []backendsim.Second, ret time.Time) PoolFigures {
	var f PoolFigures
	peakEnd := ret.Add(peakSpan)
	qFrom := ret.Add(queueGrace - time.Second/2)
	for _, s := range secs {
		used := false
		if s.Start.Before(peakEnd) && s.Start.Add(time.Second).After(ret) {
			f.PeakBusy = max(f.PeakBusy, s.PeakBusy)
			f.PeakQueued = max(f.PeakQueued, s.PeakQueued)
			used = true
		}
		if !s.Start.Before(qFrom) {
			f.Queue503After1s += s.QueueTimeout + s.QueueFull
			used = true
		}
		if used {
			f.Seconds++
		}
	}
	return f
}

// SecondCounts is one second of the load's attempts by outcome, by start
// time: the trial's timeline, for a reader who wants to see the shape.
type SecondCounts struct {
	T        int              `json:"t"` // seconds since the start of the load
	Outcomes map[string]int64 `json:"outcomes"`
}

// perSecond groups the records into seconds by start time, every second
// from 0 to the last one present; outcomes with no attempt are left out.
func perSecond(recs []Record) []SecondCounts {
	var last int
	for _, r := range recs {
		last = max(last, int(r.At/time.Second))
	}
	if len(recs) == 0 {
		return nil
	}
	out := make([]SecondCounts, last+1)
	for i := range out {
		out[i] = SecondCounts{T: i, Outcomes: map[string]int64{}}
	}
	for _, r := range recs {
		if r.At >= 0 {
			out[r.At/time.Second].Outcomes[r.Outcome.String()]++
		}
	}
	return out
}

// median is the median of xs, ignoring NaNs (a value that was not
// measured); NaN when none is left. +Inf (never) sorts last, so it is the
// median when most are +Inf. With an even count it is the mean of the two
// middle values.
func median(xs []float64) float64 {
	var v []float64
	for _, x := range xs {
		if !math.IsNaN(x) {
			v = append(v, x)
		}
	}
	if len(v) == 0 {
		return math.NaN()
	}
	slices.Sort(v)
	n := len(v)
	if n%2 == 1 {
		return v[n/2]
	}
	return (v[n/2-1] + v[n/2]) / 2
}

// Metrics are a trial's measurements (see the package comment and the
// method section of results.md).
type Metrics struct {
	// RecoverS is recover_s in seconds; Recovered false means "never"
	// (RecoverS is then 0).
	RecoverS  float64 `json:"recover_s"`
	Recovered bool    `json:"recovered"`
	// FailedP99MS is the p99 latency of the attempts that were not ok
	// and started during the outage; FailedDuringOutage counts them.
	FailedP99MS        float64 `json:"failed_p99_ms"`
	FailedDuringOutage int     `json:"failed_during_outage"`
	// FailedP99SettledMS and FailedSettled are the same for the attempts
	// started from settle after the break.
	FailedP99SettledMS float64 `json:"failed_p99_settled_ms"`
	FailedSettled      int     `json:"failed_settled"`
	// Attempts counts every attempt, retries included; Outcomes counts
	// them by outcome.
	Attempts       int64            `json:"attempts"`
	Outcomes       map[string]int64 `json:"outcomes"`
	ClientTimeouts int64            `json:"client_timeouts"`
	Lost           int64            `json:"lost"`
	OKPct          float64          `json:"ok_pct"`
	Retries        int64            `json:"retries"`
	Pool           PoolFigures      `json:"pool"`
	// FailedP99AfterShedMS and FailedAfterShed are FailedP99MS and
	// FailedDuringOutage for the attempts started once the front door
	// was seen shedding (Marks.DoorShed); nil and 0 without that mark.
	FailedP99AfterShedMS *float64 `json:"failed_p99_after_shed_ms,omitempty"`
	FailedAfterShed      int      `json:"failed_after_shed,omitempty"`
	// ShedAfterReportMS is the time from the first report of the outage
	// (Marks.Reported) to the front door's shedding (Marks.DoorShed); nil
	// without both.
	ShedAfterReportMS *float64 `json:"shed_after_report_ms,omitempty"`
}

// measure computes a trial's Metrics from its records and marks, the load
// generator's own lost and retry counts, and the backend's per-second
// pool figures with the return's wall time.
func measure(recs []Record, m Marks, lost, retries int64, secs []backendsim.Second, retWall time.Time) Metrics {
	rec := recoverTime(recs, m)
	p99, nFailed := failedP99(recs, m, 0)
	p99s, nSettled := failedP99(recs, m, settle)
	counts := outcomeCounts(recs)
	mt := Metrics{
		RecoverS:           rec.After.Seconds(),
		Recovered:          rec.Recovered,
		FailedP99MS:        float64(p99) / float64(time.Millisecond),
		FailedDuringOutage: nFailed,
		FailedP99SettledMS: float64(p99s) / float64(time.Millisecond),
		FailedSettled:      nSettled,
		Attempts:           int64(len(recs)),
		Outcomes:           make(map[string]int64, len(counts)),
		ClientTimeouts:     counts[health.OutcomeClientTimeout],
		Lost:               lost,
		Retries:            retries,
		Pool:               poolAfter(secs, retWall),
	}
	if !rec.Recovered {
		mt.RecoverS = 0
	}
	for _, o := range health.Outcomes {
		mt.Outcomes[o.String()] = counts[o]
	}
	if len(recs) > 0 {
		mt.OKPct = 100 * float64(counts[health.OutcomeOK]) / float64(len(recs))
	}
	if m.DoorShed > m.Break {
		p, n := failedP99(recs, m, m.DoorShed-m.Break)
		if n > 0 {
			v := float64(p) / float64(time.Millisecond)
			mt.FailedP99AfterShedMS = &v
		}
		mt.FailedAfterShed = n
	}
	if d, ok := shedAfterReport(m); ok {
		v := float64(d) / float64(time.Millisecond)
		mt.ShedAfterReportMS = &v
	}
	return mt
}

// shedAfterReport is m.DoorShed - m.Reported; false without both.
func shedAfterReport(m Marks) (time.Duration, bool) {
	if m.Reported <= 0 || m.DoorShed <= 0 {
		return 0, false
	}
	return m.DoorShed - m.Reported, true
}
