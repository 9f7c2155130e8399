package lb

import (
	"math"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestPlanInstances: the state, weight and cap of each instance in a Plan,
// from the same Evaluate that feeds the proxy.
func TestPlanInstances(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Panic.Threshold = 0 // panic on its own below
	id := ids(6)
	ramping, drained, dead, unchecked, failing, draining := id[0], id[1], id[2], id[3], id[4], id[5]
	p := newPool(t, cfg, id...)
	for _, x := range []string{ramping, drained, dead, failing, draining} {
		p.RecordCheck(x, t0, CheckPass)
	}
	p.Evaluate(t0)
	if err := p.SetDrained(drained, true, t0); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		when := at(time.Duration(i+1) * time.Second)
		p.RecordCheck(dead, when, CheckConnectError)
		p.RecordCheck(failing, when, CheckFail)
	}
	now := at(5 * time.Second)
	p.RecordReport(ramping, now, readyReport(40, nil))
	rep := readyReport(0, nil)
	rep.Draining = true
	p.RecordReport(draining, now, rep)
	ev := p.Evaluate(now)
	w := statusOf(t, p, ramping, now).Weight
	if w <= 0.1 || w >= 1 {
		t.Fatalf("weight %v: want mid-ramp", w)
	}
	got := p.planInstances(now, ev, func(id string) string { return "h/" + id })
	want := []PlanInstance{
		{ID: ramping, Health: "h/" + ramping, State: ServerReady, Weight: int(math.Round(w * 100)), MaxConn: int(math.Ceil(40 * w))},
		{ID: drained, Health: "h/" + drained, State: ServerDrain},
		{ID: dead, Health: "h/" + dead, State: ServerMaint},
		{ID: unchecked, Health: "h/" + unchecked, State: ServerUnknown},
		{ID: failing, Health: "h/" + failing, State: ServerDrain},
		{ID: draining, Health: "h/" + draining, State: ServerDrain},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("plan (-want +got):\n%s", d)
	}

	// Panic: every instance that accepts connections at full weight,
	// uncapped, as the proxy routes in panic.
	cfg.Panic.Threshold = 0.9
	if err := p.Reconfigure(cfg); err != nil {
		t.Fatal(err)
	}
	ev = p.Evaluate(now)
	if !ev.Panic {
		t.Fatalf("no panic: %+v", ev)
	}
	plan := Plan{Instances: p.planInstances(now, ev, func(string) string { return "" })}
	for _, x := range []string{ramping, failing} {
		if pi, _ := plan.Instance(x); pi.State != ServerReady || pi.Weight != FullWeight || pi.MaxConn != 0 {
			t.Errorf("panic: %s: %+v, want ready at full weight, uncapped", x, pi)
		}
	}
	if pi, _ := plan.Instance(dead); pi.State != ServerMaint {
		t.Errorf("panic: dead %+v, want maint", pi)
	}
}

// TestPlanConnectErrorAtOnce: one failed connect takes an instance's
// server out (maint) although it is still healthy (below the unhealthy
// threshold) for the balancer; a pass puts it back at its weight.
func TestPlanConnectErrorAtOnce(t *testing.T) {
	cfg := DefaultConfig()
	cfg.SlowStart.Window = 0
	id := ids(2)
	p := newPool(t, cfg, id...)
	for _, x := range id {
		p.RecordCheck(x, t0, CheckPass)
	}
	p.Evaluate(t0)
	now := at(time.Second)
	p.RecordCheck(id[0], now, CheckConnectError)
	ev := p.Evaluate(now)
	plan := Plan{Instances: p.planInstances(now, ev, func(string) string { return "" })}
	if pi, _ := plan.Instance(id[0]); pi.State != ServerMaint {
		t.Errorf("after one connect error: %+v, want maint", pi)
	}
	if st := statusOf(t, p, id[0], now); st.State != InstanceHealthy || !st.Routable {
		t.Errorf("one connect error made the instance unhealthy: the threshold is %d", cfg.HealthCheck.UnhealthyThreshold)
	}
	later := at(2 * time.Second)
	p.RecordCheck(id[0], later, CheckPass)
	ev = p.Evaluate(later)
	plan = Plan{Instances: p.planInstances(later, ev, func(string) string { return "" })}
	if pi, _ := plan.Instance(id[0]); pi.State != ServerReady || pi.Weight != FullWeight {
		t.Errorf("after a pass: %+v, want ready at full weight", pi)
	}
}

// TestPlanShares: a route's share is the least of its dependencies'; the
// window ramp's share rises with time and says it moves.
func TestPlanShares(t *testing.T) {
	s := newShedder(t, windowShedConfig(), []Route{ // 5s ramp
		{Prefix: "/api/", Dependencies: backend},
		{Prefix: "/api/mail/", Dependencies: bothNames},
		{Prefix: "/static/", Dependencies: []string{}},
	})
	s.Update(t0, reports(bothNames, backend, backend))
	deps, routes, moving := s.planShares(t0)
	wantDeps := []PlanDependency{{Name: "backend", State: ShedShedding, Share: 0}, {Name: "mail", State: ShedOK, Share: 1}}
	wantRoutes := []PlanRoute{{"/api/mail/", 0}, {"/static/", 1}, {"/api/", 0}, {"/", 0}}
	if d := cmp.Diff(wantDeps, deps); d != "" || moving {
		t.Errorf("shedding: moving %v, deps (-want +got):\n%s", moving, d)
	}
	if d := cmp.Diff(wantRoutes, routes); d != "" {
		t.Errorf("shedding: routes (-want +got):\n%s", d)
	}

	back := at(10 * time.Second)
	s.Update(back, reports(bothNames, none, none))
	deps, routes, moving = s.planShares(back.Add(time.Second))
	if !moving || deps[0].State != ShedRecovering {
		t.Fatalf("recovering: moving %v, %+v", moving, deps)
	}
	approx(t, "backend share 1s into a 5s ramp", deps[0].Share, 0.2, 1e-9)
	plan := Plan{Dependencies: deps, Routes: routes}
	for _, tt := range []struct {
		prefix string
		want   float64
	}{{"/api/mail/", 0.2}, {"/api/", 0.2}, {"/static/", 1}, {"/", 0.2}} {
		got, ok := plan.Route(tt.prefix)
		if !ok {
			t.Fatalf("no route %s", tt.prefix)
		}
		approx(t, "share of "+tt.prefix, got, tt.want, 1e-9)
	}
	approx(t, "Share(mail)", plan.Share([]string{"mail"}, false), 1, 0)
	approx(t, "Share(all)", plan.Share(nil, true), 0.2, 1e-9)

	_, routes, moving = s.planShares(back.Add(6 * time.Second))
	if moving || routes[0].Share != 1 {
		t.Errorf("after the ramp: moving %v, %+v", moving, routes)
	}
}

// TestPlanFeedKeepsTheLatest: Publish never blocks; a reader sees one
// signal and the latest plan.
func TestPlanFeedKeepsTheLatest(t *testing.T) {
	f := NewPlanFeed()
	if _, ok := f.Latest(); ok {
		t.Fatal("a plan before any Publish")
	}
	for i := range 3 {
		f.Publish(Plan{At: at(time.Duration(i) * time.Second)})
	}
	<-f.Ready()
	select {
	case <-f.Ready():
		t.Fatal("a second signal for plans published before the read")
	default:
	}
	if p, ok := f.Latest(); !ok || !p.At.Equal(at(2*time.Second)) {
		t.Errorf("latest %v %v, want the third", p.At, ok)
	}
}
