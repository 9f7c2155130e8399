//go:build unix

package main

import (
	"context"
	"net/http"
	"regexp"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/internal/haproxy"
	"github.com/spillway-dev/spillway/internal/testkit"
)

// TestControllerKilledMidOutage: issue 13's "controller killed mid-outage
// and restarted". The backend hangs and HAProxy sheds; the controller is
// killed with SIGKILL, and HAProxy keeps shedding on its own (map at 0,
// every answer its 503); a new controller reads HAProxy's state, agrees
// with it within 2 health intervals and sends no change at all (no server
// state, weight or map value: no flap); the backend is back and logins
// pass.
func TestControllerKilledMidOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("runs HAProxy and five spillway processes for about 15 s")
	}
	const interval = 250 * time.Millisecond
	s := startHAProxyStack(t, 2, nil, "lb:\n  health_check:\n    interval: 250ms\n    timeout: 250ms\n  slow_start:\n    window: 1s\n")
	ctx := t.Context()
	ctl, _ := s.startController(t, s.instanceArgs()...)
	testkit.WaitFor(t, 10*time.Second, "a login through HAProxy", func() bool { return s.login(0).status == http.StatusOK })
	// Past slow start: what the new controller finds is final.
	testkit.WaitFor(t, 10*time.Second, "every server at full weight", func() bool {
		for _, sv := range s.servers(t) {
			if sv.Weight != haproxy.FullWeight {
				return false
			}
		}
		return true
	})
	took := s.hangBackend(t)
	t.Logf("backend hung: share 0 after %v", took.Round(time.Millisecond))
	before := s.servers(t)

	// kill -9: no goodbye, nothing undone.
	if err := syscall.Kill(-ctl.PID(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-ctl.Done()
	killed := time.Now()
	shedAnswer := func(i int) {
		t.Helper()
		if a := s.login(i); a.status != http.StatusServiceUnavailable || a.reason != haproxy.Reason {
			t.Errorf("login %d with the controller dead: %+v, want 503 %s", i, a, haproxy.Reason)
		}
	}
	for i := 0; time.Since(killed) < 4*interval; i++ {
		shedAnswer(i)
		if v := s.share(ctx); v != "0" {
			t.Fatalf("share %q with the controller dead, want 0", v)
		}
		time.Sleep(50 * time.Millisecond) // several health intervals without a controller
	}

	// A new controller, while HAProxy is watched for any change: the map
	// must never leave 0 while the backend is down.
	watchCtx, stopWatch := context.WithCancel(ctx)
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		values = map[string]int{}
	)
	wg.Go(func() {
		for watchCtx.Err() == nil {
			v := s.share(watchCtx)
			mu.Lock()
			values[v]++
			mu.Unlock()
			time.Sleep(5 * time.Millisecond) // polling HAProxy's map, 200 reads a second
		}
	})
	started := time.Now()
	ctl2, admin2 := s.startController(t, s.instanceArgs()...)
	read := time.Since(started)
	testkit.WaitFor(t, 10*time.Second, "the new controller shedding backend", func() bool { return s.shedding(admin2, "backend") })
	converged := time.Since(started)
	// Two more health intervals in which nothing may change.
	time.Sleep(3 * interval) // the new controller's checks run on their own clock
	for i := range 10 {
		shedAnswer(i)
	}
	stopWatch()
	wg.Wait()
	t.Logf("new controller: HAProxy state read %v after start, shedding (its plan agreeing with HAProxy) %v after start; map values seen meanwhile: %v",
		read.Round(time.Millisecond), converged.Round(time.Millisecond), values)
	if converged > 2*interval {
		t.Errorf("the new controller agreed with HAProxy after %v, want within 2 health intervals (%v)", converged, 2*interval)
	}
	for v := range values {
		if v != "0" && !regexp.MustCompile(`^error`).MatchString(v) {
			t.Errorf("the map went to %q while the backend is down (a flap): values %v", v, values)
		}
	}
	if changes := regexp.MustCompile(`msg="haproxy change".*`).FindAllString(ctl2.Output(), -1); len(changes) > 0 {
		t.Errorf("the new controller changed HAProxy during the outage: %q", changes)
	}
	if n := s.metric(t, admin2, "spillway_controller_changes_total"); n != 0 {
		t.Errorf("spillway_controller_changes_total = %v, want 0", n)
	}
	after := s.servers(t)
	for name, b := range before {
		a := after[name]
		if a.AdminState != b.AdminState || a.Weight != b.Weight || a.OpState != b.OpState {
			t.Errorf("server %s changed across the restart: admin %#x weight %d op %v -> admin %#x weight %d op %v",
				name, b.AdminState, b.Weight, b.OpState, a.AdminState, a.Weight, a.OpState)
		}
		if a.AdminState.Maint() {
			t.Errorf("server %s in maintenance during a dependency outage", name)
		}
	}

	// The backend is back: the new controller lets the logins in.
	if err := s.bs.SetMode(ctx, "up", 0); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	testkit.WaitFor(t, 10*time.Second, "logins through HAProxy and the share at 1000", func() bool {
		return s.login(1).status == http.StatusOK && s.share(ctx) == "1000"
	})
	t.Logf("backend back: share 1000 and logins ok after %v", time.Since(back).Round(time.Millisecond))
	if err := ctl2.Stop(5 * time.Second); err != nil {
		t.Errorf("controller stop: %v", err)
	}
}
