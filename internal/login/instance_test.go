package login

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/health"
	"github.com/spillway-dev/spillway/internal/backendsim"
	"github.com/spillway-dev/spillway/internal/testkit"
)

// stack is a real backend-sim and a real login instance on loopback.
type stack struct {
	t      *testing.T
	sim    *backendsim.Sim
	simURL string
	simCtl *backendsim.Client
	in     *Instance
	svcURL string
	hURL   string // health port (or the service port in shared mode)
	client *http.Client
}

// testConfig is a login config with short intervals for tests.
func testConfig(simURL string) *Config {
	d := DefaultConfig()
	c := &d
	c.Backend.URL = simURL
	c.Backend.Timeout = 300 * time.Millisecond
	c.Backend.ConsecutiveFailures = 3
	c.Backend.OpenInterval = 500 * time.Millisecond
	c.Backend.ProbeInterval = 100 * time.Millisecond
	c.Health.DrainDelay = 200 * time.Millisecond
	c.RateLimit.PerSecond = 0 // disabled
	c.ShutdownTimeout = 2 * time.Second
	return c
}

func startStack(t *testing.T, mutate func(*Config)) *stack {
	t.Helper()
	sim, err := backendsim.New(backendsim.Config{Mode: backendsim.ModeUp}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := &stack{t: t, sim: sim}
	s.client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	t.Cleanup(func() {
		s.client.CloseIdleConnections()
		s.simCtl.HTTP = nil
		http.DefaultClient.CloseIdleConnections()
	})
	s.simURL = "http://" + testkit.Serve(t, sim.Serve)
	s.simCtl = &backendsim.Client{BaseURL: s.simURL}

	cfg := testConfig(s.simURL)
	if mutate != nil {
		mutate(cfg)
	}
	in, err := New(cfg, Options{Dev: true})
	if err != nil {
		t.Fatal(err)
	}
	s.in = in
	svc := testkit.Listen(t)
	s.svcURL = "http://" + svc.Addr().String()
	var hl net.Listener
	if cfg.Health.SharedPort {
		s.hURL = s.svcURL
	} else {
		hl = testkit.Listen(t)
		s.hURL = "http://" + hl.Addr().String()
	}
	testkit.Go(t, "Run", 10*time.Second, func(ctx context.Context) error { return in.Run(ctx, svc, hl) })
	return s
}

type result struct {
	status  int
	body    map[string]any
	header  http.Header
	elapsed time.Duration
	err     error
}

func (s *stack) do(ctx context.Context, method, url string, body []byte, hdr map[string]string) result {
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		s.t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	start := time.Now()
	resp, err := s.client.Do(req)
	if err != nil {
		return result{err: err, elapsed: time.Since(start)}
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	r := result{status: resp.StatusCode, header: resp.Header, elapsed: time.Since(start)}
	_ = json.Unmarshal(data, &r.body)
	return r
}

func (s *stack) login(ticket string) result {
	b, _ := json.Marshal(map[string]string{"ticket": ticket})
	return s.do(context.Background(), "POST", s.svcURL+"/v1/login", b, nil)
}

func (s *stack) setMode(mode backendsim.Mode) {
	s.t.Helper()
	if err := s.simCtl.SetMode(context.Background(), string(mode), 0); err != nil {
		s.t.Fatal(err)
	}
}

func (s *stack) healthReport() health.Report {
	s.t.Helper()
	resp, err := s.client.Get(s.hURL + "/health")
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	var rep health.Report
	if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil {
		s.t.Fatal(err)
	}
	return rep
}

func TestLoginOutcomes(t *testing.T) {
	s := startStack(t, nil)

	r := s.login("valid-alice")
	if r.status != 200 || r.body["token"] == "" || r.body["account_id"] != backendsim.AccountID("valid-alice") || r.body["expires_at"] == nil {
		t.Fatalf("valid login = %d %v", r.status, r.body)
	}
	token := r.body["token"].(string)

	r = s.do(context.Background(), "GET", s.svcURL+"/v1/session", nil, map[string]string{"Authorization": "Bearer " + token})
	if r.status != 200 || r.body["account_id"] != backendsim.AccountID("valid-alice") {
		t.Errorf("session = %d %v", r.status, r.body)
	}
	// One rule for the scheme everywhere: case-insensitive (RFC 7235).
	r = s.do(context.Background(), "GET", s.svcURL+"/v1/session", nil, map[string]string{"Authorization": "bearer " + token})
	if r.status != 200 {
		t.Errorf("session with a lower-case scheme = %d %v", r.status, r.body)
	}
	for _, auth := range []string{"", "Bearer ", "Bearer " + token + "x", "Basic abc"} {
		r = s.do(context.Background(), "GET", s.svcURL+"/v1/session", nil, map[string]string{"Authorization": auth})
		if r.status != 401 || r.body["error"] != "invalid_token" {
			t.Errorf("session with %q = %d %v, want 401 invalid_token", auth, r.status, r.body)
		}
	}

	r = s.login("bogus")
	if r.status != 401 || r.body["error"] != "invalid_ticket" {
		t.Errorf("invalid login = %d %v", r.status, r.body)
	}
	for name, body := range map[string]string{
		"not json":      "ticket=1",
		"unknown field": `{"ticket":"valid-x","admin":true}`,
		"empty ticket":  `{"ticket":""}`,
	} {
		r = s.do(context.Background(), "POST", s.svcURL+"/v1/login", []byte(body), nil)
		if r.status != 400 || r.body["error"] != "malformed_request" {
			t.Errorf("%s: %d %v, want 400 malformed_request", name, r.status, r.body)
		}
	}
	big := []byte(`{"ticket":"valid-` + strings.Repeat("a", MaxBodyBytes) + `"}`)
	r = s.do(context.Background(), "POST", s.svcURL+"/v1/login", big, nil)
	if r.status != 413 || r.body["error"] != "request_too_large" {
		t.Errorf("oversized: %d %v, want 413", r.status, r.body)
	}
	res, err := s.client.Get(s.hURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if !strings.Contains(string(metrics), "spillway_build_info{goversion=") {
		t.Errorf("the health port's /metrics lacks spillway_build_info")
	}

	r = s.do(context.Background(), "GET", s.svcURL+"/v1/login", nil, nil)
	if r.status != 405 {
		t.Errorf("GET /v1/login = %d, want 405", r.status)
	}
	if r.header.Get("X-Request-Id") == "" {
		t.Error("no X-Request-Id on an error")
	}

	// What reached the backend: only the logins that were well-formed.
	st, err := s.simCtl.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Paths[backendsim.PathValidate]; got.Valid != 1 || got.Invalid != 1 || got.BadRequest != 0 {
		t.Errorf("backend saw %+v, want 1 valid and 1 invalid", got)
	}
}

func TestRateLimit(t *testing.T) {
	s := startStack(t, func(c *Config) {
		c.RateLimit.PerSecond = 1
		c.RateLimit.Burst = 3
		// trusted_proxies left at its default: loopback and the private
		// ranges, so the test's loopback peer is a trusted proxy.
	})
	fwd := func(ip string) result {
		return s.do(context.Background(), "POST", s.svcURL+"/v1/login", []byte(`{"ticket":"valid-a"}`),
			map[string]string{"X-Forwarded-For": ip})
	}
	for i := range 3 {
		if r := fwd("203.0.113.1"); r.status != 200 {
			t.Fatalf("attempt %d: %d %v", i, r.status, r.body)
		}
	}
	r := fwd("203.0.113.1")
	if r.status != 429 || r.body["error"] != "rate_limited" || r.header.Get("Retry-After") == "" {
		t.Fatalf("4th attempt: %d %v %v, want 429 with Retry-After", r.status, r.body, r.header)
	}
	// Another client behind the same trusted proxy has its own bucket.
	if r := fwd("203.0.113.2"); r.status != 200 {
		t.Errorf("other client: %d", r.status)
	}
}

func TestRateLimitTrustingNobody(t *testing.T) {
	s := startStack(t, func(c *Config) {
		c.RateLimit.PerSecond = 1
		c.RateLimit.Burst = 2
		c.TrustedProxies = []string{} // explicit: the peer is the client
	})
	for i, ip := range []string{"203.0.113.1", "203.0.113.2", "203.0.113.3"} {
		r := s.do(context.Background(), "POST", s.svcURL+"/v1/login", []byte(`{"ticket":"valid-a"}`),
			map[string]string{"X-Forwarded-For": ip})
		if want := map[bool]int{true: 200, false: 429}[i < 2]; r.status != want {
			t.Errorf("attempt %d claiming %s: %d, want %d (one bucket for the one peer)", i, ip, r.status, want)
		}
	}
}

func TestBackendHangFailsFastThenRecovers(t *testing.T) {
	s := startStack(t, nil)
	const timeout = 300 * time.Millisecond // testConfig's backend.timeout
	if r := s.login("valid-a"); r.status != 200 {
		t.Fatalf("warm-up login: %d", r.status)
	}
	s.setMode(backendsim.ModeHang)

	// Before the breaker opens: 503 within the backend timeout + 50ms.
	for i := range 3 {
		r := s.login("valid-a")
		if r.status != 503 || r.body["error"] != "dependency_unavailable" || r.header.Get("Retry-After") == "" {
			t.Fatalf("hang %d: %d %v", i, r.status, r.body)
		}
		if r.elapsed > timeout+50*time.Millisecond {
			t.Errorf("hang %d answered in %v, want at most %v", i, r.elapsed, timeout+50*time.Millisecond)
		}
	}
	rep := s.healthReport()
	if d := rep.Dependencies[BackendName]; d.State != health.DepDown || d.Breaker != "open" || d.LastError == "" {
		t.Errorf("health after trip: %+v", d)
	}
	if !rep.Ready {
		t.Error("dependency outage made the instance unready")
	}
	// Once open: 503 at once, without touching the backend. The median
	// answer within 5ms; every one within 50ms, a sixth of the backend
	// timeout: nothing waited on the backend. (Each answer under 10ms
	// was the bound until it failed at 11.2 and 11.6ms on a loaded
	// 2-core machine under -race: one scheduling delay of the client's
	// or the server's goroutine, not the breaker's.)
	before, _ := s.simCtl.Stats(context.Background())
	took := make([]time.Duration, 20)
	for i := range took {
		r := s.login("valid-a")
		if r.status != 503 || r.body["error"] != "dependency_unavailable" {
			t.Fatalf("open %d: %d %v", i, r.status, r.body)
		}
		if took[i] = r.elapsed; r.elapsed > 50*time.Millisecond {
			t.Errorf("open %d answered in %v, want under 50ms", i, r.elapsed)
		}
	}
	slices.Sort(took)
	t.Logf("breaker open: answers in %v (median) to %v", took[len(took)/2], took[len(took)-1])
	if med := took[len(took)/2]; med > 5*time.Millisecond {
		t.Errorf("open: median answer in %v, want under 5ms (all: %v)", med, took)
	}
	after, _ := s.simCtl.Stats(context.Background())
	if n := after.Paths[backendsim.PathValidate].Hung - before.Paths[backendsim.PathValidate].Hung; n != 0 {
		t.Errorf("%d logins reached the backend while the breaker was open", n)
	}
	for _, p := range []string{"/livez", "/readyz"} {
		if r := s.do(context.Background(), "GET", s.hURL+p, nil, nil); r.status != 200 {
			t.Errorf("%s = %d during a backend outage, want 200", p, r.status)
		}
	}

	// Recovery without user traffic: the probe closes the breaker within one
	// open interval plus one probe interval (plus a margin for a loaded
	// machine).
	s.setMode(backendsim.ModeUp)
	const bound = 500*time.Millisecond + 100*time.Millisecond
	took2 := testkit.WaitFor(t, bound+400*time.Millisecond, "breaker closes", func() bool {
		return s.healthReport().Dependencies[BackendName].State == health.DepUp
	})
	t.Logf("backend up → breaker closed in %v (bound %v)", took2, bound)
	if r := s.login("valid-a"); r.status != 200 {
		t.Errorf("login after recovery: %d %v", r.status, r.body)
	}
}

// saturate holds every admission slot with logins hanging on the backend and
// returns a func that releases them.
func saturate(t *testing.T, s *stack, n int) (release func()) {
	t.Helper()
	s.setMode(backendsim.ModeHang)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequestWithContext(ctx, "POST", s.svcURL+"/v1/login", strings.NewReader(`{"ticket":"valid-x"}`))
			resp, err := s.client.Do(req)
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
	}
	testkit.WaitFor(t, 5*time.Second, "admission saturated", func() bool { return s.in.limiter.InFlight() >= n })
	return func() { cancel(); wg.Wait() }
}

// saturatedConfig holds slots for long: a long backend timeout and a
// breaker that never trips.
func saturatedConfig(shared bool) func(*Config) {
	return func(c *Config) {
		c.Admission.Limit = 4
		c.Backend.Timeout = 10 * time.Second
		c.Backend.ConsecutiveFailures = 1000
		c.Backend.MinRequests = 1000
		c.Health.SharedPort = shared
		c.Health.Deep = shared
	}
}

func TestLivezFastWhileServiceSaturated(t *testing.T) {
	s := startStack(t, saturatedConfig(false))
	release := saturate(t, s, 4)
	defer release()

	if r := s.login("valid-y"); r.status != 503 || r.body["error"] != "overloaded" || r.header.Get("Retry-After") == "" {
		t.Errorf("login beyond the limit: %d %v, want 503 overloaded", r.status, r.body)
	}
	var worst time.Duration
	for range 20 {
		r := s.do(context.Background(), "GET", s.hURL+"/livez", nil, nil)
		if r.err != nil || r.status != 200 {
			t.Fatalf("/livez while saturated: %d %v", r.status, r.err)
		}
		worst = max(worst, r.elapsed)
	}
	t.Logf("/livez worst of 20 while saturated: %v", worst)
	if worst > 50*time.Millisecond {
		t.Errorf("/livez took %v while the service port was saturated, want under 50ms", worst)
	}
	rep := s.healthReport()
	if rep.InFlight != 4 || rep.Limit != 4 || !rep.Ready {
		t.Errorf("health while saturated: %+v", rep)
	}
}

// TestIncidentDesignFailsLivez reproduces the 2018 design: health on the
// service port, behind the same admission limit, and deep.
func TestIncidentDesignFailsLivez(t *testing.T) {
	s := startStack(t, saturatedConfig(true))
	release := saturate(t, s, 4)
	defer release()

	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	r := s.do(ctx, "GET", s.hURL+"/livez", nil, nil)
	if r.err == nil && r.status == 200 {
		t.Fatalf("/livez = 200 on a saturated shared port with deep checks; the 2018 design should fail it")
	}
	t.Logf("2018 design: /livez → status %d, err %v, after %v", r.status, r.err, r.elapsed)
}

func TestIncidentDeepCheckFailsOnBackendOutage(t *testing.T) {
	s := startStack(t, func(c *Config) { c.Health.Deep = true })
	if r := s.do(context.Background(), "GET", s.hURL+"/livez", nil, nil); r.status != 200 {
		t.Fatalf("deep /livez with the backend up = %d", r.status)
	}
	s.setMode(backendsim.ModeError)
	for _, p := range []string{"/livez", "/readyz"} {
		if r := s.do(context.Background(), "GET", s.hURL+p, nil, nil); r.status != 503 {
			t.Errorf("deep %s with the backend failing = %d, want 503", p, r.status)
		}
	}
}

func TestGracefulShutdown(t *testing.T) {
	cfg := testConfig("")
	cfg.Backend.Timeout = 2 * time.Second
	cfg.Health.DrainDelay = 300 * time.Millisecond
	r := startShutdownRig(t, backendsim.Config{Mode: backendsim.ModeUp, Latency: 400 * time.Millisecond}, cfg)
	in, svc, svcURL, client := r.in, r.svc, r.svcURL, r.client

	// A login in flight when shutdown starts finishes.
	inflight := make(chan int, 1)
	go func() {
		resp, err := client.Post(svcURL+"/v1/login", "application/json", strings.NewReader(`{"ticket":"valid-z"}`))
		if err != nil {
			inflight <- -1
			return
		}
		resp.Body.Close()
		inflight <- resp.StatusCode
	}()
	testkit.WaitFor(t, 2*time.Second, "login in flight", func() bool { return in.limiter.InFlight() == 1 })
	r.cancel()
	testkit.WaitFor(t, time.Second, "readyz 503 while draining", func() bool { return r.readyz() == 503 })
	if code := <-inflight; code != 200 {
		t.Errorf("in-flight login during shutdown = %d, want 200", code)
	}
	r.wait(t, 5*time.Second)
	if _, err := net.DialTimeout("tcp", svc.Addr().String(), time.Second); err == nil {
		t.Error("service port still accepts connections after shutdown")
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(*Config)
		wantErr string
	}{
		{"defaults", func(*Config) {}, ""},
		{"bad listen", func(c *Config) { c.Listen = "x:y" }, `listen: "x:y": `},
		{"same ports", func(c *Config) { c.Listen, c.HealthListen = "127.0.0.1:7000", "127.0.0.1:7000" }, "health_listen: "},
		{"bad backend", func(c *Config) { c.Backend.URL = "127.0.0.1:9000" }, "backend.url: "},
		{"bad proxy", func(c *Config) { c.TrustedProxies = []string{"nope"} }, `trusted_proxies[0]: "nope": `},
		{"short ttl", func(c *Config) { c.Token.TTL = time.Millisecond }, "token.ttl: "},
		{"bad guard", func(c *Config) { c.Backend.FailureRate = 2 }, "backend.failure_rate"},
		{"bad admission", func(c *Config) { c.Admission.Algorithm = "magic" }, "admission.algorithm"},
		{"register", func(c *Config) { c.Register = "etcd://127.0.0.1:2379/spillway" }, ""},
		{"bad register", func(c *Config) { c.Register = "etcd://127.0.0.1:2379" }, `register: "etcd://127.0.0.1:2379": no key prefix`},
		{"register not etcd", func(c *Config) { c.Register = "http://127.0.0.1:2379/x" }, `register: "http://127.0.0.1:2379/x": want etcd://`},
		{"short register_ttl", func(c *Config) { c.RegisterTTL = 500 * time.Millisecond }, "register_ttl: 500ms: must be at least 1s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := DefaultConfig()
			c := &d
			tt.mutate(c)
			c.Resolve()
			err := c.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Validate = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

// TestHalfClosedClientGetsNoFalseSuccess: a client that sends a whole
// login and half-closes its side is, to Go's server, a client that left:
// the login is abandoned. It must then get no answer at all (the
// connection closes), never a 200 without a token. A client still there
// when the backend answers in time gets the real answer.
func TestHalfClosedClientGetsNoFalseSuccess(t *testing.T) {
	s := startStack(t, nil)
	if err := s.simCtl.SetMode(context.Background(), string(backendsim.ModeUp), 200*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	body := `{"ticket":"valid-alice"}`
	conn, err := net.Dial("tcp", strings.TrimPrefix(s.svcURL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /v1/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	conn.(*net.TCPConn).CloseWrite()
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(conn)
	if err != nil {
		t.Fatalf("read: %v (want the connection closed)", err)
	}
	if len(got) != 0 {
		t.Errorf("half-closed client got %q, want the connection closed without an answer", got)
	}
	testkit.WaitFor(t, 2*time.Second, "the abandoned login counted", func() bool {
		res, err := s.client.Get(s.hURL + "/metrics")
		if err != nil {
			return false
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return strings.Contains(string(b), `spillway_login_requests_total{outcome="canceled"} 1`)
	})
}

// TestServicePortConnectionCap: past max_connections a client connection
// gets a fast 503 overloaded instead of a goroutine and a queue slot.
func TestServicePortConnectionCap(t *testing.T) {
	s := startStack(t, func(c *Config) { c.MaxConnections = 2 })
	addr := strings.TrimPrefix(s.svcURL, "http://")
	var held []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		held = append(held, c)
	}
	time.Sleep(50 * time.Millisecond) // the server accepts both
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	start := time.Now()
	res, err := (&http.Client{Transport: tr}).Post(s.svcURL+"/v1/login", "application/json", strings.NewReader(`{"ticket":"valid-a"}`))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 503 || res.Header.Get("X-Spillway-Reason") != "overloaded" {
		t.Fatalf("over the cap: %d %v", res.StatusCode, res.Header)
	}
	t.Logf("refused in %v", time.Since(start))
	held[0].Close()
	testkit.WaitFor(t, 2*time.Second, "a login once a connection freed", func() bool {
		r := s.login("valid-a")
		return r.status == 200
	})
}

// TestDrainClosesKeepAliveAfterAnswer: while draining, a keep-alive
// connection that was idle when the drain began still serves (it is not
// closed under a client that may be reusing it), and every answer says
// "Connection: close", so the client's next request opens a new
// connection instead of reusing one that Shutdown will close.
func TestDrainClosesKeepAliveAfterAnswer(t *testing.T) {
	cfg := testConfig("")
	cfg.Health.DrainDelay = 2 * time.Second
	r := startShutdownRig(t, backendsim.Config{Mode: backendsim.ModeUp}, cfg)
	svcURL, client := r.svcURL, r.client

	// login sends one login and reports whether it went on a reused
	// connection and whether the answer closes it.
	login := func() (status int, reused, closes bool) {
		t.Helper()
		trace := &httptrace.ClientTrace{GotConn: func(ci httptrace.GotConnInfo) { reused = ci.Reused }}
		req, err := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace),
			http.MethodPost, svcURL+"/v1/login", strings.NewReader(`{"ticket":"valid-k"}`))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("login: %v", err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, reused, resp.Close
	}
	if status, _, closes := login(); status != 200 || closes {
		t.Fatalf("login before the drain: %d, Connection: close %v; want 200 and keep-alive", status, closes)
	}

	r.cancel()
	testkit.WaitFor(t, time.Second, "readyz 503 while draining", func() bool { return r.readyz() == 503 })
	status, reused, closes := login()
	if status != 200 || !reused || !closes {
		t.Errorf("first login while draining: %d, reused %v, Connection: close %v; want 200 on the idle keep-alive connection, closing it", status, reused, closes)
	}
	status, reused, closes = login()
	if status != 200 || reused || !closes {
		t.Errorf("second login while draining: %d, reused %v, Connection: close %v; want 200 on a new connection, closing it", status, reused, closes)
	}

	r.wait(t, 10*time.Second)
}

// shutdownRig is a login instance, on a backend-sim, whose shutdown a
// test drives: cancel stops Run, wait waits for it to return.
type shutdownRig struct {
	in           *Instance
	svc          net.Listener
	svcURL, hURL string
	client       *http.Client
	cancel       context.CancelFunc
	done         chan error
}

// startShutdownRig runs an instance of cfg (its backend URL set here to a
// new backend-sim with simCfg) until /readyz answers 200.
func startShutdownRig(t *testing.T, simCfg backendsim.Config, cfg *Config) *shutdownRig {
	t.Helper()
	sim, err := backendsim.New(simCfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Backend.URL = "http://" + testkit.Serve(t, sim.Serve)
	in, err := New(cfg, Options{Dev: true})
	if err != nil {
		t.Fatal(err)
	}
	svc, hl := testkit.Listen(t), testkit.Listen(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	r := &shutdownRig{in: in, svc: svc, svcURL: "http://" + svc.Addr().String(), hURL: "http://" + hl.Addr().String(),
		client: &http.Client{Transport: &http.Transport{}}, cancel: cancel, done: make(chan error, 1)}
	t.Cleanup(r.client.CloseIdleConnections)
	go func() { r.done <- in.Run(ctx, svc, hl) }()
	testkit.WaitFor(t, 2*time.Second, "ready", func() bool { return r.readyz() == 200 })
	return r
}

// readyz is /readyz's status, 0 without an answer.
func (r *shutdownRig) readyz() int {
	resp, err := r.client.Get(r.hURL + "/readyz")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// wait waits at most timeout for Run to return, and reports its error.
func (r *shutdownRig) wait(t *testing.T, timeout time.Duration) {
	t.Helper()
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("Run after shutdown: %v", err)
		}
	case <-time.After(timeout):
		t.Fatal("Run did not return")
	}
}
