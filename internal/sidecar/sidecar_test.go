package sidecar

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/health"
	"github.com/spillway-dev/spillway/internal/backendsim"
	"github.com/spillway-dev/spillway/internal/testkit"
)

// running is a Sidecar serving on loopback for the length of a test.
type running struct {
	*Sidecar
	proxy, health string // base URLs
	stop          func() error
}

// start runs a Sidecar from cfg on fresh loopback listeners until the
// test ends (or stop).
func start(t testing.TB, cfg Config) *running {
	t.Helper()
	s, err := New(&cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ln, hl := testkit.Listen(t), testkit.Listen(t)
	r := &running{Sidecar: s, proxy: "http://" + ln.Addr().String(), health: "http://" + hl.Addr().String()}
	r.stop = testkit.Go(t, "sidecar", 15*time.Second, func(ctx context.Context) error { return s.Run(ctx, ln, hl) })
	return r
}

// simUpstream runs a backend-sim on loopback until the test ends.
func simUpstream(t testing.TB, cfg backendsim.Config) (*backendsim.Sim, string) {
	t.Helper()
	sim, err := backendsim.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	addr := testkit.Serve(t, sim.Serve)
	return sim, "http://" + addr
}

// fastConfig is a sidecar in front of upstream whose breaker and probes
// act within a test's patience.
func fastConfig(upstream string) Config {
	c := DefaultConfig()
	c.Listen, c.HealthListen = "127.0.0.1:0", "127.0.0.1:0"
	c.URL = upstream
	c.Timeout = 200 * time.Millisecond
	c.ConsecutiveFailures = 3
	c.ProbeInterval = 50 * time.Millisecond
	c.DrainDelay = 0
	return c
}

type answer struct {
	code   int
	header http.Header
	body   string
	close  bool // the answer said Connection: close
}

func call(t *testing.T, client *http.Client, method, url, body string, header http.Header) answer {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read: %v", method, url, err)
	}
	return answer{resp.StatusCode, resp.Header, string(b), resp.Close}
}

func newClient(t *testing.T) *http.Client {
	c := &http.Client{Transport: &http.Transport{}, Timeout: 10 * time.Second}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

func report(t *testing.T, client *http.Client, base string) health.Report {
	t.Helper()
	a := call(t, client, http.MethodGet, base+"/health", "", nil)
	var r health.Report
	if err := json.Unmarshal([]byte(a.body), &r); err != nil {
		t.Fatalf("/health: %v: %q", err, a.body)
	}
	return r
}

// TestForwarding: method, joined path, query, headers and body reach the
// upstream as the service sent them (Host is the upstream's, nothing
// added); status, headers and body come back as the upstream sent them,
// a 4xx and a 5xx included.
func TestForwarding(t *testing.T) {
	type seen struct {
		method, path, query, host, body string
		header                          http.Header
	}
	got := make(chan seen, 1)
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/healthz" { // the guard's probe
			return
		}
		b, _ := io.ReadAll(r.Body)
		got <- seen{r.Method, r.URL.Path, r.URL.RawQuery, r.Host, string(b), r.Header.Clone()}
		w.Header().Set("X-Upstream", "yes")
		switch r.URL.Query().Get("status") {
		case "404":
			w.WriteHeader(http.StatusNotFound)
		case "500":
			w.WriteHeader(http.StatusInternalServerError)
		default:
			w.WriteHeader(http.StatusCreated)
		}
		io.WriteString(w, "answer:"+string(b))
	}))
	defer echo.Close()
	sc := start(t, fastConfig(echo.URL+"/api"))
	client := newClient(t)

	a := call(t, client, http.MethodPut, sc.proxy+"/v1/thing?b=2&a=1", `{"x":1}`,
		http.Header{"X-Custom": {"c1", "c2"}, "Content-Type": {"application/json"}, "X-Forwarded-For": {"203.0.113.7"}})
	s := <-got
	if s.method != http.MethodPut || s.path != "/api/v1/thing" || s.query != "b=2&a=1" || s.body != `{"x":1}` ||
		s.host != strings.TrimPrefix(echo.URL, "http://") {
		t.Errorf("upstream saw %+v", s)
	}
	if h := s.header; strings.Join(h["X-Custom"], ",") != "c1,c2" || h.Get("Content-Type") != "application/json" ||
		h.Get("X-Forwarded-For") != "203.0.113.7" || h.Get("X-Forwarded-Host") != "" {
		t.Errorf("upstream saw headers %v", h)
	}
	if a.code != http.StatusCreated || a.header.Get("X-Upstream") != "yes" || a.body != `answer:{"x":1}` || a.header.Get(health.ReasonHeader) != "" {
		t.Errorf("answer %+v", a)
	}
	for _, code := range []int{404, 500} {
		a := call(t, client, http.MethodGet, sc.proxy+"/v1/x?status="+strconv.Itoa(code), "", nil)
		<-got
		if a.code != code || a.header.Get("X-Upstream") != "yes" || a.header.Get(health.ReasonHeader) != "" {
			t.Errorf("upstream %d: answer %+v", code, a)
		}
	}
}

