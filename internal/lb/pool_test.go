package lb

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spillway-dev/spillway/health"
)

func newPool(t *testing.T, cfg Config, ids ...string) *Pool {
	t.Helper()
	p, err := NewPool(cfg, nil, seeded(1))
	if err != nil {
		t.Fatal(err)
	}
	p.Sync(ids, t0)
	return p
}

func ids(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("10.0.0.%d:8080", i+1)
	}
	return out
}

func readyReport(limit int, deps map[string]string) health.Report {
	r := health.Report{Ready: true, Limit: limit, Dependencies: map[string]health.Dependency{}}
	for name, st := range deps {
		r.Dependencies[name] = health.Dependency{State: st}
	}
	return r
}

// candidates returns the ids in the current snapshot.
func candidates(p *Pool) []string {
	var out []string
	for _, c := range p.Picker().Load().Candidates() {
		out = append(out, c.Endpoint.ID())
	}
	return out
}

func statusOf(t *testing.T, p *Pool, id string, now time.Time) InstanceStatus {
	t.Helper()
	for _, st := range p.Status(now) {
		if st.ID == id {
			return st
		}
	}
	t.Fatalf("no status for %s", id)
	return InstanceStatus{}
}

func TestPoolNewInstancesWaitForFirstPass(t *testing.T) {
	p := newPool(t, DefaultConfig(), ids(2)...)
	ev := p.Evaluate(t0)
	if ev.Candidates != 0 || ev.Routable != 0 || ev.Members != 0 || ev.Panic {
		t.Fatalf("before any check: %+v", ev)
	}
	if st := statusOf(t, p, "10.0.0.1:8080", t0); st.State != InstancePending {
		t.Fatalf("state %v, want pending", st.State)
	}
	p.RecordCheck("10.0.0.1:8080", at(time.Second), CheckPass)
	p.RecordReport("10.0.0.1:8080", at(time.Second), readyReport(100, nil))
	ev = p.Evaluate(at(time.Second))
	if ev.Routable != 1 || ev.Candidates != 1 || ev.Members != 1 || ev.Panic {
		t.Fatalf("a pending instance must not count for panic: %+v", ev)
	}
	if diff := cmp.Diff([]string{"10.0.0.1:8080"}, candidates(p)); diff != "" {
		t.Fatalf("candidates (-want +got):\n%s", diff)
	}
	st := statusOf(t, p, "10.0.0.1:8080", at(time.Second))
	if st.State != InstanceHealthy || st.Weight != 0.1 || !st.SlowStartEnd.Equal(at(11*time.Second)) {
		t.Fatalf("status %+v", st)
	}
	if ev.Capacity != 10 || !ev.Bounded {
		t.Fatalf("capacity %d %v, want 100 × 0.1", ev.Capacity, ev.Bounded)
	}
	if !ev.Next.Equal(at(1500 * time.Millisecond)) {
		t.Fatalf("Next = %v, want a capacity tick of 500ms while ramping", ev.Next)
	}
}

func TestPoolHealthTransitionsRestartSlowStart(t *testing.T) {
	p := newPool(t, DefaultConfig(), ids(4)...)
	for _, id := range ids(4) {
		p.RecordCheck(id, t0, CheckPass)
	}
	p.Evaluate(t0)
	id := ids(4)[0]
	now := at(time.Minute) // long warm
	for i := range 3 {
		changed, _ := p.RecordCheck(id, now.Add(time.Duration(i)*2*time.Second), CheckTimeout)
		if changed != (i == 2) {
			t.Fatalf("failure %d: changed = %v", i+1, changed)
		}
	}
	now = now.Add(4 * time.Second)
	if ev := p.Evaluate(now); ev.Routable != 3 || ev.Candidates != 3 {
		t.Fatalf("after 3 failures: %+v", ev)
	}
	p.RecordCheck(id, now.Add(2*time.Second), CheckPass)
	if ev := p.Evaluate(now.Add(2 * time.Second)); ev.Routable != 3 {
		t.Fatalf("one pass must not bring back a once-healthy instance: %+v", ev)
	}
	back := now.Add(4 * time.Second)
	p.RecordCheck(id, back, CheckPass)
	p.Evaluate(back)
	if st := statusOf(t, p, id, back); !st.Routable || st.Weight != 0.1 || !st.SlowStartEnd.Equal(back.Add(10*time.Second)) {
		t.Fatalf("recovered: %+v", st)
	}
	p.Evaluate(back.Add(5 * time.Second))
	approx(t, "weight at mid-ramp", statusOf(t, p, id, back.Add(5*time.Second)).Weight, 0.5, 1e-9)
}

