package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/health"
	"github.com/spillway-dev/spillway/internal/testbin"
	"github.com/spillway-dev/spillway/internal/testkit"
)

func TestGuardFlagErrors(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "guard.yaml")
	if err := os.WriteFile(bad, []byte("guard:\n  timeout: 2s\n  max_concurrent: -1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"guard", "--upstream", "127.0.0.1:9000"}, `guard.url: "127.0.0.1:9000": not an absolute http(s) URL`},
		{[]string{"guard", "--listen", "nowhere"}, `guard.listen: "nowhere": not a host:port`},
		{[]string{"guard", "--timeout", "soon"}, "timeout"},
		{[]string{"guard", "--timeout", "-1s"}, `guard.timeout: "-1s": must be a positive duration`},
		{[]string{"guard", "--service-ready", "ftp://x"}, `guard.service_ready.url: "ftp://x"`},
		{[]string{"guard", "--name", "a b"}, `guard.name: "a b"`},
		{[]string{"guard", "--config", bad}, `guard.max_concurrent: "-1": must be between 1 and`},
		{[]string{"guard", "--config", "testdata/guard-unknown-field.bad.yaml"}, "line 3: field upstream not found"},
		{[]string{"guard", "extra"}, `unexpected argument "extra"`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := run(context.Background(), tt.args, &out, &errOut)
			if code == 0 || !strings.Contains(errOut.String(), tt.want) {
				t.Fatalf("exit %d, stderr %q; want non-zero and %q", code, errOut.String(), tt.want)
			}
		})
	}
}

// TestGuardSIGTERM runs the spillway guard binary in front of a
// backend-sim and stops it: at once the report says draining and /readyz
// fails while the proxy still forwards, for drain_delay; then it exits 0.
func TestGuardSIGTERM(t *testing.T) {
	sim := testbin.Start(t, "backend-sim", "--listen", "127.0.0.1:0", "--latency", "0s")
	backend := "http://" + sim.Await(t, reSimListening, 10*time.Second)[1]
	cfg := filepath.Join(t.TempDir(), "guard.yaml")
	if err := os.WriteFile(cfg, []byte("guard:\n  drain_delay: 1s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	g := testbin.Start(t, "guard", "--config", cfg, "--listen", "127.0.0.1:0", "--health-listen", "127.0.0.1:0", "--upstream", backend, "--timeout", "500ms")
	m := g.Await(t, reGuard, 10*time.Second)
	proxy, hp := "http://"+m[1], "http://"+m[2]
	client := &http.Client{Transport: &http.Transport{}, Timeout: 5 * time.Second}
	defer client.CloseIdleConnections()
	validate := func() int {
		resp, err := client.Post(proxy+"/v1/validate", "application/json", strings.NewReader(`{"ticket":"valid-a"}`))
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	report := func() (health.Report, error) {
		var r health.Report
		resp, err := client.Get(hp + "/health")
		if err != nil {
			return r, err
		}
		defer resp.Body.Close()
		return r, json.NewDecoder(resp.Body).Decode(&r)
	}
	testkit.WaitFor(t, 5*time.Second, "ready", func() bool { r, err := report(); return err == nil && r.Ready })
	if code := validate(); code != 200 {
		t.Fatalf("validate through the guard: %d", code)
	}

	start := time.Now()
	if err := g.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, time.Second, "the report to say draining", func() bool { r, err := report(); return err == nil && r.Draining && !r.Ready })
	resp, err := client.Get(hp + "/readyz")
	if err != nil || resp.StatusCode != 503 {
		t.Errorf("/readyz while draining: %v %v", resp, err)
	}
	if resp != nil {
		resp.Body.Close()
	}
	if code := validate(); code != 200 {
		t.Errorf("validate while draining: %d; want 200 (the proxy serves on for drain_delay)", code)
	}
	select {
	case <-g.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("spillway guard did not exit within 10s of SIGTERM")
	}
	if err := g.Err(); err != nil {
		t.Errorf("exit: %v\n%s", err, g.Output())
	}
	if took := time.Since(start); took < time.Second {
		t.Errorf("exited %v after SIGTERM; want after the 1s drain delay", took)
	}
}