// TestHangOpensBreakerThenProbeCloses: against a real backend-sim, a hang
// makes calls time out, the breaker opens, the sidecar answers at once
// with 503 dependency_unavailable, X-Spillway-Reason and Retry-After, and
// /health says the dependency is down while /readyz stays 200; once the
// backend is back, the probes close the breaker without any call.
func TestHangOpensBreakerThenProbeCloses(t *testing.T) {
	sim, upstream := simUpstream(t, backendsim.Config{})
	sc := start(t, fastConfig(upstream))
	client := newClient(t)
	validate := func() answer {
		return call(t, client, http.MethodPost, sc.proxy+"/v1/validate", `{"ticket":"valid-alice"}`, http.Header{"Content-Type": {"application/json"}})
	}
	if a := validate(); a.code != 200 || !strings.Contains(a.body, `"valid":true`) {
		t.Fatalf("backend up: %+v", a)
	}
	if dep := report(t, client, sc.health).Dependencies["backend"]; dep.State != health.DepUp {
		t.Fatalf("backend up: dependency %+v", dep)
	}

	if err := sim.SetMode(backendsim.ModeHang); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ { // consecutive_failures
		if a := validate(); a.code != 503 || a.header.Get(health.ReasonHeader) != health.ReasonDependencyUnavailable {
			t.Fatalf("timed-out call %d: %+v", i, a)
		}
	}
	t0 := time.Now()
	a := validate()
	if took := time.Since(t0); took > 100*time.Millisecond {
		t.Errorf("open breaker answered in %v; want at once", took)
	}
	if a.code != 503 || a.header.Get(health.ReasonHeader) != health.ReasonDependencyUnavailable ||
		a.header.Get("Retry-After") != "1" || !strings.Contains(a.body, `"error":"dependency_unavailable"`) {
		t.Errorf("open breaker: %+v", a)
	}
	rep := report(t, client, sc.health)
	if dep := rep.Dependencies["backend"]; dep.State != health.DepDown || dep.Breaker != "open" || dep.LastError == "" || !rep.Ready {
		t.Errorf("backend hanging: report %+v", rep)
	}
	if a := call(t, client, http.MethodGet, sc.health+"/readyz", "", nil); a.code != 200 {
		t.Errorf("/readyz with the dependency down = %d; want 200 (an outage is not an instance failure)", a.code)
	}

	if err := sim.SetMode(backendsim.ModeUp); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 3*time.Second, "the probes to close the breaker", func() bool {
		dep := report(t, client, sc.health).Dependencies["backend"]
		return dep.State == health.DepUp && dep.Breaker == "closed"
	})
	if a := validate(); a.code != 200 {
		t.Errorf("backend back: %+v", a)
	}
}

// TestBulkheadFull: with max_concurrent calls in flight, one more is
// answered 503 overloaded at once.
func TestBulkheadFull(t *testing.T) {
	_, upstream := simUpstream(t, backendsim.Config{Mode: backendsim.ModeSlow, SlowLatency: 400 * time.Millisecond})
	cfg := fastConfig(upstream)
	cfg.MaxConcurrent = 1
	cfg.Timeout = 2 * time.Second
	sc := start(t, cfg)
	client := newClient(t)
	first := make(chan answer, 1)
	go func() {
		first <- call(t, client, http.MethodPost, sc.proxy+"/v1/validate", `{"ticket":"valid-a"}`, nil)
	}()
	testkit.WaitFor(t, 2*time.Second, "one call in flight", func() bool {
		a := call(t, client, http.MethodGet, sc.health+"/metrics", "", nil)
		return strings.Contains(a.body, `spillway_guard_in_flight{dependency="backend"} 1`)
	})
	a := call(t, client, http.MethodPost, sc.proxy+"/v1/validate", `{"ticket":"valid-b"}`, nil)
	if a.code != 503 || a.header.Get(health.ReasonHeader) != health.ReasonOverloaded || a.header.Get("Retry-After") == "" ||
		!strings.Contains(a.body, `"error":"overloaded"`) {
		t.Errorf("bulkhead full: %+v", a)
	}
	if a := <-first; a.code != 200 {
		t.Errorf("call in flight: %+v", a)
	}
}

