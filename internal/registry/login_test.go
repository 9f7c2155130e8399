//go:build unix

package registry_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/internal/backendsim"
	"github.com/spillway-dev/spillway/internal/login"
	"github.com/spillway-dev/spillway/internal/membership"
	"github.com/spillway-dev/spillway/internal/registry"
	"github.com/spillway-dev/spillway/internal/testkit"
	"github.com/spillway-dev/spillway/internal/testkit/etcdtest"
)

// registerConfig is a login instance's configuration with a real
// backend-sim, registering in the etcd at etcd.
func registerConfig(t *testing.T, etcd string) *login.Config {
	t.Helper()
	sim, err := backendsim.New(backendsim.Config{Mode: backendsim.ModeUp}, nil)
	if err != nil {
		t.Fatal(err)
	}
	d := login.DefaultConfig()
	cfg := &d
	cfg.Backend.URL = "http://" + testkit.Serve(t, sim.Serve)
	cfg.RateLimit.PerSecond = 0
	cfg.ShutdownTimeout = 2 * time.Second
	cfg.Register = "etcd://" + etcd + "/login-test"
	cfg.RegisterTTL = 2 * time.Second
	cfg.Health.DrainDelay = 500 * time.Millisecond
	return cfg
}

// registrar is what `spillway login` wires.
func registrar(ctx context.Context, target membership.Target, rec membership.Record, ttl time.Duration, log *slog.Logger) (login.Registration, error) {
	r, err := registry.RegisterAt(ctx, target, rec, ttl, log)
	if err != nil {
		return nil, err
	}
	return r, nil
}

// TestLoginRegistersAndDeregistersOnDrain: a registering instance's key holds
// its listeners' addresses while it serves, and is gone as soon as it
// starts draining, while its service port still accepts connections.
func TestLoginRegistersAndDeregistersOnDrain(t *testing.T) {
	e := etcdtest.Start(t)
	cfg := registerConfig(t, e.HostPort())
	in, err := login.New(cfg, login.Options{Dev: true, InstanceID: "test-1", Registrar: registrar})
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

// TestLoginRegisterFailsAtStart: with etcd unreachable the instance does not
// start serving: Run returns the error, and the service port is closed.
func TestLoginRegisterFailsAtStart(t *testing.T) {
	addr := testkit.RefusingAddr(t)
	in, err := login.New(registerConfig(t, addr), login.Options{Dev: true, Registrar: registrar})
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
