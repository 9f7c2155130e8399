package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/internal/testkit"
)

func TestLBFlagErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"lb", "--instance", "127.0.0.1:8001"}, "want SERVICE_ADDR=HEALTH_ADDR"},
		{[]string{"lb", "--instance", "127.0.0.1:8001=x:y"}, `lb.instances[0].health: "x:y": port must be a number`},
		{[]string{"lb", "--listen", "nowhere"}, `lb.listen: "nowhere": not a host:port`},
		{[]string{"lb", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--admin-token", "short"}, "--admin-token: the admin token must be at least 16"},
		{[]string{"lb", "--log-level", "loud"}, "--log-level"},
		{[]string{"lb", "--weight", "-1"}, `lb.weight: -1: must be a finite number above 0`},
		{[]string{"lb", "--discovery", "etcd://127.0.0.1:1/spillway", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"}, "lb.discovery: balancers at etcd http://127.0.0.1:1"},
		{[]string{"lb", "--config", "testdata/missing.yaml"}, "missing.yaml"},
		{[]string{"lb", "--config", "testdata/lb-quorum.bad.yaml"}, "lb.shedding.quorum: 1.5"},
		{[]string{"lb", "--tls-cert", "testdata/missing.crt"}, `lb.server.tls.key_file: "": required with cert_file`},
		{[]string{"lb", "--tls-cert", "testdata/missing.crt", "--tls-key", "testdata/missing.key"}, `lb.server.tls.cert_file: "testdata/missing.crt": open testdata/missing.crt: no such file`},
		{[]string{"login", "--tls-key", "testdata/missing.key"}, `login.tls.cert_file: "": required with key_file`},
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

// fakeInstance serves a service port answering "hi" and a health port
// whose /readyz passes.
func fakeInstance(t *testing.T) (svc, hl string) {
	t.Helper()
	start := func(h http.Handler) string {
		ln := testkit.Listen(t)
		srv := &http.Server{Handler: h, ReadHeaderTimeout: time.Second}
		go srv.Serve(ln)
		t.Cleanup(func() { srv.Close() })
		return ln.Addr().String()
	}
	svc = start(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hi") }))
	hl = start(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	return svc, hl
}

// TestLBReloadOnSIGHUP runs `spillway lb --config FILE`, then reloads a
// bad file (kept out) and a good one (applied) with SIGHUP.
func TestLBReloadOnSIGHUP(t *testing.T) {
	const token = "cmd-test-admin-token-123"
	t.Setenv("SPILLWAY_ADMIN_TOKEN", token)
	svc1, h1 := fakeInstance(t)
	svc2, h2 := fakeInstance(t)
	path := filepath.Join(t.TempDir(), "lb.yaml")
	write := func(body string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	base := "lb:\n  listen: 127.0.0.1:0\n  admin_listen: 127.0.0.1:0\n  server: {drain_delay: 0s}\n  health_check: {interval: 50ms, timeout: 50ms, report_path: \"\"}\n  instances:\n"
	write(base + "    - {service: " + svc1 + ", health: " + h1 + "}\n")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr testkit.SyncBuffer
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"lb", "--config", path}, &stdout, &stderr) }()
	re := regexp.MustCompile(`msg=listening proxy=(\S+) admin=(\S+)`)
	var m []string
	testkit.WaitFor(t, 5*time.Second, "listening", func() bool { m = re.FindStringSubmatch(stderr.String()); return m != nil })
	proxy, admin := "http://"+m[1], "http://"+m[2]
	if strings.Contains(stderr.String(), token) || strings.Contains(stderr.String(), "generated") {
		t.Errorf("token from the environment printed: %s", stderr.String())
	}
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	get := func(url string) (int, string) {
		resp, err := client.Get(url)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	testkit.WaitFor(t, 3*time.Second, "proxied", func() bool { code, body := get(proxy + "/"); return code == 200 && body == "hi" })

	reloads := func(result string) bool {
		_, body := get(admin + "/metrics")
		return strings.Contains(body, `spillway_lb_config_reload_total{result="`+result+`"} 1`)
	}
	write(base + "    - {service: " + svc1 + ", health: \"x:y\"}\n")
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	testkit.WaitFor(t, 3*time.Second, "failed reload counted", func() bool { return reloads("failure") })
	if !strings.Contains(stderr.String(), `lb.instances[0].health: \"x:y\"`) {
		t.Errorf("reload error not logged: %s", stderr.String())
	}
	write(base + "    - {service: " + svc1 + ", health: " + h1 + "}\n    - {service: " + svc2 + ", health: " + h2 + "}\n")
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	testkit.WaitFor(t, 3*time.Second, "reload applied", func() bool {
		_, body := get(admin + "/status")
		return reloads("success") && strings.Contains(body, svc2)
	})
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("exit %d: %s", code, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("lb did not stop")
	}
}

func TestLBGeneratesToken(t *testing.T) {
	t.Setenv("SPILLWAY_ADMIN_TOKEN", "")
	path := filepath.Join(t.TempDir(), "lb.yaml")
	if err := os.WriteFile(path, []byte("lb: {server: {drain_delay: 0s}}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var stdout, stderr testkit.SyncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"lb", "--config", path, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"}, &stdout, &stderr)
	}()
	testkit.WaitFor(t, 5*time.Second, "listening", func() bool { return strings.Contains(stderr.String(), "msg=listening") })
	cancel()
	<-done
	if !regexp.MustCompile(`admin token \(generated[^)]*\): [A-Za-z0-9_-]{43}\n`).MatchString(stderr.String()) {
		t.Errorf("no generated token printed: %s", stderr.String())
	}
}
