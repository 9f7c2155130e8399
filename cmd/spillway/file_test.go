package main

import (
	"bytes"
	"context"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/spillway-dev/spillway/internal/config"
)

// wantErrors maps each testdata/*.bad.yaml to a part of the error `spillway
// check` must print for it.
var wantErrors = map[string]string{
	"unknown-field.bad.yaml":       "line 3: field helth_listen not found",
	"bad-listen.bad.yaml":          `login.listen: "x:y": port must be a number`,
	"bad-backend-url.bad.yaml":     `login.backend.url: "127.0.0.1:9000": not an absolute http(s) URL`,
	"bad-duration.bad.yaml":        "line 3",
	"bad-rate.bad.yaml":            "login.backend.failure_rate",
	"bad-proxy.bad.yaml":           `login.trusted_proxies[1]: "not-an-ip"`,
	"bad-algorithm.bad.yaml":       "login.admission.algorithm",
	"two-documents.bad.yaml":       "line 3: a second YAML document is not allowed",
	"lb-instance.bad.yaml":         `lb.instances[2].health: "x:y": port must be a number`,
	"lb-route.bad.yaml":            "lb.routes[0].response_header_timeout: 20s: must not exceed the route's total timeout (10s)",
	"lb-quorum.bad.yaml":           "lb.shedding.quorum: 1.5: must be in [0, 1]",
	"lb-unknown-field.bad.yaml":    "line 3: field healthcheck not found",
	"bad-nan.bad.yaml":             "line 3: .nan: must be a finite number",
	"up-backend-url.bad.yaml":      `up.backend_url: "http://": the URL names no host`,
	"lb-discovery.bad.yaml":        `lb.discovery: "etcd://127.0.0.1:2379/spillway": set either discovery or instances (--instance), not both`,
	"lb-discovery-srv.bad.yaml":    `lb.discovery: "dns+srv://_login._tcp.example.com?intervl=5s": intervl: "5s": unknown option`,
	"lb-discovery-scheme.bad.yaml": `lb.discovery: "zk://127.0.0.1:2181/spillway": unknown source; want etcd://`,
	"login-register.bad.yaml":      "login.register: \"etcd://127.0.0.1:2379\": no key prefix (want etcd://HOST:PORT/PREFIX)\nlogin.register_ttl: 0s: must be at least 1s",
	"lb-weight.bad.yaml":           `lb.weight: 0: must be a finite number above 0`,
	"fleet-admin.bad.yaml":         `fleet_admin.listen: "nowhere": not a host:port`,
	"lb-forwarding.bad.yaml":       "lb.trusted_proxies[1]: \"10.0.0.0/33\": not an IP address or CIDR prefix\nlb.server.proxy_protocol: \"v2\": must be off, optional or required",
	"fleet-schedule.bad.yaml":      `fleet.schedule[1].start: "0 25 * * *": end of range (25) above maximum (23): 25`,
	"guard.bad.yaml":               "guard.name: \"\": must be 1 to 64 letters, digits, '_', '-' or '.'\nguard.url: \"127.0.0.1:9000\": not an absolute http(s) URL\nguard.probe_url: \"127.0.0.1:9000/healthz\": not an absolute http(s) URL\nguard.service_ready.interval: 0s: must be positive",
	"guard-unknown-field.bad.yaml": "line 3: field upstream not found",
	"lb-tls.bad.yaml": "lb.server.tls.key_file: \"\": required with cert_file\nlb.server.h2c: true: not with server.tls: over TLS, HTTP/2 is negotiated by ALPN\n" +
		"lb.transport.protocol: \"h2\": needs transport.tls.enabled (h2c is HTTP/2 without TLS)\n" +
		"lb.transport.tls.enabled: false: must be true for ca_file, server_name or insecure_skip_verify to apply\n" +
		"lb.admin_tls.cert_file: \"testdata/missing.crt\": open testdata/missing.crt: no such file or directory",
}

func TestCheckTestdata(t *testing.T) {
	files, err := filepath.Glob("testdata/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, path := range files {
		name := filepath.Base(path)
		t.Run(name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := run(context.Background(), []string{"check", "--config", path}, &out, &errOut)
			switch {
			case strings.HasSuffix(name, ".good.yaml"):
				if code != 0 {
					t.Fatalf("exit %d: %s", code, errOut.String())
				}
			case strings.HasSuffix(name, ".bad.yaml"):
				seen[name] = true
				want, ok := wantErrors[name]
				if !ok {
					t.Fatalf("no expected error listed for %s", name)
				}
				if code == 0 || !strings.Contains(errOut.String(), want) {
					t.Fatalf("exit %d, stderr %q; want non-zero and %q", code, errOut.String(), want)
				}
			}
		})
	}
	for name := range wantErrors {
		if !seen[name] {
			t.Errorf("%s listed but not in testdata", name)
		}
	}
}

func TestLoginFlagErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"login", "--backend-timeout", "soon"}, "backend-timeout"},
		{[]string{"login", "--listen", "nowhere"}, `login.listen: "nowhere"`},
		{[]string{"login", "--backend", "ftp://x"}, "login.backend.url"},
		{[]string{"login", "--log-level", "loud"}, "--log-level"},
		{[]string{"login", "--config", "testdata/missing.yaml"}, "missing.yaml"},
		{[]string{"login", "--listen", "127.0.0.1:0", "--health-listen", "127.0.0.1:0"}, "no signing key"},
		{[]string{"check"}, "--config is required"},
		{[]string{"nonsense"}, `unknown command "nonsense"`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var out, errOut bytes.Buffer
			t.Setenv("SPILLWAY_SIGNING_KEY", "")
			code := run(context.Background(), tt.args, &out, &errOut)
			if code == 0 || !strings.Contains(errOut.String(), tt.want) {
				t.Fatalf("exit %d, stderr %q; want non-zero and %q", code, errOut.String(), tt.want)
			}
		})
	}
}

func TestVersion(t *testing.T) {
	var out bytes.Buffer
	// The version line names the toolchain whatever the build embedded
	// (go test embeds no module version: "devel").
	if code := run(context.Background(), []string{"version"}, &out, &out); code != 0 ||
		!strings.HasPrefix(out.String(), "spillway ") || !strings.Contains(out.String(), runtime.Version()) {
		t.Fatalf("version: %d %q", code, out.String())
	}
}

// TestIncident2018File: testdata/incident2018.good.yaml is the 2018
// configuration that the drill and the tests use (config.File.Apply2018),
// written out for readers: decoded onto the defaults it is the defaults
// with Apply2018, but for the static instance list it adds.
func TestIncident2018File(t *testing.T) {
	got, err := config.Load("testdata/incident2018.good.yaml", config.Default())
	if err != nil {
		t.Fatal(err)
	}
	got.LB.Instances = nil
	want := config.Default()
	want.Apply2018()
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("incident2018.good.yaml differs from Apply2018 (-want +got):\n%s", diff)
	}
}
