package backendsim

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/spillway-dev/spillway/internal/testkit"
)

// harness is a Sim behind a real loopback server.
type harness struct {
	sim    *Sim
	url    string
	http   *http.Client // no keep-alive: one request, one connection
	client *Client
}

func newHarness(t *testing.T, cfg Config) *harness {
	t.Helper()
	sim, err := New(cfg, slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	srv := httptest.NewServer(sim.Handler())
	// Cleanups run last-in first-out: the Sim releases waiting handlers,
	// then the server closes and waits for them.
	t.Cleanup(srv.Close)
	t.Cleanup(func() { sim.Close() })
	// Without keep-alive a dropped connection is never a reused one, so
	// the transport never retries and each request is counted once.
	tr := &http.Transport{DisableKeepAlives: true}
	t.Cleanup(tr.CloseIdleConnections)
	hc := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	return &harness{sim: sim, url: srv.URL, http: hc, client: &Client{BaseURL: srv.URL, HTTP: hc}}
}

// response is a request's result: the status and body, or the error.
type response struct {
	status int
	header http.Header
	body   string
	err    error
}

func (h *harness) do(ctx context.Context, method, path, body string) response {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, h.url+path, rd)
	if err != nil {
		return response{err: err}
	}
	resp, err := h.http.Do(req)
	if err != nil {
		return response{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: strings.TrimSpace(string(b)), err: err}
}

func (h *harness) outcomes(t *testing.T, path string) Outcomes {
	t.Helper()
	st, err := h.client.Stats(t.Context())
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	return st.Paths[path]
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string // substring of the error; "" for none
	}{
		{"zero", Config{}, ""},
		{"all set", Config{Mode: ModeSlow, Latency: time.Millisecond, SlowLatency: time.Second}, ""},
		{"bad mode", Config{Mode: "sideways"}, `mode: "sideways": not one of`},
		{"negative latency", Config{Latency: -time.Second}, `latency: "-1s": must not be negative`},
		{"huge slow latency", Config{SlowLatency: 2 * time.Hour}, `slow_latency: "2h0m0s": must be at most 1h0m0s`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestNewDefaults(t *testing.T) {
	sim, err := New(Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	want := Config{Mode: ModeUp, Latency: 0, SlowLatency: DefaultSlowLatency}
	if diff := cmp.Diff(want, sim.Config()); diff != "" {
		t.Errorf("Config (-want +got):\n%s", diff)
	}
	if _, err := New(Config{Mode: "nope"}, nil); err == nil {
		t.Error("New with a bad mode: no error")
	}
}

func TestAccountIDStable(t *testing.T) {
	// Pinned: drills and later components may record account ids.
	if got, want := AccountID("valid-alice"), "acct-6c939a362702"; got != want {
		t.Errorf("AccountID = %q, want %q", got, want)
	}
	if AccountID("valid-bob") == AccountID("valid-alice") {
		t.Error("two tickets share an account id")
	}
}

func TestValidateRequests(t *testing.T) {
	h := newHarness(t, Config{})
	tests := []struct {
		name       string
		method     string
		body       string
		wantStatus int
		wantBody   string // substring
		wantOut    Outcomes
	}{
		{"valid", "POST", `{"ticket":"valid-alice"}`, 200, `{"valid":true,"account_id":"` + AccountID("valid-alice") + `"}`, Outcomes{Valid: 1}},
		{"invalid", "POST", `{"ticket":"forged"}`, 200, `{"valid":false}`, Outcomes{Invalid: 1}},
		{"unknown field", "POST", `{"ticket":"valid-a","admin":true}`, 400, `unknown field \"admin\"`, Outcomes{BadRequest: 1}},
		{"malformed", "POST", `{"ticket":`, 400, `decode body`, Outcomes{BadRequest: 1}},
		{"wrong type", "POST", `{"ticket":7}`, 400, `decode body`, Outcomes{BadRequest: 1}},
		{"empty body", "POST", ``, 400, `empty body`, Outcomes{BadRequest: 1}},
		{"no ticket", "POST", `{}`, 400, `ticket: required`, Outcomes{BadRequest: 1}},
		{"trailing data", "POST", `{"ticket":"valid-a"} {}`, 400, `data after the JSON object`, Outcomes{BadRequest: 1}},
		{"too large", "POST", `{"ticket":"valid-` + strings.Repeat("x", MaxBodyBytes) + `"}`, 413, `larger than`, Outcomes{BadRequest: 1}},
		{"wrong method", "GET", ``, 405, `use POST`, Outcomes{BadRequest: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := h.client.ResetStats(t.Context()); err != nil {
				t.Fatal(err)
			}
			got := h.do(t.Context(), tt.method, PathValidate, tt.body)
			if got.err != nil {
				t.Fatal(got.err)
			}
			if got.status != tt.wantStatus || !strings.Contains(got.body, tt.wantBody) {
				t.Errorf("got %d %s, want %d containing %s", got.status, got.body, tt.wantStatus, tt.wantBody)
			}
			if diff := cmp.Diff(tt.wantOut, h.outcomes(t, PathValidate)); diff != "" {
				t.Errorf("outcomes (-want +got):\n%s", diff)
			}
		})
	}
}

// TestModes runs each mode against a validate call and a health check: the
// mode applies to both alike.
func TestModes(t *testing.T) {
	const latency = 30 * time.Millisecond
	type call struct {
		path, method, body string
		wantBody           string
	}
	calls := []call{
		{PathValidate, "POST", `{"ticket":"valid-alice"}`, `"valid":true`},
		{PathHealthz, "GET", ``, `{"status":"ok"}`},
	}
	tests := []struct {
		name       string
		cfg        Config
		timeout    time.Duration // client's; 0 for the harness default
		wantErr    bool          // the client sees no answer
		wantStatus int
		minElapsed time.Duration
		answered   bool // the answer is the correct one (wantBody)
		want       func(call) Outcomes
	}{
		{
			name: "up with latency", cfg: Config{Mode: ModeUp, Latency: latency},
			wantStatus: 200, minElapsed: latency, answered: true,
			want: func(c call) Outcomes {
				if c.path == PathHealthz {
					return Outcomes{OK: 1}
				}
				return Outcomes{Valid: 1}
			},
		},
		{
			name: "slow", cfg: Config{Mode: ModeSlow, SlowLatency: latency},
			wantStatus: 200, minElapsed: latency, answered: true,
			want: func(call) Outcomes { return Outcomes{Slow: 1} },
		},
		{
			name: "error", cfg: Config{Mode: ModeError, Latency: time.Hour},
			wantStatus: 500,
			want:       func(call) Outcomes { return Outcomes{Error: 1} },
		},
		{
			name: "down", cfg: Config{Mode: ModeDown},
			wantErr: true,
			want:    func(call) Outcomes { return Outcomes{Dropped: 1} },
		},
		{
			name: "hang", cfg: Config{Mode: ModeHang},
			timeout: 50 * time.Millisecond, wantErr: true, minElapsed: 50 * time.Millisecond,
			want: func(call) Outcomes { return Outcomes{Hung: 1} },
		},
	}
	for _, tt := range tests {
		for _, c := range calls {
			t.Run(tt.name+c.path, func(t *testing.T) {
				h := newHarness(t, tt.cfg)
				ctx := t.Context()
				if tt.timeout > 0 {
					var cancel context.CancelFunc
					ctx, cancel = context.WithTimeout(ctx, tt.timeout)
					defer cancel()
				}
				start := time.Now()
				got := h.do(ctx, c.method, c.path, c.body)
				elapsed := time.Since(start)

				if tt.wantErr {
					if got.err == nil {
						t.Fatalf("got %d %s, want no answer", got.status, got.body)
					}
					t.Logf("client error, as wanted: %v", got.err)
				} else {
					if got.err != nil {
						t.Fatal(got.err)
					}
					if got.status != tt.wantStatus {
						t.Errorf("status %d, want %d (body %s)", got.status, tt.wantStatus, got.body)
					}
					if tt.answered && !strings.Contains(got.body, c.wantBody) {
						t.Errorf("body %s, want %s", got.body, c.wantBody)
					}
				}
				if elapsed < tt.minElapsed {
					t.Errorf("answered after %v, want at least %v", elapsed, tt.minElapsed)
				}
				// The handler returns once the client has given up.
				testkit.WaitFor(t, 5*time.Second, "in-flight requests to end", func() bool { return h.sim.Stats().InFlight == 0 })
				if diff := cmp.Diff(tt.want(c), h.outcomes(t, c.path)); diff != "" {
					t.Errorf("outcomes (-want +got):\n%s", diff)
				}
			})
		}
	}
}

func TestModeAppliesToOtherPaths(t *testing.T) {
	h := newHarness(t, Config{})
	if got := h.do(t.Context(), "GET", "/nowhere", ""); got.status != 404 {
		t.Errorf("up: got %d, want 404", got.status)
	}
	if err := h.client.SetMode(t.Context(), "error", 0); err != nil {
		t.Fatal(err)
	}
	if got := h.do(t.Context(), "GET", "/elsewhere", ""); got.status != 500 {
		t.Errorf("error: got %d, want 500", got.status)
	}
	// Many distinct paths still make one key.
	for i := range 20 {
		h.do(t.Context(), "GET", "/p"+strings.Repeat("x", i), "")
	}
	st, err := h.client.Stats(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Paths) != 3 {
		t.Errorf("Paths has %d keys, want 3", len(st.Paths))
	}
	if diff := cmp.Diff(Outcomes{NotFound: 1, Error: 21}, st.Paths[PathOther]); diff != "" {
		t.Errorf("other (-want +got):\n%s", diff)
	}
}

func TestControl(t *testing.T) {
	h := newHarness(t, Config{Latency: 20 * time.Millisecond})
	ctx := t.Context()

	const pool0 = `"capacity":0,"queue_size":0,"queue_timeout":"0s"`
	got := h.do(ctx, "GET", "/control", "")
	if want := `{"mode":"up","latency":"20ms","slow_latency":"10s",` + pool0 + `}`; got.status != 200 || got.body != want {
		t.Fatalf("GET /control = %d %s, want 200 %s", got.status, got.body, want)
	}

	// Fields are optional: a PUT changes only those given.
	got = h.do(ctx, "PUT", "/control", `{"slow_latency":"2s"}`)
	if want := `{"mode":"up","latency":"20ms","slow_latency":"2s",` + pool0 + `}`; got.status != 200 || got.body != want {
		t.Fatalf("PUT slow_latency = %d %s, want 200 %s", got.status, got.body, want)
	}
	got = h.do(ctx, "PUT", "/control", `{"mode":"hang","latency":"5ms"}`)
	if want := `{"mode":"hang","latency":"5ms","slow_latency":"2s",` + pool0 + `}`; got.status != 200 || got.body != want {
		t.Fatalf("PUT mode = %d %s, want 200 %s", got.status, got.body, want)
	}
	got = h.do(ctx, "PUT", "/control", `{"capacity":4,"queue_size":16,"queue_timeout":"250ms"}`)
	if want := `{"mode":"hang","latency":"5ms","slow_latency":"2s","capacity":4,"queue_size":16,"queue_timeout":"250ms"}`; got.status != 200 || got.body != want {
		t.Fatalf("PUT capacity = %d %s, want 200 %s", got.status, got.body, want)
	}
	if m := h.sim.Mode(); m != ModeHang {
		t.Errorf("Mode = %s, want hang", m)
	}

	bad := []struct {
		name, method, body string
		status             int
		want               string
	}{
		{"unknown field", "PUT", `{"mode":"up","speed":"fast"}`, 400, `unknown field \"speed\"`},
		{"bad mode", "PUT", `{"mode":"sideways"}`, 400, `mode: \"sideways\": not one of up, hang, error, slow, down`},
		{"empty mode", "PUT", `{"mode":""}`, 400, `mode: \"\"`},
		{"bad latency", "PUT", `{"latency":"fast"}`, 400, `latency: \"fast\": not a Go duration`},
		{"numeric latency", "PUT", `{"latency":20}`, 400, `latency`},
		{"negative slow latency", "PUT", `{"slow_latency":"-1s"}`, 400, `slow_latency: \"-1s\": must not be negative`},
		{"too long", "PUT", `{"latency":"2h"}`, 400, `must be at most`},
		{"negative capacity", "PUT", `{"capacity":-1}`, 400, `capacity: -1: must not be negative`},
		{"huge capacity", "PUT", `{"capacity":65537}`, 400, `capacity: 65537: must be at most 65536`},
		{"fractional capacity", "PUT", `{"capacity":1.5}`, 400, `decode body`},
		{"exponent capacity", "PUT", `{"capacity":1e3}`, 400, `decode body`},
		{"overflowing queue size", "PUT", `{"queue_size":99999999999999999999}`, 400, `decode body`},
		{"string queue size", "PUT", `{"queue_size":"8"}`, 400, `decode body`},
		{"huge queue size", "PUT", `{"queue_size":1048577}`, 400, `queue_size: 1048577: must be at most 1048576`},
		{"negative queue timeout", "PUT", `{"queue_timeout":"-1ms"}`, 400, `queue_timeout: \"-1ms\": must not be negative`},
		{"bad queue timeout", "PUT", `{"queue_timeout":"soon"}`, 400, `queue_timeout: \"soon\": not a Go duration`},
		{"empty body", "PUT", ``, 400, `empty body`},
		{"not an object", "PUT", `[]`, 400, `decode body`},
		{"too large", "PUT", `{"mode":"` + strings.Repeat("u", MaxBodyBytes) + `"}`, 413, `larger than`},
		{"wrong method", "POST", `{}`, 405, `use GET or PUT`},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			got := h.do(ctx, tt.method, "/control", tt.body)
			if got.err != nil {
				t.Fatal(got.err)
			}
			if got.status != tt.status || !strings.Contains(got.body, tt.want) {
				t.Errorf("got %d %s, want %d containing %s", got.status, got.body, tt.status, tt.want)
			}
		})
	}
	// Failed PUTs change nothing, even in part.
	got = h.do(ctx, "PUT", "/control", `{"mode":"up","latency":"bogus"}`)
	if got.status != 400 {
		t.Errorf("partly bad PUT: got %d", got.status)
	}
	got = h.do(ctx, "PUT", "/control", `{"capacity":1,"queue_size":-1}`)
	if got.status != 400 {
		t.Errorf("partly bad PUT: got %d", got.status)
	}
	want := Config{Mode: ModeHang, Latency: 5 * time.Millisecond, SlowLatency: 2 * time.Second,
		Capacity: 4, QueueSize: 16, QueueTimeout: 250 * time.Millisecond}
	cfg, err := h.client.Control(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, cfg); diff != "" {
		t.Errorf("after bad PUTs (-want +got):\n%s", diff)
	}
	if st := h.sim.Stats(); st.Total != 0 {
		t.Errorf("control requests were counted: total %d", st.Total)
	}
}

func TestClient(t *testing.T) {
	h := newHarness(t, Config{})
	ctx := t.Context()
	if err := h.client.SetMode(ctx, "slow", 7*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if err := h.client.SetSlowLatency(ctx, 5*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	cfg, err := h.client.Control(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(Config{Mode: ModeSlow, Latency: 7 * time.Millisecond, SlowLatency: 5 * time.Millisecond}, cfg); diff != "" {
		t.Errorf("Control (-want +got):\n%s", diff)
	}
	if err := h.client.SetCapacity(ctx, 3, 750*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if err := h.client.SetQueueSize(ctx, 32); err != nil {
		t.Fatal(err)
	}
	if cfg, err = h.client.Control(ctx); err != nil {
		t.Fatal(err)
	}
	if got, want := [3]any{cfg.Capacity, cfg.QueueSize, cfg.QueueTimeout}, [3]any{3, 32, 750 * time.Millisecond}; got != want {
		t.Errorf("capacity, queue size, queue timeout = %v, want %v", got, want)
	}
	if err := h.client.SetCapacity(ctx, -2, 0); err == nil {
		t.Error("SetCapacity(-2): no error")
	}
	res, err := h.client.Validate(ctx, "valid-bob")
	if err != nil || !res.Valid || res.AccountID != AccountID("valid-bob") {
		t.Errorf("Validate = %+v, %v", res, err)
	}

	err = h.client.SetMode(ctx, "sideways", 0)
	se, ok := errors.AsType[*StatusError](err)
	if !ok || se.StatusCode != 400 || !strings.Contains(se.Message, "sideways") {
		t.Errorf("SetMode(sideways) = %v, want a 400 StatusError naming the mode", err)
	}
	if err := h.client.SetMode(ctx, "error", 0); err != nil {
		t.Fatal(err)
	}
	_, err = h.client.Validate(ctx, "valid-bob")
	if se, ok := errors.AsType[*StatusError](err); !ok || se.StatusCode != 500 {
		t.Errorf("Validate in mode error = %v, want a 500 StatusError", err)
	}
}

func TestStats(t *testing.T) {
	h := newHarness(t, Config{})
	ctx := t.Context()
	for _, tk := range []string{"valid-a", "valid-b", "nope"} {
		if _, err := h.client.Validate(ctx, tk); err != nil {
			t.Fatal(err)
		}
	}
	h.do(ctx, "GET", PathHealthz, "")
	if err := h.client.SetMode(ctx, "down", 0); err != nil {
		t.Fatal(err)
	}
	h.do(ctx, "GET", PathHealthz, "")

	want := Stats{
		Paths: map[string]Outcomes{
			PathValidate: {Valid: 2, Invalid: 1},
			PathHealthz:  {OK: 1, Dropped: 1},
			PathOther:    {},
		},
		Total: 5,
	}
	// The client sees a dropped connection close before the handler that
	// closed it returns and leaves the in-flight count: wait for it.
	deadline := time.After(5 * time.Second)
	for {
		st, err := h.client.Stats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.InFlight == 0 {
			break
		}
		select {
		case <-deadline:
			t.Fatalf("in flight still %d after 5s", st.InFlight)
		case <-time.After(time.Millisecond):
		}
	}
	// The pool's figures have tests of their own.
	noPool := cmpopts.IgnoreFields(Stats{}, "Pool")
	got, err := h.client.ResetStats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got, noPool); diff != "" {
		t.Errorf("ResetStats (-want +got):\n%s", diff)
	}
	got, err = h.client.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want = Stats{Paths: map[string]Outcomes{PathValidate: {}, PathHealthz: {}, PathOther: {}}}
	if diff := cmp.Diff(want, got, noPool); diff != "" {
		t.Errorf("Stats after reset (-want +got):\n%s", diff)
	}
	// The wire form uses the documented keys.
	r := h.do(ctx, "GET", "/stats", "")
	var doc struct {
		Paths map[string]map[string]uint64 `json:"paths"`
		Total *uint64                      `json:"total"`
		Pool  map[string]json.RawMessage   `json:"pool"`
	}
	if err := json.Unmarshal([]byte(r.body), &doc); err != nil {
		t.Fatalf("stats JSON %s: %v", r.body, err)
	}
	for _, k := range []string{"valid", "invalid", "hung", "error", "dropped", "slow", "bad_request", "queue_full", "queue_timeout", "abandoned"} {
		if _, ok := doc.Paths[PathValidate][k]; !ok || doc.Total == nil {
			t.Errorf("stats JSON %s lacks total or paths[%q][%q]", r.body, PathValidate, k)
		}
	}
	for _, k := range []string{"busy", "queued", "peak_busy", "peak_queued", "seconds"} {
		if _, ok := doc.Pool[k]; !ok {
			t.Errorf("stats JSON %s lacks pool.%s", r.body, k)
		}
	}
	if got := h.do(ctx, "PUT", "/stats", "{}"); got.status != 405 {
		t.Errorf("PUT /stats: got %d, want 405", got.status)
	}
}

// hangOne starts a request that will hang and returns a channel with its
// result; it returns once the Sim holds the request.
func hangOne(t *testing.T, h *harness, path string) <-chan response {
	t.Helper()
	before := h.sim.Stats().InFlight
	done := make(chan response, 1)
	go func() { done <- h.do(context.Background(), "GET", path, "") }() // ends when the Sim answers or closes
	testkit.WaitFor(t, 5*time.Second, "the request to hang", func() bool { return h.sim.Stats().InFlight > before })
	return done
}

func TestCloseReleasesHang(t *testing.T) {
	h := newHarness(t, Config{Mode: ModeHang})
	done := hangOne(t, h, PathHealthz)
	select {
	case r := <-done:
		t.Fatalf("hanging request answered before Close: %+v", r)
	default:
	}
	h.sim.Close()
	r := <-done
	if r.err != nil || r.status != 503 || !strings.Contains(r.body, "closed") {
		t.Errorf("released request: %+v, want 503 closed", r)
	}
	if n := h.sim.Stats().InFlight; n != 0 {
		t.Errorf("InFlight after release = %d", n)
	}
	// After Close nothing waits: a latency is cut short too.
	if err := h.sim.SetMode(ModeSlow); err != nil {
		t.Fatal(err)
	}
	if r := h.do(t.Context(), "GET", PathHealthz, ""); r.status != 503 {
		t.Errorf("slow request after Close: %+v, want 503", r)
	}
	h.sim.Close() // idempotent
}

// TestModeChangeKeepsHung pins the documented choice: leaving hang does not
// answer requests that are already hanging; new ones follow the new mode.
func TestModeChangeKeepsHung(t *testing.T) {
	h := newHarness(t, Config{Mode: ModeHang})
	done := hangOne(t, h, PathValidate)
	if err := h.client.SetMode(t.Context(), "up", 0); err != nil {
		t.Fatal(err)
	}
	if r := h.do(t.Context(), "GET", PathHealthz, ""); r.status != 200 {
		t.Errorf("new request after hang→up: %+v, want 200", r)
	}
	if n := h.sim.Stats().InFlight; n != 1 {
		t.Errorf("InFlight = %d, want the hung request still held", n)
	}
	h.sim.Close()
	if r := <-done; r.status != 503 {
		t.Errorf("released request: %+v, want 503", r)
	}
}

func TestServe(t *testing.T) {
	sim, err := New(Config{Mode: ModeHang}, slog.New(slog.NewTextHandler(t.Output(), nil)))
	if err != nil {
		t.Fatal(err)
	}
	ln := testkit.Listen(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- sim.Serve(ctx, ln) }() // ends on cancel

	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	h := &harness{sim: sim, url: "http://" + ln.Addr().String(), http: &http.Client{Transport: tr}}
	done := hangOne(t, h, PathValidate)

	start := time.Now()
	cancel()
	if err := <-served; err != nil {
		t.Errorf("Serve: %v", err)
	}
	if d := time.Since(start); d > shutdownTimeout {
		t.Errorf("shutdown took %v: the hanging request held it", d)
	}
	if r := <-done; r.err == nil && r.status != 503 {
		t.Errorf("hanging request at shutdown: %+v, want 503 or no answer", r)
	}
	if c, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		c.Close()
		t.Error("listener still open after Serve returned")
	}
}

func TestServeListenerError(t *testing.T) {
	sim, err := New(Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ln := testkit.Listen(t)
	ln.Close()
	if err := sim.Serve(t.Context(), ln); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Serve on a closed listener = %v, want net.ErrClosed", err)
	}
}

// TestControlAnswersOnlyLoopbackHosts: served on loopback, the
// unauthenticated /control and /stats refuse a foreign Host (a page whose
// name was rebound to 127.0.0.1); the modal paths serve anyone.
func TestControlAnswersOnlyLoopbackHosts(t *testing.T) {
	sim, err := New(Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	addr := testkit.Serve(t, sim.Serve)
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}
	send := func(method, path, host, body string) int {
		req, _ := http.NewRequest(method, "http://"+addr+path, strings.NewReader(body))
		req.Host = host
		res, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	if c := send("PUT", "/control", "rebound.example:9000", `{"mode":"hang"}`); c != http.StatusMisdirectedRequest || sim.Mode() != ModeUp {
		t.Errorf("PUT /control from a foreign Host: %d, mode %s", c, sim.Mode())
	}
	if c := send("GET", "/stats", "rebound.example", ""); c != http.StatusMisdirectedRequest {
		t.Errorf("GET /stats from a foreign Host: %d", c)
	}
	if c := send("PUT", "/control", "localhost:9000", `{"mode":"error"}`); c != 200 || sim.Mode() != ModeError {
		t.Errorf("PUT /control from localhost: %d, mode %s", c, sim.Mode())
	}
	if c := send("GET", "/healthz", "backend.internal", ""); c != 500 {
		t.Errorf("a modal path from any Host: %d, want the mode's 500", c)
	}
}
