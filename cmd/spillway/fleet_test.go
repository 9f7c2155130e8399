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

// TestFleetEtcd runs `spillway fleet --instances 2 --host 127.0.0.2
// --register etcd://...` as a real process around a real etcd: both
// instances register on 127.0.0.2, and the host registers in the fleet.
// An instance that hangs (SIGSTOP) is replaced: its successor registers,
// and it deregisters as it drains. The fleet's process group killed with
// SIGKILL (the host lost), every key it and its instances held is gone
// within the lease TTL and a second.
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
	sim := startProc(t, "backend-sim", "backend-sim", "--listen", "127.0.0.1:0", "--latency", "1ms")
	simAddr := sim.await(t, `listening on ([0-9.:]+)`, 10*time.Second)[1]
	start := time.Now()
	p := startProc(t, "fleet", "fleet", "--config", cfg, "--instances", "2", "--host", "127.0.0.2", "--dev",
		"--register", "etcd://"+e.HostPort()+prefix, "--backend", "http://"+simAddr, "--admin-listen", "127.0.0.1:0")
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
	registered := func(ps []fleet.ProcessStatus) bool {
		in := keys("/instances/")
		for _, s := range ps {
			var rec registry.Record
			if json.Unmarshal([]byte(in[keyOf(s.PID)]), &rec) != nil || !strings.HasPrefix(rec.Service, "127.0.0.2:") {
				return false
			}
		}
		return len(in) == len(ps)
	}
	testkit.WaitFor(t, 10*time.Second, "two instances running on 127.0.0.2 and registered", func() bool {
		ps := serving(status())
		return len(ps) == 2 && registered(ps)
	})
	t.Logf("2 instances registered %v after the fleet started", time.Since(start).Round(time.Millisecond))
	if hosts := keys("/fleet/hosts/"); len(hosts) != 1 {
		t.Errorf("host keys %v, want this fleet's", hosts)
	}
	if fw := st.FleetWide; fw == nil || !fw.Connected || fw.Size != 2 || fw.BudgetMax != 1 {
		t.Errorf("/status fleet_wide %+v: want connected, a fleet of 2, a budget of 1", fw)
	}

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
