package lb

import (
	"testing"
	"time"

	"github.com/spillway-dev/spillway/health"
)

// impairedPool is three routable instances with reports, routes "/login"
// (needs backend) and "/static" (needs nothing), no slow start.
func impairedPool(t *testing.T) (*Pool, []string) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.SlowStart.Window = 0
	routes, err := NewRouteTable([]Route{{Prefix: "/login", Dependencies: []string{"backend"}}, {Prefix: "/static"}})
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewPool(cfg, routes, seeded(7))
	if err != nil {
		t.Fatal(err)
	}
	id := ids(3)
	p.Sync(id, t0)
	for _, x := range id {
		p.RecordCheck(x, t0, CheckPass)
		p.RecordReport(x, t0, readyReport(10, map[string]string{"backend": health.DepUp, "cache": health.DepUp}))
	}
	p.Evaluate(t0)
	return p, id
}

// picks draws n requests for path and counts them by instance, releasing
// each at once.
func picks(p *Pool, path string, n int, now time.Time) map[string]int {
	got := map[string]int{}
	for range n {
		e, ok := p.Picker().PickFor(now, nil, path)
		if !ok {
			got["none"]++
			continue
		}
		got[e.ID()]++
		e.Release()
	}
	return got
}

func TestPickerAvoidsAnInstanceThatReportsADependencyDown(t *testing.T) {
	p, id := impairedPool(t)
	now := at(time.Second)
	p.RecordReport(id[0], now, readyReport(10, map[string]string{"backend": health.DepDown, "cache": health.DepUp}))
	ev := p.Evaluate(now)
	if ev.Routable != 3 || ev.Candidates != 3 {
		t.Fatalf("an impaired instance is still routable (never ejected): %+v", ev)
	}
	for _, path := range []string{"/login", "/other", ""} { // "/other" and "" need every dependency
		if got := picks(p, path, 300, now); got[id[0]] != 0 || got[id[1]] < 100 || got[id[2]] < 100 {
			t.Errorf("%q: picks %v, want none on %s (backend down) and the rest shared", path, got, id[0])
		}
	}
	wantBackOnUpReport(t, p, id[0], now, at(3*time.Second))
}

// wantBackOnUpReport checks the two ways around an instance x that /login
// avoids: a route that needs no dependency uses it all along, and once
// its report says the backend is up (at when), /login uses it again.
func wantBackOnUpReport(t *testing.T, p *Pool, x string, now, when time.Time) {
	t.Helper()
	if got := picks(p, "/static", 300, now); got[x] < 50 {
		t.Errorf("/static: picks %v, want %s to keep its share (a route without dependencies)", got, x)
	}
	p.RecordReport(x, when, readyReport(10, map[string]string{"backend": health.DepUp}))
	p.Evaluate(when)
	if got := picks(p, "/login", 300, when); got[x] < 50 {
		t.Errorf("after its report says up: picks %v, want %s back", got, x)
	}
}

func TestPickerFallsBackWhenEveryInstanceIsImpaired(t *testing.T) {
	p, id := impairedPool(t)
	now := at(time.Second)
	for _, x := range id {
		p.RecordReport(x, now, readyReport(10, map[string]string{"backend": health.DepDown}))
	}
	p.Evaluate(now)
	got := picks(p, "/login", 300, now)
	if got["none"] != 0 || got[id[0]] < 50 || got[id[1]] < 50 || got[id[2]] < 50 {
		t.Errorf("fleet-wide outage: picks %v, want every instance used (the edge sheds, the picker never refuses)", got)
	}
	// A retry that must avoid the one usable instance gets an impaired one
	// rather than nothing.
	p.RecordReport(id[0], now, readyReport(10, map[string]string{"backend": health.DepUp}))
	p.Evaluate(now)
	e0, _ := p.Endpoint(id[0])
	if e, ok := p.Picker().PickFor(now, e0, "/login"); !ok || e == e0 {
		t.Errorf("retry excluding the only usable instance: %v %v", e, ok)
	} else {
		e.Release()
	}
}

func TestPickerAvoidsAnInstanceFailingFastUntilItsNextReport(t *testing.T) {
	p, id := impairedPool(t)
	now := at(time.Second)
	ep, _ := p.Endpoint(id[1])
	if !p.ObserveFailingFast(ep) {
		t.Fatal("first fast failure is not news")
	}
	if p.ObserveFailingFast(ep) {
		t.Fatal("second fast failure is news")
	}
	if ev := p.Evaluate(now); ev.Routable != 3 || ev.Ejected != 0 {
		t.Fatalf("failing fast ejected or unrouted it: %+v", ev)
	}
	if got := picks(p, "/login", 300, now); got[id[1]] != 0 {
		t.Errorf("picks %v, want none on %s, which fails fast", got, id[1])
	}
	wantBackOnUpReport(t, p, id[1], now, at(2*time.Second))
}

// TestImpairedInstanceDoesNotWinByFailingFast: without the rule, the
// instance that answers fastest keeps the lowest outstanding count and
// wins most comparisons: here the two healthy instances hold requests,
// the impaired one never does.
func TestImpairedInstanceDoesNotWinByFailingFast(t *testing.T) {
	p, id := impairedPool(t)
	now := at(time.Second)
	p.RecordReport(id[2], now, readyReport(10, map[string]string{"backend": health.DepDown}))
	p.Evaluate(now)
	var held []*Endpoint
	got := map[string]int{}
	for range 200 {
		e, _ := p.Picker().PickFor(now, nil, "/login")
		got[e.ID()]++
		if e.ID() == id[2] {
			e.Release() // fails fast
		} else {
			held = append(held, e) // slow: still in flight
		}
	}
	for _, e := range held {
		e.Release()
	}
	if got[id[2]] != 0 {
		t.Errorf("picks %v: the instance that fails fast got %d of 200", got, got[id[2]])
	}
}

func TestPickUnimpairedAllocatesNothing(t *testing.T) {
	p, id := impairedPool(t)
	p.RecordReport(id[0], t0, readyReport(10, map[string]string{"backend": health.DepDown}))
	p.Evaluate(t0)
	pk := p.Picker()
	if n := testing.AllocsPerRun(1000, func() {
		e, _ := pk.PickFor(t0, nil, "/login")
		e.Release()
	}); n != 0 {
		t.Errorf("PickFor with an impaired candidate: %v allocations", n)
	}
}
