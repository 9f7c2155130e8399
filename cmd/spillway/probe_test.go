package main

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/spillway-dev/spillway/health"
	"github.com/spillway-dev/spillway/internal/testkit"
)

// probeRun runs spillway probe with args and returns its exit code and
// output.
func probeRun(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(t.Context(), append([]string{"probe"}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

// TestProbeConforming: spillway's own health server conforms, ready or
// not; a warning does not fail.
func TestProbeConforming(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) }) // after the server stops
	s := health.New(health.Options{})
	s.AddDependency("backend", func() health.Dependency {
		return health.Dependency{State: health.DepUp, Breaker: "closed", Since: time.Now()}
	})
	s.SetLoad(func() (int, int, int) { return 2, 16, 0 })
	addr := testkit.Serve(t, s.Serve)

	code, out, errs := probeRun(t, addr)
	if code != 0 {
		t.Fatalf("not started: exit %d\n%s%s", code, out, errs)
	}
	for _, want := range []string{
		"ok   /livez 200\n",
		"ok   /readyz 503 (not ready: \"starting\")\n",
		"a spillway report\n",
		"ok   /health: dependencies: backend up\n",
		"ok   /health: limit 16, in flight 2\n",
		"ok   /health long poll answered in",
		addr + ": 6 ok, 0 warnings, 0 failed: conforms\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	s.Start()
	if code, out, _ := probeRun(t, "--timeout", "1s", addr); code != 0 || !strings.Contains(out, "ok   /readyz 200 (ready)") {
		t.Errorf("started: exit %d\n%s", code, out)
	}
}

// nonConforming serves a health port whose endpoints answer as given
// (path -> status, content type, body); other paths answer 200 "ok".
func nonConforming(t *testing.T, answers map[string][3]string) string {
	t.Helper()
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a, ok := answers[r.URL.Path]
		if !ok {
			io.WriteString(w, "ok")
			return
		}
		if a[0] == "hang" {
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
			return
		}
		w.Header().Set("Content-Type", a[1])
		code := http.StatusOK
		if a[0] != "" {
			code = map[string]int{"404": 404, "500": 500, "503": 503, "302": 302}[a[0]]
		}
		w.WriteHeader(code)
		io.WriteString(w, a[2])
	}))
	t.Cleanup(ts.Close)
	return strings.TrimPrefix(ts.URL, "http://")
}

func TestProbeNonConforming(t *testing.T) {
	good := `{"ready":true,"limit":8,"dependencies":{"backend":{"state":"up"}}}`
	for _, tc := range []struct {
		name    string
		answers map[string][3]string
		args    []string
		code    int
		want    []string
	}{
		{"livez text at /health", map[string][3]string{"/health": {"", "text/plain", "ok"}}, nil, 1,
			[]string{`FAIL /health: unusable (not_json) because body "ok" is not JSON (is the report path pointing at /livez or a web page?)`, "1 failed: does not conform"}},
		{"wrong shape", map[string][3]string{"/health": {"", "application/json", `{"healthy":true}`}}, nil, 1,
			[]string{"FAIL /health: unusable (wrong_shape) because it is a JSON object with none of the fields of a spillway, IETF health+json or Spring Boot report (fields: healthy)"}},
		{"too large", map[string][3]string{"/health": {"", "application/json", `{"ready":true,"x":"` + strings.Repeat("x", health.MaxReportBytes) + `"}`}}, nil, 1,
			[]string{"FAIL /health: unusable (too_large) because it is larger than 65536 bytes"}},
		{"bad dependency state", map[string][3]string{"/health": {"", "application/json", `{"ready":true,"dependencies":{"backend":{"state":"degraded"}}}`}}, nil, 1,
			[]string{`FAIL /health: unusable (bad_value) because dependencies.backend.state "degraded" is not "up", "down" or "unknown"`}},
		{"wrong types", map[string][3]string{"/health": {"", "application/json", `{"ready":"yes","limit":8}`}}, nil, 1,
			[]string{"FAIL /health: unusable (bad_value) because a spillway report with a field of the wrong type: json: cannot unmarshal string into Go struct field Report.ready of type bool"}},
		{"negative limit", map[string][3]string{"/health": {"", "application/json", `{"ready":true,"limit":-2}`}}, nil, 1,
			[]string{"FAIL /health: unusable (bad_value) because limit -2 is negative"}},
		{"health 404", map[string][3]string{"/health": {"404", "text/plain", "not found"}}, nil, 1,
			[]string{"FAIL /health: 404 because the report must be answered with 200"}},
		{"livez 500", map[string][3]string{"/livez": {"500", "text/plain", "boom"}, "/health": {"", "application/json", good}}, nil, 1,
			[]string{`FAIL /livez: 500 "boom" because a live process must answer 200`}},
		{"readyz 404", map[string][3]string{"/readyz": {"404", "text/plain", "nope"}, "/health": {"", "application/json", good}}, nil, 1,
			[]string{"FAIL /readyz: 404 because readiness must answer 200 (ready) or 503 (not ready)"}},
		{"health hangs", map[string][3]string{"/health": {"hang"}}, []string{"--timeout", "200ms"}, 1,
			[]string{"FAIL /health: no answer within 200ms"}},
		// Conforms, with warnings: a minimal Spring Boot answer.
		{"spring minimal", map[string][3]string{"/health": {"", "application/vnd.spring-boot.actuator.v3+json", `{"status":"UP"}`}}, nil, 0,
			[]string{"a Spring Boot Actuator document", "warn /health: no dependencies listed", "warn /health: no limit", "warn /health: no version", "3 ok, 3 warnings, 0 failed: conforms"}},
		{"ietf with limit", map[string][3]string{"/health": {"503", "application/health+json", `{"status":"fail","checks":{"backend:responseTime":[{"status":"fail","output":"timeout"}]},"spillway":{"limit":12}}`}}, nil, 0,
			[]string{"ok   /health 503,", "an IETF health+json document", "ok   /health: dependencies: backend down", "ok   /health: limit 12, in flight 0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := nonConforming(t, tc.answers)
			code, out, errs := probeRun(t, append(tc.args, addr)...)
			if code != tc.code {
				t.Errorf("exit %d, want %d", code, tc.code)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			if tc.code == 1 && !strings.Contains(errs, "does not conform to the instance contract") {
				t.Errorf("stderr = %q", errs)
			}
		})
	}
}

func TestProbeUnreachable(t *testing.T) {
	addr := testkit.RefusingAddr(t)
	code, out, _ := probeRun(t, addr)
	if code != 1 || !strings.Contains(out, "FAIL /livez: cannot connect:") || !strings.Contains(out, "0 ok, 0 warnings, 3 failed") {
		t.Errorf("exit %d\n%s", code, out)
	}
}

func TestProbeUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "HOST:PORT is required"},
		{[]string{"localhost"}, `"localhost": not a HOST:PORT`},
		{[]string{"a:1", "b:2"}, `unexpected argument "b:2"`},
		{[]string{"--timeout", "0s", "a:1"}, "must be positive"},
		{[]string{"a:1", "--report-path", "health"}, `path "health": must start with /`},
		{[]string{"--nope", "a:1"}, "flag provided but not defined: -nope"},
	} {
		code, _, errs := probeRun(t, tc.args...)
		if code != 2 || !strings.Contains(errs, tc.want) {
			t.Errorf("%q: exit %d, stderr %q; want 2 and %q", tc.args, code, errs, tc.want)
		}
	}
}
