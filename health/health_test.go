package health

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/spillway-dev/spillway/internal/testkit"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

type response struct {
	code   int
	header http.Header
	body   string
}

// serve starts c's handler on a loopback server that the test closes.
func serve(t *testing.T, c *Server) *httptest.Server {
	t.Helper()
	ts := httptest.NewServer(c.Handler())
	t.Cleanup(ts.Close)
	return ts
}

func do(t *testing.T, ts *httptest.Server, method, path string) response {
	t.Helper()
	req, err := http.NewRequest(method, ts.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return response{resp.StatusCode, resp.Header, string(body)}
}

func get(t *testing.T, ts *httptest.Server, path string) response {
	t.Helper()
	return do(t, ts, http.MethodGet, path)
}

var errBackend = errors.New("dial backend.internal:443 with token=s3cr3t: connection refused")

func TestClockedPhases(t *testing.T) {
	clk := testkit.NewClock(time.Date(2018, 3, 1, 12, 0, 0, 0, time.UTC))
	c := New(Options{Warmup: 10 * time.Second, Now: clk.Now})
	check := func(want Phase) {
		t.Helper()
		if got := c.Phase(); got != want {
			t.Fatalf("Phase() = %v, want %v", got, want)
		}
		if got := c.Ready(); got != (want == PhaseReady) {
			t.Errorf("Ready() = %v in %v", got, want)
		}
		if got := c.Draining(); got != (want == PhaseDraining) {
			t.Errorf("Draining() = %v in %v", got, want)
		}
		r := c.Report()
		if r.Phase != want.String() || r.Ready != (want == PhaseReady) || r.Draining != (want == PhaseDraining) {
			t.Errorf("Report() = %+v in %v", r, want)
		}
	}
	check(PhaseStarting)
	clk.Advance(time.Minute)
	check(PhaseStarting)
	c.Start()
	check(PhaseWarming)
	clk.Advance(10*time.Second - time.Nanosecond)
	check(PhaseWarming)
	clk.Advance(time.Nanosecond)
	check(PhaseReady)
	c.Start()
	check(PhaseReady)
	c.Drain()
	check(PhaseDraining)
	c.Start()
	clk.Advance(time.Hour)
	check(PhaseDraining)
}

func TestEndpoints(t *testing.T) {
	const (
		textPlain = "text/plain; charset=utf-8"
		appJSON   = "application/json"
	)
	down := func() Dependency { return Dependency{State: DepDown, Breaker: "open", LastError: "connection refused"} }
	failing := func(context.Context) error { return errBackend }
	ready := func(c *Server, _ *testkit.Clock) { c.Start() }

	tests := []struct {
		name     string
		opts     Options
		setup    func(*Server, *testkit.Clock)
		method   string
		path     string
		wantCode int
		wantBody string // "" with HEAD; ignored for /health and /metrics
		wantCT   string
	}{
		{name: "livez while starting", path: "/livez", wantCode: 200, wantBody: "ok", wantCT: textPlain},
		{name: "livez while draining", setup: func(c *Server, _ *testkit.Clock) { c.Drain() },
			path: "/livez", wantCode: 200, wantBody: "ok", wantCT: textPlain},
		{name: "readyz while starting", path: "/readyz", wantCode: 503, wantBody: "starting\n", wantCT: textPlain},
		{name: "readyz while warming", opts: Options{Warmup: time.Minute},
			setup: func(c *Server, clk *testkit.Clock) { c.Start(); clk.Advance(59 * time.Second) },
			path:  "/readyz", wantCode: 503, wantBody: "warming\n", wantCT: textPlain},
		{name: "readyz after warm-up", opts: Options{Warmup: time.Minute},
			setup: func(c *Server, clk *testkit.Clock) { c.Start(); clk.Advance(time.Minute) },
			path:  "/readyz", wantCode: 200, wantBody: "ok", wantCT: textPlain},
		{name: "readyz while draining", setup: func(c *Server, _ *testkit.Clock) { c.Start(); c.Drain() },
			path: "/readyz", wantCode: 503, wantBody: "draining\n", wantCT: textPlain},
		{name: "health while starting", path: "/health", wantCode: 200, wantCT: appJSON},
		{name: "health while draining", setup: func(c *Server, _ *testkit.Clock) { c.Drain() },
			path: "/health", wantCode: 200, wantCT: appJSON},
		{name: "metrics without gatherer", path: "/metrics", wantCode: 404},
		{name: "metrics", opts: Options{Gatherer: prometheus.NewRegistry()},
			path: "/metrics", wantCode: 200},
		{name: "unknown path", path: "/healthz", wantCode: 404},
		{name: "no prefix match", path: "/livez/x", wantCode: 404},

		// Dependencies never change /livez or /readyz.
		{name: "dependency down: livez", setup: func(c *Server, _ *testkit.Clock) { c.AddDependency("backend", down); c.Start() },
			path: "/livez", wantCode: 200, wantBody: "ok", wantCT: textPlain},
		{name: "dependency down: readyz", setup: func(c *Server, _ *testkit.Clock) { c.AddDependency("backend", down); c.Start() },
			path: "/readyz", wantCode: 200, wantBody: "ok", wantCT: textPlain},
		{name: "dependency down: health", setup: func(c *Server, _ *testkit.Clock) { c.AddDependency("backend", down); c.Start() },
			path: "/health", wantCode: 200, wantCT: appJSON},

		// Liveness checks affect /livez only.
		{name: "liveness check fails: livez", setup: func(c *Server, _ *testkit.Clock) { c.AddLivenessCheck("event-loop", failing); c.Start() },
			path: "/livez", wantCode: 503, wantBody: "liveness check \"event-loop\" failed\n", wantCT: textPlain},
		{name: "liveness check fails: readyz", setup: func(c *Server, _ *testkit.Clock) { c.AddLivenessCheck("event-loop", failing); c.Start() },
			path: "/readyz", wantCode: 200, wantBody: "ok", wantCT: textPlain},
		{name: "liveness check passes", setup: func(c *Server, _ *testkit.Clock) {
			c.AddLivenessCheck("a", func(context.Context) error { return nil })
			c.AddLivenessCheck("b", func(ctx context.Context) error { return ctx.Err() })
		}, path: "/livez", wantCode: 200, wantBody: "ok", wantCT: textPlain},
		{name: "first failing check is named", setup: func(c *Server, _ *testkit.Clock) {
			c.AddLivenessCheck("a", func(context.Context) error { return nil })
			c.AddLivenessCheck("b", failing)
			c.AddLivenessCheck("c", failing)
		}, path: "/livez", wantCode: 503, wantBody: "liveness check \"b\" failed\n", wantCT: textPlain},

		// The 2018 mode: a deep check fails both probes.
		{name: "deep fails: livez", opts: Options{Deep: failing}, setup: ready,
			path: "/livez", wantCode: 503, wantBody: "deep check failed\n", wantCT: textPlain},
		{name: "deep fails: readyz", opts: Options{Deep: failing}, setup: ready,
			path: "/readyz", wantCode: 503, wantBody: "deep check failed\n", wantCT: textPlain},
		{name: "deep fails: health still answers", opts: Options{Deep: failing}, setup: ready,
			path: "/health", wantCode: 200, wantCT: appJSON},
		{name: "deep passes", opts: Options{Deep: func(context.Context) error { return nil }}, setup: ready,
			path: "/readyz", wantCode: 200, wantBody: "ok", wantCT: textPlain},
		{name: "deep passes but starting", opts: Options{Deep: func(context.Context) error { return nil }},
			path: "/readyz", wantCode: 503, wantBody: "starting\n", wantCT: textPlain},

		// Methods.
		{name: "HEAD livez", method: "HEAD", path: "/livez", wantCode: 200, wantCT: textPlain},
		{name: "HEAD readyz while starting", method: "HEAD", path: "/readyz", wantCode: 503, wantCT: textPlain},
		{name: "HEAD health", method: "HEAD", path: "/health", wantCode: 200, wantCT: appJSON},
		{name: "HEAD metrics", opts: Options{Gatherer: prometheus.NewRegistry()}, method: "HEAD", path: "/metrics", wantCode: 200},
		{name: "POST livez", method: "POST", path: "/livez", wantCode: 405, wantBody: "method not allowed\n", wantCT: textPlain},
		{name: "PUT readyz", method: "PUT", path: "/readyz", wantCode: 405, wantBody: "method not allowed\n", wantCT: textPlain},
		{name: "DELETE health", method: "DELETE", path: "/health", wantCode: 405, wantBody: "method not allowed\n", wantCT: textPlain},
		{name: "POST metrics", opts: Options{Gatherer: prometheus.NewRegistry()}, method: "POST", path: "/metrics", wantCode: 405, wantBody: "method not allowed\n", wantCT: textPlain},
		{name: "OPTIONS unknown path", method: "OPTIONS", path: "/nope", wantCode: 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := testkit.NewClock(time.Date(2018, 3, 1, 12, 0, 0, 0, time.UTC))
			opts := tt.opts
			opts.Now = clk.Now
			c := New(opts)
			if tt.setup != nil {
				tt.setup(c, clk)
			}
			method := tt.method
			if method == "" {
				method = http.MethodGet
			}
			got := do(t, serve(t, c), method, tt.path)
			if got.code != tt.wantCode {
				t.Errorf("status = %d, want %d (body %q)", got.code, tt.wantCode, got.body)
			}
			if tt.wantCT != "" {
				if ct := got.header.Get("Content-Type"); ct != tt.wantCT {
					t.Errorf("Content-Type = %q, want %q", ct, tt.wantCT)
				}
			}
			switch {
			case method == http.MethodHead:
				if got.body != "" {
					t.Errorf("HEAD body = %q, want none", got.body)
				}
			case tt.wantBody != "" && got.body != tt.wantBody:
				t.Errorf("body = %q, want %q", got.body, tt.wantBody)
			}
			if got.code == 405 {
				if allow := got.header.Get("Allow"); allow != "GET, HEAD" {
					t.Errorf("Allow = %q, want %q", allow, "GET, HEAD")
				}
			}
			if tt.path != "/metrics" && got.code != 404 {
				if cc := got.header.Get("Cache-Control"); cc != "no-store" {
					t.Errorf("Cache-Control = %q, want no-store", cc)
				}
			}
			if strings.Contains(got.body, "s3cr3t") {
				t.Errorf("body leaks a check error: %q", got.body)
			}
		})
	}
}

