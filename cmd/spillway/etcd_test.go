//go:build unix

package main

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/internal/testkit"
)

// TestEtcdDiscovery runs the binary as real processes around a real etcd:
// two `spillway login --register` and a `spillway lb --discovery`. Both
// instances become routable; one killed with SIGKILL (no drain, no
// deregistration) leaves the balancer's /status within its lease TTL and
// a second; logins through the balancer work throughout.
func TestEtcdDiscovery(t *testing.T) {
	const ttl = 2 * time.Second
	rig := startEtcdRig(t, "it", "1ms", ttl)
	e, logins, services := rig.etcd, rig.logins, rig.services()

	start := time.Now()
	l := startDiscoveryLB(t, "lb", rig.url)
	proxy, admin := l.proxy, l.admin
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{}}
	t.Cleanup(client.CloseIdleConnections)
	status := func() (routable []string, known []string) {
		st, err := lbStatus(client, admin)
		if errors.Is(err, errNoAnswer) {
			return nil, nil
		}
		if err != nil {
			t.Fatal(err)
		}
		known = []string{} // not nil: /status answered
		for _, in := range st.Instances {
			known = append(known, in.ID)
			if in.Routable {
				routable = append(routable, in.ID)
			}
		}
		slices.Sort(routable)
		slices.Sort(known)
		return routable, known
	}
	slices.Sort(services)
	testkit.WaitFor(t, 3*time.Second, "both instances routable", func() bool {
		r, _ := status()
		return slices.Equal(r, services)
	})
	t.Logf("both instances routable %v after the balancer started", time.Since(start).Round(time.Millisecond))

	loginsOK := func(n int) {
		t.Helper()
		for i := range n {
			code, err := loginThrough(client, proxy, fmt.Sprintf("user-%d", i))
			if err != nil {
				t.Fatalf("login %d through the balancer: %v", i, err)
			}
			if code != http.StatusOK {
				t.Fatalf("login %d through the balancer: %d", i, code)
			}
		}
	}
	loginsOK(20)

	// kill -9: no drain, no revoke; the lease expires.
	killed := time.Now()
	if err := syscall.Kill(-logins[0].PID(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-logins[0].Done()
	gone := logins[0].service
	testkit.WaitFor(t, ttl+time.Second, "the killed instance gone from /status", func() bool {
		_, known := status()
		return known != nil && !slices.Contains(known, gone)
	})
	t.Logf("killed instance left /status %v after SIGKILL (TTL %v)", time.Since(killed).Round(time.Millisecond), ttl)
	loginsOK(20)
	if r, known := status(); len(known) != 1 || len(r) != 1 {
		t.Errorf("after the kill: routable %v, known %v; want the survivor alone", r, known)
	}

	// etcd out of reach: the balancer keeps its set and serves on, and
	// says so on /status; etcd back: it reads afresh.
	connected := func() (bool, bool) { // connected, answered
		st, err := lbStatus(client, admin)
		if errors.Is(err, errNoAnswer) {
			return false, false
		}
		if err != nil || st.Discovery == nil {
			t.Fatalf("/status: %v, discovery %v", err, st.Discovery)
		}
		return st.Discovery.Connected, true
	}
	if c, _ := connected(); !c {
		t.Error("/status: discovery not connected while etcd answers")
	}
	e.Stop()
	testkit.WaitFor(t, 3*time.Second, "/status saying etcd is out of reach", func() bool {
		c, ok := connected()
		return ok && !c
	})
	loginsOK(20)
	if r, _ := status(); len(r) != 1 {
		t.Errorf("etcd stopped: routable %v, want the survivor still", r)
	}
	e.Restart()
	testkit.WaitFor(t, 5*time.Second, "/status saying etcd answers again", func() bool {
		c, _ := connected()
		return c
	})
	loginsOK(20)
	if r, _ := status(); len(r) != 1 {
		t.Errorf("etcd back: routable %v, want the survivor still", r)
	}

	// A graceful stop deregisters at once, before the drain delay ends.
	stopped := time.Now()
	if err := logins[1].Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, time.Second, "the drained instance gone from /status", func() bool {
		_, known := status()
		return known != nil && len(known) == 0
	})
	t.Logf("draining instance left /status %v after SIGTERM", time.Since(stopped).Round(time.Millisecond))
	logins[1].await(t, `msg=deregistered`, time.Second)
}