func TestPoolOutlierEjection(t *testing.T) {
	p := newPool(t, DefaultConfig(), ids(2)...)
	for _, id := range ids(2) {
		p.RecordCheck(id, t0, CheckPass)
	}
	p.Evaluate(t0)
	ep0, _ := p.Endpoint(ids(2)[0])
	ep1, _ := p.Endpoint(ids(2)[1])
	now := at(time.Minute)
	for i := range 4 {
		if ev := p.ObserveFailure(ep0, now); ev != OutlierCounted {
			t.Fatalf("failure %d: %v", i+1, ev)
		}
	}
	if !ep0.Failing() {
		t.Fatal("Failing must be set during a failure run")
	}
	p.ObserveSuccess(ep0)
	if ep0.Failing() {
		t.Fatal("a success must clear Failing")
	}
	for range 4 {
		p.ObserveFailure(ep0, now)
	}
	if ev := p.ObserveFailure(ep0, now); ev != OutlierEjected {
		t.Fatalf("5th failure: %v", ev)
	}
	ev := p.Evaluate(now)
	if diff := cmp.Diff([]string{ids(2)[1]}, candidates(p)); diff != "" || ev.Ejected != 1 {
		t.Fatalf("ejected %d, candidates (-want +got):\n%s", ev.Ejected, diff)
	}
	if !ev.Next.Equal(now.Add(10 * time.Second)) {
		t.Fatalf("Next = %v, want the ejection's end", ev.Next)
	}
	if st := statusOf(t, p, ids(2)[0], now); st.State != InstanceEjected || st.Ejections != 1 {
		t.Fatalf("status %+v", st)
	}
	// The other instance would take the ejected share over 50%: refused.
	for range 4 {
		p.ObserveFailure(ep1, now)
	}
	if ev := p.ObserveFailure(ep1, now); ev != OutlierRefused {
		t.Fatalf("second ejection of 2 instances: %v, want refused", ev)
	}
	// Back after 10s, in slow start.
	end := now.Add(10 * time.Second)
	p.Evaluate(end)
	if st := statusOf(t, p, ids(2)[0], end); !st.Routable || st.Weight != 0.1 {
		t.Fatalf("un-ejected: %+v", st)
	}
	// An endpoint from elsewhere, or of a removed instance, is ignored.
	if ev := p.ObserveFailure(NewEndpoint("x"), now); ev != OutlierIgnored {
		t.Fatalf("foreign endpoint: %v", ev)
	}
	p.Remove(ids(2)[0])
	if ev := p.ObserveFailure(ep0, now); ev != OutlierIgnored {
		t.Fatalf("removed instance: %v", ev)
	}
}

func TestPoolPanic(t *testing.T) {
	tests := []struct {
		name       string
		results    []CheckResult // per instance, after all passed once
		panic      bool
		candidates int
	}{
		{"all healthy", []CheckResult{CheckPass, CheckPass, CheckPass, CheckPass}, false, 4},
		{"2 of 4 healthy", []CheckResult{CheckPass, CheckPass, CheckFail, CheckTimeout}, false, 2},
		{"3 of 4 unready: spread over all 4", []CheckResult{CheckPass, CheckFail, CheckFail, CheckTimeout}, true, 4},
		{"3 of 4 unready, 1 dead", []CheckResult{CheckPass, CheckFail, CheckFail, CheckConnectError}, true, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPool(t, DefaultConfig(), ids(4)...)
			for i, id := range ids(4) {
				p.RecordCheck(id, t0, CheckPass)
				p.RecordReport(id, t0, readyReport(50, nil))
				for k := range 3 {
					p.RecordCheck(id, at(time.Duration(k+1)*time.Second), tt.results[i])
				}
			}
			now := at(time.Minute) // past every ramp
			for _, id := range ids(4) {
				p.RecordReport(id, now, readyReport(50, nil))
			}
			ev := p.Evaluate(now)
			if ev.Panic != tt.panic || ev.Candidates != tt.candidates || p.Picker().Load().Panic() != tt.panic {
				t.Fatalf("%+v", ev)
			}
			if ev.Capacity != 50*tt.candidates {
				t.Fatalf("capacity %d, want %d", ev.Capacity, 50*tt.candidates)
			}
			for _, st := range p.Status(now) {
				if st.Candidate && st.Weight != 1 {
					t.Fatalf("%s weight %v", st.ID, st.Weight)
				}
			}
		})
	}
}

