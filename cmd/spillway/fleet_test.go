//go:build unix

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/spillway-dev/spillway/internal/fleet"
	"github.com/spillway-dev/spillway/internal/registry"
	"github.com/spillway-dev/spillway/internal/testkit"
	"github.com/spillway-dev/spillway/internal/testkit/etcdtest"
)

// TestFleetEtcd runs two `spillway fleet --register etcd://...` as real
// processes around a real etcd, two hosts of one fleet: host A, two
// instances on 127.0.0.2, and host B, one on 127.0.0.3. Every instance
// registers, each host sees the fleet of three. SIGHUP stops neither. B
// stopped with SIGTERM: its instance drains and deregisters, and B leaves
// the fleet at once. An instance of A that hangs (SIGSTOP) is replaced:
// its successor registers, and it deregisters as it drains. A's process
// group killed with SIGKILL (the host lost), every key it and its
// instances held is gone within the lease TTL and a second.
func TestFleetEtcd(t *testing.T) {
	e := etcdtest.Start(t)
	const prefix, ttl = "/fleet-it", 2 * time.Second
	cfg := filepath.Join(t.TempDir(), "fleet.yaml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, `login:
  register_ttl: %s
  health: {drain_delay: 100ms}
  shutdown_timeout: 1s
fleet:
  grace: 300ms
  check: {interval: 100ms, unhealthy_threshold: 2}
  stop_timeout: 3s
`, ttl), 0o600); err != nil {
		t.Fatal(err)
	}
	simAddr := startSim(t, "1ms")
	startFleet := func(name, host string, n int) *proc {
		return startProc(t, name, "fleet", "--config", cfg, "--instances", strconv.Itoa(n), "--host", host, "--dev",
			"--register", "etcd://"+e.HostPort()+prefix, "--backend", "http://"+simAddr, "--admin-listen", "127.0.0.1:0")
	}
	start := time.Now()
	p, pb := startFleet("fleet A", "127.0.0.2", 2), startFleet("fleet B", "127.0.0.3", 1)
	admin := p.await(t, `msg=listening admin=(\S+)`, 10*time.Second)[1]

	cli, err := registry.Dial(registry.Target{Endpoints: []string{e.Endpoint()}})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	keys := func(dir string) map[string]string { // key → value
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		res, err := cli.Get(ctx, prefix+dir, clientv3.WithPrefix())
		if err != nil {
			t.Fatalf("read %s: %v", dir, err)
		}
		out := map[string]string{}
		for _, kv := range res.Kvs {
			out[string(kv.Key)] = string(kv.Value)
		}
		return out
	}
	hostname, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	keyOf := func(pid int) string { return registry.Key(prefix, fmt.Sprintf("%s-%d", hostname, pid)) }
	// on counts the registered instances whose service is on host.
	on := func(in map[string]string, host string) int {
		n := 0
		for _, v := range in {
			var rec registry.Record
			if json.Unmarshal([]byte(v), &rec) == nil && strings.HasPrefix(rec.Service, host+":") {
				n++
			}
		}
		return n
	}

	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{}}
	t.Cleanup(client.CloseIdleConnections)
	var st fleetStatus
	status := func() fleetStatus {
		res, err := client.Get("http://" + admin + "/status")
		if err != nil {
			t.Fatalf("/status: %v", err)
		}
		defer res.Body.Close()
		st = fleetStatus{}
		if err := json.NewDecoder(res.Body).Decode(&st); err != nil {
			t.Fatalf("/status: %v", err)
		}
		return st
	}
	serving := func(st fleetStatus) []fleet.ProcessStatus {
		var out []fleet.ProcessStatus
		for _, ps := range st.Processes {
			if ps.State == fleet.StateRunning {
				out = append(out, ps)
			}
		}
		return out
	}
	testkit.WaitFor(t, 10*time.Second, "A's two instances running and registered on 127.0.0.2, B's on 127.0.0.3", func() bool {
		ps := serving(status())
		in := keys("/instances/")
		for _, s := range ps {
			if _, ok := in[keyOf(s.PID)]; !ok {
				return false
			}
		}
		return len(ps) == 2 && on(in, "127.0.0.2") == 2 && on(in, "127.0.0.3") == 1 && len(in) == 3
	})
	t.Logf("3 instances of 2 hosts registered %v after the fleets started", time.Since(start).Round(time.Millisecond))
	testkit.WaitFor(t, 2*time.Second, "A seeing the fleet of 3", func() bool {
		fw := status().FleetWide
		return fw != nil && fw.Connected && fw.Size == 3 && len(fw.Hosts) == 2
	})
	if hosts := keys("/fleet/hosts/"); len(hosts) != 2 {
		t.Errorf("host keys %v, want A's and B's", hosts)
	}

	// SIGHUP: nothing to reload, nothing stops.
	if err := p.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	p.await(t, `SIGHUP ignored`, 5*time.Second)

	// B stops: its instance drains and deregisters, B's lease is revoked.
	stopped := time.Now()
	if err := pb.Stop(5 * time.Second); err != nil {
		t.Errorf("fleet B stopped with %v, want exit status 0", err)
	}
	if in, hosts := keys("/instances/"), keys("/fleet/hosts/"); on(in, "127.0.0.3") != 0 || len(hosts) != 1 {
		t.Errorf("B stopped: instances %v, hosts %v; want B's gone at once", in, hosts)
	}
	pb.await(t, `i-1 \| .*msg=deregistered`, time.Second)
	t.Logf("fleet B stopped, its instance deregistered, in %v", time.Since(stopped).Round(time.Millisecond))
	testkit.WaitFor(t, 2*time.Second, "A seeing a fleet of 2", func() bool {
		fw := status().FleetWide
		return fw != nil && fw.Size == 2 && fw.BudgetMax == 1
	})

	// An instance hangs: the fleet replaces it. Its SIGTERM waits for
	// SIGCONT, then it drains and deregisters, well before its lease
	// would expire.
	victim := serving(st)[0]
	if err := syscall.Kill(victim.PID, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	var successor fleet.ProcessStatus
	testkit.WaitFor(t, 5*time.Second, "the hung instance replaced", func() bool {
		for _, ps := range status().Processes {
			if ps.Slot == victim.Slot && ps.ID != victim.ID && ps.PID != 0 {
				successor = ps
			}
		}
		return successor.PID != 0
	})
	if err := syscall.Kill(victim.PID, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	resumed := time.Now()
	testkit.WaitFor(t, 5*time.Second, "the successor registered, the replaced instance not", func() bool {
		in := keys("/instances/")
		_, old := in[keyOf(victim.PID)]
		_, cur := in[keyOf(successor.PID)]
		return cur && !old && len(in) == 2
	})
	if took := time.Since(resumed); took >= ttl {
		t.Errorf("the replaced instance's key went %v after it resumed: expired (TTL %v), not deregistered", took, ttl)
	}
	p.await(t, victim.ID+` \| .*msg=deregistered`, 2*time.Second)
	t.Logf("replaced instance deregistered, successor registered, %v after it resumed", time.Since(resumed).Round(time.Millisecond))
	if n := status().BudgetRemaining; n != 0 {
		t.Errorf("budget remaining %d after the replacement, want 0", n)
	}

	// The host is lost: kill -9 of the fleet's process group. Its
	// instances die with it (Pdeathsig); every lease expires.
	if err := syscall.Kill(-p.PID(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.Done()
	took := testkit.WaitFor(t, ttl+time.Second, "every key of the killed host gone", func() bool {
		return len(keys("/instances/")) == 0 && len(keys("/fleet/hosts/")) == 0 && len(keys("/fleet/failures/")) == 0
	})
	t.Logf("the killed host's keys gone %v after SIGKILL (TTL %v)", took.Round(time.Millisecond), ttl)
}

// TestFleetFlagErrors: what `spillway fleet` refuses before it starts an
// instance.
func TestFleetFlagErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"fleet", "--host", "nowhere"}, `fleet.host: "nowhere": not an IP address`},
		{[]string{"fleet", "--instances", "0"}, "fleet.size: 0"},
		{[]string{"fleet", "--register", "etcd://127.0.0.1:2379"}, `login.register: "etcd://127.0.0.1:2379": no key prefix`},
		{[]string{"fleet", "--admin-listen", "nowhere"}, `fleet_admin.listen: "nowhere": not a host:port`},
		{[]string{"fleet"}, "login.token: no signing key"},
		{[]string{"fleet", "--dev", "--register", "etcd://127.0.0.1:1/x"}, "fleetwide: read /x/fleet/ at etcd http://127.0.0.1:1"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			t.Setenv("SPILLWAY_SIGNING_KEY", "")
			var out, errOut bytes.Buffer
			code := run(context.Background(), tt.args, &out, &errOut)
			if code == 0 || !strings.Contains(errOut.String(), tt.want) {
				t.Fatalf("exit %d, stderr %q; want non-zero and %q", code, errOut.String(), tt.want)
			}
		})
	}
}
