package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/spillway-dev/spillway/internal/config"
	"github.com/spillway-dev/spillway/internal/lb"
)

func TestHAProxyConfig(t *testing.T) {
	plan := haproxyPlan{
		Listen:  "127.0.0.1:18080",
		Backend: "127.0.0.1:19000",
		Instances: []instance{
			{Service: "127.0.0.1:18001", Health: "127.0.0.1:19001"},
			{Service: "127.0.0.1:18002", Health: "127.0.0.1:19002"},
			{Service: "127.0.0.1:18003", Health: "127.0.0.2:19003"}, // health on another host
		},
	}
	cfg := haproxyConfig(plan)
	for _, want := range []string{
		"\n    mode http\n",
		"\n    timeout connect 1s\n",
		"\n    timeout client 10s\n",
		"\n    timeout server 10s\n",
		"\n    bind 127.0.0.1:18080\n",
		`    http-request return status 503 content-type application/json string "{\"error\":\"dependency_unavailable\"}" hdr X-Spillway-Reason dependency_unavailable hdr Retry-After 1 if !{ nbsrv(dep) ge 1 }` + "\n",
		"\n    default_backend logins\n",
		"backend dep\n    option httpchk GET /healthz\n    server be 127.0.0.1:19000 check inter 400ms fall 2 rise 2\n",
		"backend logins\n    balance roundrobin\n    option httpchk GET /readyz\n",
		"\n    server login-1 127.0.0.1:18001 check port 19001 inter 400ms fall 2 rise 2\n",
		"\n    server login-2 127.0.0.1:18002 check port 19002 inter 400ms fall 2 rise 2\n",
		"\n    server login-3 127.0.0.1:18003 check addr 127.0.0.2 port 19003 inter 400ms fall 2 rise 2\n",
	} {
		if !strings.Contains(cfg, want) {
			t.Errorf("config lacks %q:\n%s", want, cfg)
		}
	}

	// The real check, where HAProxy is installed (scripts/test and
	// scripts/bench-recovery.sh install it; a plain go test may lack it).
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		t.Skip("haproxy not on PATH: config not validated by haproxy -c")
	}
	path := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := checkHAProxy(t.Context(), bin, path); err != nil {
		t.Error(err)
	}
}

func TestLBConfig(t *testing.T) {
	got := lbConfig("127.0.0.1:8080", "127.0.0.1:8081", []instance{
		{Service: "127.0.0.1:8001", Health: "127.0.0.1:9001"},
		{Service: "127.0.0.1:8002", Health: "127.0.0.1:9002"},
	})
	want := `# Written by racebench: the addresses and the instances; every policy at its default.
lb:
  listen: 127.0.0.1:8080
  admin_listen: 127.0.0.1:8081
  instances:
    - {service: 127.0.0.1:8001, health: 127.0.0.1:9001}
    - {service: 127.0.0.1:8002, health: 127.0.0.1:9002}
`
	if got != want {
		t.Errorf("lbConfig =\n%s\nwant\n%s", got, want)
	}

	// The balancer's own loader takes it, and apart from the addresses
	// and the instances it is the defaults.
	path := filepath.Join(t.TempDir(), "lb.yaml")
	if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := config.Load(path, config.Default())
	if err != nil {
		t.Fatal(err)
	}
	f.Resolve()
	if err := f.Validate(); err != nil {
		t.Fatal(err)
	}
	def := config.Default()
	def.Resolve()
	def.LB.Listen, def.LB.AdminListen = "127.0.0.1:8080", "127.0.0.1:8081"
	def.LB.Instances = []lb.Instance{{Service: "127.0.0.1:8001", Health: "127.0.0.1:9001"}, {Service: "127.0.0.1:8002", Health: "127.0.0.1:9002"}}
	if diff := cmp.Diff(def, f, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("loaded lb config differs from the defaults (-defaults +loaded):\n%s", diff)
	}
}
