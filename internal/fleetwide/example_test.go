package fleetwide_test

import (
	"context"
	"log"
	"sync"

	"github.com/spillway-dev/spillway/internal/fleet"
	"github.com/spillway-dev/spillway/internal/fleetwide"
	"github.com/spillway-dev/spillway/internal/registry"
)

// Each host's fleet decides its replacements through the guardrails it
// shares with every other host under the same prefix.
func ExampleNew() {
	t, _ := registry.ParseURL("etcd://127.0.0.1:2379/spillway")
	cli, err := registry.Dial(t)
	if err != nil {
		log.Fatal(err)
	}
	defer cli.Close() // after the guardrails' Run has returned

	cfg := fleet.DefaultConfig()
	rails, err := fleetwide.New(cli, t.Prefix, &cfg, fleetwide.Options{Host: cfg.Host})
	if err != nil {
		log.Fatal(err)
	}
	if err := rails.Refresh(context.Background()); err != nil {
		log.Fatal(err) // etcd out of reach at start
	}
	f, err := fleet.New(cfg, fleet.Options{Guardrails: rails})
	if err != nil {
		log.Fatal(err)
	}

	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	bg, stopRails := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = rails.Run(bg) }) // outlives the fleet's drain
	_ = f.Run(ctx)                      // until ctx is done
	stopRails()
	wg.Wait()
}
