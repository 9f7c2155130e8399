package haproxy_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spillway-dev/spillway/internal/haproxy"
)

// A controller's step: read what HAProxy holds, notice a restart (which
// drops every runtime change), then apply a slow-start weight, a
// per-server maxconn and an edge-shedding map entry.
func ExampleRuntime() {
	rt, err := haproxy.NewRuntime("unix:///run/haproxy/admin.sock")
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()

	var last haproxy.Info // from the previous step
	info, err := rt.Info(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	if info.RestartedSince(last) {
		fmt.Println("HAProxy restarted: apply everything again")
	}
	servers, err := rt.ServersState(ctx, "logins")
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, s := range servers {
		if s.AdminState.Maint() {
			continue
		}
		if err := rt.SetWeight(ctx, s.Backend, s.Name, 128); errors.Is(err, haproxy.ErrNotFound) {
			continue // removed since show servers state
		} else if err != nil {
			fmt.Println(err)
			return
		}
		_ = rt.SetMaxconn(ctx, s.Backend, s.Name, 50)
	}
	_ = rt.SetMap(ctx, "/etc/haproxy/shed.map", "login.example.com", "shed")
}
