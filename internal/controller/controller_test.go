//go:build unix

package controller

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/spillway-dev/spillway/internal/haproxy"
	"github.com/spillway-dev/spillway/internal/lb"
	"github.com/spillway-dev/spillway/internal/testkit"
	"github.com/spillway-dev/spillway/internal/testkit/haproxytest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// rig is a real HAProxy running the configuration haproxy.Config renders
// for cfg (after haproxytest's own global and defaults sections: HAProxy
// merges them), with its share map in the test's directory.
type rig struct {
	*haproxytest.Server
	cfg haproxy.Config
	rt  *haproxy.Runtime
}

// instances returns n instances on loopback addresses nothing listens on:
// HAProxy's own checks mark their servers down, which changes neither
// their administrative state nor their weight.
func instances(n int) []lb.Instance {
	out := make([]lb.Instance, n)
	for i := range out {
		out[i] = lb.Instance{Service: fmt.Sprintf("127.0.0.1:%d", 1001+i), Health: fmt.Sprintf("127.0.0.1:%d", 2001+i)}
	}
	return out
}

func startRig(t *testing.T, insts []lb.Instance, routes []lb.RouteConfig) *rig {
	t.Helper()
	r := &rig{cfg: haproxy.DefaultConfig()}
	r.cfg.Listen = testkit.FreePort(t)
	r.cfg.Instances, r.cfg.Routes = insts, routes
	r.cfg.Dynamic = len(insts) == 0 // servers added at run time
	r.Server = haproxytest.Start(t, func(dir string) string {
		r.cfg.Socket = filepath.Join(dir, "ctl.sock")
		r.cfg.MapFile = filepath.Join(dir, "routes.map")
		if err := r.cfg.WriteFiles(filepath.Join(dir, "rendered.cfg")); err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		if err := r.cfg.Render(&b); err != nil {
			t.Fatal(err)
		}
		return b.String()
	})
	rt, err := haproxy.NewRuntime(r.Socket)
	if err != nil {
		t.Fatal(err)
	}
	r.rt = rt
	return r
}

func tctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	t.Cleanup(cancel)
	return c
}