func TestHealthReport(t *testing.T) {
	since := time.Date(2018, 3, 1, 11, 40, 0, 0, time.UTC)
	clk := testkit.NewClock(time.Date(2018, 3, 1, 12, 0, 0, 0, time.UTC))
	c := New(Options{Now: clk.Now})
	c.AddDependency("backend", func() Dependency {
		return Dependency{State: DepDown, Breaker: "open", Since: since, LastError: "timeout after 5s"}
	})
	c.AddDependency("cache", func() Dependency {
		return Dependency{State: DepUp, Breaker: "closed", Since: since}
	})
	c.AddDependency("fresh", func() Dependency { return Dependency{} })
	c.AddDependency("verbose", func() Dependency {
		return Dependency{State: DepDown, LastError: strings.Repeat("é", 200)} // 400 bytes
	})
	c.SetLoad(func() (int, int, int) { return 7, 20, 3 })
	c.Start()
	ts := serve(t, c)

	got := get(t, ts, "/health")
	if got.code != http.StatusOK {
		t.Fatalf("status = %d, want 200", got.code)
	}
	var rep Report
	dec := json.NewDecoder(strings.NewReader(got.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rep); err != nil {
		t.Fatalf("decode %q: %v", got.body, err)
	}
	want := Report{
		Ready:    true,
		Phase:    "ready",
		InFlight: 7,
		Limit:    20,
		Queue:    3,
		Dependencies: map[string]Dependency{
			"backend": {State: DepDown, Breaker: "open", Since: since, LastError: "timeout after 5s"},
			"cache":   {State: DepUp, Breaker: "closed", Since: since},
			"fresh":   {State: DepUnknown},
			"verbose": {State: DepDown, LastError: strings.Repeat("é", maxLastError/2)},
		},
	}
	if rep.Version == "" {
		t.Error("report has no version")
	}
	want.Version = rep.Version // watch_test.go checks what changes it
	if diff := cmp.Diff(want, rep); diff != "" {
		t.Errorf("/health report (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want, c.Report()); diff != "" {
		t.Errorf("Report() (-want +got):\n%s", diff)
	}

	// Load can be replaced and removed.
	c.SetLoad(nil)
	if r := c.Report(); r.InFlight != 0 || r.Limit != 0 || r.Queue != 0 {
		t.Errorf("after SetLoad(nil): load = %d/%d/%d, want zeros", r.InFlight, r.Limit, r.Queue)
	}
}

func TestHealthReportEmpty(t *testing.T) {
	c := New(Options{})
	got := get(t, serve(t, c), "/health")
	want := `{"ready":false,"ready_for_s":0,"draining":false,"phase":"starting","in_flight":0,"limit":0,"queue":0,"dependencies":{},"version":"` +
		c.Report().Version + `"}` + "\n"
	if got.body != want {
		t.Errorf("body = %s\nwant   %s", got.body, want)
	}
}

func TestDependencyStateNeverChangesProbes(t *testing.T) {
	for _, state := range []string{DepUp, DepDown, DepUnknown, ""} {
		t.Run("state="+state, func(t *testing.T) {
			c := New(Options{})
			c.AddDependency("backend", func() Dependency { return Dependency{State: state} })
			ts := serve(t, c)
			if got := get(t, ts, "/livez"); got.code != 200 {
				t.Errorf("/livez before Start = %d, want 200", got.code)
			}
			if got := get(t, ts, "/readyz"); got.code != 503 {
				t.Errorf("/readyz before Start = %d, want 503", got.code)
			}
			c.Start()
			for _, path := range []string{"/livez", "/readyz"} {
				if got := get(t, ts, path); got.code != 200 {
					t.Errorf("%s = %d, want 200", path, got.code)
				}
			}
		})
	}
}

// TestTimeouts runs in a synctest bubble: a check that hangs until its
// context ends is cut off at exactly its timeout, without waiting for it.
func TestTimeouts(t *testing.T) {
	hang := func(ctx context.Context) error {
		<-ctx.Done()
		return ctx.Err()
	}
	tests := []struct {
		name     string
		opts     Options
		liveness bool
		path     string
		want     time.Duration
	}{
		{"liveness default", Options{}, true, "/livez", DefaultCheckTimeout},
		{"liveness set", Options{CheckTimeout: 300 * time.Millisecond}, true, "/livez", 300 * time.Millisecond},
		{"deep livez default", Options{Deep: hang}, false, "/livez", DefaultDeepTimeout},
		{"deep readyz default", Options{Deep: hang}, false, "/readyz", DefaultDeepTimeout},
		{"deep readyz set", Options{Deep: hang, DeepTimeout: 2 * time.Second}, false, "/readyz", 2 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				c := New(tt.opts)
				if tt.liveness {
					c.AddLivenessCheck("hang", hang)
				}
				c.Start()
				start := time.Now()
				rec := httptest.NewRecorder()
				c.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, tt.path, nil))
				if took := time.Since(start); took != tt.want {
					t.Errorf("took %v, want %v", took, tt.want)
				}
				if rec.Code != http.StatusServiceUnavailable {
					t.Errorf("status = %d, want 503", rec.Code)
				}
			})
		})
	}
}

