package fleet_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spillway-dev/spillway/internal/fleet"
	"golang.org/x/sync/errgroup"
)

// Wiring a fleet to a load balancer's discovery: Run owns the processes,
// Watch feeds every change of the instance set to the balancer.
func ExampleFleet_Watch() {
	cfg := fleet.DefaultConfig()
	cfg.Args = []string{"--backend", "http://127.0.0.1:9000", "--dev"}
	f, err := fleet.New(cfg, fleet.Options{
		Logger:     slog.New(slog.NewTextHandler(os.Stderr, nil)),
		Registerer: prometheus.NewRegistry(),
	})
	if err != nil {
		panic(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return f.Run(ctx) })
	g.Go(func() error {
		return f.Watch(ctx, func(set []fleet.Announcement) {
			// e.g. balancer.Sync(set): add the new, drain the withdrawn.
			fmt.Println(len(set), "instances")
		})
	})
	_ = g.Wait()
}

// The guardrails decide on an injected clock: a fleet of three may replace
// one instance per minute, and replaces nothing while two of them fail
// together.
func ExampleGuardrails() {
	cfg := fleet.DefaultConfig() // three instances
	g := fleet.NewGuardrails(&cfg)
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

	fmt.Println("slot-0 unhealthy:", g.Request(t0))
	fmt.Println("slot-1 unhealthy 10s later:", g.Request(t0.Add(10*time.Second)))

	g.Freeze.Fail("slot-1", t0.Add(2*time.Minute))
	g.Freeze.Fail("slot-2", t0.Add(2*time.Minute))
	frozen, _ := g.Freeze.Update(t0.Add(2 * time.Minute))
	fmt.Println("two of three failing, frozen:", frozen, "->", g.Request(t0.Add(2*time.Minute)))

	g.Freeze.Recover("slot-1")
	g.Freeze.Update(t0.Add(3 * time.Minute))
	fmt.Println("slot-1 passes again:", g.Request(t0.Add(3*time.Minute)))
	// Output:
	// slot-0 unhealthy: replace
	// slot-1 unhealthy 10s later: budget_exhausted
	// two of three failing, frozen: true -> frozen
	// slot-1 passes again: replace
}

// The plan decides on an injected clock, without processes: the caller
// starts what it is told to, reports what it sees, and applies the
// actions. A crash is restarted after the backoff.
func ExamplePlan() {
	cfg := fleet.DefaultConfig()
	cfg.Size = 2
	p, err := fleet.NewPlan(cfg, nil) // nil: this process's own guardrails
	if err != nil {
		panic(err)
	}
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	show := func(acts []fleet.Action) {
		for _, a := range acts {
			fmt.Println(a.Kind, a.ID, a.After)
		}
	}
	for _, a := range p.Boot(t0) {
		show([]fleet.Action{a})
		show(p.Started(a.ID, t0)) // the start succeeded
	}
	show(p.Ready("i-1", t0.Add(time.Second)))
	show(p.Exited("i-1", fleet.Exit{Status: "signal: killed"}, t0.Add(time.Minute)))
	fmt.Println("wake at", p.Next().Sub(t0))
	show(p.Tick(p.Next()))
	// Output:
	// start i-1 0s
	// start i-2 0s
	// ready i-1 1s
	// crashed i-1 1s
	// wake at 1m1s
	// start i-3 0s
}
