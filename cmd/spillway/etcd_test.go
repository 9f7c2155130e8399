//go:build unix

package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/internal/lb"
	"github.com/spillway-dev/spillway/internal/testkit"
	"github.com/spillway-dev/spillway/internal/testkit/etcdtest"
)

// TestEtcdDiscovery runs the binary as real processes around a real etcd:
// two `spillway login --register` and a `spillway lb --discovery`. Both
// instances become routable; one killed with SIGKILL (no drain, no
// deregistration) leaves the balancer's /status within its lease TTL and
// a second; logins through the balancer work throughout.
func TestEtcdDiscovery(t *testing.T) {
	e := etcdtest.Start(t)
	url := "etcd://" + e.HostPort() + "/it"
	const ttl = 2 * time.Second

	sim := startProc(t, "backend-sim", "backend-sim", "--listen", "127.0.0.1:0", "--latency", "1ms")
	simAddr := sim.await(t, `listening on ([0-9.:]+)`, 10*time.Second)[1]
	var logins []*proc
	var services []string
	for i := range 2 {
		p := startProc(t, fmt.Sprintf("login %d", i), "login", "--dev", "--listen", "127.0.0.1:0", "--health-listen", "127.0.0.1:0",
			"--backend", "http://"+simAddr, "--rate-limit", "0", "--register", url, "--register-ttl", ttl.String())
		m := p.await(t, `msg=registered key=\S+ service=(\S+) health=(\S+)`, 10*time.Second)
		logins, services = append(logins, p), append(services, m[1])
	}

	start := time.Now()
	p := startProc(t, "lb", "lb", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--discovery", url)
	m := p.await(t, `msg=listening proxy=(\S+) admin=(\S+) discovery=`, 10*time.Second)
	proxy, admin := m[1], m[2]
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{}}
	t.Cleanup(client.CloseIdleConnections)
	status := func() (routable []string, known []string) {
		res, err := client.Get("http://" + admin + "/status")
		if err != nil {
			return nil, nil
		}
		defer res.Body.Close()
		var st lb.Status
		if err := json.NewDecoder(res.Body).Decode(&st); err != nil {
			t.Fatalf("/status: %v", err)
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
			res, err := client.Post("http://"+proxy+"/v1/login", "application/json", strings.NewReader(fmt.Sprintf(`{"ticket":"valid-user-%d"}`, i)))
			if err != nil {
				t.Fatalf("login %d through the balancer: %v", i, err)
			}
			res.Body.Close()
			if res.StatusCode != http.StatusOK {
				t.Fatalf("login %d through the balancer: %d", i, res.StatusCode)
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
	gone := m0(t, logins[0])
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
		res, err := client.Get("http://" + admin + "/status")
		if err != nil {
			return false, false
		}
		defer res.Body.Close()
		var st lb.Status
		if err := json.NewDecoder(res.Body).Decode(&st); err != nil || st.Discovery == nil {
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

// m0 is the service address a login process registered.
func m0(t *testing.T, p *proc) string {
	return p.await(t, `msg=registered key=\S+ service=(\S+)`, time.Second)[1]
}