func TestDeepNotCalledOutsideProbes(t *testing.T) {
	var mu sync.Mutex
	calls := 0
	c := New(Options{Deep: func(context.Context) error {
		mu.Lock()
		defer mu.Unlock()
		calls++
		return nil
	}})
	ts := serve(t, c)
	get(t, ts, "/readyz") // starting: answered before any deep call
	get(t, ts, "/health")
	c.Report()
	c.Start()
	get(t, ts, "/readyz")
	get(t, ts, "/livez")
	mu.Lock()
	defer mu.Unlock()
	if calls != 2 {
		t.Errorf("Deep called %d times, want 2 (one /readyz when ready, one /livez)", calls)
	}
}

func TestChecksLoggedOnChangeOnly(t *testing.T) {
	var logs testkit.SyncBuffer
	var mu sync.Mutex
	var checkErr, deepErr error
	c := New(Options{
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
		Deep: func(context.Context) error {
			mu.Lock()
			defer mu.Unlock()
			return deepErr
		},
	})
	c.AddLivenessCheck("loop", func(context.Context) error {
		mu.Lock()
		defer mu.Unlock()
		return checkErr
	})
	set := func(check, deep error) {
		mu.Lock()
		defer mu.Unlock()
		checkErr, deepErr = check, deep
	}
	ts := serve(t, c)
	c.Start()

	steps := []struct {
		check, deep error
		wantLivez   int
	}{
		{nil, nil, 200},
		{errBackend, nil, 503},
		{errBackend, nil, 503},
		{nil, nil, 200},
		{nil, errBackend, 503},
		{nil, errBackend, 503},
		{nil, nil, 200},
	}
	for i, s := range steps {
		set(s.check, s.deep)
		if got := get(t, ts, "/livez"); got.code != s.wantLivez {
			t.Errorf("step %d: /livez = %d, want %d", i, got.code, s.wantLivez)
		}
	}
	out := logs.String()
	for msg, want := range map[string]int{
		"liveness check failing":   1,
		"liveness check recovered": 1,
		"deep check failing":       1,
		"deep check recovered":     1,
		"deep checks enabled":      1,
		"token=s3cr3t":             2, // the detail goes to the log, and only there
	} {
		if got := strings.Count(out, msg); got != want {
			t.Errorf("log has %q %d times, want %d; log:\n%s", msg, got, want, out)
		}
	}
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := New(Options{Gatherer: reg, Registerer: reg})
	ts := serve(t, c)
	get(t, ts, "/livez")
	get(t, ts, "/readyz")
	c.Start()
	get(t, ts, "/readyz")
	get(t, ts, "/health")

	got := get(t, ts, "/metrics")
	if got.code != 200 {
		t.Fatalf("/metrics = %d, want 200", got.code)
	}
	for _, want := range []string{
		"spillway_health_ready 1\n",
		"spillway_health_draining 0\n",
		`spillway_health_responses_total{code="200",path="/livez"} 1` + "\n",
		`spillway_health_responses_total{code="503",path="/readyz"} 1` + "\n",
		`spillway_health_responses_total{code="200",path="/readyz"} 1` + "\n",
		`spillway_health_responses_total{code="200",path="/health"} 1` + "\n",
	} {
		if !strings.Contains(got.body, want) {
			t.Errorf("/metrics lacks %q; got:\n%s", want, got.body)
		}
	}
	c.Drain()
	got = get(t, ts, "/metrics")
	if !strings.Contains(got.body, "spillway_health_ready 0\n") || !strings.Contains(got.body, "spillway_health_draining 1\n") {
		t.Errorf("after Drain, /metrics:\n%s", got.body)
	}
}

