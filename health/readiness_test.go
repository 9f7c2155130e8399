package health

import (
	"testing"
	"time"
)

func TestReadiness(t *testing.T) {
	t0 := time.Date(2018, 3, 1, 12, 0, 0, 0, time.UTC)
	type step struct {
		at          time.Duration // since t0
		event       string        // "start", "drain" or "" (just look)
		wantChanged bool
		want        Phase
	}
	tests := []struct {
		name   string
		warmup time.Duration
		steps  []step
	}{
		{"zero value is starting", 0, []step{
			{0, "", false, PhaseStarting},
			{time.Hour, "", false, PhaseStarting},
		}},
		{"no warm-up: ready at start", 0, []step{
			{time.Second, "start", true, PhaseReady},
		}},
		{"negative warm-up means none", -time.Second, []step{
			{0, "start", true, PhaseReady},
		}},
		{"warm-up measured from start", 10 * time.Second, []step{
			{5 * time.Second, "", false, PhaseStarting},
			{7 * time.Second, "start", true, PhaseWarming},
			{16*time.Second + 999*time.Millisecond, "", false, PhaseWarming},
			{17 * time.Second, "", false, PhaseReady},
			{time.Hour, "", false, PhaseReady},
		}},
		{"second start does not restart warm-up", 10 * time.Second, []step{
			{0, "start", true, PhaseWarming},
			{9 * time.Second, "start", false, PhaseWarming},
			{10 * time.Second, "", false, PhaseReady},
		}},
		{"clock going backwards stays warming", 10 * time.Second, []step{
			{time.Minute, "start", true, PhaseWarming},
			{0, "", false, PhaseWarming},
		}},
		{"drain when ready", 0, []step{
			{0, "start", true, PhaseReady},
			{time.Second, "drain", true, PhaseDraining},
			{time.Hour, "", false, PhaseDraining},
		}},
		{"drain while warming", time.Minute, []step{
			{0, "start", true, PhaseWarming},
			{time.Second, "drain", true, PhaseDraining},
			{2 * time.Minute, "", false, PhaseDraining},
		}},
		{"drain before start", 0, []step{
			{0, "drain", true, PhaseDraining},
		}},
		{"draining is final", 0, []step{
			{0, "drain", true, PhaseDraining},
			{time.Second, "drain", false, PhaseDraining},
			{2 * time.Second, "start", false, PhaseDraining},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := Readiness{Warmup: tt.warmup}
			for i, s := range tt.steps {
				now := t0.Add(s.at)
				var changed bool
				switch s.event {
				case "start":
					changed = r.Start(now)
				case "drain":
					changed = r.Drain()
				case "":
				default:
					t.Fatalf("bad event %q", s.event)
				}
				if changed != s.wantChanged {
					t.Errorf("step %d: %s changed = %v, want %v", i, s.event, changed, s.wantChanged)
				}
				if got := r.Phase(now); got != s.want {
					t.Errorf("step %d (%s at +%v): phase = %v, want %v", i, s.event, s.at, got, s.want)
				}
			}
		})
	}
}

func TestPhaseString(t *testing.T) {
	for p, want := range map[Phase]string{
		PhaseStarting: "starting",
		PhaseWarming:  "warming",
		PhaseReady:    "ready",
		PhaseDraining: "draining",
		Phase(-1):     "unknown",
		Phase(4):      "unknown",
	} {
		if got := p.String(); got != want {
			t.Errorf("Phase(%d).String() = %q, want %q", int(p), got, want)
		}
	}
}

func TestReadyFor(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	r := Readiness{Warmup: 2 * time.Second}
	if got := r.ReadyFor(t0); got != 0 {
		t.Errorf("before Start: %v, want 0", got)
	}
	r.Start(t0)
	if got := r.ReadyFor(t0.Add(time.Second)); got != 0 {
		t.Errorf("warming: %v, want 0", got)
	}
	if got := r.ReadyFor(t0.Add(5 * time.Second)); got != 3*time.Second {
		t.Errorf("ready: %v, want 3s (5s since Start less the 2s warm-up)", got)
	}
	r.Drain()
	if got := r.ReadyFor(t0.Add(6 * time.Second)); got != 0 {
		t.Errorf("draining: %v, want 0", got)
	}
}
