//go:build unix

package main

import (
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/internal/haproxy"
	"github.com/spillway-dev/spillway/internal/testkit"
)

// TestControllerSlowStartAndKill: issue 13's "an instance killed leaves
// rotation at the controller's next check; a new instance enters with
// slow start weights visible in show servers state". The controller finds
// its instances in a discovery file (file://); HAProxy has a server for
// an instance not started yet (its configuration was printed with it, as
// an operator provisions a slot). The instance starts and enters the
// file: its server's weight in HAProxy rises from below 100 to 100, never
// down. Then it is killed (SIGKILL): its server is in maint within the
// controller's next check.
func TestControllerSlowStartAndKill(t *testing.T) {
	if testing.Short() {
		t.Skip("runs HAProxy and five spillway processes for about 10 s")
	}
	const (
		interval = 250 * time.Millisecond
		window   = 2 * time.Second
	)
	later := testkit.FreePort(t) + "=" + testkit.FreePort(t)
	s := startHAProxyStack(t, 2, []string{later}, fmt.Sprintf("lb:\n  health_check:\n    interval: %v\n    timeout: %v\n  slow_start:\n    window: %v\n", interval, interval, window))
	disc := filepath.Join(t.TempDir(), "instances.yaml")
	writeInstances := func(insts []string) { t.Helper(); writeDiscoveryFile(t, disc, insts) }
	writeInstances(s.insts[:2])
	ctl, _ := s.startController(t, "--discovery", "file://"+disc)
	testkit.WaitFor(t, 10*time.Second, "the first two servers at full weight", func() bool {
		sv := s.servers(t)
		for _, in := range s.insts[:2] {
			if sv[haproxy.ServerName(strings.Split(in, "=")[0])].Weight != haproxy.FullWeight {
				return false
			}
		}
		return true
	})
	testkit.WaitFor(t, 5*time.Second, "a login through HAProxy", func() bool { return s.login(0).status == http.StatusOK })

	// The new instance starts and enters the discovery file.
	svc, health, _ := strings.Cut(later, "=")
	s.startLogin(t, svc, health)
	writeInstances(s.insts)
	added := time.Now()
	name := haproxy.ServerName(svc)
	var weights []int // the distinct weights seen, in order
	// Until the controller takes the server in hand it has its
	// configuration's weight, 100: wait for the ramp's first.
	testkit.WaitFor(t, 10*time.Second, name+" entering below full weight", func() bool {
		sv := s.servers(t)[name]
		if sv.Weight < haproxy.FullWeight {
			weights = append(weights, sv.Weight)
			return true
		}
		return false
	})
	testkit.WaitFor(t, 10*time.Second+window, name+" at full weight", func() bool {
		sv := s.servers(t)[name]
		if weights[len(weights)-1] != sv.Weight {
			weights = append(weights, sv.Weight)
		}
		return sv.Weight == haproxy.FullWeight
	})
	t.Logf("new instance %s: weights seen in show servers state %v, full %v after it entered the file", name, weights, time.Since(added).Round(time.Millisecond))
	if len(weights) < 3 || weights[0] >= haproxy.FullWeight/2 {
		t.Errorf("weights seen %v: want a ramp from below 50 through at least one step to 100", weights)
	}
	for i := 1; i < len(weights); i++ {
		if weights[i] < weights[i-1] {
			t.Errorf("weights seen %v: the ramp went down", weights)
		}
	}
	if !strings.Contains(ctl.Output(), `msg="haproxy change" kind=weight server=`+name) {
		t.Errorf("the ramp's weights are not in the controller's change log")
	}

	// The new instance killed: out of ready at the controller's next check.
	_ = syscall.Kill(-s.logins[svc].PID(), syscall.SIGKILL)
	<-s.logins[svc].Done()
	killed := time.Now()
	testkit.WaitFor(t, 10*time.Second, name+" in maint", func() bool { return s.servers(t)[name].AdminState.Maint() })
	gone := time.Since(killed)
	t.Logf("instance killed: %s in maint after %v (health interval %v)", name, gone.Round(time.Millisecond), interval)
	if gone > 2*interval {
		t.Errorf("%s left ready after %v, want at the controller's next check (within %v)", name, gone, 2*interval)
	}
	for i := range 10 {
		if a := s.login(i); a.status != http.StatusOK {
			t.Errorf("login %d with an instance killed: %+v", i, a)
		}
	}
	if err := ctl.Stop(5 * time.Second); err != nil {
		t.Errorf("controller stop: %v", err)
	}
}

// writeDiscoveryFile writes insts (SERVICE=HEALTH) to the file:// discovery
// file path, atomically, as a writer should: the watch never reads half a
// file.
func writeDiscoveryFile(t *testing.T, path string, insts []string) {
	t.Helper()
	var b strings.Builder
	b.WriteString("instances:\n")
	for _, in := range insts {
		svc, health, _ := strings.Cut(in, "=")
		fmt.Fprintf(&b, "  - service: %s\n    health: %s\n", svc, health)
	}
	if err := os.WriteFile(path+".tmp", []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
}

// TestControllerDynamicServers: `spillway controller --discovery
// file://... --dynamic-servers` in front of an HAProxy whose configuration
// was printed with --dynamic-servers (no server at all): the discovered
// instance gets a server and serves logins; a second one discovered later
// gets one too; the first, gone from the file, loses its server.
func TestControllerDynamicServers(t *testing.T) {
	if testing.Short() {
		t.Skip("runs HAProxy and four spillway processes")
	}
	s := startHAProxyStackWith(t, 1, nil, "lb:\n  health_check:\n    interval: 250ms\n    timeout: 250ms\n  slow_start:\n    window: 0s\n", true)
	if len(s.servers(t)) != 0 {
		t.Fatalf("HAProxy starts with servers %v, want none", s.servers(t))
	}
	disc := filepath.Join(t.TempDir(), "instances.yaml")
	writeDiscoveryFile(t, disc, s.insts)
	ctl, _ := s.startController(t, "--discovery", "file://"+disc, "--dynamic-servers")
	first := haproxy.ServerName(strings.Split(s.insts[0], "=")[0])
	testkit.WaitFor(t, 10*time.Second, "a login through HAProxy's added server "+first, func() bool {
		sv, ok := s.servers(t)[first]
		return ok && !sv.AdminState.Maint() && s.login(0).status == http.StatusOK
	})

	second := s.startLogin(t, "127.0.0.1:0", "127.0.0.1:0")
	s.insts = append(s.insts, second)
	writeDiscoveryFile(t, disc, s.insts[1:])
	name := haproxy.ServerName(strings.Split(second, "=")[0])
	// The change is over when the new server is out of maintenance (its
	// first check passed) and the old one is gone: with one instance in
	// the file, the new one is not checked yet when the old one leaves.
	testkit.WaitFor(t, 10*time.Second, name+" added and ready, "+first+" deleted", func() bool {
		sv := s.servers(t)
		added, ok := sv[name]
		_, still := sv[first]
		return ok && !added.AdminState.Maint() && !still
	})
	for i := range 5 {
		if a := s.login(i); a.status != http.StatusOK {
			t.Errorf("login %d after the change: %+v", i, a)
		}
	}
	t.Logf("servers after the change: %v", slices.Collect(maps.Keys(s.servers(t))))
	if err := ctl.Stop(5 * time.Second); err != nil {
		t.Errorf("controller stop: %v", err)
	}
}
