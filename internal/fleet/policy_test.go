package fleet

import (
	"math"
	"testing"
	"time"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

func TestChecksGraceAndThreshold(t *testing.T) {
	c := NewChecks(3, 10*time.Second, t0)
	// Failures inside the grace period are not counted, however many.
	for i := range 20 {
		if tr := c.Observe(false, at(time.Duration(i)*400*time.Millisecond)); tr != Unchanged {
			t.Fatalf("in grace: transition %v", tr)
		}
	}
	if c.Failures() != 0 || c.Unhealthy() {
		t.Fatalf("in grace: failures %d unhealthy %v", c.Failures(), c.Unhealthy())
	}
	if !c.InGrace(at(9999*time.Millisecond)) || c.InGrace(at(10*time.Second)) {
		t.Fatal("grace ends at 10s")
	}
	steps := []struct {
		ok   bool
		want Transition
		fail int
	}{
		{false, Unchanged, 1},
		{false, Unchanged, 2},
		{true, Unchanged, 0}, // a pass resets the count
		{false, Unchanged, 1},
		{false, Unchanged, 2},
		{false, BecameUnhealthy, 3},
		{false, Unchanged, 4}, // reported once
		{true, Recovered, 0},
		{true, Unchanged, 0},
	}
	for i, s := range steps {
		now := at(10*time.Second + time.Duration(i)*2*time.Second)
		if got := c.Observe(s.ok, now); got != s.want || c.Failures() != s.fail {
			t.Errorf("step %d (ok=%v): transition %v failures %d, want %v %d", i, s.ok, got, c.Failures(), s.want, s.fail)
		}
	}
}

func TestChecksForgive(t *testing.T) {
	c := NewChecks(2, 0, t0)
	c.Observe(false, t0)
	if c.Observe(false, t0) != BecameUnhealthy {
		t.Fatal("want unhealthy")
	}
	c.Forgive()
	if c.Unhealthy() || c.Failures() != 0 {
		t.Fatal("forgiven, still counted")
	}
	if c.Observe(false, t0) != Unchanged || c.Observe(false, t0) != BecameUnhealthy {
		t.Fatal("a forgiven instance needs a full threshold again")
	}
}

func TestChecksNoGrace(t *testing.T) {
	c := NewChecks(0, 0, t0) // threshold below 1 counts as 1
	if c.Observe(false, t0) != BecameUnhealthy {
		t.Fatal("threshold 1, no grace: the first failure is enough")
	}
}

func TestBudgetSlidingWindow(t *testing.T) {
	b := NewBudget(2, time.Minute)
	steps := []struct {
		at   time.Duration
		want bool
		left int
	}{
		{0, true, 1},
		{10 * time.Second, true, 0},
		{20 * time.Second, false, 0},
		{59 * time.Second, false, 0},
		{60 * time.Second, true, 0}, // the first slid out and was reused
		{69 * time.Second, false, 0},
		{70 * time.Second, true, 0},
		{200 * time.Second, true, 1},
	}
	for _, s := range steps {
		if got := b.Take(at(s.at)); got != s.want {
			t.Errorf("Take at %s = %v, want %v", s.at, got, s.want)
		}
		if got := b.Remaining(at(s.at)); got != s.left {
			t.Errorf("Remaining at %s = %d, want %d", s.at, got, s.left)
		}
	}
	if len(b.spent) > 2 {
		t.Errorf("budget keeps %d timestamps, more than its max", len(b.spent))
	}
}

func TestBudgetUnlimited(t *testing.T) {
	b := NewBudget(-1, time.Minute)
	for i := range 1000 {
		if !b.Take(at(time.Duration(i) * time.Millisecond)) {
			t.Fatal("an unlimited budget refused")
		}
	}
	if b.Remaining(t0) != -1 || len(b.spent) != 0 {
		t.Fatal("an unlimited budget keeps nothing")
	}
}

func TestFreeze(t *testing.T) {
	type step struct {
		at     time.Duration
		do     func(f *Freeze, now time.Time)
		frozen bool
	}
	fail := func(k string) func(*Freeze, time.Time) { return func(f *Freeze, now time.Time) { f.Fail(k, now) } }
	gone := func(k string) func(*Freeze, time.Time) { return func(f *Freeze, now time.Time) { f.Gone(k, now) } }
	recover := func(k string) func(*Freeze, time.Time) { return func(f *Freeze, _ time.Time) { f.Recover(k) } }
	nothing := func(*Freeze, time.Time) {}
	tests := []struct {
		name  string
		share float64
		size  int
		steps []step
	}{
		{"one of three is not correlated", 0.5, 3, []step{
			{0, fail("a"), false},
			{time.Hour, nothing, false}, // still failing, still alone
		}},
		{"two of three failing freeze; a pass unfreezes", 0.5, 3, []step{
			{0, fail("a"), false},
			{time.Second, fail("b"), true},
			{time.Hour, nothing, true}, // live failures count however old
			{time.Hour, recover("a"), false},
		}},
		{"a gone failure counts for the window", 0.5, 3, []step{
			{0, fail("a"), false},
			{0, gone("a"), false},
			{30 * time.Second, fail("b"), true},
			{59 * time.Second, nothing, true},
			{60 * time.Second, nothing, false}, // a's failure expired
		}},
		{"the slot's next instance passing clears a gone failure", 0.5, 3, []step{
			{0, fail("a"), false},
			{0, gone("a"), false},
			{time.Second, recover("a"), false},
			{2 * time.Second, fail("b"), false},
		}},
		{"a crash-looping slot counts once", 0.5, 3, []step{
			{0, fail("a"), false}, {0, gone("a"), false},
			{time.Second, fail("a"), false}, {time.Second, gone("a"), false},
			{3 * time.Second, fail("a"), false}, {3 * time.Second, gone("a"), false},
			{4 * time.Second, fail("b"), true},
		}},
		{"a fleet of one never freezes", 0.5, 1, []step{
			{0, fail("a"), false},
		}},
		{"two of two freeze at share 0.5", 0.5, 2, []step{
			{0, fail("a"), false},
			{0, fail("b"), true},
		}},
		{"share is a strict bound: 2 of 4 at 0.5 is not more", 0.5, 4, []step{
			{0, fail("a"), false},
			{0, fail("b"), false},
			{0, fail("c"), true},
		}},
		{"negative share disables", -1, 3, []step{
			{0, fail("a"), false}, {0, fail("b"), false}, {0, fail("c"), false},
		}},
		{"gone without fail does nothing", 0.5, 2, []step{
			{0, gone("a"), false}, {0, fail("b"), false},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := NewFreeze(tt.share, time.Minute, tt.size)
			was := false
			for i, s := range tt.steps {
				now := at(s.at)
				s.do(f, now)
				frozen, changed := f.Update(now)
				if frozen != s.frozen {
					t.Fatalf("step %d at %s: frozen %v, want %v", i, s.at, frozen, s.frozen)
				}
				if changed != (frozen != was) || f.Frozen() != frozen {
					t.Fatalf("step %d: changed %v, was %v, now %v", i, changed, was, frozen)
				}
				was = frozen
			}
		})
	}
}

func TestGuardrails(t *testing.T) {
	d := DefaultConfig() // size 3: budget 1 per minute, freeze above 50%
	c := &d
	g := NewGuardrails(c)
	if d := g.Request(t0); d != Replace {
		t.Fatalf("first request: %v", d)
	}
	if d := g.Request(at(time.Second)); d != HoldBudget {
		t.Fatalf("second request within the minute: %v", d)
	}
	g.Freeze.Fail("slot-0", at(2*time.Second))
	g.Freeze.Fail("slot-1", at(2*time.Second))
	g.Freeze.Update(at(2 * time.Second))
	if d := g.Request(at(2 * time.Minute)); d != HoldFrozen {
		t.Fatalf("frozen: %v", d)
	}
	if g.Budget.Remaining(at(2*time.Minute)) != 1 {
		t.Fatal("a frozen request spent budget")
	}
	g.Freeze.Recover("slot-0")
	g.Freeze.Update(at(2 * time.Minute))
	if d := g.Request(at(2 * time.Minute)); d != Replace {
		t.Fatalf("after the freeze: %v", d)
	}
	for d, want := range map[Decision]string{Replace: "replace", HoldFrozen: "frozen", HoldBudget: "budget_exhausted", Decision(9): "unknown"} {
		if d.String() != want {
			t.Errorf("%d.String() = %q, want %q", d, d.String(), want)
		}
	}
}

func TestBackoff(t *testing.T) {
	b := NewBackoff(BackoffConfig{Base: time.Second, Max: 30 * time.Second, Reset: time.Minute})
	now := t0
	var got []time.Duration
	for range 8 {
		// Each process runs 2s before it exits: not a stable run.
		d := b.Exited(now, now.Add(2*time.Second))
		got = append(got, d)
		now = now.Add(2*time.Second + d)
	}
	want := []time.Duration{1, 2, 4, 8, 16, 30, 30, 30}
	for i := range want {
		if got[i] != want[i]*time.Second {
			t.Fatalf("delays %v, want %v seconds", got, want)
		}
	}
	// A stable run starts over.
	if d := b.Exited(now, now.Add(time.Minute)); d != time.Second || b.Exits() != 1 {
		t.Fatalf("after a stable run: %s (exits %d)", d, b.Exits())
	}
}

func TestBackoffNoOverflow(t *testing.T) {
	b := NewBackoff(BackoffConfig{Base: time.Hour, Max: math.MaxInt64, Reset: math.MaxInt64})
	for range 200 {
		if d := b.Exited(t0, t0); d <= 0 {
			t.Fatalf("delay %d", d)
		}
	}
}