func TestMetricsRegisteredTwicePanics(t *testing.T) {
	reg := prometheus.NewRegistry()
	New(Options{Registerer: reg})
	defer func() {
		if recover() == nil {
			t.Error("second New on the same Registerer did not panic")
		}
	}()
	New(Options{Registerer: reg})
}

func TestRegistrationPanics(t *testing.T) {
	dep := func() Dependency { return Dependency{} }
	chk := func(context.Context) error { return nil }
	tests := []struct {
		name string
		f    func(c *Server)
	}{
		{"dependency without name", func(c *Server) { c.AddDependency("", dep) }},
		{"dependency without status", func(c *Server) { c.AddDependency("x", nil) }},
		{"dependency twice", func(c *Server) { c.AddDependency("x", dep); c.AddDependency("x", dep) }},
		{"check without name", func(c *Server) { c.AddLivenessCheck("", chk) }},
		{"check without func", func(c *Server) { c.AddLivenessCheck("x", nil) }},
		{"check twice", func(c *Server) { c.AddLivenessCheck("x", chk); c.AddLivenessCheck("x", chk) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("did not panic")
				}
			}()
			tt.f(New(Options{}))
		})
	}
}

// TestConcurrentUse exercises registration, events and every endpoint at
// once, for the race detector.
func TestConcurrentUse(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := New(Options{Gatherer: reg, Registerer: reg})
	ts := serve(t, c)
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range 20 {
			c.AddDependency(fmt.Sprintf("dep-%d", i), func() Dependency { return Dependency{State: DepUp} })
			c.AddLivenessCheck(fmt.Sprintf("check-%d", i), func(context.Context) error { return nil })
			c.SetLoad(func() (int, int, int) { return i, 20, 0 })
		}
	})
	wg.Go(func() {
		c.Start()
		c.Drain()
	})
	for _, path := range []string{"/livez", "/readyz", "/health", "/metrics"} {
		wg.Go(func() {
			for range 10 {
				req, _ := http.NewRequest(http.MethodGet, ts.URL+path, nil)
				resp, err := ts.Client().Do(req)
				if err != nil {
					t.Errorf("GET %s: %v", path, err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
	wg.Wait()
	if n := len(c.Report().Dependencies); n != 20 {
		t.Errorf("%d dependencies, want 20", n)
	}
}

// client returns a client with its own transport, whose idle connections
// are closed when the test ends.
func client(t *testing.T) *http.Client {
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func TestServe(t *testing.T) {
	c := New(Options{})
	c.Start()
	ln := testkit.Listen(t)
	addr := ln.Addr().String()
	stop := testkit.Go(t, "Serve", 10*time.Second, func(ctx context.Context) error { return c.Serve(ctx, ln) })

	cl := client(t)
	for _, path := range []string{"/livez", "/readyz", "/health"} {
		resp, err := cl.Get("http://" + addr + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("GET %s = %d, want 200", path, resp.StatusCode)
		}
	}

	if err := stop(); err != nil {
		t.Errorf("Serve = %v, want nil", err)
	}
	if conn, err := net.Dial("tcp", addr); err == nil {
		conn.Close()
		t.Error("listener still accepting after Serve returned")
	}
}

func TestServeCancelledBeforeStart(t *testing.T) {
	ln := testkit.Listen(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := New(Options{}).Serve(ctx, ln); err != nil {
		t.Errorf("Serve = %v, want nil", err)
	}
	if conn, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		conn.Close()
		t.Error("listener not closed")
	}
}

func TestServeListenerError(t *testing.T) {
	ln := testkit.Listen(t)
	ln.Close()
	err := New(Options{}).Serve(t.Context(), ln)
	if err == nil || !strings.Contains(err.Error(), "serve health on ") {
		t.Errorf("Serve on a closed listener = %v, want a wrapped error", err)
	}
}

// TestServeShutdownEndsSlowCheck shows that stopping the server does not wait
// for a hanging deep check's (hour-long) timeout: in-flight requests see the
// server's context end.
func TestServeShutdownEndsSlowCheck(t *testing.T) {
	entered := make(chan struct{}, 1)
	c := New(Options{
		DeepTimeout: time.Hour,
		Deep: func(ctx context.Context) error {
			entered <- struct{}{}
			<-ctx.Done()
			return ctx.Err()
		},
	})
	ln := testkit.Listen(t)
	addr := ln.Addr().String()
	stop := testkit.Go(t, "Serve", 10*time.Second, func(ctx context.Context) error { return c.Serve(ctx, ln) })

	cl := client(t)
	code := make(chan int, 1)
	go func() {
		resp, err := cl.Get("http://" + addr + "/livez")
		if err != nil {
			t.Errorf("GET /livez: %v", err)
			code <- 0
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		code <- resp.StatusCode
	}()
	<-entered
	if err := stop(); err != nil {
		t.Errorf("Serve = %v, want nil", err)
	}
	if got := <-code; got != http.StatusServiceUnavailable {
		t.Errorf("in-flight /livez = %d, want 503", got)
	}
}