// TestPoolWholeFleetNew is the incident's recovery phase: every instance
// is new, so the edge admits what the warming fleet can carry.
func TestPoolWholeFleetNew(t *testing.T) {
	p := newPool(t, DefaultConfig(), ids(4)...)
	for _, id := range ids(4) {
		p.RecordCheck(id, t0, CheckPass)
		p.RecordReport(id, t0, readyReport(100, nil))
	}
	for _, tt := range []struct {
		at   time.Duration
		want int
	}{{0, 40}, {time.Second, 40}, {2500 * time.Millisecond, 100}, {5 * time.Second, 200}, {10 * time.Second, 400}} {
		for _, id := range ids(4) { // reports stay fresh
			p.RecordReport(id, at(tt.at), readyReport(100, nil))
		}
		if ev := p.Evaluate(at(tt.at)); ev.Capacity != tt.want || !ev.Bounded {
			t.Errorf("+%v: capacity %d, want %d", tt.at, ev.Capacity, tt.want)
		}
	}
	// A report gone stale makes the bound unknown rather than wrong.
	ev := p.Evaluate(at(21 * time.Second))
	if ev.Bounded {
		t.Errorf("stale reports: bounded %d", ev.Capacity)
	}
}

func TestPoolShedding(t *testing.T) {
	p := newPool(t, DefaultConfig(), ids(4)...)
	down := map[string]string{"backend": health.DepDown}
	up := map[string]string{"backend": health.DepUp}
	for _, id := range ids(4) {
		p.RecordCheck(id, t0, CheckPass)
	}
	base := at(time.Minute) // past every slow start
	for i, id := range ids(4) {
		deps := up
		if i < 2 {
			deps = down
		}
		p.RecordReport(id, base, readyReport(100, deps))
	}
	p.Evaluate(base)
	if p.Shedder().Admit("backend", base, 0) {
		t.Fatal("2 of 4 down: must shed")
	}
	// Unready and draining instances do not vote.
	now := base.Add(time.Second)
	rep := readyReport(100, up)
	rep.Ready = false
	p.RecordReport(ids(4)[2], now, rep)
	rep = readyReport(100, up)
	rep.Draining = true
	p.RecordReport(ids(4)[3], now, rep)
	ev := p.Evaluate(now)
	st := p.Shedder().Status(now)[0]
	if st.Down != 2 || st.Ready != 2 || st.State != ShedShedding {
		t.Fatalf("status %+v", st)
	}
	if ev.Members != 3 || ev.Instances != 4 {
		t.Fatalf("a draining instance is not a member: %+v", ev)
	}
	if s := statusOf(t, p, ids(4)[3], now); s.State != InstanceDraining {
		t.Fatalf("state %v", s.State)
	}
	// A process restarted under the same address before its checks failed
	// still gets a slow start, timed from when it stopped draining.
	// All back up: ramp, and Next points at the ramp's end.
	now = base.Add(2 * time.Second)
	for _, id := range ids(4) {
		p.RecordReport(id, now, readyReport(100, up))
	}
	ev = p.Evaluate(now)
	if st := p.Shedder().Status(now)[0]; st.State != ShedRecovering || st.Ready != 4 {
		t.Fatalf("status %+v", st)
	}
	if s := statusOf(t, p, ids(4)[3], now); !s.Routable || s.Weight != 0.1 {
		t.Fatalf("back from draining: %+v", s)
	}
	if ev.Next.After(now.Add(5 * time.Second)) {
		t.Fatalf("Next = %v, after the ramp's end", ev.Next)
	}
}

