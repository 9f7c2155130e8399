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

// A schedule pre-warms the fleet before a known peak: the plan wakes its
// caller (Next) when the window's lead begins, starts the extra
// instances, and stops them, newest first, when the window closes.
func ExamplePlan_schedule() {
	cfg := fleet.DefaultConfig()
	cfg.Size = 2
	cfg.Schedule = []fleet.Window{{
		Name: "morning-peak", Start: "0 8 * * 1-5", Duration: 2 * time.Hour,
		TimeZone: "Europe/Berlin", Instances: 4,
	}}
	p, err := fleet.NewPlan(cfg, nil)
	if err != nil {
		panic(err)
	}
	show := func(now time.Time, acts []fleet.Action) {
		for _, a := range acts {
			switch a.Kind {
			case fleet.ActScaled:
				fmt.Printf("scaled %d -> %d: %s\n", a.From, a.Target, a.Detail)
			case fleet.ActStart:
				p.Started(a.ID, now) // the start succeeded
				fmt.Println(a.Kind, a.ID)
			default:
				fmt.Println(a.Kind, a.ID, a.Reason)
			}
		}
	}
	monday := time.Date(2026, 3, 2, 6, 0, 0, 0, time.UTC) // 07:00 in Berlin
	show(monday, p.Boot(monday))
	for range 2 {
		now := p.Next()
		fmt.Println("wake at", now.In(time.UTC).Format("15:04 MST"))
		show(now, p.Tick(now))
	}
	// Output:
	// start i-1
	// start i-2
	// wake at 06:58 UTC
	// scaled 2 -> 4: window "morning-peak" (4 per host) Mon 08:00 to Mon 10:00 Europe/Berlin
	// start i-3
	// start i-4
	// wake at 09:00 UTC
	// scaled 4 -> 2: size 2: no open window needs more
	// stop i-4 scale_down
	// stop i-3 scale_down
}
