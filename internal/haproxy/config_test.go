package haproxy

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/spillway-dev/spillway/internal/lb"
	"github.com/spillway-dev/spillway/internal/testkit"
)

// haproxyBin is the haproxy binary on PATH; without one the test is
// skipped, unless CI=true, where HAProxy is part of the gate.
func haproxyBin(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("haproxy not on PATH (CI=true needs it): %v", err)
		}
		t.Skip("haproxy not on PATH")
	}
	return bin
}

func testConfig(dir string, n int) Config {
	c := DefaultConfig()
	c.Listen = "127.0.0.1:18080"
	c.Socket = filepath.Join(dir, "rt.sock")
	c.MapFile = filepath.Join(dir, "routes.map")
	for i := range n {
		c.Instances = append(c.Instances, lb.Instance{
			Service: fmt.Sprintf("127.0.0.1:%d", 8001+i),
			Health:  fmt.Sprintf("127.0.0.1:%d", 9001+i),
		})
	}
	return c
}

// haproxyCheck runs the real haproxy -c on the files c writes.
func haproxyCheck(t *testing.T, bin string, c *Config) string {
	t.Helper()
	cfg := filepath.Join(filepath.Dir(c.MapFile), "haproxy.cfg")
	if err := c.WriteFiles(cfg); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "-c", "-f", cfg).CombinedOutput()
	if err != nil {
		text, _ := os.ReadFile(cfg)
		t.Fatalf("haproxy -c: %v\n%s\n--- haproxy.cfg\n%s", err, out, text)
	}
	return cfg
}

func TestRenderHAProxyAccepts(t *testing.T) {
	bin := haproxyBin(t)
	routes := []lb.RouteConfig{
		{Prefix: "/api/", Dependencies: []string{"backend"}},
		{Prefix: "/api/public/", Dependencies: []string{}},
		{Prefix: "/reports/", Dependencies: []string{"backend", "db"}},
		{Prefix: "/slow/", TotalTimeout: time.Minute},
	}
	for _, tc := range []struct {
		name   string
		n      int
		routes []lb.RouteConfig
		edit   func(*Config)
	}{
		{"one instance", 1, nil, nil},
		{"three instances", 3, nil, nil},
		{"routes", 3, routes, nil},
		{"root route", 1, []lb.RouteConfig{{Prefix: "/", Dependencies: []string{"backend"}}}, nil},
		{"tcp socket and another health host", 2, routes, func(c *Config) {
			c.Socket = "127.0.0.1:19999"
			c.Instances[1].Health = "127.0.0.2:9002"
		}},
		{"ipv6", 1, nil, func(c *Config) {
			c.Listen = "[::1]:18080"
			c.Instances[0] = lb.Instance{Service: "[::1]:8001", Health: "[::1]:9001"}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := testConfig(t.TempDir(), tc.n)
			c.Routes = tc.routes
			if tc.edit != nil {
				tc.edit(&c)
			}
			haproxyCheck(t, bin, &c)
			var b strings.Builder
			if err := c.Render(&b); err != nil {
				t.Fatal(err)
			}
			for _, in := range c.Instances {
				if want := "server " + ServerName(in.Service) + " " + in.Service + " "; !strings.Contains(b.String(), want) {
					t.Errorf("no %q in\n%s", want, b.String())
				}
			}
		})
	}
}

func TestMapOrder(t *testing.T) {
	c := testConfig(t.TempDir(), 1)
	c.Routes = []lb.RouteConfig{
		{Prefix: "/a/", Dependencies: []string{"backend"}},
		{Prefix: "/a/b/", Dependencies: []string{}},
		{Prefix: "/zz/", Dependencies: []string{"backend", "db"}},
	}
	var b strings.Builder
	if err := c.RenderMap(&b); err != nil {
		t.Fatal(err)
	}
	want := `# spillway share map: path prefix -> admitted share in per-mille (1000 all, 0 none).
# Empty while every route admits all. While one is shed or ramping the
# controller fills it at run time with every route, first match wins:
#   /a/b/ N   (needs no dependency (never shed))
#   /zz/ N   (needs backend, db)
#   /a/ N   (needs backend)
#   / N   (needs every dependency)
`
	if diff := cmp.Diff(want, b.String()); diff != "" {
		t.Errorf("map (-want +got):\n%s", diff)
	}
}