func TestPoolDrainAndSync(t *testing.T) {
	p := newPool(t, DefaultConfig(), ids(3)...)
	for _, id := range ids(3) {
		p.RecordCheck(id, t0, CheckPass)
	}
	if err := p.SetDrained(ids(3)[0], true, t0); err != nil {
		t.Fatal(err)
	}
	if err := p.SetDrained("nope", true, t0); !errors.Is(err, ErrUnknownInstance) {
		t.Fatalf("err = %v", err)
	}
	ev := p.Evaluate(t0)
	if ev.Members != 2 || ev.Candidates != 2 || statusOf(t, p, ids(3)[0], t0).State != InstanceDrained {
		t.Fatalf("drained: %+v", ev)
	}
	// Reload: one kept, one removed, one added. Kept state survives.
	added, removed := p.Sync([]string{ids(3)[0], ids(3)[1], "10.0.0.9:8080"}, at(time.Second))
	if added != 1 || removed != 1 {
		t.Fatalf("Sync = %d, %d", added, removed)
	}
	if diff := cmp.Diff([]string{ids(3)[0], ids(3)[1], "10.0.0.9:8080"}, p.IDs()); diff != "" {
		t.Fatalf("ids (-want +got):\n%s", diff)
	}
	ev = p.Evaluate(at(time.Second))
	if ev.Candidates != 1 || statusOf(t, p, "10.0.0.9:8080", at(time.Second)).State != InstancePending {
		t.Fatalf("after sync: %+v", ev)
	}
	p.SetDrained(ids(3)[0], false, at(time.Minute))
	p.Evaluate(at(time.Minute + 5*time.Second)) // noticed late: the ramp runs from the undrain
	if st := statusOf(t, p, ids(3)[0], at(time.Minute)); !st.Routable || st.Weight != 0.5 {
		t.Fatalf("undrained: %+v", st)
	}
	if _, ok := p.RecordCheck("gone:1", t0, CheckPass); ok {
		t.Fatal("RecordCheck of an unknown id")
	}
}

