package controller_test

import (
	"context"
	"log/slog"
	"os"

	"golang.org/x/sync/errgroup"

	"github.com/spillway-dev/spillway/internal/controller"
	"github.com/spillway-dev/spillway/internal/haproxy"
	"github.com/spillway-dev/spillway/internal/lb"
)

// A balancer without a proxy decides; the controller applies its plans to
// the HAProxy whose configuration was rendered from the same instances
// and routes. `spillway controller` is this, with flags.
func Example() {
	cfg := lb.DefaultConfig()
	cfg.Instances = []lb.Instance{{Service: "127.0.0.1:8001", Health: "127.0.0.1:9001"}}
	cfg.Shedding.Recovery = lb.RecoveryWindow // a data plane ramps a share

	hc := haproxy.DefaultConfig()
	hc.Listen, hc.Socket, hc.Instances, hc.Routes = "127.0.0.1:80", "/run/haproxy/spillway.sock", cfg.Instances, cfg.Routes

	feed := lb.NewPlanFeed()
	b, err := lb.New(cfg, lb.Options{AdminToken: "an-admin-token-of-16+", DataPlane: feed})
	if err != nil {
		panic(err)
	}
	rt, err := haproxy.NewRuntime(hc.Socket)
	if err != nil {
		panic(err)
	}
	ctl, err := controller.New(controller.Options{Runtime: rt, Config: hc, Plans: feed, Logger: slog.New(slog.NewTextHandler(os.Stderr, nil))})
	if err != nil {
		panic(err)
	}
	run := func(ctx context.Context) error {
		g, gctx := errgroup.WithContext(ctx)
		g.Go(func() error { return b.Run(gctx, nil, nil) }) // no proxy, no admin listener
		g.Go(func() error { return ctl.Run(gctx) })         // ErrMissing stops both
		return g.Wait()
	}
	_ = run // with a context that ends at shutdown
}
