package lb

import (
	"testing"
	"time"
)

const ms = time.Millisecond

func TestLatencyBound(t *testing.T) {
	cfg := DefaultRampConfig()
	for _, tt := range []struct {
		name               string
		set, base, fastest time.Duration
		want               time.Duration
	}{
		{"set", 30 * ms, 20 * ms, 10 * ms, 30 * ms},
		{"from the baseline", 0, 20 * ms, 10 * ms, 80 * ms},
		{"from the ramp's fastest without a baseline", 0, 0, 30 * ms, 120 * ms},
		{"at least 50ms", 0, 2 * ms, 0, 50 * ms},
		{"unknown", 0, 0, 0, 0},
	} {
		cfg.LatencyBound = tt.set
		if got := latencyBound(cfg, tt.base, tt.fastest); got != tt.want {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
}

// fill takes every slot the window has at now and returns how many.
func fill(w *rampWindow, now time.Time) int {
	n := 0
	for w.acquire(now) {
		n++
	}
	return n
}

// answerAll answers n requests sent at start, at start+lat.
func answerAll(w *rampWindow, n int, start time.Time, lat time.Duration, failed bool) {
	for range n {
		w.done(start, start.Add(lat), true, failed)
	}
}

// Slow start: answers in time grow the window by one each, so it doubles
// every round trip; a full window refuses.
func TestRampWindowSlowStart(t *testing.T) {
	now := t0
	w := newRampWindow(DefaultRampConfig(), 20*ms, 0, now) // bound 80ms
	for round, want := range []int{4, 8, 16, 32} {
		if n := fill(w, now); n != want {
			t.Fatalf("round %d: %d slots, want %d", round, n, want)
		}
		answerAll(w, want, now, 20*ms, false)
		now = now.Add(20 * ms)
	}
	st := w.state()
	if st.window != 64 || st.inFlight != 0 || st.last != RampGrow || st.bound != 80*ms {
		t.Errorf("after four round trips: %+v, want a window of 64", st)
	}
	// Every round refused one request (the one fill found the window full
	// with): 60 admitted, 4 refused.
	if st.admittedShare != 60.0/64 {
		t.Errorf("admitted share %v, want 60/64", st.admittedShare)
	}
}

func TestRampWindowLateAndFailed(t *testing.T) {
	now := t0
	w := newRampWindow(DefaultRampConfig(), 20*ms, 0, now) // bound 80ms
	n := fill(w, now)
	answerAll(w, n, now, 100*ms, false) // late: hold
	if st := w.state(); st.window != 4 || st.last != RampHold {
		t.Fatalf("late answers: %+v, want the window held at 4", st)
	}
	if got := w.calmAt(); !got.Equal(now.Add(100 * ms).Add(500 * ms)) {
		t.Errorf("calm at +%v, want 500ms after the late answer", got.Sub(now))
	}

	// Grow to 16, then a failure halves it once for the whole round.
	for range 2 {
		n = fill(w, now)
		answerAll(w, n, now, 20*ms, false)
		now = now.Add(20 * ms)
	}
	if st := w.state(); st.window != 16 {
		t.Fatalf("window %v, want 16", st.window)
	}
	sent := now
	n = fill(w, sent)
	now = sent.Add(30 * ms)
	w.done(sent, now, true, true)
	answerAll(w, n-1, sent, 200*ms, false) // very late: would halve, but sent before the cut
	if st := w.state(); st.window != 8 || st.last != RampBackOff {
		t.Fatalf("a failed round: %+v, want the window halved once, to 8", st)
	}
	// A failure of a request sent after the cut halves it again.
	later := now.Add(time.Millisecond)
	w.acquire(later)
	w.done(later, later.Add(10*ms), true, true)
	if st := w.state(); st.window != 4 {
		t.Fatalf("window %v, want 4", st.window)
	}
	// Past the threshold, growth is additive: +1/window per answer.
	now = later.Add(20 * ms)
	n = fill(w, now)
	answerAll(w, n, now, 20*ms, false)
	if st := w.state(); st.window < 4.9 || st.window > 5.1 {
		t.Errorf("congestion avoidance: window %v after a round of 4, want about 5", st.window)
	}

	// Requests that never reached an instance give their slot back and
	// move nothing.
	st := w.state()
	n = fill(w, now)
	for range n {
		w.done(now, now.Add(time.Second), false, true)
	}
	if got := w.state(); got.window != st.window || got.inFlight != 0 {
		t.Errorf("unanswered: %+v, want the window unchanged (%v) and no slot held", got, st.window)
	}
}

// Without a baseline the bound comes from the ramp's fastest answer.
func TestRampWindowBoundWithoutBaseline(t *testing.T) {
	w := newRampWindow(DefaultRampConfig(), 0, 0, t0)
	if w.state().bound != 0 {
		t.Fatal("a bound before any answer")
	}
	w.acquire(t0)
	w.done(t0, t0.Add(30*ms), true, false)
	if b := w.state().bound; b != 120*ms {
		t.Errorf("bound %v, want 4 × 30ms", b)
	}
}

func TestRampInitialWindowHalvesPerFlap(t *testing.T) {
	cfg := DefaultRampConfig()
	cfg.InitialWindow = 16
	for flaps, want := range []float64{16, 8, 4, 2, 1, 1, 1} {
		if got := newRampWindow(cfg, 0, flaps, t0).state().window; got != want {
			t.Errorf("%d flaps: initial window %v, want %v", flaps, got, want)
		}
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
	for _, n := range []int{10, 20, 21, 22, 500} {
		o.add(time.Duration(n)*ms, false)
	}
	o.add(0, true)
	s := o.sample()
	if s.ok != 5 || s.failed != 1 || s.median < 19*ms || s.median > 23*ms {
		t.Errorf("sample = %+v, want 5 ok, 1 failed, median about 21ms", s)
	}
}

// enter sends n requests for /login through s at now and answers them
// after lat; it returns how many were let through.
func enter(s *Shedder, now time.Time, n int, lat time.Duration, failed bool) int {
	var tks []Ticket
	for range n {
		if tk, no := s.Enter("/login", now, 0.5); no.Dep == "" {
			tks = append(tks, tk)
		}
	}
	for _, tk := range tks {
		tk.Done(now.Add(lat), true, failed)
	}
	return len(tks)
}

// feedbackShedder returns a Shedder with the default (feedback) recovery
// that has seen the backend ok long enough to know its latency (lat) and
// then down: it is shedding at the returned time.
func feedbackShedder(t *testing.T, lat time.Duration) (*Shedder, time.Time) {
	t.Helper()
	s, now := okShedder(t, DefaultShedConfig(), lat)
	if st := state(t, s, "backend", now); st.Baseline < lat*9/10 || st.Baseline > lat*11/10 {
		t.Fatalf("baseline %v after requests of %v", st.Baseline, lat)
	}
	s.Update(now, reports(bothNames, backend, backend, none))
	if st := state(t, s, "backend", now); st.State != ShedShedding {
		t.Fatalf("state %s, want shedding", st.State)
	}
	return s, now
}

// A healthy backend: the window doubles every round trip and stops
// refusing after three; the ramp ends after 500ms of calm.
func TestFeedbackRecovery(t *testing.T) {
	s, now := feedbackShedder(t, 20*ms)
	up := reports(bothNames, none, none, none)
	now = now.Add(3 * time.Second) // the outage
	s.Update(now, up)
	st := state(t, s, "backend", now)
	if st.State != ShedRecovering || st.Recovery != RecoveryFeedback || st.Window != 4 {
		t.Fatalf("back: %+v, want recovering through a window of 4", st)
	}
	if st.LatencyBound < 72*ms || st.LatencyBound > 88*ms {
		t.Errorf("bound %v, want 4 × the 20ms baseline (the histogram is within 10%%)", st.LatencyBound)
	}
	// 10 requests every 20ms (a round trip): 4, 8, then all 10 let in.
	var admitted []int
	for range 5 {
		admitted = append(admitted, enter(s, now, 10, 20*ms, false))
		now = now.Add(20 * ms)
		s.Update(now, up)
	}
	if want := []int{4, 8, 10, 10, 10}; !equalInts(admitted, want) {
		t.Errorf("admitted per round trip %v, want %v", admitted, want)
	}
	lastRefusal := t0.Add(3*time.Second + 3*time.Second + 20*ms) // in the second round
	if next := s.next(now); next.After(lastRefusal.Add(500 * ms)) {
		t.Errorf("next evaluation at %v, after the calm's end", next)
	}
	s.Update(lastRefusal.Add(499*ms), up)
	if st := state(t, s, "backend", lastRefusal.Add(499*ms)); st.State != ShedRecovering {
		t.Fatalf("before 500ms of calm: %s", st.State)
	}
	s.Update(lastRefusal.Add(500*ms), up)
	if st := state(t, s, "backend", lastRefusal.Add(500*ms)); st.State != ShedOK || st.Flaps != 0 {
		t.Fatalf("after 500ms of calm: %+v, want ok", st)
	}
	if n := enter(s, now.Add(time.Second), 1000, 20*ms, false); n != 1000 {
		t.Errorf("ok: %d of 1000 let in", n)
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// A backend that can serve only part of the returning load: its answers
// come late, the window stops growing and the excess is refused at the
// edge; the ramp does not end while it lasts.
func TestFeedbackRecoveryHoldsAnOverloadedBackend(t *testing.T) {
	s, now := feedbackShedder(t, 20*ms)
	up := reports(bothNames, none, none, none)
	now = now.Add(3 * time.Second)
	s.Update(now, up)
	for range 50 { // a second of 100 requests per round trip, all late
		enter(s, now, 100, 100*ms, false)
		now = now.Add(20 * ms)
		s.Update(now, up)
	}
	st := state(t, s, "backend", now)
	if st.State != ShedRecovering || st.Window != 4 || st.LastStep != RampHold || st.Admitted > 0.05 {
		t.Errorf("late answers for a second: %+v, want the window held at 4, the rest refused", st)
	}
	for range 5 { // failures
		enter(s, now, 100, 20*ms, true)
		now = now.Add(20 * ms)
	}
	if st := state(t, s, "backend", now); st.Window != 1 || st.LastStep != RampBackOff {
		t.Errorf("failures: %+v, want the window down to 1", st)
	}
}

// A ramp cut short by renewed shedding starts the next one with half the
// window; a completed ramp forgets it.
func TestFeedbackRecoveryAfterFlap(t *testing.T) {
	s, now := feedbackShedder(t, 20*ms)
	up, down := reports(bothNames, none, none, none), reports(bothNames, backend, backend, none)
	s.Update(now.Add(time.Second), up)
	s.Update(now.Add(time.Second+100*ms), down) // within the ramp's calm
	if st := state(t, s, "backend", now.Add(time.Second+100*ms)); st.State != ShedShedding || st.Flaps != 1 || s.Admit("backend", now, 0) {
		t.Fatalf("down mid-ramp: %+v, want shedding at once", st)
	}
	s.Update(now.Add(3*time.Second), up)
	if st := state(t, s, "backend", now.Add(3*time.Second)); st.Window != 2 {
		t.Errorf("after a flap the ramp starts with a window of %v, want 2", st.Window)
	}
}

// A request refused by a second recovering dependency gives back its slot
// of the first.
func TestTicketReleasesOnRefusal(t *testing.T) {
	s := newShedder(t, DefaultShedConfig(), []Route{{Prefix: "/both", Dependencies: []string{"backend", "mail"}}})
	s.Update(t0, reports(bothNames, bothNames, bothNames))
	s.Update(t0, reports(bothNames, none, none)) // both recovering, windows of 4
	for i := range 4 {
		if _, no := s.Enter("/both", t0, 0.5); no.Dep != "" {
			t.Fatalf("request %d refused", i)
		}
	}
	// Free one backend slot only: the next request takes it, then finds
	// mail's window full.
	s.view.Load().deps["backend"].win.done(t0, t0.Add(ms), false, false)
	if _, no := s.Enter("/both", t0, 0.5); no != (Refusal{Dep: "mail", Full: true}) {
		t.Fatalf("fifth request: %+v, want refused by mail's full window", no)
	}
	if got := s.view.Load().deps["backend"].win.state().inFlight; got != 3 {
		t.Errorf("backend holds %d slots, want 3: the refused request gave its slot back", got)
	}
}
