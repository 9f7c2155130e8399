package fleet

import (
	"slices"
	"testing"
	"time"
)

// The schedule's tests drive the Plan on explicit instants, as the
// others do: a window's lead, its opening and closing are Ticks at those
// instants, and Next must name them.

// scheduleConfig is testConfig(size) with the windows ws and lead.
func scheduleConfig(size int, lead time.Duration, ws ...Window) Config {
	return testConfig(size, func(c *Config) { c.Schedule, c.ScheduleLead = ws, lead })
}

func wantNext(t *testing.T, p *Plan, want time.Time) {
	t.Helper()
	if got := p.Next(); !got.Equal(want) {
		t.Fatalf("Next = %v, want %v", got.UTC(), want.UTC())
	}
}

func startedAll(at time.Duration, ids ...string) []step {
	var out []step
	for _, id := range ids {
		out = append(out, step{at, started(id), nil})
	}
	return out
}

// A weekday window in Europe/Berlin across the spring daylight-saving
// change: 08:00 local is 07:00 UTC on Friday and 06:00 UTC on Monday. The
// extra instances start schedule_lead (default 2m) before it opens and
// stop, newest first, as it closes, not before.
func TestPlanScheduleTimeZoneAndDST(t *testing.T) {
	base := time.Date(2026, 3, 27, 6, 0, 0, 0, time.UTC) // Friday, 07:00 CET
	p := newPlan(t, scheduleConfig(2, DefaultScheduleLead, Window{
		Name: "morning-peak", Start: "0 8 * * 1-5", Duration: 2 * time.Hour, TimeZone: "Europe/Berlin", Instances: 4,
	}), nil)
	runFrom(t, p, base, up(2))
	wantNext(t, p, base.Add(58*time.Minute)) // 07:58 CET
	runFrom(t, p, base, []step{
		{58*time.Minute - time.Second, tick, nil},
		{58 * time.Minute, tick, []string{
			`scaled 2->4 window=morning-peak detail=window "morning-peak" (4 per host) Fri 08:00 to Fri 10:00 Europe/Berlin`,
			"start i-3 slot=2", "start i-4 slot=3",
		}},
	})
	runFrom(t, p, base, startedAll(58*time.Minute, "i-3", "i-4"))
	runFrom(t, p, base, []step{
		{59 * time.Minute, ready("i-3"), []string{"ready i-3 after=1m0s"}},
		{59 * time.Minute, ready("i-4"), []string{"ready i-4 after=1m0s"}},
	})
	if got := p.Announced(); !slices.Equal(got, []string{"i-1", "i-2", "i-3", "i-4"}) {
		t.Errorf("announced %v", got)
	}
	wantNext(t, p, base.Add(3*time.Hour)) // 10:00 CET
	st := p.Schedule()
	if st.Size != 2 || st.Target != 4 || st.Wanted != 4 || st.Window != "morning-peak" || st.Hosts != 1 ||
		!st.Opens.Equal(base.Add(time.Hour)) || !st.Closes.Equal(base.Add(3*time.Hour)) || !st.NextChange.Equal(base.Add(3*time.Hour)) {
		t.Errorf("schedule status %+v", st)
	}

	runFrom(t, p, base, []step{
		{3*time.Hour - time.Second, tick, nil}, // open until it closes
		{3 * time.Hour, tick, []string{
			"scaled 4->2 detail=size 2: no open window needs more",
			"stop i-4 reason=scale_down", "stop i-3 reason=scale_down",
		}},
	})
	wantStates(t, p, "0 i-1 running", "1 i-2 running", "2 i-3 stopping (scale_down)", "3 i-4 stopping (scale_down)")
	if got := p.Announced(); !slices.Equal(got, []string{"i-1", "i-2"}) {
		t.Errorf("announced %v after the scale-down", got)
	}
	runFrom(t, p, base, []step{
		{3*time.Hour + time.Second, exited("i-3", stopped), []string{"stopped i-3 reason=scale_down detail=exit status 0"}},
		{3*time.Hour + 2*time.Second, exited("i-4", stopped), []string{"stopped i-4 reason=scale_down detail=exit status 0"}},
	})
	wantStates(t, p, "0 i-1 running", "1 i-2 running")
	if p.Known("i-3") || p.Known("i-4") || len(p.slots) != 2 {
		t.Errorf("scaled-away slots still listed: %d slots", len(p.slots))
	}

	// Monday, after the change to CEST: 07:58 local is 05:58 UTC.
	monday := time.Date(2026, 3, 30, 5, 58, 0, 0, time.UTC)
	wantNext(t, p, monday)
	runFrom(t, p, monday, []step{{0, tick, []string{
		`scaled 2->4 window=morning-peak detail=window "morning-peak" (4 per host) Mon 08:00 to Mon 10:00 Europe/Berlin`,
		"start i-5 slot=2", "start i-6 slot=3",
	}}})
	wantNext(t, p, time.Date(2026, 3, 30, 8, 0, 0, 0, time.UTC))
}