func TestServerName(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1:8001":     "s-127.0.0.1-8001",
		"[::1]:8001":         "s-::1-8001",
		"login-1.local:80":   "s-login-1.local-80",
		"[fe80::1%eth0]:443": "s-fe80::1_eth0-443",
	} {
		if got := ServerName(in); got != want {
			t.Errorf("ServerName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"no instances", func(c *Config) { c.Instances = nil }, "instances: 0: at least one instance"},
		{"bad listen", func(c *Config) { c.Listen = "x" }, `listen: "x": not a host:port`},
		{"bad socket", func(c *Config) { c.Socket = "nowhere" }, `socket: "nowhere": not a host:port`},
		{"relative map", func(c *Config) { c.MapFile = "routes.map" }, `map_file: "routes.map"`},
		{"map with comma", func(c *Config) { c.MapFile = "/a,b/routes.map" }, `map_file: "/a,b/routes.map"`},
		{"bad health", func(c *Config) { c.Instances[0].Health = "9001" }, `instances[0].health: "9001": not a host:port`},
		{"same server", func(c *Config) { c.Instances[1].Service = c.Instances[0].Service }, "already taken by instances[0]"},
		{"prefix with space", func(c *Config) { c.Routes = []lb.RouteConfig{{Prefix: "/a b"}} }, `routes[0].prefix: "/a b"`},
		{"duplicate prefix", func(c *Config) { c.Routes = []lb.RouteConfig{{Prefix: "/a"}, {Prefix: "/a"}} }, "duplicate prefix"},
		{"check timeout", func(c *Config) { c.Health.Timeout = 3 * time.Second }, "at most health.interval"},
		{"retry after", func(c *Config) { c.RetryAfter = 0 }, "retry_after"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := testConfig("/tmp", 2)
			tc.edit(&c)
			err := c.Render(io.Discard)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Render: %v, want an error with %q", err, tc.want)
			}
		})
	}
}

