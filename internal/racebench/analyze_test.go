package main

import (
	"math"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spillway-dev/spillway/health"
	"github.com/spillway-dev/spillway/internal/backendsim"
)

const (
	ok   = health.OutcomeOK
	shed = health.OutcomeShed
	cto  = health.OutcomeClientTimeout
)

// sec is s seconds as a Duration (fractions allowed).
func sec(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// attempts returns rate attempts per second, evenly spread over [from,
// to), each with outcome o and latency lat.
func attempts(from, to time.Duration, rate int, o health.Outcome, lat time.Duration) []Record {
	var out []Record
	step := time.Second / time.Duration(rate)
	for at := from; at < to; at += step {
		out = append(out, Record{At: at, Outcome: o, Latency: lat})
	}
	return out
}

// flip sets the outcome of the record that started at at.
func flip(recs []Record, at time.Duration, o health.Outcome) []Record {
	for i := range recs {
		if recs[i].At == at {
			recs[i].Outcome = o
			return recs
		}
	}
	panic("flip: no record starts at " + at.String())
}

// join concatenates record lists.
func join(parts ...[]Record) []Record {
	var out []Record
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func TestRecoverTime(t *testing.T) {
	m := Marks{Break: sec(6), Return: sec(10), End: sec(20)}
	tests := []struct {
		name string
		recs []Record
		m    Marks
		want Recovery
	}{
		{
			name: "ok at once",
			recs: join(attempts(0, sec(6), 300, ok, 0), attempts(sec(6), sec(10), 300, shed, 0), attempts(sec(10), sec(20), 300, ok, 0)),
			m:    m,
			want: Recovery{After: 0, Recovered: true},
		},
		{
			// Failures until 11.25 s: the window at R+1.2 s holds 15 of
			// 300 failed (5 %), the one at R+1.3 s none.
			name: "recovered between grid points",
			recs: join(attempts(0, sec(11.25), 300, shed, 0), attempts(sec(11.25), sec(20), 300, ok, 0)),
			m:    m,
			want: Recovery{After: sec(1.3), Recovered: true},
		},
		{
			// A blip later on fails every window that holds it: the
			// windows at R+4.1 .. R+5.0 s; recovery is after the last.
			name: "later blip",
			recs: join(attempts(0, sec(11), 300, shed, 0), attempts(sec(11), sec(15), 300, ok, 0),
				attempts(sec(15), sec(15.05), 300, cto, 0), attempts(sec(15.05), sec(20), 300, ok, 0)),
			m:    m,
			want: Recovery{After: sec(5.1), Recovered: true},
		},
		{
			// The windows that hold 10.5 s hold 100 attempts, 1 failed:
			// 99 % ok passes.
			name: "exactly 99 percent",
			recs: flip(attempts(sec(10), sec(20), 100, ok, 0), sec(10.5), shed),
			m:    m,
			want: Recovery{After: 0, Recovered: true},
		},
		{
			name: "two in a hundred fail",
			recs: join(attempts(sec(10), sec(20), 100, ok, 0), []Record{{At: sec(10.5), Outcome: shed}, {At: sec(10.5), Outcome: shed}}),
			m:    m,
			want: Recovery{After: sec(0.6), Recovered: true},
		},
		{
			name: "failures in the last window: never",
			recs: join(attempts(sec(10), sec(19.9), 300, ok, 0), attempts(sec(19.9), sec(20), 300, shed, 0)),
			m:    m,
			want: Recovery{},
		},
		{
			name: "no window fits after the return",
			recs: attempts(0, sec(20), 300, ok, 0),
			m:    Marks{Break: sec(6), Return: sec(19.5), End: sec(20)},
			want: Recovery{},
		},
		{
			name: "the last window ends exactly at the end",
			recs: join(attempts(sec(10), sec(19), 300, shed, 0), attempts(sec(19), sec(20), 300, ok, 0)),
			m:    m,
			want: Recovery{After: sec(9), Recovered: true},
		},
		{
			name: "failures before the return do not count",
			recs: join(attempts(0, sec(10), 300, cto, 0), attempts(sec(10), sec(20), 300, ok, 0)),
			m:    m,
			want: Recovery{After: 0, Recovered: true},
		},
		{
			name: "no attempts: every window is empty, so ok",
			m:    m,
			want: Recovery{After: 0, Recovered: true},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := recoverTime(tt.recs, tt.m); got != tt.want {
				t.Errorf("recoverTime = %+v, want %+v", got, tt.want)
			}
		})
	}
	if s := (Recovery{}).Seconds(); !math.IsInf(s, 1) {
		t.Errorf("never.Seconds() = %v, want +Inf", s)
	}
	if s := (Recovery{After: sec(1.3), Recovered: true}).Seconds(); s != 1.3 {
		t.Errorf("Seconds() = %v, want 1.3", s)
	}
}

func TestFailedP99(t *testing.T) {
	m := Marks{Break: sec(6), Return: sec(16), End: sec(26)}
	var recs []Record
	for i := 1; i <= 100; i++ { // the outage's failures: 1 .. 100 ms
		recs = append(recs, Record{At: sec(6) + time.Duration(i)*time.Millisecond, Outcome: shed, Latency: time.Duration(i) * time.Millisecond})
	}
	recs = append(recs,
		Record{At: sec(7), Outcome: ok, Latency: time.Hour},             // ok: not a failure
		Record{At: sec(5.9), Outcome: cto, Latency: time.Hour},          // before the break
		Record{At: sec(16), Outcome: cto, Latency: time.Hour},           // at the return: after the outage
		Record{At: sec(15.999), Outcome: cto, Latency: 2 * time.Second}, // the outage's last failure
	)
	p99, n := failedP99(recs, m, 0)
	if n != 101 || p99 != 100*time.Millisecond {
		t.Errorf("failedP99 = %v over %d, want 100ms over 101", p99, n)
	}
	// Settled: from 2 s after the break, only the last failure is left.
	if p99, n := failedP99(recs, m, settle); n != 1 || p99 != 2*time.Second {
		t.Errorf("failedP99 settled = %v over %d, want 2s over 1", p99, n)
	}
	if p99, n := failedP99(nil, m, 0); p99 != 0 || n != 0 {
		t.Errorf("failedP99(none) = %v, %d, want 0, 0", p99, n)
	}
	one := []Record{{At: sec(7), Outcome: shed, Latency: 3 * time.Millisecond}}
	if p99, n := failedP99(one, m, 0); p99 != 3*time.Millisecond || n != 1 {
		t.Errorf("failedP99(one) = %v, %d, want 3ms, 1", p99, n)
	}
}

func TestQuantile(t *testing.T) {
	xs := []time.Duration{5, 1, 4, 2, 3}
	for _, tt := range []struct {
		q    float64
		want time.Duration
	}{{0, 1}, {0.2, 1}, {0.5, 3}, {0.99, 5}, {1, 5}} {
		if got := quantile(xs, tt.q); got != tt.want {
			t.Errorf("quantile(%v) = %v, want %v", tt.q, got, tt.want)
		}
	}
}

func TestPoolAfter(t *testing.T) {
	base := time.Date(2026, 11, 29, 8, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return base.Add(time.Duration(s) * time.Second) }
	var secs []backendsim.Second
	for s := 0; s < 30; s++ {
		secs = append(secs, backendsim.Second{Start: at(s), PeakBusy: s, PeakQueued: 100 - s, QueueTimeout: 1, QueueFull: 10})
	}
	ret := base.Add(sec(10.3)) // R = 10.3 s
	got := poolAfter(secs, ret)
	// Peaks over the seconds overlapping [10.3, 15.3): 10 .. 15. Queue
	// 503s over the seconds that start at or after 10.8: 11 .. 29.
	want := PoolFigures{PeakBusy: 15, PeakQueued: 90, Queue503After1s: 19 * 11, Seconds: 20}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("poolAfter (-want +got):\n%s", diff)
	}
	// A return on a second's boundary: [10, 15) is seconds 10 .. 14; the
	// 503s count from second 11 (begins at R+1s).
	got = poolAfter(secs, at(10))
	want = PoolFigures{PeakBusy: 14, PeakQueued: 90, Queue503After1s: 19 * 11, Seconds: 20}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("poolAfter on a boundary (-want +got):\n%s", diff)
	}
	if got := poolAfter(nil, ret); got != (PoolFigures{}) {
		t.Errorf("poolAfter(none) = %+v, want zero", got)
	}
}

