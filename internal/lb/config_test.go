package lb

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"

	"github.com/spillway-dev/spillway/health"
)

// parseFile loads src as the lb section is loaded: strict decode onto
// DefaultConfig, Resolve, Validate. (config.Decode does the same strict
// decode; it imports this package, so the test cannot.)
func parseFile(t *testing.T, src string) (*Config, error) {
	t.Helper()
	c := DefaultConfig()
	dec := yaml.NewDecoder(strings.NewReader(src))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	c.Resolve()
	return &c, c.Validate()
}

// The file's defaults are the policies' documented defaults.
func TestFileConfigDefaults(t *testing.T) {
	c, err := parseFile(t, "")
	if err != nil {
		t.Fatal(err)
	}
	for name, d := range map[string][2]any{
		"health_check": {DefaultHealthConfig(), c.HealthCheck},
		"outlier":      {DefaultOutlierConfig(), c.Outlier},
		"slow_start":   {DefaultSlowStartConfig(), c.SlowStart},
		"panic":        {DefaultPanicConfig(), c.Panic},
		"shedding":     {DefaultShedConfig(), c.Shedding},
		"retry_budget": {DefaultRetryBudgetConfig(), c.RetryBudget},
		"admission":    {DefaultAdmissionConfig(), c.Admission},
	} {
		if diff := cmp.Diff(d[0], d[1]); diff != "" {
			t.Errorf("%s: defaults differ from the policy's (-want +got):\n%s", name, diff)
		}
	}
	if c.Listen != "127.0.0.1:8080" || c.AdminListen != "127.0.0.1:8081" || c.AdminTokenEnv != "SPILLWAY_ADMIN_TOKEN" ||
		c.HealthCheck.ReadyPath != "/readyz" || c.HealthCheck.ReportPath != "/health" ||
		c.Timeouts != (TimeoutsConfig{Connect: time.Second, ResponseHeader: 10 * time.Second, Total: 15 * time.Second, StreamIdle: time.Minute}) ||
		c.Admission.QueueSize != 128 || c.Server.MaxHeaderBytes != 32<<10 || c.Transport.MaxIdleConnsPerHost != 512 ||
		c.Server.DrainDelay != 5*time.Second || c.Server.ShutdownTimeout != 20*time.Second {
		t.Errorf("defaults: %+v", c)
	}
	before := *c
	c.Resolve()
	if diff := cmp.Diff(before, *c); diff != "" {
		t.Errorf("Resolve is not idempotent:\n%s", diff)
	}
}

// An explicit 0 disables the drain delay; a route inherits the stream
// idle timeout or sets its own.
func TestFileConfigLifecycleAndStreams(t *testing.T) {
	c, err := parseFile(t, `
server: {drain_delay: 0s}
timeouts: {stream_idle: 90s}
routes:
  - {prefix: /ws, stream_idle_timeout: 10m}
  - {prefix: /api}
`)
	if err != nil {
		t.Fatal(err)
	}
	if c.Server.DrainDelay != 0 {
		t.Errorf("drain_delay: 0s became %v", c.Server.DrainDelay)
	}
	if got := c.routeTimeouts(c.Routes[0]).StreamIdle; got != 10*time.Minute {
		t.Errorf("/ws stream idle = %v, want 10m", got)
	}
	if got := c.routeTimeouts(c.Routes[1]).StreamIdle; got != 90*time.Second {
		t.Errorf("/api stream idle = %v, want the inherited 90s", got)
	}
}

// The 2018 settings are plain configuration and validate.
func TestFileConfig2018(t *testing.T) {
	c, err := parseFile(t, `
instances:
  - {service: "10.0.0.1:8001", health: "10.0.0.1:8001"}
  - {service: "10.0.0.2:8001", health: "10.0.0.2:8001"}
health_check: {ready_path: /login/health, report_path: ""}
panic: {threshold: 0}
slow_start: {window: 0s}
shedding: {quorum: 0}
`)
	if err != nil {
		t.Fatal(err)
	}
	if c.Panic.Threshold != 0 || c.SlowStart.Window != 0 || c.Shedding.Quorum != 0 || c.HealthCheck.ReportPath != "" {
		t.Errorf("2018 settings lost: %+v", c)
	}
}