// runtimeCommand sends one command to HAProxy's Runtime API on a unix
// socket and returns its answer.
func runtimeCommand(t *testing.T, socket, cmd string) string {
	t.Helper()
	conn, err := net.DialTimeout("unix", socket, time.Second)
	if err != nil {
		t.Fatalf("dial runtime socket: %v", err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.WriteString(conn, cmd+"\n"); err != nil {
		t.Fatalf("runtime %q: %v", cmd, err)
	}
	out, err := io.ReadAll(conn)
	if err != nil {
		t.Fatalf("runtime %q: %v", cmd, err)
	}
	return strings.TrimSpace(string(out))
}

// TestHAProxySheds runs the real HAProxy on the rendered configuration
// with two loopback instances, and sheds through the share map.
func TestHAProxySheds(t *testing.T) {
	bin := haproxyBin(t)
	var hits atomic.Int64
	var instances []lb.Instance
	var unready [2]atomic.Bool // an instance's /readyz answers 503
	for i := range 2 {
		svc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hits.Add(1)
			fmt.Fprintln(w, "ok")
		}))
		t.Cleanup(svc.Close)
		health := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch {
			case r.URL.Path != "/readyz":
				http.NotFound(w, r)
			case unready[i].Load():
				w.WriteHeader(http.StatusServiceUnavailable)
			}
		}))
		t.Cleanup(health.Close)
		instances = append(instances, lb.Instance{Service: svc.Listener.Addr().String(), Health: health.Listener.Addr().String()})
	}
	// A unix socket path is at most 107 bytes: t.TempDir's can be longer.
	dir, err := os.MkdirTemp("", "haproxy")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	c := testConfig(dir, 0)
	c.Instances = instances
	c.Health.Interval, c.Health.Timeout = 200*time.Millisecond, 100*time.Millisecond
	c.Routes = []lb.RouteConfig{
		{Prefix: "/api/", Dependencies: []string{"backend"}},
		{Prefix: "/api/public/", Dependencies: []string{}},
	}
	// A free port: taken and given back for HAProxy to bind.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c.Listen = ln.Addr().String()
	ln.Close()
	cfg := haproxyCheck(t, bin, &c)

	var logs testkit.SyncBuffer
	cmd := exec.Command(bin, "-f", cfg, "-db")
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = syscall.Kill(cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("haproxy output:\n%s", logs.String())
		}
	})

	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	get := func(path string) (*http.Response, string) {
		t.Helper()
		resp, err := client.Get("http://" + c.Listen + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp, string(body)
	}
	testkit.WaitFor(t, 5*time.Second, "haproxy listening", func() bool {
		conn, err := net.Dial("tcp", c.Listen)
		if err == nil {
			conn.Close()
		}
		return err == nil
	})
	if resp, _ := get("/api/login"); resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /api/login: %s, want 200", resp.Status)
	}

	// The map starts empty; the controller fills it with every route,
	// in MapEntries' order, when one is shed, then sets values.
	for _, e := range c.MapEntries() {
		share := AdmitAll
		if e.Prefix == "/api/" {
			share = 0
		}
		if out := runtimeCommand(t, c.Socket, fmt.Sprintf("add map %s %s %d", c.MapFile, e.Prefix, share)); out != "" {
			t.Fatalf("add map %s %d: %q", e.Prefix, share, out)
		}
	}
	set := func(prefix string, share int) {
		t.Helper()
		if out := runtimeCommand(t, c.Socket, fmt.Sprintf("set map %s %s %d", c.MapFile, prefix, share)); out != "" {
			t.Fatalf("set map %s %d: %q", prefix, share, out)
		}
	}
	before := hits.Load()
	resp, body := get("/api/login")
	if resp.StatusCode != http.StatusServiceUnavailable ||
		strings.TrimSpace(body) != `{"error":"dependency_unavailable"}` ||
		resp.Header.Get("Content-Type") != "application/json" ||
		resp.Header.Get("Retry-After") != "1" ||
		resp.Header.Get("X-Spillway-Reason") != "dependency_unavailable" {
		t.Fatalf("shed answer: %s %v %q", resp.Status, resp.Header, body)
	}
	if hits.Load() != before {
		t.Error("a shed request reached an instance")
	}
	// The longer prefix, needing nothing, and the catch-all are admitted.
	for _, p := range []string{"/api/public/x", "/other"} {
		if resp, _ := get(p); resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s with /api/ shed: %s, want 200", p, resp.Status)
		}
	}

	set("/api/", 500)
	const n = 200
	admitted := 0
	for range n {
		if resp, _ := get("/api/login"); resp.StatusCode == http.StatusOK {
			admitted++
		}
	}
	// Binomial(200, 0.5): sd 7; 60..140 is beyond 5 sd.
	if admitted < 60 || admitted > 140 {
		t.Errorf("share 500: %d of %d admitted, want about half", admitted, n)
	}
	t.Logf("share 500: %d of %d admitted", admitted, n)

	// Both servers exist under their documented names, at full weight.
	for _, in := range instances {
		out := runtimeCommand(t, c.Socket, "get weight "+BackendName+"/"+ServerName(in.Service))
		if !strings.HasPrefix(out, fmt.Sprintf("%d ", FullWeight)) {
			t.Errorf("get weight %s: %q", ServerName(in.Service), out)
		}
	}

	// HAProxy's own check of the health port takes a server whose /readyz
	// fails out, controller or not.
	unready[0].Store(true)
	down := ServerName(instances[0].Service)
	d := testkit.WaitFor(t, 5*time.Second, down+" DOWN in show stat", func() bool {
		for _, line := range strings.Split(runtimeCommand(t, c.Socket, "show stat"), "\n") {
			f := strings.Split(line, ",")
			if len(f) > 17 && f[0] == BackendName && f[1] == down {
				return strings.HasPrefix(f[17], "DOWN")
			}
		}
		return false
	})
	t.Logf("%s down %v after its /readyz failed (inter 200ms, fall 3)", down, d)
}

func ExampleConfig_RenderMap() {
	c := DefaultConfig()
	c.Listen = "127.0.0.1:8080"
	c.Socket = "/run/haproxy/spillway.sock"
	c.Instances = []lb.Instance{{Service: "127.0.0.1:8001", Health: "127.0.0.1:9001"}}
	c.Routes = []lb.RouteConfig{
		{Prefix: "/api/", Dependencies: []string{"backend"}},
		{Prefix: "/static/", Dependencies: []string{}},
	}
	if err := c.RenderMap(os.Stdout); err != nil {
		fmt.Println(err)
	}
	fmt.Println(ServerName(c.Instances[0].Service))
	// Output:
	// # spillway share map: path prefix -> admitted share in per-mille (1000 all, 0 none).
	// # Empty while every route admits all. While one is shed or ramping the
	// # controller fills it at run time with every route, first match wins:
	// #   /static/ N   (needs no dependency (never shed))
	// #   /api/ N   (needs backend)
	// #   / N   (needs every dependency)
	// s-127.0.0.1-8001
}