func TestPoolStatusJSON(t *testing.T) {
	p := newPool(t, DefaultConfig(), ids(1)...)
	p.RecordCheck(ids(1)[0], t0, CheckPass)
	p.RecordReport(ids(1)[0], t0, readyReport(64, map[string]string{"backend": health.DepUp}))
	p.Evaluate(t0)
	b, err := json.Marshal(p.Status(t0))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"state":"healthy"`, `"last_check":"pass"`, `"weight":0.1`, `"limit":64`, `"in_flight":0`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("status JSON %s lacks %s", b, want)
		}
	}
	if strings.Contains(string(b), "ejected_until") {
		t.Errorf("zero times must be omitted: %s", b)
	}
}

func TestPoolReconfigure(t *testing.T) {
	p := newPool(t, DefaultConfig(), ids(2)...)
	id := ids(2)[0]
	p.RecordCheck(id, t0, CheckPass)
	cfg := DefaultConfig()
	cfg.HealthCheck.UnhealthyThreshold = 1
	cfg.Panic.Threshold = 0
	if err := p.Reconfigure(cfg); err != nil {
		t.Fatal(err)
	}
	if changed, _ := p.RecordCheck(id, at(time.Second), CheckFail); !changed {
		t.Fatal("new unhealthy_threshold 1 not applied")
	}
	bad := cfg
	bad.Outlier.BaseEjectionTime = 0
	if err := p.Reconfigure(bad); err == nil || !strings.Contains(err.Error(), "outlier.base_ejection_time: 0s: must be positive") {
		t.Fatalf("err = %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	def := DefaultConfig()
	def.Resolve()
	if err := def.Validate(); err != nil {
		t.Fatal(err)
	}
	cfg := def
	cfg.HealthCheck.HealthyThreshold = 0
	cfg.Shedding.Quorum = -1
	err := cfg.Validate()
	for _, want := range []string{"health_check.healthy_threshold: 0: must be at least 1", "shedding.quorum: -1: must be in [0, 1]"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("err = %v, want %q", err, want)
		}
	}
	if _, err := NewPool(cfg, nil, nil); err == nil {
		t.Error("NewPool accepted an invalid config")
	}
}

// A balancer that meets a warm fleet (after its own restart, say) sends
// each instance its full share at once; a fresh instance still ramps, so
// does a warm instance added later, and so does an instance that comes
// back after failing, whatever its report says.
func TestPoolWarmInstancesSkipSlowStart(t *testing.T) {
	p := newPool(t, DefaultConfig(), ids(2)...)
	warm, fresh := ids(2)[0], ids(2)[1]
	wr := readyReport(100, nil)
	wr.ReadyForSeconds = 3600
	fr := readyReport(100, nil)
	fr.ReadyForSeconds = 0.2
	p.RecordCheck(warm, t0, CheckPass)
	p.RecordReport(warm, t0, wr)
	p.RecordCheck(fresh, t0, CheckPass)
	p.RecordReport(fresh, t0, fr)
	ev := p.Evaluate(t0)
	if got := statusOf(t, p, warm, t0).Weight; got != 1 {
		t.Errorf("warm instance weight = %v, want 1", got)
	}
	if got := statusOf(t, p, fresh, t0).Weight; got >= 0.2 {
		t.Errorf("fresh instance weight = %v, want the start of a ramp", got)
	}
	if ev.Capacity >= 200 || ev.Capacity < 100 {
		t.Errorf("capacity = %d, want the warm instance's 100 plus a ramping share", ev.Capacity)
	}

	// The warm instance fails and comes back: now it ramps.
	for i := range 3 {
		p.RecordCheck(warm, at(time.Duration(i+1)*time.Second), CheckFail)
	}
	p.Evaluate(at(3 * time.Second))
	for i := range 2 {
		p.RecordCheck(warm, at(time.Duration(i+4)*time.Second), CheckPass)
	}
	p.RecordReport(warm, at(5*time.Second), wr)
	p.Evaluate(at(5 * time.Second))
	if got := statusOf(t, p, warm, at(5*time.Second)).Weight; got >= 0.5 {
		t.Errorf("weight after coming back = %v, want a ramp from its return", got)
	}
}

func TestPoolWarmInstanceAddedLaterRamps(t *testing.T) {
	p := newPool(t, DefaultConfig(), ids(1)...)
	p.Sync(ids(2), at(time.Second))
	late := ids(2)[1]
	wr := readyReport(100, nil)
	wr.ReadyForSeconds = 3600
	p.RecordCheck(late, at(time.Second), CheckPass)
	p.RecordReport(late, at(time.Second), wr)
	p.Evaluate(at(time.Second))
	if got := statusOf(t, p, late, at(time.Second)).Weight; got >= 0.2 {
		t.Errorf("warm instance added after start: weight %v, want the start of a ramp", got)
	}
}

// TestPoolCapFromUnknownInstanceLimit: an instance that reports no limit
// is capped in the pick at admission.unknown_instance_limit (× its
// weight), as one that reports a limit is at its own: the edge bound
// counts it so, and without the cap a pick could queue at one instance
// while another has room.
func TestPoolCapFromUnknownInstanceLimit(t *testing.T) {
	for _, tc := range []struct {
		name    string
		unknown int
		report  int
		want    float64
	}{
		{"reported limit", 4, 10, 10},
		{"no report: the assumed limit", 4, 0, 4},
		{"nothing assumed: no cap", 0, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Admission.UnknownInstanceLimit = tc.unknown
			p := newPool(t, cfg, ids(2)...)
			now := at(time.Minute) // past every ramp
			for _, id := range ids(2) {
				p.RecordCheck(id, t0, CheckPass)
				p.RecordCheck(id, at(time.Second), CheckPass)
				p.RecordReport(id, now, health.Report{Limit: tc.report})
			}
			p.Evaluate(now)
			for _, c := range p.Picker().Load().Candidates() {
				if c.Cap != tc.want {
					t.Errorf("%s: Cap %v, want %v", c.Endpoint.ID(), c.Cap, tc.want)
				}
			}
		})
	}
}
