package discovery_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spillway-dev/spillway/internal/discovery"
	"github.com/spillway-dev/spillway/internal/lb"
)

// A caller reads --discovery's URL and leaves the schemes that are not
// this package's to their own sources.
func ExampleParseURL() {
	for _, raw := range []string{
		"dns+srv://_login._tcp.login.default.svc.cluster.local?health_srv=_health._tcp.login.default.svc.cluster.local",
		"file:///etc/spillway/instances.yaml",
		"kubernetes://default/login",
		"etcd://127.0.0.1:2379/spillway/instances",
		"dns+srv://_login._tcp.example.com?interval=100ms",
	} {
		spec, err := discovery.ParseURL(raw)
		switch {
		case errors.Is(err, discovery.ErrUnknownScheme):
			fmt.Println("another source's:", raw)
		case err != nil:
			fmt.Println(err)
		default:
			fmt.Println(spec.Scheme, spec)
		}
	}
	// Output:
	// dns+srv dns+srv://_login._tcp.login.default.svc.cluster.local?health_srv=_health._tcp.login.default.svc.cluster.local&interval=10s
	// file file:///etc/spillway/instances.yaml?interval=5s
	// kubernetes kubernetes://default/login
	// another source's: etcd://127.0.0.1:2379/spillway/instances
	// discovery URL "dns+srv://_login._tcp.example.com?interval=100ms": interval: "100ms": must be at least 1s
}

func ExampleFile() {
	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "instances.yaml")
	_ = os.WriteFile(path, []byte("instances:\n  - {service: 127.0.0.1:8001, health: 127.0.0.1:9001}\n"), 0o644)

	f, err := discovery.NewFile(discovery.FileConfig{Path: path})
	if err != nil {
		fmt.Println(err)
		return
	}
	// The balancer runs Watch for as long as it runs; here, until the
	// first set.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = f.Watch(ctx, func(insts []lb.Instance) {
		fmt.Println(insts)
		cancel()
	})
	// Output:
	// [{127.0.0.1:8001 127.0.0.1:9001}]
}
