//go:build unix

package fleet

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/spillway-dev/spillway/internal/backendsim"
	"github.com/spillway-dev/spillway/internal/testkit"
)

// The tests below run real processes: the spillway binary's login
// subcommand against an in-process backend-sim, on loopback.

// loginFile writes a login configuration with short timings for tests; with
// incident2018 it serves health on the service port and checks deep (the
// incident's configuration).
func loginFile(t *testing.T, incident2018 bool) string {
	t.Helper()
	y := `login:
  backend:
    timeout: 300ms
    consecutive_failures: 3
    open_interval: 500ms
    probe_interval: 100ms
  health:
    drain_delay: 100ms
`
	if incident2018 {
		y += "    shared_port: true\n    deep: true\n"
	}
	y += `  shutdown_timeout: 1s
  rate_limit:
    per_second: 0
`
	path := filepath.Join(t.TempDir(), "login.yaml")
	if err := os.WriteFile(path, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// startSim serves an in-process backend-sim until the test ends.
func startSim(t *testing.T) (*backendsim.Sim, string) {
	t.Helper()
	sim, err := backendsim.New(backendsim.Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return sim, "http://" + testkit.Serve(t, sim.Serve)
}

type harness struct {
	t   *testing.T
	f   *Fleet
	sim *backendsim.Sim
	out *testkit.SyncBuffer

	stopOnce sync.Once
	stopRun  func() error // stops Run, returns its error
}

// fastConfig is cfg with test timings where cfg leaves them zero.
func fastConfig(edit func(*Config)) Config {
	c := DefaultConfig()
	c.Size, c.Grace, c.ReadyTimeout = 2, time.Second, 10*time.Second
	c.Check.Interval, c.Backoff.Base, c.StopTimeout = 200*time.Millisecond, 200*time.Millisecond, 3*time.Second
	if edit != nil {
		edit(&c)
	}
	return c
}

// startFleet runs a fleet of login instances (unless cfg.Command is set)
// against a fresh backend-sim. The fleet is stopped when the test ends, and
// every process it started is then checked to be gone. setup, if any,
// changes the fleet before it runs.
func startFleet(t *testing.T, cfg Config, incident2018 bool, setup ...func(*Fleet)) *harness {
	t.Helper()
	h := &harness{t: t, out: &testkit.SyncBuffer{}}
	if len(cfg.Command) == 0 {
		var url string
		h.sim, url = startSim(t)
		cfg.Command = []string{spillwayBinary(t), "login"}
		cfg.Args = append(cfg.Args, "--backend", url, "--dev", "--config", loginFile(t, incident2018))
	}
	f, err := New(cfg, Options{Output: h.out, Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	h.f = f
	for _, fn := range setup {
		fn(f)
	}
	h.stopRun = testkit.Go(t, "Run", 20*time.Second, f.Run)
	t.Cleanup(func() {
		h.stop()
		if t.Failed() {
			t.Logf("instance output:\n%s", h.out.String())
			for _, e := range f.Events(0) {
				t.Logf("event %d %s %s %s %s %s", e.Seq, e.Time.Format("15:04:05.000"), e.Kind, e.Instance, e.Reason, e.Detail)
			}
		}
	})
	return h
}

// stop stops the fleet and checks that every process it started is gone.
func (h *harness) stop() {
	h.t.Helper()
	h.stopOnce.Do(func() {
		if err := h.stopRun(); err != nil {
			h.t.Errorf("Run: %v", err)
		}
		if got := h.f.Instances(); len(got) != 0 {
			h.t.Errorf("after Run: instances %v", got)
		}
		// The instances are reaped by the fleet; a SIGKILL to a group of
		// what they started takes a moment to land.
		started := map[int]string{}
		var pids []int
		for _, e := range h.f.Events(0) {
			if e.Kind == EventStarted {
				started[e.PID] = e.Instance
				pids = append(pids, e.PID)
			}
		}
		for _, pid := range testkit.StillRunning(2*time.Second, pids...) {
			h.t.Errorf("instance %s (pid %d) or its process group still runs after the fleet stopped", started[pid], pid)
		}
	})
}

func (h *harness) running() []ProcessStatus {
	var out []ProcessStatus
	for _, s := range h.f.Status() {
		if s.State == StateRunning {
			out = append(out, s)
		}
	}
	return out
}

// waitRunning waits until n instances are running and past their grace.
func (h *harness) waitRunning(n int) []ProcessStatus {
	h.t.Helper()
	testkit.WaitFor(h.t, 15*time.Second, fmt.Sprintf("%d running instances", n), func() bool {
		return len(h.running()) == n
	})
	rs := h.running()
	for _, r := range rs {
		if d := time.Until(r.StartedAt.Add(h.f.cfg.Grace)); d > 0 {
			time.Sleep(d) // the scenario must start after the grace period
		}
	}
	return rs
}

func (h *harness) count(kind EventKind) int {
	n := 0
	for _, e := range h.f.Events(0) {
		if e.Kind == kind {
			n++
		}
	}
	return n
}

func (h *harness) replacements(reason string) float64 {
	return testutil.ToFloat64(h.f.m.replacements.WithLabelValues(reason))
}

func ids(ss []ProcessStatus) []string {
	var out []string
	for _, s := range ss {
		out = append(out, s.ID)
	}
	return out
}

// (i) An instance killed with SIGKILL is restarted within seconds, and the
// watchers see it go and its successor come.
func TestKilledInstanceIsReplaced(t *testing.T) {
	h := startFleet(t, fastConfig(nil), false)
	before := h.waitRunning(2)

	var mu sync.Mutex
	var seen [][]Announcement
	wctx, wcancel := context.WithCancel(context.Background())
	wdone := make(chan error, 1)
	go func() {
		wdone <- h.f.Watch(wctx, func(set []Announcement) {
			mu.Lock()
			seen = append(seen, set)
			mu.Unlock()
		})
	}()
	defer func() {
		wcancel()
		if err := <-wdone; !errors.Is(err, context.Canceled) {
			t.Errorf("Watch: %v", err)
		}
	}()

	victim := before[0]
	killedAt := time.Now()
	if err := syscall.Kill(victim.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 5*time.Second, "a running successor", func() bool {
		rs := h.running()
		return len(rs) == 2 && !slices.Contains(ids(rs), victim.ID)
	})
	t.Logf("replaced %s within %s", victim.ID, time.Since(killedAt).Round(time.Millisecond))

	if got := testutil.ToFloat64(h.f.m.restarts); got != 1 {
		t.Errorf("restarts_total = %v, want 1", got)
	}
	if got := h.count(EventCrashed); got != 1 {
		t.Errorf("%d crashed events, want 1", got)
	}
	if got := testutil.ToFloat64(h.f.m.instances); got != 2 {
		t.Errorf("instances gauge = %v, want 2", got)
	}
	var succ ProcessStatus
	for _, s := range h.f.Status() {
		if s.Slot == victim.Slot && s.State == StateRunning {
			succ = s
		}
	}
	if succ.Restarts != 1 || succ.PID == victim.PID || succ.Service == victim.Service {
		t.Errorf("successor %+v of %+v", succ, victim)
	}
	// The watcher saw the victim withdrawn and the successor announced.
	testkit.WaitFor(t, 2*time.Second, "the watcher to see the successor", func() bool {
		mu.Lock()
		defer mu.Unlock()
		withdrawn := false
		for _, set := range seen {
			has := slices.ContainsFunc(set, func(i Announcement) bool { return i.ID == victim.ID })
			if !has {
				withdrawn = true
			}
			if withdrawn && slices.ContainsFunc(set, func(i Announcement) bool { return i.ID == succ.ID }) {
				return true
			}
		}
		return false
	})
}

// (ii) The backend hangs. With the default (liveness) replacement nothing is
// replaced: the instances are alive, their dependency is not.
func TestBackendHangReplacesNothingByDefault(t *testing.T) {
	h := startFleet(t, fastConfig(func(c *Config) { c.Size = 3 }), false)
	h.waitRunning(3)
	if err := h.sim.SetMode(backendsim.ModeHang); err != nil {
		t.Fatal(err)
	}
	hangStart := time.Now()
	// Hang for 3s: fifteen check intervals, five times the threshold.
	time.Sleep(3 * time.Second)
	for _, s := range h.f.Status() {
		if !s.LastCheck.OK || s.LastCheck.Time.Before(hangStart) {
			t.Errorf("%s: last check %+v during the hang", s.ID, s.LastCheck)
		}
	}
	if err := h.sim.SetMode(backendsim.ModeUp); err != nil {
		t.Fatal(err)
	}
	if n := h.count(EventReplaced) + h.count(EventCrashed); n != 0 {
		t.Errorf("%d replacements or crashes during a backend hang", n)
	}
	if got := h.replacements(ReasonLiveness); got != 0 {
		t.Errorf("replacements_total{liveness} = %v", got)
	}
	if len(h.running()) != 3 || h.f.Frozen() {
		t.Errorf("after the hang: %+v, frozen %v", h.f.Status(), h.f.Frozen())
	}
}

// incident2018 is the incident's fleet: replace on the traffic check, which
// the 2018 login serves on its service port and checks deep.
func incident2018(guardrails bool) Config {
	c := fastConfig(func(c *Config) { c.Size, c.ReplaceOn = 3, ReplaceOnTraffic })
	c.Check.Liveness = ProbeConfig{Path: "/livez", Port: PortService}
	c.Check.Traffic = ProbeConfig{Path: "/readyz", Port: PortService}
	if !guardrails {
		c.Budget.Max = Count(0) // 0 disables
		c.Freeze.Share = 0
	}
	return c
}

// (ii) The same hang with the incident's settings: the fleet replaces its
// healthy instances, as in 2018.
func TestBackendHangReplacesWithTrafficSetting(t *testing.T) {
	h := startFleet(t, incident2018(false), true)
	h.waitRunning(3)
	for _, in := range h.f.Instances() {
		if in.Health != in.Service {
			t.Errorf("announced %+v: the health address is the traffic check's, the service port here", in)
		}
	}
	if err := h.sim.SetMode(backendsim.ModeHang); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 5*time.Second, "replacements on the traffic check", func() bool {
		return h.replacements(ReasonTraffic) >= 2
	})
	if err := h.sim.SetMode(backendsim.ModeUp); err != nil {
		t.Fatal(err)
	}
	t.Logf("replacements: %v", h.replacements(ReasonTraffic))
	if h.count(EventFrozen) != 0 {
		t.Error("froze with the freeze disabled")
	}
}

// With the incident's replace_on but spillway's guardrails, the correlated
// failure freezes the fleet: nothing is replaced, and it unfreezes once the
// backend is back.
func TestBackendHangFreezesWithGuardrails(t *testing.T) {
	h := startFleet(t, incident2018(true), true)
	h.waitRunning(3)
	if err := h.sim.SetMode(backendsim.ModeHang); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 5*time.Second, "the freeze", h.f.Frozen)
	if got := testutil.ToFloat64(h.f.m.frozen); got != 1 {
		t.Errorf("frozen gauge = %v during the freeze", got)
	}
	time.Sleep(time.Second) // five intervals: the threshold is passed while frozen
	if err := h.sim.SetMode(backendsim.ModeUp); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 5*time.Second, "the fleet to unfreeze", func() bool { return !h.f.Frozen() })
	if got := h.replacements(ReasonTraffic); got != 0 {
		t.Errorf("replacements_total{traffic} = %v while frozen", got)
	}
	if h.count(EventFrozen) != 1 || h.count(EventUnfrozen) != 1 || h.count(EventReplaced) != 0 {
		t.Errorf("events: frozen %d unfrozen %d replaced %d", h.count(EventFrozen), h.count(EventUnfrozen), h.count(EventReplaced))
	}
	if got := testutil.ToFloat64(h.f.m.frozen); got != 0 {
		t.Errorf("frozen gauge = %v after", got)
	}
}

// (iii) A rolling restart replaces every instance, each new one ready
// before its predecessor is stopped; the number of running instances never
// drops and the surge is one.
func TestRollingRestart(t *testing.T) {
	h := startFleet(t, fastConfig(func(c *Config) { c.Size = 3 }), false)
	before := h.waitRunning(3)

	stop := make(chan struct{})
	sampled := make(chan [2]int, 1)
	go func() {
		minRunning, maxLive := 3, 0
		for {
			running, live := 0, 0
			for _, s := range h.f.Status() {
				if s.State == StateRunning {
					running++
				}
				if s.State != StateReplaced {
					live++
				}
			}
			minRunning, maxLive = min(minRunning, running), max(maxLive, live)
			select {
			case <-stop:
				sampled <- [2]int{minRunning, maxLive}
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	start := time.Now()
	err := h.f.RollingRestart(context.Background())
	close(stop)
	got := <-sampled
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("rolling restart of 3 took %s", time.Since(start).Round(time.Millisecond))
	if got[0] < 3 || got[1] > 4 {
		t.Errorf("during the restart: at least %d running (want 3), at most %d processes (want 4)", got[0], got[1])
	}
	after := h.running()
	if len(after) != 3 {
		t.Fatalf("after: %+v", h.f.Status())
	}
	for _, b := range before {
		if slices.Contains(ids(after), b.ID) {
			t.Errorf("%s survived the rolling restart", b.ID)
		}
	}
	// Each old instance is replaced only after its successor was ready.
	evs := h.f.Events(0)
	readyAt := map[string]uint64{}
	for _, e := range evs {
		if e.Kind == EventReady {
			readyAt[e.Instance] = e.Seq
		}
	}
	n := 0
	for _, e := range evs {
		if e.Kind != EventReplaced {
			continue
		}
		n++
		succ := strings.TrimPrefix(e.Detail, "successor ")
		if e.Reason != ReasonRolling || readyAt[succ] == 0 || readyAt[succ] > e.Seq {
			t.Errorf("replaced %s (%s) before its successor %s was ready", e.Instance, e.Reason, succ)
		}
	}
	if n != 3 || h.replacements(ReasonRolling) != 3 {
		t.Errorf("%d replaced events, metric %v; want 3", n, h.replacements(ReasonRolling))
	}
	if err := h.f.RollingRestart(canceled()); !errors.Is(err, context.Canceled) {
		t.Errorf("rolling restart with a canceled context: %v", err)
	}
}

func canceled() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

// A rolling restart whose new instance never becomes ready keeps the old
// one and says so.
func TestRollingRestartKeepsOldWhenNewNeverReady(t *testing.T) {
	h := startFleet(t, fastConfig(func(c *Config) {
		c.Size, c.ReadyTimeout, c.Check.Traffic.Path = 1, 700*time.Millisecond, "/nonexistent"
	}), false)
	// Nothing is ever ready on /nonexistent: wait for the process to serve.
	testkit.WaitFor(t, 10*time.Second, "the instance to serve", func() bool {
		st := h.f.Status()
		return len(st) == 1 && st[0].LastCheck.OK
	})
	old := h.f.Status()[0]
	err := h.f.RollingRestart(context.Background())
	if !errors.Is(err, ErrNotReady) {
		t.Fatalf("RollingRestart = %v, want ErrNotReady", err)
	}
	testkit.WaitFor(t, 5*time.Second, "the abandoned instance to stop", func() bool { return len(h.f.Instances()) == 1 })
	if got := h.f.Instances(); got[0].ID != old.ID {
		t.Errorf("instances %v, want the old %s kept", got, old.ID)
	}
}

// An instance that ignores SIGTERM, and its child, get SIGKILL after
// stop_timeout when the fleet stops.
func TestStopKillsWhatIgnoresSIGTERM(t *testing.T) {
	script := `trap "" TERM; while :; do sleep 0.05; done`
	h := startFleet(t, fastConfig(func(c *Config) {
		c.StopTimeout, c.Command = 300*time.Millisecond, []string{"/bin/sh", "-c", script, "sh"}
	}), false)
	testkit.WaitFor(t, 5*time.Second, "two processes", func() bool { return len(h.f.Status()) == 2 })
	start := time.Now()
	h.stop() // checks that every process group is gone
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("stop took %s with stop_timeout 300ms", d)
	}
}

// A port taken between the fleet choosing it and the instance binding it
// is retried at once with fresh ports, not after the crash backoff.
func TestAddressInUseRetriesAtOnce(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "first")
	// The first run fails as a lost port race does; later ones run login.
	sh := fmt.Sprintf(`if [ ! -e %q ]; then : > %q; echo "listen tcp: bind: address already in use" >&2; exit 1; fi; exec %q login "$@"`,
		marker, marker, spillwayBinary(t))
	_, url := startSim(t)
	cfg := fastConfig(func(c *Config) {
		c.Size, c.Command = 1, []string{"/bin/sh", "-c", sh, "sh"}
		c.Args = []string{"--backend", url, "--dev", "--config", loginFile(t, false)}
		c.Backoff.Base, c.Backoff.Max = 10*time.Second, 10*time.Second
	})
	h := startFleet(t, cfg, false)
	testkit.WaitFor(t, 5*time.Second, "a running instance despite the taken port", func() bool { return len(h.running()) == 1 })
	if got := h.count(EventStarted); got != 2 {
		t.Errorf("%d starts, want 2", got)
	}
}

func TestRunFailsWhenCommandCannotStart(t *testing.T) {
	f, err := New(fastConfig(func(c *Config) { c.Command = []string{filepath.Join(t.TempDir(), "missing")} }), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("Run = %v, want a start error", err)
	}
	if err := f.Run(context.Background()); err == nil {
		t.Fatal("a second Run must fail")
	}
	if err := f.RollingRestart(context.Background()); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("RollingRestart after Run = %v", err)
	}
	// Watch on a stopped fleet delivers the empty set and returns.
	calls := 0
	if err := f.Watch(context.Background(), func(set []Announcement) { calls++ }); err != nil || calls != 1 {
		t.Fatalf("Watch = %v after %d calls", err, calls)
	}
}

// What an instance leaves behind when it exits is killed with it: its
// process group does not outlive it.
func TestExitReapsTheProcessGroup(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pid")
	sh := fmt.Sprintf(`sleep 60 >/dev/null 2>&1 & echo $! > %q; exit 3`, pidFile)
	h := startFleet(t, fastConfig(func(c *Config) {
		c.Size, c.Command = 1, []string{"/bin/sh", "-c", sh, "sh"}
		c.Backoff.Base, c.Backoff.Max = time.Minute, time.Minute
	}), false)
	testkit.WaitFor(t, 5*time.Second, "the crash", func() bool { return h.count(EventCrashed) == 1 })
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 2*time.Second, "the left-behind sleep to die", func() bool { return !testkit.Alive(pid) })
	if st := h.f.Status(); len(st) != 1 || st[0].State != StateReplaced || !strings.Contains(st[0].Reason, "exit status 3") {
		t.Errorf("status %+v", st)
	}
}

// A real liveness failure: instances here are backend-sims (whose /healthz
// follows their mode) checked on their service port. A failing instance is
// replaced; a second one within the minute finds the budget spent and is
// kept.
func TestLivenessFailureReplacedWithinBudget(t *testing.T) {
	cfg := fastConfig(func(c *Config) {
		c.Size = 3
		// The fleet appends --listen A --health-listen B: $2 is A.
		c.Command = []string{"/bin/sh", "-c", `exec "$0" backend-sim --listen "$2"`, spillwayBinary(t)}
		c.Check.Liveness = ProbeConfig{Path: "/healthz", Port: PortService}
		c.Check.Traffic = ProbeConfig{Path: "/healthz", Port: PortService}
	})
	h := startFleet(t, cfg, false)
	rs := h.waitRunning(3)
	setMode := func(in ProcessStatus, mode string) {
		t.Helper()
		c := &backendsim.Client{BaseURL: "http://" + in.Service}
		if err := c.SetMode(context.Background(), mode, 0); err != nil {
			t.Fatal(err)
		}
	}

	setMode(rs[0], "error")
	testkit.WaitFor(t, 5*time.Second, "the failing instance to be replaced", func() bool {
		return h.replacements(ReasonLiveness) == 1 && len(h.running()) == 3 && !slices.Contains(ids(h.running()), rs[0].ID)
	})
	for _, e := range h.f.Events(0) {
		if e.Kind == EventReplaced && (e.Instance != rs[0].ID || e.Reason != ReasonLiveness) {
			t.Errorf("unexpected %+v", e)
		}
	}
	// Let the successor pass a check, so the first failure no longer
	// counts towards the freeze and only the budget is in play.
	testkit.WaitFor(t, 5*time.Second, "the successor's first passing check", func() bool {
		for _, s := range h.f.Status() {
			if s.Slot == rs[0].Slot && s.State == StateRunning && s.LastCheck.OK {
				return true
			}
		}
		return false
	})

	setMode(rs[1], "error")
	testkit.WaitFor(t, 5*time.Second, "the budget to run out", func() bool { return h.count(EventBudgetExhausted) == 1 })
	time.Sleep(600 * time.Millisecond) // three more intervals: still kept
	if !slices.Contains(ids(h.running()), rs[1].ID) || h.replacements(ReasonLiveness) != 1 || h.f.Frozen() {
		t.Errorf("with the budget spent: replacements %v, frozen %v, status %+v",
			h.replacements(ReasonLiveness), h.f.Frozen(), h.f.Status())
	}
	setMode(rs[1], "up")
	testkit.WaitFor(t, 5*time.Second, "the kept instance to recover", func() bool {
		for _, s := range h.f.Status() {
			if s.ID == rs[1].ID {
				return s.LastCheck.OK
			}
		}
		return false
	})
}

// A schedule window on the fleet's clock, set a little before the
// window's lead: the extra instance is started and announced at the lead,
// and stopped once the window closes, with an event and the target gauge
// at each step. A fleet-scope window of 3 over Hosts() = 2 is 2 here.
func TestSchedulePrewarmsAndScalesBack(t *testing.T) {
	cfg := fastConfig(func(c *Config) {
		c.Size = 1
		c.ScheduleLead = 500 * time.Millisecond
		c.Schedule = []Window{{Name: "peak", Start: "0 9 * * *", Duration: 1500 * time.Millisecond, Instances: 3, Scope: ScopeFleet}}
	})
	h := startFleet(t, cfg, false, func(f *Fleet) {
		// The fleet's clock reads 08:59:59.3 as it starts: the lead
		// (0.5s) begins 0.2s later, the window opens at 0.7s and closes
		// 1.5s after that.
		shift := time.Until(time.Date(2026, 3, 2, 8, 59, 59, 300_000_000, time.UTC))
		f.clock = func() time.Time { return time.Now().Add(shift) }
		f.hosts = func() int { return 2 }
	})
	testkit.WaitFor(t, 5*time.Second, "the scale-up", func() bool { return len(h.f.Instances()) == 2 })
	if got := testutil.ToFloat64(h.f.m.target); got != 2 {
		t.Errorf("target gauge %v during the window, want 2", got)
	}
	if st := h.f.Schedule(); st.Target != 2 || st.Window != "peak" || st.Hosts != 2 {
		t.Errorf("schedule status %+v", st)
	}
	testkit.WaitFor(t, 5*time.Second, "2 running instances", func() bool { return len(h.running()) == 2 })
	testkit.WaitFor(t, 5*time.Second, "the scale-down", func() bool {
		return len(h.f.Instances()) == 1 && len(h.f.Status()) == 1
	})
	if got := testutil.ToFloat64(h.f.m.target); got != 1 {
		t.Errorf("target gauge %v after the window, want 1", got)
	}
	var scaled []string
	for _, e := range h.f.Events(0) {
		if e.Kind == EventScaled {
			scaled = append(scaled, e.Detail)
		}
	}
	want := []string{
		`1 → 2 instances: window "peak" (3 over 2 hosts) Mon 09:00 to Mon 09:00 UTC`,
		`2 → 1 instances: size 1: no open window needs more`,
	}
	if !slices.Equal(scaled, want) {
		t.Errorf("scaled events:\n%q\nwant\n%q", scaled, want)
	}
	if st := h.f.Status(); len(st) != 1 || st[0].Slot != 0 {
		t.Errorf("status after the window: %+v", st)
	}
}
