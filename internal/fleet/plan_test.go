package fleet

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// The Plan's tests drive it as the Fleet does, on a fake clock (t0 and at
// are policy_test.go's): every step is one observation or command at a
// time, and the actions it returns, shown one a line.

// show renders actions compactly: kind, ID, then the fields that are set.
func show(acts []Action) []string {
	var out []string
	for _, a := range acts {
		parts := []string{string(a.Kind)}
		if a.ID != "" {
			parts = append(parts, a.ID)
		}
		if a.Kind == ActStart {
			parts = append(parts, fmt.Sprintf("slot=%d", a.Slot))
		}
		if a.Kind == ActScaled {
			parts = append(parts, fmt.Sprintf("%d->%d", a.From, a.Target))
		}
		for _, f := range []struct {
			on   bool
			text string
		}{
			{a.Reason != "", "reason=" + a.Reason},
			{a.Successor != "", "successor=" + a.Successor},
			{a.Restart, "restart"},
			{a.Surge, "surge"},
			{a.PortTaken, "port_taken"},
			{a.After != 0, "after=" + a.After.String()},
			{a.Failing != 0, fmt.Sprintf("failing=%d", a.Failing)},
			{a.Window != "", "window=" + a.Window},
			{a.Detail != "", "detail=" + a.Detail},
			{a.Err != nil, fmt.Sprintf("err=%v", a.Err)},
		} {
			if f.on {
				parts = append(parts, f.text)
			}
		}
		out = append(out, strings.Join(parts, " "))
	}
	return out
}

// step is one input to the plan at t0+at and the actions it must return.
type step struct {
	at   time.Duration
	in   func(p *Plan, now time.Time) []Action
	want []string
}

func boot(p *Plan, now time.Time) []Action { return p.Boot(now) }

func tick(p *Plan, now time.Time) []Action { return p.Tick(now) }

func started(id string) func(*Plan, time.Time) []Action {
	return func(p *Plan, now time.Time) []Action { return p.Started(id, now) }
}

func startFailed(id string, err error) func(*Plan, time.Time) []Action {
	return func(p *Plan, now time.Time) []Action { return p.StartFailed(id, err, now) }
}

func ready(id string) func(*Plan, time.Time) []Action {
	return func(p *Plan, now time.Time) []Action { return p.Ready(id, now) }
}

func check(id string, ok bool) func(*Plan, time.Time) []Action {
	return func(p *Plan, now time.Time) []Action {
		c := Probe{Time: now, Target: "127.0.0.1:1/livez", OK: ok}
		if !ok {
			c.Error = "503 Service Unavailable"
		}
		return p.Checked(id, c, now)
	}
}

func exited(id string, x Exit) func(*Plan, time.Time) []Action {
	return func(p *Plan, now time.Time) []Action { return p.Exited(id, x, now) }
}

func rollStart(p *Plan, now time.Time) []Action {
	acts, err := p.Roll(now)
	if err != nil {
		return []Action{{Kind: "error", Err: err}}
	}
	return acts
}

func cancelRoll(p *Plan, now time.Time) []Action { return p.CancelRoll(context.Canceled, now) }

var (
	exit1   = Exit{Status: "exit status 1"}
	killed  = Exit{Status: "signal: killed"}
	stopped = Exit{Status: "exit status 0"}
	errBoom = errors.New("boom")
)

// testConfig is the default configuration (grace 10s, threshold 3, budget
// a quarter of size per minute, freeze above half, backoff 1s to 30s) with
// size instances, changed by edit.
func testConfig(size int, edit func(*Config)) Config {
	c := DefaultConfig()
	c.Size = size
	if edit != nil {
		edit(&c)
	}
	c.Resolve()
	return c
}