// TestServiceReadyMerged: with service_ready.url, /readyz and the
// report's ready follow the service's readiness endpoint; /livez does not.
func TestServiceReadyMerged(t *testing.T) {
	var ready atomic.Bool
	svc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !ready.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer svc.Close()
	_, upstream := simUpstream(t, backendsim.Config{})
	cfg := fastConfig(upstream)
	cfg.ServiceReady = ServiceReadyConfig{URL: svc.URL + "/ready", Interval: 20 * time.Millisecond}
	sc := start(t, cfg)
	client := newClient(t)
	readyz := func() int { return call(t, client, http.MethodGet, sc.health+"/readyz", "", nil).code }

	if code := readyz(); code != 503 {
		t.Errorf("/readyz with the service not ready = %d; want 503", code)
	}
	if r := report(t, client, sc.health); r.Ready {
		t.Errorf("report with the service not ready: %+v", r)
	}
	if a := call(t, client, http.MethodGet, sc.health+"/livez", "", nil); a.code != 200 {
		t.Errorf("/livez = %d; want 200", a.code)
	}
	ready.Store(true)
	testkit.WaitFor(t, 2*time.Second, "/readyz 200 once the service is ready", func() bool { return readyz() == 200 })
	if r := report(t, client, sc.health); !r.Ready {
		t.Errorf("report with the service ready: %+v", r)
	}
	ready.Store(false)
	testkit.WaitFor(t, 2*time.Second, "/readyz 503 once the service is not", func() bool { return readyz() == 503 })
}

// TestDrain: on shutdown the report says draining and /readyz fails at
// once while the proxy still forwards, for drain_delay.
func TestDrain(t *testing.T) {
	_, upstream := simUpstream(t, backendsim.Config{})
	cfg := fastConfig(upstream)
	cfg.DrainDelay = 500 * time.Millisecond
	sc := start(t, cfg)
	client := newClient(t)
	stopped := make(chan error, 1)
	go func() { stopped <- sc.stop() }()
	testkit.WaitFor(t, time.Second, "draining", func() bool { return report(t, client, sc.health).Draining })
	if a := call(t, client, http.MethodGet, sc.health+"/readyz", "", nil); a.code != 503 {
		t.Errorf("/readyz draining = %d", a.code)
	}
	a := call(t, client, http.MethodPost, sc.proxy+"/v1/validate", `{"ticket":"valid-a"}`, nil)
	if a.code != 200 || !a.close {
		t.Errorf("call while draining: %+v", a)
	}
	if err := <-stopped; err != nil {
		t.Errorf("Run: %v", err)
	}
	if _, err := net.DialTimeout("tcp", strings.TrimPrefix(sc.proxy, "http://"), time.Second); err == nil {
		t.Error("proxy still accepts after Run returned")
	}
}

// TestUpstreamRefuses: a refused connection is answered 503
// dependency_unavailable at once, and neither the report nor the answer
// repeats the service's request (its query may hold a secret).
func TestUpstreamRefuses(t *testing.T) {
	upstream := "http://" + testkit.FreePort(t) // nothing listens
	cfg := fastConfig(upstream)
	cfg.ProbeURL = upstream + "/healthz"
	sc := start(t, cfg)
	client := newClient(t)
	a := call(t, client, http.MethodGet, sc.proxy+"/v1/x?api_key=s3cr3t", "", nil)
	if a.code != 503 || a.header.Get(health.ReasonHeader) != health.ReasonDependencyUnavailable || strings.Contains(a.body, "s3cr3t") {
		t.Errorf("refused: %+v", a)
	}
	rep := report(t, client, sc.health)
	if dep := rep.Dependencies["backend"]; dep.LastError == "" || strings.Contains(dep.LastError, "s3cr3t") {
		t.Errorf("refused: dependency %+v", dep)
	}
}
