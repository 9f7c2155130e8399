package lb

import (
	"testing"
	"time"
)

func TestRampDecision(t *testing.T) {
	cfg := DefaultRampConfig()
	const bound = 80 * time.Millisecond
	ms := time.Millisecond
	tests := []struct {
		name  string
		share float64
		s     stepSample
		bound time.Duration
		want  float64
		step  RampStep
	}{
		{"fast successes: grow", 0.1, stepSample{ok: 30, median: 20 * ms}, bound, 0.2, RampGrow},
		{"growth stops at 1", 0.8, stepSample{ok: 30, median: 20 * ms}, bound, 1, RampGrow},
		{"no traffic: nothing at risk, grow", 0.1, stepSample{}, bound, 0.2, RampGrow},
		{"no bound known yet: grow on successes", 0.1, stepSample{ok: 30, median: time.Second}, 0, 0.2, RampGrow},
		{"latency over the bound: hold", 0.4, stepSample{ok: 30, median: 100 * ms}, bound, 0.4, RampHold},
		{"latency over twice the bound: back off", 0.4, stepSample{ok: 30, median: 200 * ms}, bound, 0.2, RampBackOff},
		{"too few successes to judge latency", 0.1, stepSample{ok: rampMinSamples - 1, median: time.Second}, bound, 0.2, RampGrow},
		{"a failure among few: back off", 0.4, stepSample{ok: 5, failed: 1, median: 20 * ms}, bound, 0.2, RampBackOff},
		{"1 failure in 200 is noise", 0.4, stepSample{ok: 199, failed: 1, median: 20 * ms}, bound, 0.8, RampGrow},
		{"back off stops at the floor", 0.1, stepSample{failed: 3}, bound, 0.1, RampBackOff},
	}
	for _, tt := range tests {
		got, step := rampDecision(cfg, tt.share, cfg.InitialShare, tt.s, tt.bound)
		if step != tt.step {
			t.Errorf("%s: step %s, want %s", tt.name, step, tt.step)
		}
		approx(t, tt.name, got, tt.want, 1e-9)
	}
}

