//go:build unix

package login

import (
	"context"
	"encoding/json"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/internal/backendsim"
	"github.com/spillway-dev/spillway/internal/registry"
	"github.com/spillway-dev/spillway/internal/testkit"
	"github.com/spillway-dev/spillway/internal/testkit/etcdtest"
)

func registerConfig(t *testing.T, etcd string) *Config {
	t.Helper()
	sim, err := backendsim.New(backendsim.Config{Mode: backendsim.ModeUp}, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig("http://" + testkit.Serve(t, sim.Serve))
	cfg.Register = "etcd://" + etcd + "/login-test"
	cfg.RegisterTTL = 2 * time.Second
	cfg.Health.DrainDelay = 500 * time.Millisecond
	return cfg
}

// TestRegisterAndDeregisterOnDrain: a registering instance's key holds
// its listeners' addresses while it serves, and is gone as soon as it
// starts draining, while its service port still accepts connections.
func TestRegisterAndDeregisterOnDrain(t *testing.T) {
	e := etcdtest.Start(t)
	cfg := registerConfig(t, e.HostPort())
	in, err := New(cfg, Options{Dev: true, InstanceID: "test-1"})
	if err != nil {
		t.Fatal(err)
	}
	svc, hl := testkit.Listen(t), testkit.Listen(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx, svc, hl) }()

	cli, err := registry.Dial(registry.Target{Endpoints: []string{e.Endpoint()}})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	key := registry.Key("/login-test", "test-1")
	get := func() []byte {
		res, err := cli.Get(context.Background(), key)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Kvs) == 0 {
			return nil
		}
		return res.Kvs[0].Value
	}
	testkit.WaitFor(t, 3*time.Second, "the instance's key", func() bool { return get() != nil })
	var rec registry.Record
	if err := json.Unmarshal(get(), &rec); err != nil {
		t.Fatal(err)
	}
	if rec.ID != "test-1" || rec.Service != svc.Addr().String() || rec.Health != hl.Addr().String() || rec.Started.IsZero() {
		t.Errorf("record %+v, want id test-1, service %s, health %s, a start time", rec, svc.Addr(), hl.Addr())
	}

	cancel()
	took := testkit.WaitFor(t, 2*time.Second, "the key gone once draining", func() bool { return get() == nil })
	if c, err := net.DialTimeout("tcp", svc.Addr().String(), time.Second); err != nil {
		t.Errorf("service port closed when the key went (after %v): %v", took, err)
	} else {
		c.Close()
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return")
	}
}

// TestRegisterFailsAtStart: with etcd unreachable the instance does not
// start serving: Run returns the error, and the service port is closed.
func TestRegisterFailsAtStart(t *testing.T) {
	dead := testkit.Listen(t)
	addr := dead.Addr().String()
	dead.Close()
	in, err := New(registerConfig(t, addr), Options{Dev: true})
	if err != nil {
		t.Fatal(err)
	}
	svc, hl := testkit.Listen(t), testkit.Listen(t)
	err = in.Run(context.Background(), svc, hl)
	if err == nil || !strings.Contains(err.Error(), "register") || !strings.Contains(err.Error(), addr) {
		t.Fatalf("Run with etcd unreachable = %v, want a register error naming %s", err, addr)
	}
	if c, err := net.DialTimeout("tcp", svc.Addr().String(), time.Second); err == nil {
		c.Close()
		t.Error("service port still open after a failed registration")
	}
}
