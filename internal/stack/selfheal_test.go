package stack

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/health"
	"github.com/spillway-dev/spillway/internal/backendsim"
	"github.com/spillway-dev/spillway/internal/fleet"
	"github.com/spillway-dev/spillway/internal/lb"
	"github.com/spillway-dev/spillway/internal/testkit"
)

// loadRate is the steady load of the tests below, in logins per second.
const loadRate = 100

// TestKillReplaced: kill -9 of one instance under a steady load of logins.
// The fleet starts a successor at once (after the first restart backoff,
// 1 s) and the load balancer routes to it within a few seconds; meanwhile
// the other two instances serve, so the only failed logins are those in
// flight on the killed instance at the kill.
func TestKillReplaced(t *testing.T) {
	t.Parallel()
	h := startStack(t, upConfig(t, nil))
	h.waitReady(3, 20*time.Second)
	l := h.startLoad(loadRate, 8*time.Second)

	time.Sleep(2 * time.Second) // a steady load before the kill
	victim := h.running()[1]
	if err := syscall.Kill(victim.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()

	var successor fleet.ProcessStatus
	testkit.WaitFor(t, 15*time.Second, "a successor of the killed instance, routable", func() bool {
		for _, s := range h.running() {
			if s.Slot == victim.Slot && s.ID != victim.ID && slices.Contains(h.routable(), s.Service) {
				successor = s
				return true
			}
		}
		return false
	})
	took := time.Since(killed)
	res := l.wait()

	failed := res.Sent - res.Outcomes[health.OutcomeOK.String()]
	t.Logf("killed %s (pid %d); successor %s (pid %d) routable %s after the kill", victim.ID, victim.PID, successor.ID, successor.PID, took.Round(10*time.Millisecond))
	t.Logf("load: %d logins at %d/s, outcomes %v, failed %d", res.Requests, loadRate, res.Outcomes, failed)
	for _, a := range l.failures() {
		t.Logf("failed login: %v (kill at %s)", a, killed.Format("15:04:05.000"))
	}
	if took > 5*time.Second {
		t.Errorf("successor routable %s after the kill, want at most 5s", took.Round(10*time.Millisecond))
	}
	// What was in flight on the killed instance: a fraction of a second's
	// load. 5% of one second's is the bound.
	if max := int64(loadRate / 20); failed > max {
		t.Errorf("%d failed logins, want at most %d (those in flight on the killed instance)", failed, max)
	}
	var crashed bool
	for _, e := range h.s.Fleet().Events(0) {
		crashed = crashed || (e.Kind == fleet.EventCrashed && e.Instance == victim.ID)
	}
	if !crashed {
		t.Errorf("no crashed event for %s", victim.ID)
	}
	if r := h.replacements(); len(r) != 0 {
		t.Errorf("health-based replacements: %v, want none (a crash is restarted, not replaced)", r)
	}
	h.waitReady(3, 10*time.Second)
}

// TestBackendHang: the backend hangs for 20 s under a steady load.
//
// With the default settings nothing is replaced: the fleet replaces on
// liveness, which a dependency outage does not touch; the instances' circuit
// breakers open and answer fast, and the load balancer sheds at the edge.
//
// With replace_on: traffic and the rest of the 2018 configuration, the
// deep traffic checks fail with the backend and the fleet replaces the
// instances: the incident.
func TestBackendHang(t *testing.T) {
	t.Parallel()
	const hang = 20 * time.Second
	const rate = 50

	t.Run("default", func(t *testing.T) {
		t.Parallel()
		h := startStack(t, upConfig(t, nil))
		before := h.waitReady(3, 20*time.Second)
		l := h.startLoad(rate, 2*time.Second+hang+5*time.Second)

		time.Sleep(2 * time.Second) // a steady load before the outage
		if err := h.s.sim.SetMode(backendsim.ModeHang); err != nil {
			t.Fatal(err)
		}
		hangAt := time.Now()
		var shedSeen time.Duration
		for time.Since(hangAt) < hang {
			if d, ok := h.dependency("backend"); ok && d.State == lb.ShedShedding && shedSeen == 0 {
				shedSeen = time.Since(hangAt)
			}
			time.Sleep(100 * time.Millisecond) // watching the outage for its set length
		}
		if err := h.s.sim.SetMode(backendsim.ModeUp); err != nil {
			t.Fatal(err)
		}
		restoredAt := time.Now()
		var reopened time.Duration // shedding ended: recovering or ok
		testkit.WaitFor(t, 20*time.Second, "the backend no longer shed", func() bool {
			d, ok := h.dependency("backend")
			if ok && d.State != lb.ShedShedding && reopened == 0 {
				reopened = time.Since(restoredAt)
			}
			return ok && d.State == lb.ShedOK
		})
		recovered := time.Since(restoredAt)
		res := l.wait()

		during := l.log.between(hangAt, restoredAt)
		var shed, fast int
		for _, a := range during {
			if a.status == http.StatusServiceUnavailable && a.reason == "dependency_unavailable" {
				shed++
				if a.end.Sub(a.start) < 100*time.Millisecond {
					fast++
				}
			}
		}
		after := h.running()
		t.Logf("shedding at the edge %s after the hang began", shedSeen.Round(10*time.Millisecond))
		t.Logf("during the hang: %d logins, %d answered 503 dependency_unavailable (%d of them in < 100ms)", len(during), shed, fast)
		t.Logf("after the restore: shedding ended in %s, full recovery in %s", reopened.Round(10*time.Millisecond), recovered.Round(10*time.Millisecond))
		t.Logf("load: %d logins, outcomes %v", res.Requests, res.Outcomes)
		t.Logf("fleet replacements: %d", len(h.replacements()))
		if r := h.replacements(); len(r) != 0 {
			t.Errorf("replacements during a backend outage: %v, want none", r)
		}
		if !slices.EqualFunc(before, after, func(a, b fleet.ProcessStatus) bool { return a.ID == b.ID && a.PID == b.PID }) {
			t.Errorf("instances before the hang %v, after %v: want the same", ids(before), ids(after))
		}
		if shedSeen == 0 {
			t.Error("the load balancer never shed the backend during the hang")
		}
		if len(during) == 0 || fast*2 < len(during) {
			t.Errorf("%d of %d logins during the hang were fast 503 dependency_unavailable, want most", fast, len(during))
		}
	})

	t.Run("replace_on_traffic_2018", func(t *testing.T) {
		t.Parallel()
		h := startStack(t, upConfig(t, incident2018))
		before := h.waitReady(3, 20*time.Second)
		l := h.startLoad(rate, 2*time.Second+hang)

		time.Sleep(2 * time.Second) // a steady load before the outage
		if err := h.s.sim.SetMode(backendsim.ModeHang); err != nil {
			t.Fatal(err)
		}
		time.Sleep(hang) // the outage's set length
		if err := h.s.sim.SetMode(backendsim.ModeUp); err != nil {
			t.Fatal(err)
		}
		res := l.wait()

		reps := h.replacements()
		var replaced []string
		for _, e := range reps {
			if e.Reason != fleet.ReasonTraffic {
				t.Errorf("replacement %s for %q, want %q", e.Instance, e.Reason, fleet.ReasonTraffic)
			}
			replaced = append(replaced, e.Instance)
		}
		t.Logf("fleet replacements during the hang: %d %v (instances before: %v)", len(reps), replaced, ids(before))
		t.Logf("load: %d logins, outcomes %v", res.Requests, res.Outcomes)
		if len(reps) == 0 {
			t.Error("no replacement with replace_on: traffic and deep checks: the incident did not happen")
		}
		if d, ok := h.dependency("backend"); ok && d.State != lb.ShedOK {
			t.Errorf("edge shedding %s with quorum 0, want none (the 503 dependency_unavailable answers are the instances' own)", d.State)
		}
	})
}

func ids(ss []fleet.ProcessStatus) []string {
	var out []string
	for _, s := range ss {
		out = append(out, s.ID)
	}
	return out
}

// TestRollingRestart: a rolling restart of every instance (POST
// /fleet/restart) under a steady load of logins loses none of them.
func TestRollingRestart(t *testing.T) {
	t.Parallel()
	h := startStack(t, upConfig(t, nil))
	before := h.waitReady(3, 20*time.Second)
	l := h.startLoad(loadRate, time.Minute)

	time.Sleep(2 * time.Second) // a steady load before the restart
	req, err := http.NewRequest(http.MethodPost, "http://"+h.s.AdminAddr()+"/fleet/restart", nil)
	if err != nil {
		t.Fatal(err)
	}
	// A page on another site whose name resolves to 127.0.0.1 (DNS
	// rebinding) is refused, whatever it sends.
	req.Host = "rebound.example:8081"
	req.Header.Set("Authorization", "Bearer "+testToken)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusMisdirectedRequest {
		t.Fatalf("POST /fleet/restart with a foreign Host: %v %v, want 421", resp, err)
	} else {
		resp.Body.Close()
	}
	req.Host = ""
	req.Header.Set("Authorization", "bearer "+testToken) // the scheme is case-insensitive everywhere
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST /fleet/restart: %s, want 202", resp.Status)
	}
	began := time.Now()
	var outcome string
	testkit.WaitFor(t, 60*time.Second, "the rolling restart to end", func() bool {
		for _, e := range h.s.events.list() {
			if e.Kind == "rolling_restart" && (strings.Contains(e.Message, "done") || strings.Contains(e.Message, "stopped")) {
				outcome = e.Message
				return true
			}
		}
		return false
	})
	took := time.Since(began)
	time.Sleep(time.Second) // a steady load after the restart too
	res := l.stop()

	after := h.waitReady(3, 10*time.Second)
	failed := res.Sent - res.Outcomes[health.OutcomeOK.String()] - res.Canceled
	t.Logf("%s in %s: %v → %v", outcome, took.Round(10*time.Millisecond), ids(before), ids(after))
	t.Logf("load: %d logins at %d/s, outcomes %v (%d cut short by the test's end), failed %d", res.Requests, loadRate, res.Outcomes, res.Canceled, failed)
	if !strings.Contains(outcome, "done") {
		t.Errorf("rolling restart: %s", outcome)
	}
	if failed != 0 {
		t.Errorf("%d failed logins during a rolling restart, want none", failed)
		for _, a := range l.failures() {
			if !errors.Is(a.err, context.Canceled) {
				t.Logf("failed login: %v", a)
			}
		}
	}
	for _, a := range after {
		if slices.ContainsFunc(before, func(b fleet.ProcessStatus) bool { return b.ID == a.ID }) {
			t.Errorf("instance %s survived the rolling restart", a.ID)
		}
	}
	var rolled int
	for _, e := range h.replacements() {
		if e.Reason == fleet.ReasonRolling {
			rolled++
		}
	}
	if rolled != 3 {
		t.Errorf("%d rolling_restart replacements, want 3", rolled)
	}
}