// newController returns a controller of r's HAProxy for cfg, fed by feed,
// polling every 50ms.
func newController(t *testing.T, r *rig, cfg haproxy.Config, feed *lb.PlanFeed) *Controller {
	t.Helper()
	c, err := New(Options{Runtime: r.rt, Config: cfg, Plans: feed, Fix: "spillway controller --print-haproxy-config ...",
		Poll: 50 * time.Millisecond, Backoff: Backoff{Min: 20 * time.Millisecond, Max: 200 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// run runs c until the test ends; stop stops it and returns Run's error.
func run(t *testing.T, c *Controller) (stop func() error) {
	t.Helper()
	return testkit.Go(t, "controller", 5*time.Second, c.Run)
}

// serverRow is what a test checks of a server.
type serverRow struct {
	State  lb.ServerState
	Weight int
}

func (r *rig) servers(t *testing.T) map[string]serverRow {
	t.Helper()
	servers, err := r.rt.ServersState(tctx(t), haproxy.BackendName)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]serverRow{}
	for _, s := range servers {
		out[s.Name] = serverRow{stateOf(s.AdminState), s.Weight}
	}
	return out
}

func (r *rig) mapValues(t *testing.T) map[string]string {
	t.Helper()
	entries, err := r.rt.ShowMap(tctx(t), r.cfg.MapFile)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, e := range entries {
		out[e.Key] = e.Value
	}
	return out
}

func changes(c *Controller, kind string) int {
	return int(testutil.ToFloat64(c.m.changes.WithLabelValues(kind)))
}

func applied(c *Controller) int { return int(testutil.ToFloat64(c.m.applied)) }

// waitApplied waits until c has converged HAProxy to more than n plans.
func waitApplied(t *testing.T, c *Controller, n int) {
	t.Helper()
	testkit.WaitFor(t, 5*time.Second, fmt.Sprintf("more than %d plans applied", n), func() bool { return applied(c) > n })
}

// TestStartNamesWhatIsMissing: at start the controller reads HAProxy and
// refuses, naming each server it lacks (the share map's content is the
// controller's own: no key is required) and the command that writes a
// configuration that has them.
func TestStartNamesWhatIsMissing(t *testing.T) {
	r := startRig(t, instances(1), []lb.RouteConfig{{Prefix: "/api/", Dependencies: []string{"backend"}}})
	want := r.cfg
	want.Instances = instances(2)
	want.Routes = append(want.Routes, lb.RouteConfig{Prefix: "/static/", Dependencies: []string{}})
	feed := lb.NewPlanFeed()
	c := newController(t, r, want, feed)
	err := c.Run(tctx(t))
	if !errors.Is(err, ErrMissing) {
		t.Fatalf("Run: %v, want ErrMissing", err)
	}
	for _, s := range []string{
		"server instances/s-127.0.0.1-1002 (instance 127.0.0.1:1002)",
		"spillway controller --print-haproxy-config",
	} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q\nlacks %q", err, s)
		}
	}
	if strings.Contains(err.Error(), "s-127.0.0.1-1001") || strings.Contains(err.Error(), `"/api/"`) {
		t.Errorf("error %q names what exists", err)
	}

	// An HAProxy without the backend and the map at all.
	bare := haproxytest.Start(t, func(string) string {
		return "frontend fe\n    bind " + testkit.FreePort(t) + "\n    http-request return status 200\n"
	})
	rt, err := haproxy.NewRuntime(bare.Socket)
	if err != nil {
		t.Fatal(err)
	}
	c2, err := New(Options{Runtime: rt, Config: want, Plans: feed})
	if err != nil {
		t.Fatal(err)
	}
	err = c2.Run(tctx(t))
	if !errors.Is(err, ErrMissing) || !strings.Contains(err.Error(), `backend "instances"`) || !strings.Contains(err.Error(), "map "+r.cfg.MapFile) {
		t.Errorf("Run on a bare HAProxy: %v, want the backend and the map named", err)
	}
}

// TestConvergeSendsOnlyTheDiff: from a drifted HAProxy the controller
// sends exactly what differs from the plan; a plan published again, and a
// controller restarted on the same plan, send nothing.
func TestConvergeSendsOnlyTheDiff(t *testing.T) {
	insts := instances(3)
	r := startRig(t, insts, nil)
	s := func(i int) string { return haproxy.ServerName(insts[i].Service) }
	// The drift: what an earlier controller or an operator left.
	ctx := tctx(t)
	for _, err := range []error{
		r.rt.SetWeight(ctx, haproxy.BackendName, s(0), 50),
		r.rt.SetServerState(ctx, haproxy.BackendName, s(1), haproxy.StateDrain),
		r.rt.SetMaxconn(ctx, haproxy.BackendName, s(2), 7),
		r.rt.SetMap(ctx, r.cfg.MapFile, "/", "0"),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	plan := lb.Plan{
		Settled: true,
		Instances: []lb.PlanInstance{
			{ID: insts[0].Service, State: lb.ServerReady, Weight: 50},  // as drifted
			{ID: insts[1].Service, State: lb.ServerReady, Weight: 100}, // drain -> ready
			{ID: insts[2].Service, State: lb.ServerReady, Weight: 100}, // maxconn 7 -> 0
		},
		Dependencies: []lb.PlanDependency{{Name: "backend", State: lb.ShedRecovering, Share: 0.25}},
		Routes:       []lb.PlanRoute{{Prefix: "/", Share: 0.25}}, // 0 -> 250
	}
	feed := lb.NewPlanFeed()
	feed.Publish(plan)
	c := newController(t, r, r.cfg, feed)
	stop := run(t, c)
	waitApplied(t, c, 0)
	want := map[string]int{"state": 1, "weight": 0, "maxconn": 1, "map": 1}
	for kind, n := range want {
		if got := changes(c, kind); got != n {
			t.Errorf("%s changes: %d, want %d", kind, got, n)
		}
	}
	if got := r.servers(t); got[s(0)] != (serverRow{lb.ServerReady, 50}) || got[s(1)] != (serverRow{lb.ServerReady, 100}) {
		t.Errorf("servers: %+v", got)
	}
	if got := r.mapValues(t)["/"]; got != "250" {
		t.Errorf(`map "/": %q, want 250`, got)
	}
	limits, err := c.serverLimits(tctx(t))
	if err != nil || limits[s(2)] != 0 || len(limits) != 3 {
		t.Errorf("maxconn: %v %v, want %s unlimited", limits, err, s(2))
	}

	// The same plan again: nothing sent.
	n := applied(c)
	feed.Publish(plan)
	waitApplied(t, c, n)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	total := changes(c, "state") + changes(c, "weight") + changes(c, "maxconn") + changes(c, "map")

	// A new controller (a restart) on the same plan: it reads the state
	// back and sends nothing.
	c2 := newController(t, r, r.cfg, feed)
	run(t, c2)
	waitApplied(t, c2, 0)
	if got := changes(c, "state") + changes(c, "weight") + changes(c, "maxconn") + changes(c, "map"); got != total {
		t.Errorf("changes after the same plan again: %d, want %d", got, total)
	}
	for _, kind := range []string{"state", "weight", "maxconn", "map"} {
		if got := changes(c2, kind); got != 0 {
			t.Errorf("restarted controller: %d %s changes, want none", got, kind)
		}
	}

	// A drain, then maint: the state goes, the weight stays.
	plan.Instances[0].State, plan.Instances[0].Weight = lb.ServerDrain, 0
	plan.Instances[1].State, plan.Instances[1].Weight = lb.ServerMaint, 0
	plan.Instances[2].State = lb.ServerUnknown // left as it is
	n = applied(c2)
	feed.Publish(plan)
	waitApplied(t, c2, n)
	got := r.servers(t)
	if got[s(0)] != (serverRow{lb.ServerDrain, 50}) || got[s(1)].State != lb.ServerMaint || got[s(2)] != (serverRow{lb.ServerReady, 100}) {
		t.Errorf("servers after drain and maint: %+v", got)
	}
}

// TestShareMap: the share map is empty while every route admits all;
// while one does not it holds every route, longest prefix first, at its
// admitted share in per-mille. Filling and emptying replace the map in one
// change; a value alone is set by itself.
func TestShareMap(t *testing.T) {
	routes := []lb.RouteConfig{
		{Prefix: "/api/", Dependencies: []string{"backend"}},
		{Prefix: "/api/mail/", Dependencies: []string{"backend", "mail"}},
		{Prefix: "/static/", Dependencies: []string{}},
	}
	r := startRig(t, instances(1), routes)
	show := func() string {
		t.Helper()
		entries, err := r.rt.ShowMap(tctx(t), r.cfg.MapFile)
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		for _, e := range entries {
			fmt.Fprintf(&b, "%s=%s ", e.Key, e.Value)
		}
		return strings.TrimSpace(b.String())
	}
	if got := show(); got != "" {
		t.Fatalf("map before: %q, want empty", got)
	}
	feed := lb.NewPlanFeed()
	publish := func(c *Controller, p lb.Plan) {
		t.Helper()
		n := applied(c)
		feed.Publish(p)
		waitApplied(t, c, n)
	}
	plan := lb.Plan{
		Settled:      true,
		Dependencies: []lb.PlanDependency{{Name: "backend", State: lb.ShedRecovering, Share: 0.5}, {Name: "mail", State: lb.ShedShedding}},
		Routes:       []lb.PlanRoute{{Prefix: "/api/mail/", Share: 0}, {Prefix: "/static/", Share: 1}, {Prefix: "/api/", Share: 0.5}}, // "/" left to Share
	}
	feed.Publish(plan)
	c := newController(t, r, r.cfg, feed)
	run(t, c)
	waitApplied(t, c, 0)
	check := func(step, want string, n int) {
		t.Helper()
		if got := show(); got != want {
			t.Errorf("%s: map %q, want %q", step, got, want)
		}
		if got := changes(c, "map"); got != n {
			t.Errorf("%s: %d map changes, want %d", step, got, n)
		}
	}
	check("filled", "/api/mail/=0 /static/=1000 /api/=500 /=0", 1)

	// The ramp goes on: one value.
	plan.Dependencies[0].Share, plan.Routes[2].Share = 0.75, 0.75
	publish(c, plan)
	check("ramp", "/api/mail/=0 /static/=1000 /api/=750 /=0", 2)

	// Everything admitted again: the map empties.
	plan.Dependencies = nil
	plan.Routes = []lb.PlanRoute{{Prefix: "/api/mail/", Share: 1}, {Prefix: "/static/", Share: 1}, {Prefix: "/api/", Share: 1}}
	publish(c, plan)
	check("recovered", "", 3)
}

// TestHAProxyRestartReapplied: HAProxy stopped, the controller keeps
// trying (haproxy_up 0); HAProxy back with its configuration's values,
// the controller notices and applies the plan again.
func TestHAProxyRestartReapplied(t *testing.T) {
	insts := instances(2)
	r := startRig(t, insts, nil)
	feed := lb.NewPlanFeed()
	feed.Publish(lb.Plan{
		Settled: true,
		Instances: []lb.PlanInstance{
			{ID: insts[0].Service, State: lb.ServerReady, Weight: 30, MaxConn: 12},
			{ID: insts[1].Service, State: lb.ServerDrain},
		},
		Routes: []lb.PlanRoute{{Prefix: "/", Share: 0}},
	})
	c := newController(t, r, r.cfg, feed)
	run(t, c)
	waitApplied(t, c, 0)
	s0, s1 := haproxy.ServerName(insts[0].Service), haproxy.ServerName(insts[1].Service)
	applied := func() bool {
		got := r.servers(t)
		return got[s0] == (serverRow{lb.ServerReady, 30}) && got[s1].State == lb.ServerDrain && r.mapValues(t)["/"] == "0"
	}
	if !applied() {
		t.Fatalf("plan not applied: %+v %v", r.servers(t), r.mapValues(t))
	}

	r.Stop()
	testkit.WaitFor(t, 5*time.Second, "haproxy_up 0", func() bool { return testutil.ToFloat64(c.m.up) == 0 })
	r.Restart()
	testkit.WaitFor(t, 5*time.Second, "the plan applied again", applied)
	limits, err := c.serverLimits(tctx(t))
	if err != nil || limits[s0] != 12 {
		t.Errorf("maxconn after restart: %v %v, want 12", limits, err)
	}
	if up := testutil.ToFloat64(c.m.up); up != 1 {
		t.Errorf("haproxy_up %v, want 1", up)
	}
	t.Logf("resyncs: start %v, haproxy_restart %v, error %v", testutil.ToFloat64(c.m.resyncs.WithLabelValues("start")),
		testutil.ToFloat64(c.m.resyncs.WithLabelValues("haproxy_restart")), testutil.ToFloat64(c.m.resyncs.WithLabelValues("error")))
}

// TestHAProxyRestartNoticed: a restart between two polls, with no
// failed command, is noticed by show info's pid.
func TestHAProxyRestartNoticed(t *testing.T) {
	insts := instances(1)
	r := startRig(t, insts, nil)
	feed := lb.NewPlanFeed()
	feed.Publish(lb.Plan{Settled: true, Instances: []lb.PlanInstance{{ID: insts[0].Service, State: lb.ServerReady, Weight: 40}}, Routes: []lb.PlanRoute{{Prefix: "/", Share: 1}}})
	c, err := New(Options{Runtime: r.rt, Config: r.cfg, Plans: feed, Poll: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	run(t, c)
	waitApplied(t, c, 0)
	r.Restart() // well within a poll
	s0 := haproxy.ServerName(insts[0].Service)
	testkit.WaitFor(t, 5*time.Second, "weight 40 again", func() bool { return r.servers(t)[s0].Weight == 40 })
	if n := testutil.ToFloat64(c.m.resyncs.WithLabelValues("haproxy_restart")) + testutil.ToFloat64(c.m.resyncs.WithLabelValues("error")); n < 1 {
		t.Errorf("no resync counted")
	}
}

// TestUnsettledPlanKeepsMap: a controller restarted mid-outage finds the
// map at 0; until its balancer has checked every instance (the plan is
// not settled, its share is 1 for lack of reports) it leaves the map as
// it is, and sets what the settled plan says.
func TestUnsettledPlanKeepsMap(t *testing.T) {
	insts := instances(2)
	r := startRig(t, insts, nil)
	if err := r.rt.SetMap(tctx(t), r.cfg.MapFile, "/", "0"); err != nil {
		t.Fatal(err)
	}
	feed := lb.NewPlanFeed()
	plan := lb.Plan{
		Instances: []lb.PlanInstance{{ID: insts[0].Service, State: lb.ServerReady, Weight: 100}, {ID: insts[1].Service}},
		Routes:    []lb.PlanRoute{{Prefix: "/", Share: 1}},
	}
	feed.Publish(plan)
	c := newController(t, r, r.cfg, feed)
	run(t, c)
	waitApplied(t, c, 0)
	if got := r.mapValues(t)["/"]; got != "0" || changes(c, "map") != 0 {
		t.Errorf(`unsettled plan: map "/" %q after %d changes, want 0 and none`, got, changes(c, "map"))
	}
	plan.Settled = true
	plan.Routes[0].Share = 0.5
	n := applied(c)
	feed.Publish(plan)
	waitApplied(t, c, n)
	if got := r.mapValues(t)["/"]; got != "500" {
		t.Errorf(`settled plan: map "/" %q, want 500`, got)
	}
}

// TestDynamicServers: with a dynamic configuration the controller adds
// a server for each instance of the plan (an unchecked one stays in
// maintenance), drives it as any other, and deletes it once the instance
// has left the plan; a restarted controller finds them and sends nothing.
func TestDynamicServers(t *testing.T) {
	r := startRig(t, nil, nil)
	insts := instances(2)
	s0, s1 := haproxy.ServerName(insts[0].Service), haproxy.ServerName(insts[1].Service)
	feed := lb.NewPlanFeed()
	plan := lb.Plan{
		Settled: true,
		Instances: []lb.PlanInstance{
			{ID: insts[0].Service, Health: insts[0].Health, State: lb.ServerReady, Weight: 30},
			{ID: insts[1].Service, Health: insts[1].Health}, // not checked yet
		},
		Routes: []lb.PlanRoute{{Prefix: "/", Share: 1}},
	}
	feed.Publish(plan)
	c := newController(t, r, r.cfg, feed)
	stop := run(t, c)
	waitApplied(t, c, 0)
	got := r.servers(t)
	if got[s0] != (serverRow{lb.ServerReady, 30}) || got[s1] != (serverRow{lb.ServerMaint, haproxy.FullWeight}) || len(got) != 2 {
		t.Errorf("servers added: %+v", got)
	}
	if n := changes(c, "server"); n != 2 {
		t.Errorf("server changes: %d, want 2 added", n)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	c2 := newController(t, r, r.cfg, feed)
	run(t, c2)
	waitApplied(t, c2, 0)
	for _, kind := range []string{"state", "weight", "maxconn", "map", "server"} {
		if n := changes(c2, kind); n != 0 {
			t.Errorf("restarted controller: %d %s changes, want none", n, kind)
		}
	}
	// The first instance leaves: its server goes to maint, then away.
	plan.Instances = plan.Instances[1:]
	n := applied(c2)
	feed.Publish(plan)
	waitApplied(t, c2, n)
	testkit.WaitFor(t, 5*time.Second, s0+" deleted", func() bool { _, ok := r.servers(t)[s0]; return !ok })
	if n := changes(c2, "server"); n != 1 {
		t.Errorf("server changes after a removal: %d, want 1 deleted", n)
	}
}

func TestBackoff(t *testing.T) {
	b := Backoff{Min: 100 * time.Millisecond, Max: time.Second}
	for attempt, want := range map[int]time.Duration{1: 100 * time.Millisecond, 2: 200 * time.Millisecond, 4: 800 * time.Millisecond, 5: time.Second, 60: time.Second} {
		if got := b.Delay(attempt); got != want {
			t.Errorf("Delay(%d) = %v, want %v", attempt, got, want)
		}
	}
}