// Overlapping windows: the fleet keeps the largest need of the open ones,
// and steps down window by window as they close.
func TestPlanScheduleOverlappingWindowsTakeTheMax(t *testing.T) {
	p := newPlan(t, scheduleConfig(2, 0,
		Window{Name: "long", Start: "0 13 * * *", Duration: 3 * time.Hour, Instances: 4},
		Window{Name: "peak", Start: "0 14 * * *", Duration: time.Hour, Instances: 6},
	), nil) // t0 is 12:00 UTC; lead 0
	run(t, p, up(2))
	wantNext(t, p, at(time.Hour))
	run(t, p, []step{{time.Hour, tick, []string{
		`scaled 2->4 window=long detail=window "long" (4 per host) Sun 13:00 to Sun 16:00 UTC`,
		"start i-3 slot=2", "start i-4 slot=3",
	}}})
	run(t, p, startedAll(time.Hour, "i-3", "i-4"))
	wantNext(t, p, at(2*time.Hour))
	run(t, p, []step{{2 * time.Hour, tick, []string{
		`scaled 4->6 window=peak detail=window "peak" (6 per host) Sun 14:00 to Sun 15:00 UTC`,
		"start i-5 slot=4", "start i-6 slot=5",
	}}})
	run(t, p, startedAll(2*time.Hour, "i-5", "i-6"))
	wantNext(t, p, at(3*time.Hour))
	run(t, p, []step{{3 * time.Hour, tick, []string{
		`scaled 6->4 window=long detail=window "long" (4 per host) Sun 13:00 to Sun 16:00 UTC`,
		"stop i-6 reason=scale_down", "stop i-5 reason=scale_down",
	}}})
	wantNext(t, p, at(4*time.Hour))
	run(t, p, []step{{4 * time.Hour, tick, []string{
		"scaled 4->2 detail=size 2: no open window needs more",
		"stop i-4 reason=scale_down", "stop i-3 reason=scale_down",
	}}})
	wantNext(t, p, at(25*time.Hour)) // tomorrow's "long"
}

// A fleet-scope window is split over the live hosts: ceil(10/3) = 4 here.
// While it is open, hosts joining do not lower this host's share (no
// scale-down before it closes); hosts leaving raise it at once.
func TestPlanScheduleFleetScopeSplitsOverHosts(t *testing.T) {
	p := newPlan(t, scheduleConfig(2, 0,
		Window{Name: "sale", Start: "0 13 * * *", Duration: 2 * time.Hour, Instances: 10, Scope: ScopeFleet},
	), nil)
	p.SetHosts(3)
	run(t, p, up(2))
	run(t, p, []step{{time.Hour, tick, []string{
		`scaled 2->4 window=sale detail=window "sale" (10 over 3 hosts) Sun 13:00 to Sun 15:00 UTC`,
		"start i-3 slot=2", "start i-4 slot=3",
	}}})
	run(t, p, startedAll(time.Hour, "i-3", "i-4"))
	p.SetHosts(4) // ceil(10/4) = 3, but the window is open: keep 4
	run(t, p, []step{{time.Hour + time.Minute, tick, nil}})
	p.SetHosts(2)
	run(t, p, []step{{time.Hour + 2*time.Minute, tick, []string{
		`scaled 4->5 window=sale detail=window "sale" (10 over 2 hosts) Sun 13:00 to Sun 15:00 UTC`,
		"start i-5 slot=4",
	}}})
	run(t, p, startedAll(time.Hour+2*time.Minute, "i-5"))
	p.SetHosts(5)
	run(t, p, []step{
		{time.Hour + 3*time.Minute, tick, nil},
		{3 * time.Hour, tick, []string{
			"scaled 5->2 detail=size 2: no open window needs more",
			"stop i-5 reason=scale_down", "stop i-4 reason=scale_down", "stop i-3 reason=scale_down",
		}},
		// Tomorrow, over 5 hosts: ceil(10/5) = 2 is size already.
		{25 * time.Hour, tick, nil},
	})
	if st := p.Schedule(); st.Wanted != 2 || st.Window != "" || st.Hosts != 5 {
		t.Errorf("schedule status %+v", st)
	}
	p.SetHosts(0)
	if st := p.Schedule(); st.Hosts != 1 {
		t.Errorf("hosts %d after SetHosts(0), want 1", st.Hosts)
	}
}

