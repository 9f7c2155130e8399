package registry_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/spillway-dev/spillway/internal/lb"
	"github.com/spillway-dev/spillway/internal/registry"
)

func ExampleParseURL() {
	t, err := registry.ParseURL("etcd://10.0.0.1:2379,10.0.0.2:2379/spillway")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(t.Endpoints, t.Prefix)
	fmt.Println(registry.Key(t.Prefix, "host-a-1234"))
	// Output:
	// [http://10.0.0.1:2379 http://10.0.0.2:2379] /spillway
	// /spillway/instances/host-a-1234
}

// An instance registers once it serves, keeps its key alive while it
// runs, and deregisters when it starts draining.
func ExampleRegister() {
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	t, _ := registry.ParseURL("etcd://127.0.0.1:2379/spillway")
	cli, err := registry.Dial(t)
	if err != nil {
		log.Fatal(err)
	}
	defer cli.Close()
	rec := registry.Record{ID: "host-a-1234", Service: "10.0.0.5:8001", Health: "10.0.0.5:9001", Started: time.Now()}
	reg, err := registry.Register(ctx, cli, t.Prefix, rec, registry.Options{})
	if err != nil {
		log.Fatal(err) // etcd unreachable: the instance does not start
	}
	done := make(chan error, 1)
	go func() { done <- reg.Run(ctx) }()
	// ... serve until told to stop, then:
	_ = reg.Deregister(context.Background())
	<-done
}

// A balancer follows the registered set.
func ExampleDiscovery() {
	t, _ := registry.ParseURL("etcd://127.0.0.1:2379/spillway")
	cli, err := registry.Dial(t)
	if err != nil {
		log.Fatal(err)
	}
	defer cli.Close()
	d := registry.NewDiscovery(cli, t.Prefix, registry.Options{})
	var _ lb.Discovery = d // lb.Options{Discovery: d}
	_ = d.Watch(context.Background(), func(set []lb.Instance) { fmt.Println(len(set), "instances") })
}

// Balancers share the operators' decisions: read them before the
// balancer is built (it starts with the fleet's overrides and drains),
// then follow and publish them while it runs.
func ExampleDecisions() {
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	t, _ := registry.ParseURL("etcd://127.0.0.1:2379/spillway")
	cli, err := registry.Dial(t)
	if err != nil {
		log.Fatal(err)
	}
	defer cli.Close()
	shared := registry.NewDecisions(cli, t.Prefix, "lb-host-a-1234", registry.Options{})
	if err := shared.Refresh(ctx); err != nil {
		log.Fatal(err) // etcd unreachable: the balancer does not start
	}
	fmt.Println(registry.OverrideKey(t.Prefix, "backend"), registry.DrainKey(t.Prefix, "10.0.0.5:8001"))
	go func() { _ = shared.Run(ctx) }() // until the balancer has stopped
	_ = lb.Options{Shared: shared}
}