func TestPerSecond(t *testing.T) {
	recs := []Record{{At: sec(0.1), Outcome: ok}, {At: sec(0.9), Outcome: shed}, {At: sec(2.5), Outcome: ok}}
	want := []SecondCounts{
		{T: 0, Outcomes: map[string]int64{"ok": 1, "shed": 1}},
		{T: 1, Outcomes: map[string]int64{}},
		{T: 2, Outcomes: map[string]int64{"ok": 1}},
	}
	if diff := cmp.Diff(want, perSecond(recs)); diff != "" {
		t.Errorf("perSecond (-want +got):\n%s", diff)
	}
	if got := perSecond(nil); got != nil {
		t.Errorf("perSecond(nil) = %v, want nil", got)
	}
}

func TestMedian(t *testing.T) {
	inf, nan := math.Inf(1), math.NaN()
	tests := []struct {
		in   []float64
		want float64
	}{
		{[]float64{3, 1, 2}, 2},
		{[]float64{4, 1, 3, 2}, 2.5},
		{[]float64{1.2, inf, inf}, inf},
		{[]float64{1.2, 1.4, inf}, 1.4},
		{[]float64{1, inf}, inf},
		{[]float64{nan, 5, nan}, 5},
	}
	for _, tt := range tests {
		if got := median(tt.in); got != tt.want {
			t.Errorf("median(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
	for _, in := range [][]float64{nil, {nan}} {
		if got := median(in); !math.IsNaN(got) {
			t.Errorf("median(%v) = %v, want NaN", in, got)
		}
	}
}

func TestMeasure(t *testing.T) {
	m := Marks{Break: sec(6), Return: sec(16), End: sec(26)}
	recs := join(
		attempts(0, sec(6), 100, ok, 20*time.Millisecond),
		attempts(sec(6), sec(7), 100, cto, 2*time.Second),
		attempts(sec(7), sec(16), 100, shed, time.Millisecond),
		attempts(sec(16), sec(17.5), 100, shed, time.Millisecond),
		attempts(sec(17.5), sec(26), 100, ok, 20*time.Millisecond),
	)
	ret := time.Date(2026, 11, 29, 8, 0, 16, 0, time.UTC)
	secs := []backendsim.Second{{Start: ret, PeakBusy: 7, PeakQueued: 3, QueueTimeout: 2}, {Start: ret.Add(time.Second), QueueFull: 1}}
	got := measure(recs, m, 0, 42, secs, ret)
	want := Metrics{
		RecoverS:           1.5,
		Recovered:          true,
		FailedP99MS:        2000,
		FailedDuringOutage: 1000,
		FailedP99SettledMS: 1, // from 8 s: the sheds only
		FailedSettled:      800,
		Attempts:           2600,
		Outcomes:           map[string]int64{"ok": 1450, "client_error": 0, "shed": 1050, "overloaded": 0, "failed": 0, "client_timeout": 100},
		ClientTimeouts:     100,
		OKPct:              100 * 1450.0 / 2600,
		Retries:            42,
		Pool:               PoolFigures{PeakBusy: 7, PeakQueued: 3, Queue503After1s: 1, Seconds: 2},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("measure (-want +got):\n%s", diff)
	}
	never := measure(attempts(0, sec(26), 100, shed, 0), m, 3, 0, nil, ret)
	if never.Recovered || never.RecoverS != 0 || never.Lost != 3 || never.OKPct != 0 {
		t.Errorf("measure of an outage that never ends = %+v", never)
	}
}

func TestShedAfterReport(t *testing.T) {
	for _, tt := range []struct {
		name string
		m    Marks
		want time.Duration
		ok   bool
	}{
		{"both", Marks{Reported: sec(7.1), DoorShed: sec(7.15)}, sec(7.15) - sec(7.1), true},
		{"no report", Marks{DoorShed: sec(7.15)}, 0, false},
		{"no shedding seen", Marks{Reported: sec(7.1)}, 0, false},
	} {
		if got, ok := shedAfterReport(tt.m); got != tt.want || ok != tt.ok {
			t.Errorf("%s: shedAfterReport = %v, %v; want %v, %v", tt.name, got, ok, tt.want, tt.ok)
		}
	}
}

func TestFailedAfterShed(t *testing.T) {
	// Failures wait 1 s until the door sheds at 7.5 s, then take 1 ms.
	m := Marks{Break: sec(6), Return: sec(16), End: sec(20), Reported: sec(7.4), DoorShed: sec(7.5)}
	recs := join(attempts(0, sec(6), 100, ok, sec(0.02)),
		attempts(sec(6), sec(7.5), 100, cto, sec(1)),
		attempts(sec(7.5), sec(16), 100, shed, sec(0.001)),
		attempts(sec(16), sec(20), 100, ok, sec(0.02)))
	mt := measure(recs, m, 0, 0, nil, time.Time{})
	if mt.FailedP99AfterShedMS == nil || *mt.FailedP99AfterShedMS != 1 || mt.FailedAfterShed != 850 {
		t.Errorf("after shed: p99 %v over %d, want 1 ms over 850", mt.FailedP99AfterShedMS, mt.FailedAfterShed)
	}
	if mt.ShedAfterReportMS == nil || *mt.ShedAfterReportMS != 100 {
		t.Errorf("shed after report: %v, want 100 ms", mt.ShedAfterReportMS)
	}
	if mt := measure(recs, Marks{Break: sec(6), Return: sec(16), End: sec(20)}, 0, 0, nil, time.Time{}); mt.FailedP99AfterShedMS != nil || mt.ShedAfterReportMS != nil {
		t.Errorf("without marks: %v %v, want neither", mt.FailedP99AfterShedMS, mt.ShedAfterReportMS)
	}
}