func TestLatencyBound(t *testing.T) {
	ms := time.Millisecond
	cfg := DefaultRampConfig()
	for _, tt := range []struct {
		name           string
		set, base, low time.Duration
		want           time.Duration
	}{
		{"set", 30 * ms, 20 * ms, 10 * ms, 30 * ms},
		{"from the baseline", 0, 20 * ms, 10 * ms, 80 * ms},
		{"from the ramp without a baseline", 0, 0, 30 * ms, 120 * ms},
		{"at least 50ms", 0, 2 * ms, 0, 50 * ms},
		{"unknown", 0, 0, 0, 0},
	} {
		cfg.LatencyBound = tt.set
		if got := latencyBound(cfg, tt.base, tt.low); got != tt.want {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestInitialShareHalvesPerFlap(t *testing.T) {
	cfg := DefaultRampConfig()
	for flaps, want := range []float64{0.1, 0.05, 0.025, 0.0125, 0.00625, 0.003125, 0.1 / 64, 0.1 / 64} {
		approx(t, "initial share", initialShare(cfg, flaps), want, 1e-12)
	}
}

func TestLatencyBuckets(t *testing.T) {
	prev := -1
	for d := time.Duration(0); d < 10*time.Minute; d = d*21/20 + time.Microsecond {
		i := bucketOf(d)
		if i < prev {
			t.Fatalf("bucketOf(%v) = %d after %d: not monotonic", d, i, prev)
		}
		prev = i
		low := bucketLow(i)
		if i < latencyBuckets-1 && (low > d.Truncate(time.Microsecond) || float64(d) >= 1.26*float64(max(low, time.Microsecond))+float64(time.Microsecond)) {
			t.Fatalf("bucketOf(%v) = %d, whose lower bound is %v", d, i, low)
		}
	}
	var o outcomes
	for _, ms := range []int{10, 20, 21, 22, 500} {
		o.add(time.Duration(ms)*time.Millisecond, false)
	}
	o.add(0, true)
	s := o.sample()
	if s.ok != 5 || s.failed != 1 || s.median < 19*time.Millisecond || s.median > 23*time.Millisecond {
		t.Errorf("sample = %+v, want 5 ok, 1 failed, median about 21ms", s)
	}
}

// feedbackShedder returns a Shedder with the default (feedback) recovery
// that has seen the backend ok long enough to know its latency (lat) and
// then down: it is shedding at the returned time.
func feedbackShedder(t *testing.T, lat time.Duration) (*Shedder, time.Time) {
	t.Helper()
	s := newShedder(t, DefaultShedConfig(), nil)
	up := reports(bothNames, none, none, none)
	now := t0
	s.Update(now, up)
	for range 3 { // three baseline windows of a second
		for range 50 {
			s.Observe("/login", lat, false)
		}
		now = now.Add(time.Second)
		s.Update(now, up)
	}
	if st := state(t, s, "backend", now); st.Baseline < lat*9/10 || st.Baseline > lat*11/10 {
		t.Fatalf("baseline %v after %v requests", st.Baseline, lat)
	}
	s.Update(now, reports(bothNames, backend, backend, none))
	if st := state(t, s, "backend", now); st.State != ShedShedding {
		t.Fatalf("state %s, want shedding", st.State)
	}
	return s, now
}

// step feeds n requests needing the backend at latency lat (failed ones
// as failures), moves the clock one ramp step and updates with up.
func step(s *Shedder, now time.Time, ok int, lat time.Duration, failed int) time.Time {
	for range ok {
		s.Observe("/login", lat, false)
	}
	for range failed {
		s.Observe("/login", lat, true)
	}
	now = now.Add(DefaultRampConfig().Step)
	s.Update(now, reports(bothNames, none, none, none))
	return now
}

// A healthy backend: the share doubles every step from 0.1, so the ramp
// is over in four steps (400ms).
func TestFeedbackRampGrows(t *testing.T) {
	s, now := feedbackShedder(t, 20*time.Millisecond)
	now = now.Add(3 * time.Second) // the outage
	s.Update(now, reports(bothNames, none, none, none))
	start := now
	st := state(t, s, "backend", now)
	if st.State != ShedRecovering || st.Recovery != RecoveryFeedback || st.Admitted != 0.1 {
		t.Fatalf("back: %+v, want recovering by feedback at 0.1", st)
	}
	if next := s.next(now); !next.Equal(now.Add(100 * time.Millisecond)) {
		t.Errorf("next evaluation at %v, want the end of the step", next.Sub(now))
	}
	// The share admits that share of requests.
	n := 0
	for i := range 1000 {
		if s.Admit("backend", now, (float64(i)+0.5)/1000) {
			n++
		}
	}
	if n != 100 {
		t.Errorf("%d of 1000 admitted at share 0.1", n)
	}
	for _, want := range []float64{0.2, 0.4, 0.8} {
		now = step(s, now, 30, 20*time.Millisecond, 0)
		if st := state(t, s, "backend", now); st.State != ShedRecovering || st.Admitted != want || st.LastStep != RampGrow {
			t.Fatalf("+%v: %+v, want share %v", now.Sub(start), st, want)
		}
	}
	now = step(s, now, 30, 20*time.Millisecond, 0)
	if st := state(t, s, "backend", now); st.State != ShedOK || st.Admitted != 1 || !s.Admit("backend", now, 0.999) {
		t.Fatalf("+%v: %+v, want ok", now.Sub(start), st)
	}
	if got := now.Sub(start); got != 400*time.Millisecond {
		t.Errorf("ramp took %v, want 4 steps", got)
	}
	if !s.next(now).IsZero() {
		t.Errorf("an evaluation scheduled after the ramp: %v", s.next(now))
	}
}

// A backend that slows down under the returning load: the share holds
// while the median is over the bound (4 × 20ms), falls back when it is
// over twice the bound or requests fail, and grows again when it recovers.
func TestFeedbackRampFollowsLatencyAndErrors(t *testing.T) {
	s, now := feedbackShedder(t, 20*time.Millisecond)
	now = now.Add(3 * time.Second)
	s.Update(now, reports(bothNames, none, none, none))
	ms := time.Millisecond
	for i, tt := range []struct {
		ok     int
		lat    time.Duration
		failed int
		share  float64
		step   RampStep
	}{
		{30, 20 * ms, 0, 0.2, RampGrow},
		{30, 25 * ms, 0, 0.4, RampGrow},
		{30, 100 * ms, 0, 0.4, RampHold},    // over 80ms
		{30, 120 * ms, 0, 0.4, RampHold},    // still
		{30, 200 * ms, 0, 0.2, RampBackOff}, // over 160ms
		{30, 30 * ms, 0, 0.4, RampGrow},
		{20, 30 * ms, 2, 0.2, RampBackOff}, // failures
		{0, 0, 4, 0.1, RampBackOff},        // only failures: down to the initial share
		{0, 0, 4, 0.1, RampBackOff},        // not below it
		{0, 0, 0, 0.2, RampGrow},           // no traffic, nothing at risk
	} {
		now = step(s, now, tt.ok, tt.lat, tt.failed)
		st := state(t, s, "backend", now)
		if st.State != ShedRecovering || st.LastStep != tt.step {
			t.Fatalf("step %d: %+v, want recovering, %s", i, st, tt.step)
		}
		approx(t, "share", st.Admitted, tt.share, 1e-9)
		if st.LatencyBound < 72*ms || st.LatencyBound > 88*ms {
			t.Errorf("step %d: bound %v, want 4 × the 20ms baseline (the histogram is within 10%%)", i, st.LatencyBound)
		}
	}
}

// A ramp cut short by renewed shedding starts the next one at half the
// initial share; a completed ramp forgets it.
func TestFeedbackRampAfterFlap(t *testing.T) {
	s, now := feedbackShedder(t, 20*time.Millisecond)
	up, down := reports(bothNames, none, none, none), reports(bothNames, backend, backend, none)
	s.Update(now.Add(time.Second), up)
	now = step(s, now.Add(time.Second), 30, 20*time.Millisecond, 0) // 0.2
	s.Update(now, down)
	if st := state(t, s, "backend", now); st.State != ShedShedding || st.Flaps != 1 || s.Admit("backend", now, 0) {
		t.Fatalf("down mid-ramp: %+v, want shedding at once", st)
	}
	s.Update(now.Add(time.Second), up)
	if st := state(t, s, "backend", now.Add(time.Second)); st.Admitted != 0.05 {
		t.Errorf("after a flap the ramp starts at %v, want 0.05", st.Admitted)
	}
}

// The balancer never saw the backend ok (it started during the outage):
// the ramp's own best step gives the bound.
func TestFeedbackRampWithoutBaseline(t *testing.T) {
	s := newShedder(t, DefaultShedConfig(), nil)
	now := t0
	s.Update(now, reports(bothNames, backend, backend, none))
	s.Update(now, reports(bothNames, none, none, none))
	now = step(s, now, 30, 30*time.Millisecond, 0)
	st := state(t, s, "backend", now)
	if st.Baseline != 0 || st.LatencyBound < 108*time.Millisecond || st.LatencyBound > 132*time.Millisecond || st.Admitted != 0.2 {
		t.Errorf("%+v, want a bound of about 4 × 30ms and share 0.2", st)
	}
}