func TestFileConfigValidate(t *testing.T) {
	tests := []struct{ name, src, want string }{
		{"instance health", `instances: [{service: "127.0.0.1:1", health: "x:y"}]`, `instances[0].health: "x:y": port must be a number`},
		{"instance missing health", `instances: [{service: "127.0.0.1:1"}]`, `instances[0].health: "": required`},
		{"instance port 0", `instances: [{service: "127.0.0.1:0", health: "127.0.0.1:2"}]`, `instances[0].service: "127.0.0.1:0": port must be from 1`},
		{"instance no host", `instances: [{service: ":80", health: "127.0.0.1:2"}]`, `instances[0].service: ":80": needs a host`},
		{"duplicate instance", `instances: [{service: "a:1", health: "a:2"}, {service: "a:1", health: "a:3"}]`, `instances[1].service: "a:1": duplicate of instances[0].service`},
		{"listen", `listen: nowhere`, `listen: "nowhere": not a host:port`},
		{"same listeners", "listen: 127.0.0.1:9\nadmin_listen: 127.0.0.1:9", `admin_listen: "127.0.0.1:9": must differ from listen`},
		{"short token", `admin_token: short`, "admin_token: must be at least 16 characters (value not shown)"},
		{"interval", `health_check: {interval: 1ms}`, "health_check.interval: 1ms: must be at least 10ms"},
		{"timeout over interval", `health_check: {interval: 1s, timeout: 2s}`, "health_check.timeout: 2s: must not exceed interval (1s)"},
		{"jitter", `health_check: {jitter: 0.9}`, "health_check.jitter: 0.9: must be in [0, 0.5]"},
		{"ready path", `health_check: {ready_path: readyz}`, `health_check.ready_path: "readyz": must start with "/"`},
		{"thresholds", `health_check: {healthy_threshold: -1}`, "health_check.healthy_threshold: -1: must be at least 1"},
		{"outlier", `outlier: {consecutive_gateway_failures: -1}`, "outlier.consecutive_gateway_failures: -1: must not be negative"},
		{"ejection times", `outlier: {base_ejection_time: 10s, max_ejection_time: 5s}`, "outlier.max_ejection_time: 5s: must be at least base_ejection_time (10s)"},
		{"ejected share", `outlier: {max_ejected_share: 2}`, "outlier.max_ejected_share: 2: must be in [0, 1]"},
		{"slow start", `slow_start: {window: -1s}`, "slow_start.window: -1s: must not be negative"},
		{"min weight", `slow_start: {min_weight: 2}`, "slow_start.min_weight: 2: must be in (0, 1]"},
		{"panic", `panic: {threshold: 1.5}`, "panic.threshold: 1.5: must be in [0, 1]"},
		{"quorum", `shedding: {quorum: -0.1}`, "shedding.quorum: -0.1: must be in [0, 1]"},
		{"recovery", `shedding: {recovery_window: 10s, max_recovery_window: 5s}`, "shedding.max_recovery_window: 5s: must be at least recovery_window (10s)"},
		{"timeouts", `timeouts: {response_header: 20s, total: 10s}`, "timeouts.response_header: 20s: must not exceed total (10s)"},
		{"route prefix", `routes: [{prefix: login}]`, `routes[0].prefix: "login": must start with "/"`},
		{"route duplicate", `routes: [{prefix: /a}, {prefix: /a}]`, `routes[1].prefix: "/a": duplicate prefix`},
		{"route dependency", `routes: [{prefix: /a, dependencies: [""]}]`, `routes[0].dependencies[0]: "": must not be empty`},
		{"route timeouts", `routes: [{prefix: /a, response_header_timeout: 5s, total_timeout: 2s}]`, "routes[0].response_header_timeout: 5s: must not exceed the route's total timeout (2s)"},
		{"route negative", `routes: [{prefix: /a, total_timeout: -1s}]`, "routes[0].total_timeout: -1s: must not be negative"},
		{"stream idle", `timeouts: {stream_idle: -1s}`, "timeouts.stream_idle: -1s: must be positive"},
		{"route stream idle", `routes: [{prefix: /a, stream_idle_timeout: -1s}]`, "routes[0].stream_idle_timeout: -1s: must not be negative"},
		{"drain delay", `server: {drain_delay: -1s}`, "server.drain_delay: -1s: must not be negative"},
		{"queue", `admission: {queue_size: -1}`, "admission.queue_size: -1: must be from 0"},
		{"fallback", `admission: {fallback_limit: -1}`, "admission.fallback_limit: -1: must be from 0"},
		{"unknown limit", `admission: {unknown_instance_limit: -1}`, "admission.unknown_instance_limit: -1: must not be negative"},
		{"budget", `retry_budget: {ratio: -1}`, "retry_budget.ratio: -1: must be a non-negative number"},
		{"budget window", `retry_budget: {window: 1ms}`, "retry_budget.window: 1ms: must be at least 100ms"},
		{"server write", `server: {write_timeout: 5s}`, "server.write_timeout: 5s: must be at least the longest total timeout (15s)"},
		{"server headers", `server: {max_header_bytes: 10}`, "server.max_header_bytes: 10: must be from 1024"},
		{"transport", `transport: {max_idle_conns_per_host: -3}`, "transport.max_idle_conns_per_host: -3: must be at least 1"},
		{"unknown field", `helth_check: {}`, "field helth_check not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseFile(t, tt.src)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// A route's dependencies: absent means all (like an unmatched path), []
// means none.
func TestRouteDependenciesAbsentOrEmpty(t *testing.T) {
	c, err := parseFile(t, `
routes:
  - {prefix: /all, total_timeout: 5s}
  - {prefix: /none, dependencies: []}
  - {prefix: /some, dependencies: [backend]}
`)
	if err != nil {
		t.Fatal(err)
	}
	rt, err := NewRouteTable(c.shedRoutes())
	if err != nil {
		t.Fatal(err)
	}
	s, _ := NewShedder(DefaultShedConfig(), rt)
	if err := s.SetOverride("backend", OverrideOn, t0); err != nil {
		t.Fatal(err)
	}
	if err := s.SetOverride("cache", OverrideOn, t0); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{"/all/x": "backend", "/none/x": "", "/some": "backend", "/other": "backend"} {
		if dep, _ := s.Blocked(path, t0, 0.5); dep != want {
			t.Errorf("Blocked(%s) = %q, want %q", path, dep, want)
		}
	}
	if deps, all := rt.Lookup("/all/x"); !all || deps != nil {
		t.Errorf("Lookup(/all/x) = %v %v, want all", deps, all)
	}
	if got := c.routeTimeouts(c.Routes[0]); got.ResponseHeader != 5*time.Second || got.Connect != time.Second {
		t.Errorf("inherited timeouts are not capped at the route's total: %+v", got)
	}
}

// The admin token never shows: not in YAML, JSON, fmt or slog output.
func TestSecretNeverShown(t *testing.T) {
	const tok = "super-secret-admin-token-42"
	c, err := parseFile(t, "admin_token: "+tok)
	if err != nil {
		t.Fatal(err)
	}
	if c.AdminToken.Reveal() != tok {
		t.Fatalf("Reveal = %q", c.AdminToken.Reveal())
	}
	var outs []string
	y, err := yaml.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	j, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	slog.New(slog.NewTextHandler(&logs, nil)).Info("cfg", "config", c, "token", c.AdminToken)
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("cfg", "config", c, "token", c.AdminToken)
	outs = append(outs, string(y), string(j), logs.String(), fmt.Sprintf("%v %+v %#v %s", *c, *c, *c, c.AdminToken))
	for _, o := range outs {
		if strings.Contains(o, tok) {
			t.Errorf("the token shows in %q", o)
		}
	}
	if !strings.Contains(string(y), "admin_token: REDACTED") {
		t.Errorf("yaml: %s", y)
	}
}

func TestRouteTableAll(t *testing.T) {
	rt, err := NewRouteTable([]Route{{Prefix: "/a", All: true, Dependencies: []string{"ignored", ""}}, {Prefix: "/a/b"}})
	if err != nil {
		t.Fatal(err)
	}
	s, _ := NewShedder(DefaultShedConfig(), rt)
	down := health.Report{Ready: true, Dependencies: map[string]health.Dependency{"x": {State: health.DepDown}}}
	s.Update(t0, []health.Report{down})
	if dep, blocked := s.Blocked("/a/z", t0, 0.5); !blocked || dep != "x" {
		t.Errorf("/a/z: %q %v, want blocked by x", dep, blocked)
	}
	if _, blocked := s.Blocked("/a/b", t0, 0.5); blocked {
		t.Errorf("/a/b needs nothing, blocked")
	}
}

// FuzzFileConfig feeds arbitrary bytes through the lb loader: strict
// decode onto the defaults, Resolve, validation. It must never panic; a
// file it accepts stays valid after a second Resolve and builds a
// Balancer.
func FuzzFileConfig(f *testing.F) {
	f.Add([]byte(""))
	f.Add([]byte("instances: [{service: \"127.0.0.1:8001\", health: \"127.0.0.1:9001\"}]\nroutes: [{prefix: /v1/login, dependencies: [backend], total_timeout: 5s}]\n"))
	f.Add([]byte("panic: {threshold: 0}\nslow_start: {window: 0s}\nshedding: {quorum: 0, recovery_window: 0s}\nhealth_check: {report_path: \"\"}\n"))
	f.Add([]byte("health_check: {interval: 10ms, timeout: 10ms, jitter: 0.5}\nadmission: {queue_size: 0, fallback_limit: 100}\n"))
	f.Add([]byte("timeouts: {connect: 1ns, response_header: 1ns, total: 1ns}\nserver: {read_timeout: 1ns, write_timeout: 1ns}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c := DefaultConfig()
		dec := yaml.NewDecoder(bytes.NewReader(data))
		dec.KnownFields(true)
		if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
			return
		}
		c.Resolve()
		if err := c.Validate(); err != nil {
			return
		}
		c.Resolve()
		if err := c.Validate(); err != nil {
			t.Fatalf("valid config invalid after a second Resolve: %v", err)
		}
		b, err := New(c, Options{AdminToken: "fuzz-token-0123456789"})
		if err != nil {
			t.Fatalf("a valid config does not build a Balancer: %v", err)
		}
		b.transport.Load().CloseIdleConnections()
	})
}