// The window closes during a rolling restart: the scale-down waits for
// the restart to end (it would stop a slot the restart is working
// through), then happens at the next tick.
func TestPlanScheduleNoScaleDownDuringRoll(t *testing.T) {
	p := newPlan(t, scheduleConfig(1, 0,
		Window{Name: "w", Start: "0 13 * * *", Duration: time.Hour, Instances: 2},
	), nil)
	run(t, p, up(1))
	const roll = 2*time.Hour - 10*time.Second
	run(t, p, []step{
		{time.Hour, tick, []string{`scaled 1->2 window=w detail=window "w" (2 per host) Sun 13:00 to Sun 14:00 UTC`, "start i-2 slot=1"}},
		{time.Hour, started("i-2"), nil},
		{time.Hour, ready("i-2"), []string{"ready i-2"}},
		{roll, rollStart, []string{"start i-3 slot=0 surge"}},
		{roll, started("i-3"), nil},
		{2 * time.Hour, tick, nil}, // closed, but the restart is under way
	})
	if st := p.Schedule(); st.Target != 2 || st.Wanted != 1 {
		t.Errorf("during the restart: target %d wanted %d, want 2 and 1", st.Target, st.Wanted)
	}
	run(t, p, []step{
		{2*time.Hour + time.Second, ready("i-3"), []string{"ready i-3 after=11s", "stop i-1 reason=rolling_restart", "replaced i-1 reason=rolling_restart successor=i-3"}},
		{2*time.Hour + 2*time.Second, exited("i-1", stopped), []string{"stopped i-1 reason=rolling_restart detail=exit status 0", "start i-4 slot=1 surge"}},
		{2*time.Hour + 2*time.Second, started("i-4"), nil},
		{2*time.Hour + 3*time.Second, ready("i-4"), []string{"ready i-4 after=1s", "stop i-2 reason=rolling_restart", "replaced i-2 reason=rolling_restart successor=i-4"}},
		{2*time.Hour + 4*time.Second, exited("i-2", stopped), []string{"stopped i-2 reason=rolling_restart detail=exit status 0", "roll_done"}},
		{2*time.Hour + 5*time.Second, tick, []string{"scaled 2->1 detail=size 1: no open window needs more", "stop i-4 reason=scale_down"}},
	})
	wantStates(t, p, "0 i-3 running", "1 i-4 stopping (scale_down)")
}

// Booting inside a window starts the extra instances with the others.
func TestPlanScheduleBootInsideWindow(t *testing.T) {
	p := newPlan(t, scheduleConfig(1, 0,
		Window{Name: "w", Start: "0 12 * * *", Duration: time.Hour, Instances: 3},
	), nil)
	run(t, p, []step{{30 * time.Minute, boot, []string{
		`scaled 1->3 window=w detail=window "w" (3 per host) Sun 12:00 to Sun 13:00 UTC`,
		"start i-1 slot=0", "start i-2 slot=1", "start i-3 slot=2",
	}}})
	wantNext(t, p, at(time.Hour))
}

