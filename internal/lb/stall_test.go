package lb

import (
	"strings"
	"testing"
	"time"
)

// okShedder returns a Shedder with cfg that has seen the backend ok long
// enough to know its latency (lat), at the returned time.
func okShedder(t *testing.T, cfg ShedConfig, lat time.Duration) (*Shedder, time.Time) {
	t.Helper()
	s := newShedder(t, cfg, nil)
	up := reports(bothNames, none, none, none)
	now := t0
	s.Update(now, up)
	for range 3 { // three baseline windows of a second
		enter(s, now, 50, lat, false)
		now = now.Add(time.Second)
		s.Update(now, up)
	}
	return s, now
}

// send offers a request for /login to s at at and, if it is admitted,
// sends it to an instance at once.
func send(s *Shedder, at time.Time) (Ticket, Refusal) {
	tk, no := s.Enter("/login", at, 0.5)
	if no.Dep == "" {
		tk.Sent(at)
	}
	return tk, no
}

func TestStallTime(t *testing.T) {
	cfg := DefaultStallConfig()
	for _, tt := range []struct {
		name   string
		factor float64
		tail   time.Duration
		want   time.Duration
	}{
		{"twice the p99", 2, 20 * ms, 40 * ms},
		{"at least min_time", 2, 3 * ms, 20 * ms},
		{"unknown median", 2, 0, 0},
		{"off", 0, 20 * ms, 0},
	} {
		cfg.Factor = tt.factor
		if got := cfg.stallTime(tt.tail); got != tt.want {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
}

// A hang: requests keep arriving (300/s) and none is answered. Once
// min_in_flight are in flight and nothing has come back for the stall
// time (1.5 × the p99, 20ms here), every further request is refused as
// stalled, so the requests stuck on the hung backend are those of the
// first stall time, not of a whole timeout.
func TestStallBoundsRequestsOnAHungDependency(t *testing.T) {
	s, now := okShedder(t, DefaultShedConfig(), 20*ms)
	st := state(t, s, "backend", now)
	if want := time.Duration(1.5 * float64(st.Tail)); st.StallTime != want || st.Tail < 18*ms || st.Tail > 22*ms || st.InFlight != 0 || st.Stalled {
		t.Fatalf("before the hang: %+v, want a p99 of 20ms ± 10%%, a stall time of 1.5 × it, nothing in flight", st)
	}
	var stuck []Ticket
	refused := 0
	for i := range 300 { // a second at 300/s
		at := now.Add(time.Duration(i) * time.Second / 300)
		tk, no := send(s, at)
		switch {
		case no.Dep == "":
			stuck = append(stuck, tk)
		case no.Full && no.Stalled && no.Dep == "backend":
			refused++
		default:
			t.Fatalf("request %d refused %+v, want a stall", i, no)
		}
	}
	// The arrivals within the stall time after the first went in, and the
	// one at its end.
	want := int(st.StallTime*300/time.Second) + 1
	if len(stuck) < want || len(stuck) > want+1 {
		t.Errorf("%d requests sent to the hung backend, want %d–%d (its first %v)", len(stuck), want, want+1, st.StallTime)
	}
	end := now.Add(time.Second)
	st = state(t, s, "backend", end)
	if !st.Stalled || st.Stalls != int64(refused) || st.InFlight != len(stuck) || st.State != ShedOK {
		t.Errorf("during the hang: %+v, want stalled, %d stalls, %d in flight", st, refused, len(stuck))
	}
	// The instances' timeouts fail the stuck requests: answers, but not
	// prompt ones, so the stall holds until fewer than min_in_flight are
	// left; by then the instances' breakers have opened.
	for i, tk := range stuck {
		tk.Done(end, true, true)
		_, no := send(s, end)
		if left := len(stuck) - i - 1; (left >= 4) != no.Stalled {
			t.Fatalf("%d stuck requests left: refusal %+v, want stalled only while 4 or more are", left, no)
		}
		if no.Dep == "" {
			break
		}
	}
}

// A prompt answer, ok or failed, ends a stall at once.
func TestStallEndsOnAPromptAnswer(t *testing.T) {
	s, now := okShedder(t, DefaultShedConfig(), 20*ms)
	stall := state(t, s, "backend", now).StallTime
	var mid Ticket
	at := now
	for ; at.Sub(now) <= stall; at = at.Add(2 * ms) { // a request every 2ms, none answered
		tk, no := send(s, at)
		if no.Dep != "" {
			t.Fatalf("+%v, within the stall time: refused %+v", at.Sub(now), no)
		}
		if at.Sub(now) <= stall/2 {
			mid = tk
		}
	}
	at = at.Add(2 * ms)
	if _, no := send(s, at); !no.Stalled {
		t.Fatalf("silent for %v: %+v, want stalled", at.Sub(now), no)
	}
	mid.Done(at, true, true) // a failure, but a prompt one: the dependency answers
	if _, no := send(s, at.Add(ms)); no.Dep != "" {
		t.Errorf("after a prompt answer: %+v, want admitted", no)
	}
}

// A request after a gap of more than half the stall time (the balancer
// paused, or a trickle of requests) restarts the silence.
func TestStallNotAfterAGap(t *testing.T) {
	s, now := okShedder(t, DefaultShedConfig(), 20*ms)
	stall := state(t, s, "backend", now).StallTime
	for i := range 5 { // sent, never answered
		send(s, now.Add(time.Duration(i)*ms))
	}
	late := now.Add(4*ms + stall)
	if _, no := send(s, late); no.Dep != "" {
		t.Errorf("the first request after a gap of %v: refused %+v", stall, no)
	}
	if _, no := send(s, late.Add(ms)); no.Dep != "" {
		t.Errorf("the next: refused %+v; the silence restarted with the gap", no)
	}
}

// A healthy dependency under a burst: many requests in flight at once,
// answers coming back within the stall time: nothing is refused. Nor is a
// single slow request with fewer than min_in_flight in flight.
func TestStallNotOnAHealthyBurstOrALoneSlowRequest(t *testing.T) {
	s, now := okShedder(t, DefaultShedConfig(), 20*ms)
	// A burst of 100 at once after an idle second: the silence starts
	// with the burst, not at the last answer a second ago.
	now = now.Add(time.Second)
	var tks []Ticket
	for range 100 {
		tk, no := send(s, now)
		if no.Dep != "" {
			t.Fatalf("burst refused: %+v", no)
		}
		tks = append(tks, tk)
	}
	// They come back one every ms from 20ms on (as the backend's p99 has
	// it), while 100 more arrive.
	for i, tk := range tks {
		at := now.Add(20*ms + time.Duration(i)*ms)
		tk.Done(at, true, false)
		if _, no := send(s, at); no.Dep != "" {
			t.Fatalf("request at +%v refused: %+v", at.Sub(now), no)
		}
	}

	s, now = okShedder(t, DefaultShedConfig(), 20*ms)
	for range 3 { // sent, never answered
		send(s, now)
	}
	if _, no := send(s, now.Add(time.Second)); no.Dep != "" {
		t.Errorf("3 slow requests in flight (min_in_flight 4): refused %+v", no)
	}
}

// Stall detection off (factor 0), or before the p99 is known: a hang
// is not judged at the edge.
func TestStallOff(t *testing.T) {
	cfg := DefaultShedConfig()
	cfg.Stall.Factor = 0
	s, now := okShedder(t, cfg, 20*ms)
	for i := range 100 {
		if _, no := send(s, now.Add(time.Duration(i)*ms)); no.Dep != "" {
			t.Fatalf("factor 0: request %d refused %+v", i, no)
		}
	}
	s = newShedder(t, DefaultShedConfig(), nil)
	s.Update(t0, reports(bothNames, none, none, none))
	for i := range 100 {
		if _, no := send(s, t0.Add(time.Duration(i)*ms)); no.Dep != "" {
			t.Fatalf("no p99 yet: request %d refused %+v", i, no)
		}
	}
}

func TestStallConfigValidate(t *testing.T) {
	c := DefaultShedConfig()
	c.Stall = StallConfig{Factor: -1, MinTime: 0, MinInFlight: 0}
	err := c.Validate()
	for _, want := range []string{"stall.factor", "stall.min_time", "stall.min_in_flight"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate: %v, want an error naming %s", err, want)
		}
	}
}

// A request counts in flight only once sent to an instance: slow uploads
// held at the edge (their bodies still coming) are not requests the
// dependency leaves unanswered.
func TestStallCountsOnlyRequestsSent(t *testing.T) {
	s, now := okShedder(t, DefaultShedConfig(), 20*ms)
	for i := range 100 { // entered, their bodies never come
		if _, no := s.Enter("/login", now.Add(time.Duration(i)*ms), 0.5); no.Dep != "" {
			t.Fatalf("upload %d refused: %+v", i, no)
		}
	}
	if st := state(t, s, "backend", now.Add(100*ms)); st.InFlight != 0 || st.Stalled {
		t.Errorf("100 uploads at the edge: %+v, want nothing in flight, no stall", st)
	}
}