func newPlan(t *testing.T, cfg Config, rails Guardrails) *Plan {
	t.Helper()
	p, err := NewPlan(cfg, rails)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// run feeds steps to p in order, at t0 + each step's at.
func run(t *testing.T, p *Plan, steps []step) {
	t.Helper()
	runFrom(t, p, t0, steps)
}

// runFrom feeds steps to p in order, at base + each step's at.
func runFrom(t *testing.T, p *Plan, base time.Time, steps []step) {
	t.Helper()
	for i, s := range steps {
		got := show(s.in(p, base.Add(s.at)))
		if diff := cmp.Diff(s.want, got); diff != "" {
			t.Fatalf("step %d at %s: actions (-want +got):\n%s", i, s.at, diff)
		}
	}
}

// up boots a plan of size, every instance started and ready at 0 (IDs i-1
// to i-size).
func up(size int) []step {
	var starts []string
	steps := []step{{0, boot, nil}}
	for i := 1; i <= size; i++ {
		starts = append(starts, fmt.Sprintf("start i-%d slot=%d", i, i-1))
		steps = append(steps, step{0, started(fmt.Sprintf("i-%d", i)), nil})
	}
	steps[0].want = starts
	for i := 1; i <= size; i++ {
		id := fmt.Sprintf("i-%d", i)
		steps = append(steps, step{0, ready(id), []string{"ready " + id}})
	}
	return steps
}

func states(p *Plan) []string {
	var out []string
	for _, s := range p.Status() {
		e := fmt.Sprintf("%d %s %s", s.Slot, s.ID, s.State)
		if s.Reason != "" {
			e += " (" + s.Reason + ")"
		}
		out = append(out, e)
	}
	return out
}

func wantStates(t *testing.T, p *Plan, want ...string) {
	t.Helper()
	if diff := cmp.Diff(want, states(p)); diff != "" {
		t.Errorf("status (-want +got):\n%s", diff)
	}
}

func TestPlanBootAndReady(t *testing.T) {
	p := newPlan(t, testConfig(2, nil), nil)
	run(t, p, []step{
		{0, boot, []string{"start i-1 slot=0", "start i-2 slot=1"}},
		{0, started("i-1"), nil},
		{0, started("i-2"), nil},
		{1500 * time.Millisecond, ready("i-1"), []string{"ready i-1 after=1.5s"}},
		{2 * time.Second, ready("i-1"), nil}, // only the first pass counts
		{2 * time.Second, ready("i-9"), nil}, // unknown: ignored
	})
	wantStates(t, p, "0 i-1 running", "1 i-2 starting")
	if got := p.Announced(); !slices.Equal(got, []string{"i-1", "i-2"}) {
		t.Errorf("announced %v: starting instances are announced too", got)
	}
	if !p.Next().IsZero() {
		t.Errorf("Next = %v with nothing scheduled", p.Next())
	}
}

// Replacement on the configured check: failures in grace do not count;
// after it, the threshold replaces, successor first.
func TestPlanGraceThenReplace(t *testing.T) {
	for _, replaceOn := range []string{ReplaceOnLiveness, ReplaceOnTraffic} {
		t.Run(replaceOn, func(t *testing.T) {
			p := newPlan(t, testConfig(3, func(c *Config) { c.ReplaceOn = replaceOn }), nil)
			r := "reason=" + replaceOn
			run(t, p, append(up(3), []step{
				{2 * time.Second, check("i-1", false), nil}, // in grace: not counted
				{4 * time.Second, check("i-1", false), nil},
				{6 * time.Second, check("i-1", false), nil},
				{8 * time.Second, check("i-1", false), nil},
				{10 * time.Second, check("i-1", false), nil}, // grace over: 1
				{12 * time.Second, check("i-1", false), nil}, // 2
				{14 * time.Second, check("i-1", false), []string{
					"unhealthy i-1",
					"start i-4 slot=0",
				}},
				{14 * time.Second, started("i-4"), []string{
					"stop i-1 " + r,
					"replaced i-1 " + r + " successor=i-4",
				}},
				{15 * time.Second, check("i-1", false), nil}, // a result in flight: ignored
			}...))
			wantStates(t, p, "0 i-1 stopping ("+replaceOn+")", "0 i-4 starting", "1 i-2 running", "2 i-3 running")
			if got := p.Announced(); !slices.Equal(got, []string{"i-4", "i-2", "i-3"}) {
				t.Errorf("announced %v: a stopping instance is withdrawn", got)
			}
			run(t, p, []step{
				{16 * time.Second, exited("i-1", stopped), []string{"stopped i-1 " + r + " detail=exit status 0"}},
			})
			// Listed until its successor is ready.
			wantStates(t, p, "0 i-1 replaced ("+replaceOn+")", "0 i-4 starting", "1 i-2 running", "2 i-3 running")
			run(t, p, []step{{17 * time.Second, ready("i-4"), []string{"ready i-4 after=3s"}}})
			wantStates(t, p, "0 i-4 running", "1 i-2 running", "2 i-3 running")
			if p.Known("i-1") {
				t.Error("the plan still knows i-1")
			}
		})
	}
}

// A pass resets the count; an unhealthy instance that passes recovers.
func TestPlanRecovered(t *testing.T) {
	p := newPlan(t, testConfig(3, func(c *Config) { c.Grace = time.Nanosecond }), nil)
	rails := p.rails.(*LocalGuardrails)
	rails.Budget = NewBudget(1, time.Minute)
	rails.Budget.Take(at(0)) // spent: the unhealthy instance is kept
	run(t, p, append(up(3), []step{
		{time.Second, check("i-1", false), nil},
		{2 * time.Second, check("i-1", true), nil},
		{3 * time.Second, check("i-1", false), nil},
		{4 * time.Second, check("i-1", false), nil},
		{5 * time.Second, check("i-1", false), []string{"unhealthy i-1", "budget_exhausted i-1"}},
		{6 * time.Second, check("i-1", true), []string{"recovered i-1"}},
	}...))
}

// The budget: one replacement per minute for three instances. The second
// unhealthy instance is kept, reported once, and replaced once the first
// replacement has left the window.
func TestPlanBudget(t *testing.T) {
	p := newPlan(t, testConfig(3, nil), nil)
	fail3 := func(id string, from time.Duration) []step {
		return []step{
			{from, check(id, false), nil},
			{from + 2*time.Second, check(id, false), nil},
		}
	}
	steps := up(3)
	steps = append(steps, fail3("i-1", 10*time.Second)...)
	steps = append(steps, []step{
		{14 * time.Second, check("i-1", false), []string{"unhealthy i-1", "start i-4 slot=0"}},
		{14 * time.Second, started("i-4"), []string{"stop i-1 reason=liveness", "replaced i-1 reason=liveness successor=i-4"}},
		{15 * time.Second, check("i-4", true), nil}, // slot 0's failure no longer counts for the freeze
	}...)
	steps = append(steps, fail3("i-2", 20*time.Second)...)
	steps = append(steps, []step{
		{24 * time.Second, check("i-2", false), []string{"unhealthy i-2", "budget_exhausted i-2"}},
		{26 * time.Second, check("i-2", false), nil}, // reported once
		{73 * time.Second, check("i-2", false), nil}, // 59s after the replacement
		{74 * time.Second, check("i-2", false), []string{"start i-5 slot=1"}},
		{74 * time.Second, started("i-5"), []string{"stop i-2 reason=liveness", "replaced i-2 reason=liveness successor=i-5"}},
	}...)
	run(t, p, steps)
	if p.Frozen() {
		t.Error("frozen by failures that were not correlated")
	}
}

// Two of three failing together freeze the fleet before either reaches
// its threshold; nothing is replaced while frozen; a pass unfreezes and
// forgives, so the straggler needs a full fresh threshold.
func TestPlanFreeze(t *testing.T) {
	p := newPlan(t, testConfig(3, nil), nil)
	run(t, p, append(up(3), []step{
		{10 * time.Second, check("i-1", false), nil},
		{10500 * time.Millisecond, check("i-2", false), []string{"frozen failing=2"}},
		{12 * time.Second, check("i-1", false), nil},
		{12500 * time.Millisecond, check("i-2", false), nil},
		{14 * time.Second, check("i-1", false), []string{"unhealthy i-1"}}, // kept: frozen
		{14500 * time.Millisecond, check("i-2", false), []string{"unhealthy i-2"}},
		{30 * time.Second, check("i-1", false), nil},
		{32 * time.Second, check("i-1", true), []string{"recovered i-1", "unfrozen failing=1"}},
		{32500 * time.Millisecond, check("i-2", false), nil}, // forgiven: 1
		{34500 * time.Millisecond, check("i-2", false), nil}, // 2
		{36500 * time.Millisecond, check("i-2", false), []string{"unhealthy i-2", "start i-4 slot=1"}},
	}...))
	if p.Frozen() {
		t.Error("still frozen")
	}
}

// A crash counts towards the freeze for the window after it, once per slot.
func TestPlanCrashCountsTowardsTheFreeze(t *testing.T) {
	p := newPlan(t, testConfig(3, nil), nil)
	run(t, p, append(up(3), []step{
		{20 * time.Second, exited("i-1", killed), []string{"crashed i-1 after=1s detail=signal: killed"}},
		{21 * time.Second, tick, []string{"start i-4 slot=0 restart"}},
		{21 * time.Second, started("i-4"), nil},
		{22 * time.Second, exited("i-4", killed), []string{"crashed i-4 after=2s detail=signal: killed"}}, // still one slot
		{24 * time.Second, tick, []string{"start i-5 slot=0 restart"}},
		{24 * time.Second, started("i-5"), nil},
		{30 * time.Second, check("i-2", false), []string{"frozen failing=2"}},
		{79 * time.Second, tick, nil},
		{82 * time.Second, tick, []string{"unfrozen failing=1"}}, // slot 0's crash left the window
	}...))
}

// Crash restarts: backoff doubling per exit, reset by a long run; a lost
// port race is retried at once, up to three times.
func TestPlanCrashBackoff(t *testing.T) {
	p := newPlan(t, testConfig(1, nil), nil)
	run(t, p, append(up(1), []step{
		{2 * time.Second, exited("i-1", Exit{Status: "exit status 1", Output: "panic: boom"}),
			[]string{"crashed i-1 after=1s detail=exit status 1: panic: boom"}},
	}...))
	wantStates(t, p, "0 i-1 replaced (exited: exit status 1)")
	if got := p.Next(); !got.Equal(at(3 * time.Second)) {
		t.Fatalf("Next = %v, want the restart at 3s", got.Sub(t0))
	}
	run(t, p, []step{
		{2500 * time.Millisecond, tick, nil},
		{3 * time.Second, tick, []string{"start i-2 slot=0 restart"}},
		{3 * time.Second, started("i-2"), nil},
		{5 * time.Second, exited("i-2", exit1), []string{"crashed i-2 after=2s detail=exit status 1"}},
		{7 * time.Second, tick, []string{"start i-3 slot=0 restart"}},
		{7 * time.Second, started("i-3"), nil},
		{8 * time.Second, exited("i-3", exit1), []string{"crashed i-3 after=4s detail=exit status 1"}},
		{12 * time.Second, tick, []string{"start i-4 slot=0 restart"}},
		{12 * time.Second, started("i-4"), nil},
		{72 * time.Second, exited("i-4", exit1), []string{"crashed i-4 after=1s detail=exit status 1"}}, // ran a minute
	})
	if st := p.Status(); st[len(st)-1].Restarts != 3 {
		t.Errorf("restarts %d, want 3", st[len(st)-1].Restarts)
	}

	q := newPlan(t, testConfig(1, nil), nil)
	taken := Exit{Status: "exit status 1", Output: "listen tcp: bind: address already in use", AddrInUse: true}
	detail := " detail=exit status 1: listen tcp: bind: address already in use"
	run(t, q, []step{
		{0, boot, []string{"start i-1 slot=0"}},
		{0, started("i-1"), nil},
		{100 * time.Millisecond, exited("i-1", taken), []string{"crashed i-1 port_taken" + detail}},
		{100 * time.Millisecond, tick, []string{"start i-2 slot=0 restart"}}, // at once
		{100 * time.Millisecond, started("i-2"), nil},
		{200 * time.Millisecond, exited("i-2", taken), []string{"crashed i-2 port_taken" + detail}},
		{200 * time.Millisecond, tick, []string{"start i-3 slot=0 restart"}},
		{200 * time.Millisecond, started("i-3"), nil},
		{300 * time.Millisecond, exited("i-3", taken), []string{"crashed i-3 port_taken" + detail}},
		{300 * time.Millisecond, tick, []string{"start i-4 slot=0 restart"}},
		{300 * time.Millisecond, started("i-4"), nil},
		{400 * time.Millisecond, exited("i-4", taken), []string{"crashed i-4 after=1s" + detail}}, // a crash now
		{1400 * time.Millisecond, tick, []string{"start i-5 slot=0 restart"}},
		{1400 * time.Millisecond, started("i-5"), nil},
		{1500 * time.Millisecond, ready("i-5"), []string{"ready i-5 after=100ms"}},
		{2 * time.Second, exited("i-5", taken), []string{"crashed i-5 after=2s" + detail}}, // it was ready: not a race
	})
}

// A successor that cannot be started: the unhealthy instance is stopped
// anyway, and the slot tried again after the backoff.
func TestPlanStartFailed(t *testing.T) {
	p := newPlan(t, testConfig(2, func(c *Config) { c.Grace = time.Nanosecond; c.Check.UnhealthyThreshold = 1 }), nil)
	run(t, p, append(up(2), []step{
		{time.Second, check("i-1", false), []string{"unhealthy i-1", "start i-3 slot=0"}},
		{time.Second, startFailed("i-3", errBoom), []string{
			"start_failed i-3 after=1s err=boom",
			"stop i-1 reason=liveness",
			"replaced i-1 reason=liveness err=boom",
		}},
		{1500 * time.Millisecond, tick, nil},
		{2 * time.Second, tick, []string{"start i-4 slot=0 restart"}},
		{2 * time.Second, startFailed("i-4", errBoom), []string{"start_failed i-4 after=2s err=boom"}},
		{4 * time.Second, tick, []string{"start i-5 slot=0 restart"}},
		{4 * time.Second, started("i-5"), nil},
	}...))
	wantStates(t, p, "0 i-1 stopping (liveness)", "0 i-5 starting", "1 i-2 running")
	if p.Known("i-3") || p.Known("i-4") {
		t.Error("the plan lists processes that never started")
	}
}

// A rolling restart: one slot at a time, new instance first, the old one
// stopped once the new one is ready, the next slot once it has exited.
func TestPlanRollingRestart(t *testing.T) {
	rails := &recordingRails{Guardrails: NewGuardrails(&Config{Size: 3, Freeze: FreezeConfig{Share: 0.5, Window: time.Minute}, Budget: BudgetConfig{Max: Count(1), Window: time.Minute}})}
	p := newPlan(t, testConfig(3, nil), rails)
	rolling := "reason=" + ReasonRolling
	run(t, p, append(up(3), []step{
		{30 * time.Second, rollStart, []string{"start i-4 slot=0 surge"}},
		{30 * time.Second, started("i-4"), nil},
		{30 * time.Second, rollStart, []string{"error err=" + ErrRestartInProgress.Error()}},
		{30500 * time.Millisecond, check("i-4", false), nil}, // judged by the restart, not the checks
	}...))
	if got := p.Announced(); !slices.Equal(got, []string{"i-1", "i-4", "i-2", "i-3"}) {
		t.Errorf("announced %v: a surge of one", got)
	}
	run(t, p, []step{
		{31 * time.Second, ready("i-4"), []string{
			"ready i-4 after=1s",
			"stop i-1 " + rolling,
			"replaced i-1 " + rolling + " successor=i-4",
		}},
		{32 * time.Second, tick, nil}, // waiting for i-1 to drain
		{33 * time.Second, exited("i-1", stopped), []string{
			"stopped i-1 " + rolling + " detail=exit status 0",
			"start i-5 slot=1 surge",
		}},
		{33 * time.Second, started("i-5"), nil},
		{34 * time.Second, ready("i-5"), []string{"ready i-5 after=1s", "stop i-2 " + rolling, "replaced i-2 " + rolling + " successor=i-5"}},
		{35 * time.Second, exited("i-2", stopped), []string{"stopped i-2 " + rolling + " detail=exit status 0", "start i-6 slot=2 surge"}},
		{35 * time.Second, started("i-6"), nil},
		{36 * time.Second, ready("i-6"), []string{"ready i-6 after=1s", "stop i-3 " + rolling, "replaced i-3 " + rolling + " successor=i-6"}},
		{37 * time.Second, exited("i-3", stopped), []string{"stopped i-3 " + rolling + " detail=exit status 0", "roll_done"}},
	})
	wantStates(t, p, "0 i-4 running", "1 i-5 running", "2 i-6 running")
	if rails.requests != 0 {
		t.Errorf("a rolling restart asked the guardrails %d times", rails.requests)
	}
	// Another one may begin.
	run(t, p, []step{{40 * time.Second, rollStart, []string{"start i-7 slot=0 surge"}}})
}

func TestPlanRollingRestartEnds(t *testing.T) {
	notReady := "roll_done err=rolling restart: slot 0: new instance did not become ready: "
	tests := []struct {
		name    string
		started bool // the new instance i-2 started
		steps   []step
		after   []string // the status after
	}{
		{"new instance not ready in time", true, []step{
			{49 * time.Second, tick, nil},
			{50 * time.Second, tick, []string{"stop i-2 reason=rolling restart abandoned", notReady + "i-2 not ready after 30s"}},
		}, []string{"0 i-2 stopping (rolling restart abandoned)", "0 i-1 running"}},
		{"new instance exits", true, []step{
			{25 * time.Second, exited("i-2", exit1), []string{"crashed i-2 surge detail=exit status 1", notReady + "i-2 exited: exit status 1"}},
		}, []string{"0 i-1 running"}},
		{"canceled", true, []step{
			{25 * time.Second, cancelRoll, []string{"stop i-2 reason=rolling restart abandoned", "roll_done err=rolling restart: slot 0: context canceled"}},
			{26 * time.Second, cancelRoll, nil},
		}, []string{"0 i-2 stopping (rolling restart abandoned)", "0 i-1 running"}},
		{"new instance cannot start", false, []step{
			{20 * time.Second, startFailed("i-2", errBoom), []string{"start_failed i-2 surge err=boom", "roll_done err=rolling restart: slot 0: boom"}},
		}, []string{"0 i-1 running"}},
		{"old instance exits: the new one takes over", true, []step{
			{25 * time.Second, exited("i-1", killed), []string{"crashed i-1 successor=i-2 detail=signal: killed"}},
			{26 * time.Second, ready("i-2"), []string{"ready i-2 after=6s", "roll_done"}},
		}, []string{"0 i-2 running"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPlan(t, testConfig(1, nil), nil)
			run(t, p, append(up(1), step{20 * time.Second, rollStart, []string{"start i-2 slot=0 surge"}}))
			if got := p.Next(); !got.Equal(at(50 * time.Second)) {
				t.Errorf("Next = %v, want the ready deadline at 50s", got.Sub(t0))
			}
			if tt.started {
				run(t, p, []step{{20 * time.Second, started("i-2"), nil}})
			}
			run(t, p, tt.steps)
			wantStates(t, p, tt.after...)
			if _, err := p.Roll(at(time.Hour)); err != nil {
				t.Errorf("after the end, Roll = %v", err)
			}
		})
	}
}

// A slot whose process started after the restart began is already new.
func TestPlanRollingRestartSkipsNewProcesses(t *testing.T) {
	p := newPlan(t, testConfig(2, nil), nil)
	run(t, p, append(up(2), []step{
		{20 * time.Second, rollStart, []string{"start i-3 slot=0 surge"}},
		{20 * time.Second, started("i-3"), nil},
		{21 * time.Second, exited("i-2", killed), []string{"crashed i-2 after=1s detail=signal: killed"}},
		{22 * time.Second, tick, []string{"start i-4 slot=1 restart"}},
		{22 * time.Second, started("i-4"), nil},
		{23 * time.Second, ready("i-3"), []string{"ready i-3 after=3s", "stop i-1 reason=rolling_restart", "replaced i-1 reason=rolling_restart successor=i-3"}},
		{24 * time.Second, exited("i-1", stopped), []string{"stopped i-1 reason=rolling_restart detail=exit status 0", "roll_done"}},
	}...))
}

// Shutdown stops everything the plan lists; the plan forgets them once
// they have exited.
func TestPlanShutdown(t *testing.T) {
	p := newPlan(t, testConfig(2, func(c *Config) { c.Grace = time.Nanosecond; c.Check.UnhealthyThreshold = 1 }), nil)
	run(t, p, append(up(2), []step{
		{time.Second, check("i-1", false), []string{"unhealthy i-1", "start i-3 slot=0"}},
		{time.Second, started("i-3"), []string{"stop i-1 reason=liveness", "replaced i-1 reason=liveness successor=i-3"}},
		{2 * time.Second, rollStart, []string{"start i-4 slot=0 surge"}},
		{2 * time.Second, started("i-4"), nil},
	}...))
	ids := p.Shutdown()
	slices.Sort(ids)
	if want := []string{"i-1", "i-2", "i-3", "i-4"}; !slices.Equal(ids, want) {
		t.Errorf("Shutdown = %v, want %v", ids, want)
	}
	wantStates(t, p, "0 i-3 stopping (fleet stopping)", "0 i-4 stopping (fleet stopping)", "0 i-1 stopping (liveness)", "1 i-2 stopping (fleet stopping)")
	if got := p.Announced(); len(got) != 0 {
		t.Errorf("announced %v while stopping", got)
	}
	run(t, p, []step{
		{3 * time.Second, ready("i-4"), nil}, // the rolling restart ended
		{3 * time.Second, tick, nil},
		{3 * time.Second, exited("i-2", stopped), nil},
		{3 * time.Second, rollStart, []string{"error err=" + ErrNotRunning.Error()}},
	})
	p.Stopped()
	if st := p.Status(); len(st) != 0 || p.Known("i-1") {
		t.Errorf("after Stopped: %v", st)
	}
}

func TestPlanRejectsInvalidConfig(t *testing.T) {
	if _, err := NewPlan(Config{}, nil); err == nil {
		t.Fatal("NewPlan accepted a configuration without its defaults")
	}
}

// recordingRails counts the replacement requests of the guardrails it
// wraps.
type recordingRails struct {
	Guardrails
	requests int
}

func (r *recordingRails) Request(now time.Time) Decision {
	r.requests++
	return r.Guardrails.Request(now)
}

// sharedRails stands in for fleet-wide guardrails (issue #12): another
// host spent the budget, and the freeze changes by what others see.
type sharedRails struct {
	frozen, changed bool
	failing         int
	calls           []string
}

func (s *sharedRails) Fail(key string, now time.Time) {
	s.calls = append(s.calls, "fail "+key+" "+now.Sub(t0).String())
}
func (s *sharedRails) Gone(key string, now time.Time) {
	s.calls = append(s.calls, "gone "+key+" "+now.Sub(t0).String())
}
func (s *sharedRails) Recover(key string) { s.calls = append(s.calls, "recover "+key) }
func (s *sharedRails) Update(time.Time) (frozen, changed bool) {
	changed, s.changed = s.changed, false
	return s.frozen, changed
}
func (s *sharedRails) Failing(time.Time) int { return s.failing }
func (s *sharedRails) Frozen() bool          { return s.frozen }
func (s *sharedRails) Request(time.Time) Decision {
	if s.frozen {
		return HoldFrozen
	}
	return HoldBudget
}

// The plan reaches the guardrails only through the interface: failures by
// slot key, Update at every check and tick, Request before a replacement.
func TestPlanGuardrailsSeam(t *testing.T) {
	rails := &sharedRails{}
	p := newPlan(t, testConfig(2, func(c *Config) { c.Grace = time.Nanosecond; c.Check.UnhealthyThreshold = 1 }), rails)
	run(t, p, append(up(2), []step{
		{time.Second, check("i-1", false), []string{"unhealthy i-1", "budget_exhausted i-1"}},
		{2 * time.Second, check("i-1", false), nil},
		{3 * time.Second, exited("i-2", killed), []string{"crashed i-2 after=1s detail=signal: killed"}},
		{3 * time.Second, check("i-1", true), []string{"recovered i-1"}},
	}...))
	want := []string{"fail slot-0 1s", "fail slot-0 2s", "fail slot-1 3s", "gone slot-1 3s", "recover slot-0"}
	if diff := cmp.Diff(want, rails.calls); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
	// Others froze the fleet: the next tick reports it, and nothing is
	// replaced.
	rails.frozen, rails.changed, rails.failing = true, true, 5
	run(t, p, []step{
		{4 * time.Second, tick, []string{"start i-3 slot=1 restart", "frozen failing=5"}},
		{4 * time.Second, started("i-3"), nil},
		{5 * time.Second, check("i-1", false), []string{"unhealthy i-1"}},
	})
	if !p.Frozen() {
		t.Error("Frozen = false while the shared guardrails are frozen")
	}
}