// The freeze's share and a percentage budget are of the current target:
// two failing instances of six are not correlated (of the static size,
// two, they would freeze the fleet), and 25% of six is one replacement.
func TestPlanScheduleGuardrailsFollowTarget(t *testing.T) {
	g := NewGuardrails(&Config{Size: 2, Budget: BudgetConfig{Max: Percent(25), Window: time.Minute}, Freeze: FreezeConfig{Share: 0.5, Window: time.Minute}})
	p := newPlan(t, scheduleConfig(2, 0,
		Window{Name: "w", Start: "0 13 * * *", Duration: time.Hour, Instances: 6},
	), g)
	run(t, p, up(2))
	run(t, p, []step{{time.Hour, tick, []string{
		`scaled 2->6 window=w detail=window "w" (6 per host) Sun 13:00 to Sun 14:00 UTC`,
		"start i-3 slot=2", "start i-4 slot=3", "start i-5 slot=4", "start i-6 slot=5",
	}}})
	if g.Freeze.size != 6 || g.Budget.max != 1 {
		t.Errorf("guardrails sized %d with budget %d, want 6 and 1", g.Freeze.size, g.Budget.max)
	}
	f := time.Hour + time.Minute
	run(t, p, []step{
		{f, check("i-1", false), nil},
		{f, check("i-2", false), nil}, // 2 of 6: not frozen
		{f + 2*time.Second, check("i-1", false), nil},
		{f + 2*time.Second, check("i-2", false), nil},
		{f + 4*time.Second, check("i-1", false), []string{"unhealthy i-1", "start i-7 slot=0"}},
		{f + 4*time.Second, started("i-7"), []string{"stop i-1 reason=liveness", "replaced i-1 reason=liveness successor=i-7"}},
		{f + 4*time.Second, check("i-2", false), []string{"unhealthy i-2", "budget_exhausted i-2"}},
	})
	run(t, p, []step{{2 * time.Hour, tick, []string{
		"scaled 6->2 detail=size 2: no open window needs more",
		"stop i-6 reason=scale_down", "stop i-5 reason=scale_down", "stop i-4 reason=scale_down", "stop i-3 reason=scale_down",
	}}})
	if g.Freeze.size != 2 || g.Budget.max != 1 {
		t.Errorf("guardrails sized %d with budget %d after the window, want 2 and 1", g.Freeze.size, g.Budget.max)
	}
}

// A slot scaled away drops its pending restart; one whose process is
// still stopping is taken back as it is when the schedule asks for it
// again.
func TestPlanScheduleSlotsComeAndGo(t *testing.T) {
	p := newPlan(t, scheduleConfig(1, 0,
		Window{Name: "a", Start: "0 13 * * *", Duration: time.Hour, Instances: 2},
		Window{Name: "b", Start: "1 14 * * *", Duration: time.Hour, Instances: 2},
		Window{Name: "c", Start: "2 15 * * *", Duration: time.Hour, Instances: 2},
	), nil)
	run(t, p, up(1))
	run(t, p, []step{
		{time.Hour, tick, []string{`scaled 1->2 window=a detail=window "a" (2 per host) Sun 13:00 to Sun 14:00 UTC`, "start i-2 slot=1"}},
		{time.Hour, started("i-2"), nil},
		// It crashes just before the window closes: its restart is due
		// after the close, and dropped.
		{2*time.Hour - 500*time.Millisecond, exited("i-2", exit1), []string{"crashed i-2 after=1s detail=exit status 1"}},
		{2 * time.Hour, tick, []string{"scaled 2->1 detail=size 1: no open window needs more"}},
		{2*time.Hour + time.Second, tick, nil},
	})
	wantStates(t, p, "0 i-1 running")
	run(t, p, []step{
		{2*time.Hour + time.Minute, tick, []string{`scaled 1->2 window=b detail=window "b" (2 per host) Sun 14:01 to Sun 15:01 UTC`, "start i-3 slot=1"}},
		{2*time.Hour + time.Minute, started("i-3"), nil},
		{3*time.Hour + time.Minute, tick, []string{"scaled 2->1 detail=size 1: no open window needs more", "stop i-3 reason=scale_down"}},
		// i-3 takes its time to stop; "c" opens meanwhile.
		{3*time.Hour + 2*time.Minute, tick, []string{`scaled 1->2 window=c detail=window "c" (2 per host) Sun 15:02 to Sun 16:02 UTC`, "start i-4 slot=1"}},
		{3*time.Hour + 2*time.Minute, started("i-4"), nil},
	})
	wantStates(t, p, "0 i-1 running", "1 i-3 stopping (scale_down)", "1 i-4 starting")
	run(t, p, []step{
		{3*time.Hour + 3*time.Minute, exited("i-3", stopped), []string{"stopped i-3 reason=scale_down detail=exit status 0"}},
		{3*time.Hour + 4*time.Minute, ready("i-4"), []string{"ready i-4 after=2m0s"}},
	})
	wantStates(t, p, "0 i-1 running", "1 i-4 running")
}
