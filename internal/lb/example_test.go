package lb_test

import (
	"fmt"
	"time"

	"github.com/spillway-dev/spillway/health"
	"github.com/spillway-dev/spillway/internal/lb"
)

// The wiring in brief: health checks and reports feed the Pool under the
// balancer's lock; Evaluate publishes; each request then asks the Shedder
// and the Picker without that lock.
func ExamplePool() {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	pool, err := lb.NewPool(lb.DefaultConfig(), nil, nil)
	if err != nil {
		panic(err)
	}
	pool.Sync([]string{"10.0.0.1:8080", "10.0.0.2:8080"}, now)
	for _, id := range pool.IDs() {
		pool.RecordCheck(id, now, lb.CheckPass)
		pool.RecordReport(id, now, health.Report{Ready: true, Limit: 100,
			Dependencies: map[string]health.Dependency{"backend": {State: health.DepUp}}})
	}
	ev := pool.Evaluate(now)
	fmt.Printf("routable %d/%d, panic %v, edge bound %d (the fleet is new: 10%% weight)\n",
		ev.Routable, ev.Members, ev.Panic, ev.Capacity)

	// Per request:
	if dep, shed := pool.Shedder().Blocked("/login", now, 0.42); shed {
		fmt.Println("503 dependency_unavailable:", dep)
		return
	}
	ep, ok := pool.Picker().Pick(now, nil)
	if !ok {
		fmt.Println("503 no_instance")
		return
	}
	defer ep.Release()
	fmt.Println("proxy to an instance, in flight:", ep.Outstanding())
	// Output:
	// routable 2/2, panic false, edge bound 20 (the fleet is new: 10% weight)
	// proxy to an instance, in flight: 1
}

func ExampleShedder() {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	routes, _ := lb.NewRouteTable([]lb.Route{
		{Prefix: "/login", Dependencies: []string{"backend"}},
		{Prefix: "/static/"}, // needs nothing
	})
	cfg := lb.DefaultShedConfig()
	cfg.Recovery = lb.RecoveryWindow // a fixed 5s ramp; the default follows the backend
	s, _ := lb.NewShedder(cfg, routes)
	down := health.Report{Ready: true, Dependencies: map[string]health.Dependency{"backend": {State: health.DepDown}}}
	up := health.Report{Ready: true, Dependencies: map[string]health.Dependency{"backend": {State: health.DepUp}}}

	s.Update(now, []health.Report{down, down, up}) // 2 of 3 ready instances: a quorum
	dep, blocked := s.Blocked("/login", now, 0.5)
	fmt.Println("/login blocked:", blocked, dep)
	_, blocked = s.Blocked("/static/app.js", now, 0.5)
	fmt.Println("/static blocked:", blocked)

	s.Update(now.Add(time.Minute), []health.Report{up, up, up}) // back: ramp over 5s
	mid := now.Add(time.Minute + 2500*time.Millisecond)
	fmt.Println("mid-ramp, u=0.3:", s.Admit("backend", mid, 0.3), "u=0.7:", s.Admit("backend", mid, 0.7))
	st := s.Status(mid)[0]
	fmt.Printf("%s %s admitted %.2f\n", st.Name, st.State, st.Admitted)
	// Output:
	// /login blocked: true backend
	// /static blocked: false
	// mid-ramp, u=0.3: true u=0.7: false
	// backend recovering admitted 0.50
}

func ExampleRetryBudget() {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	b, _ := lb.NewRetryBudget(lb.RetryBudgetConfig{Ratio: 0.2, MinRetriesPerSecond: 0, Window: 10 * time.Second})
	for range 100 {
		b.Request(now)
	}
	n := 0
	for b.TryRetry(now) {
		n++
	}
	fmt.Println("retries allowed for 100 requests:", n)
	// Output: retries allowed for 100 requests: 20
}

func ExampleSlowStart() {
	start := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	ramp := lb.DefaultSlowStartConfig().Start(start)
	for _, s := range []int{0, 2, 5, 10} {
		fmt.Printf("+%ds: %.1f\n", s, ramp.Weight(start.Add(time.Duration(s)*time.Second)))
	}
	// Output:
	// +0s: 0.1
	// +2s: 0.2
	// +5s: 0.5
	// +10s: 1.0
}
