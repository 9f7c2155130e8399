package loadgen

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/spillway-dev/spillway/health"
	"github.com/spillway-dev/spillway/internal/testkit"
	"github.com/spillway-dev/spillway/internal/timeline"
)

// checkAccounting asserts the invariants every run keeps: nothing lost,
// outcomes summing to the attempts, the recorder agreeing.
func checkAccounting(t *testing.T, res Result, rec *timeline.Recorder) {
	t.Helper()
	if res.Lost() != 0 {
		t.Errorf("lost = %d (sent %d, answered %d), want 0", res.Lost(), res.Sent, res.Answered)
	}
	var sum int64
	for _, n := range res.Outcomes {
		sum += n
	}
	if sum != res.Answered {
		t.Errorf("outcomes sum to %d, answered = %d", sum, res.Answered)
	}
	if res.Sent != res.Requests+res.Retries {
		t.Errorf("sent %d != requests %d + retries %d", res.Sent, res.Requests, res.Retries)
	}
	if rec != nil {
		var total uint64
		for _, n := range rec.Totals() {
			total += n
		}
		if int64(total) != res.Answered {
			t.Errorf("recorder holds %d requests, answered = %d", total, res.Answered)
		}
	}
}

// hangServer answers nothing until the client gives up or the test ends,
// and tracks the requests it holds.
type hangServer struct {
	*httptest.Server
	cur, max atomic.Int64
	arrived  atomic.Int64
}

func newHangServer(t *testing.T) *hangServer {
	t.Helper()
	s := &hangServer{}
	release := make(chan struct{})
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.arrived.Add(1)
		n := s.cur.Add(1)
		defer s.cur.Add(-1)
		for m := s.max.Load(); n > m && !s.max.CompareAndSwap(m, n); m = s.max.Load() {
		}
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(func() { close(release); s.Close() })
	return s
}

func TestRate(t *testing.T) {
	var mu sync.Mutex
	var arrivals []time.Time
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		arrivals = append(arrivals, time.Now())
		mu.Unlock()
		io.WriteString(w, `{"ok":true}`)
	}))
	defer ts.Close()

	rec := timeline.New(10, nil)
	begin := time.Now()
	res, err := Run(t.Context(), Config{URL: ts.URL, Rate: 200, Duration: time.Second}, rec)
	if err != nil {
		t.Fatal(err)
	}
	checkAccounting(t, res, rec)
	if res.Requests < 180 || res.Requests > 220 {
		t.Errorf("requests = %d over 1s at 200 rps, want 200 ± 10%%", res.Requests)
	}
	if res.Outcomes["ok"] != res.Sent {
		t.Errorf("outcomes = %v, want all ok", res.Outcomes)
	}
	mu.Lock()
	defer mu.Unlock()
	// Steady, not bursty: each half second got about half (loose bounds:
	// a loaded CI machine may stall the scheduler, which then catches up).
	var first int
	for _, a := range arrivals {
		if a.Sub(begin) < 500*time.Millisecond {
			first++
		}
	}
	if first < 60 || first > 140 {
		t.Errorf("%d of %d requests arrived in the first half second, want about 100", first, len(arrivals))
	}
	if res.Elapsed > 1500*time.Millisecond {
		t.Errorf("elapsed = %v, want about 1s", res.Elapsed)
	}
}

// TestClassificationEndToEnd runs a load against a server that answers
// each request according to its index, covering every outcome, including
// transport failures and client timeouts.
func TestClassificationEndToEnd(t *testing.T) {
	type answer func(w http.ResponseWriter, r *http.Request)
	status := func(code int, reason, body string) answer {
		return func(w http.ResponseWriter, r *http.Request) {
			if reason != "" {
				w.Header().Set("X-Spillway-Reason", reason)
			}
			w.WriteHeader(code)
			io.WriteString(w, body)
		}
	}
	answers := []answer{
		status(200, "", `{"token":"x"}`),
		status(401, "", `{"error":"invalid_ticket"}`),
		status(503, "dependency_unavailable", `{"error":"dependency_unavailable"}`),
		status(503, "", `{"error":"dependency_unavailable"}`), // an instance's, header lost
		status(503, "overloaded", `{"error":"overloaded"}`),
		status(500, "", `oops`),
		func(w http.ResponseWriter, r *http.Request) { // connection dropped: transport error
			c, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				c.Close()
			}
		},
		func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }, // hung: client timeout
	}
	want := map[string]int64{"ok": 1, "client_error": 1, "shed": 2, "overloaded": 1, "failed": 2, "client_timeout": 1}

	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		i, err := strconv.Atoi(string(b))
		if err != nil {
			http.Error(w, err.Error(), http.StatusTeapot)
			return
		}
		answers[i%len(answers)](w, r)
	}))
	defer ts.Close()

	const rounds = 5
	rec := timeline.New(10, nil)
	res, err := Run(t.Context(), Config{
		URL:      ts.URL,
		Body:     func(i int) []byte { return []byte(strconv.Itoa(i)) },
		Rate:     float64(len(answers) * rounds * 2), // rounds in half a second
		Duration: 500 * time.Millisecond,
		Timeout:  300 * time.Millisecond,
	}, rec)
	if err != nil {
		t.Fatal(err)
	}
	checkAccounting(t, res, rec)
	if res.Requests != int64(len(answers)*rounds) {
		t.Fatalf("requests = %d, want %d", res.Requests, len(answers)*rounds)
	}
	for k := range want {
		want[k] *= rounds
	}
	if diff := cmp.Diff(want, res.Outcomes); diff != "" {
		t.Errorf("outcomes (-want +got):\n%s", diff)
	}
}

func TestHungServer(t *testing.T) {
	ts := newHangServer(t)
	rec := timeline.New(10, nil)
	res, err := Run(t.Context(), Config{URL: ts.URL, Rate: 100, Duration: 300 * time.Millisecond, Timeout: 500 * time.Millisecond}, rec)
	if err != nil {
		t.Fatal(err)
	}
	checkAccounting(t, res, rec)
	if res.Sent != 30 || res.Outcomes["client_timeout"] != 30 {
		t.Errorf("sent %d, outcomes %v: want 30 client timeouts", res.Sent, res.Outcomes)
	}
	if res.Dropped != 0 || res.Canceled != 0 {
		t.Errorf("dropped %d, canceled %d, want 0", res.Dropped, res.Canceled)
	}
	if res.Elapsed > 2*time.Second {
		t.Errorf("elapsed = %v, want about duration + timeout (800ms)", res.Elapsed)
	}
	if got := ts.arrived.Load(); got != 30 {
		t.Errorf("server saw %d requests, want 30 (open loop: none held back)", got)
	}
}

func TestMaxInFlight(t *testing.T) {
	ts := newHangServer(t)
	rec := timeline.New(10, nil)
	res, err := Run(t.Context(), Config{
		URL: ts.URL, Rate: 100, Duration: 300 * time.Millisecond,
		Timeout: time.Second, MaxInFlight: 5,
	}, rec)
	if err != nil {
		t.Fatal(err)
	}
	checkAccounting(t, res, rec)
	if m := ts.max.Load(); m > 5 {
		t.Errorf("server held %d requests at once, want at most MaxInFlight 5", m)
	}
	if res.MaxInFlight != 5 {
		t.Errorf("MaxInFlight = %d, want 5", res.MaxInFlight)
	}
	if res.Sent != 30 || res.Dropped != 25 || res.Outcomes["client_timeout"] != 30 {
		t.Errorf("sent %d, dropped %d, outcomes %v: want 30 sent, 25 dropped, 30 client timeouts", res.Sent, res.Dropped, res.Outcomes)
	}
}

func TestCancel(t *testing.T) {
	ts := newHangServer(t)
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	res, err := Run(ctx, Config{URL: ts.URL, Rate: 100, Duration: 10 * time.Second, Timeout: 10 * time.Second}, nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want the context's", err)
	}
	checkAccounting(t, res, nil)
	if res.Elapsed > 2*time.Second {
		t.Errorf("elapsed = %v after the context ended at 200ms", res.Elapsed)
	}
	if res.Sent < 10 || res.Canceled != res.Sent || res.Outcomes["client_timeout"] != res.Sent {
		t.Errorf("sent %d, canceled %d, outcomes %v: want every request canceled", res.Sent, res.Canceled, res.Outcomes)
	}
}

func TestRetryImmediate(t *testing.T) {
	var n atomic.Int64
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		w.Header().Set("X-Spillway-Reason", "overloaded")
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer ts.Close()
	res, err := Run(t.Context(), Config{
		URL: ts.URL, Rate: 50, Duration: 400 * time.Millisecond,
		Retry: RetryPolicy{Mode: RetryImmediate, MaxRetries: 2},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkAccounting(t, res, nil)
	if res.Requests != 20 || res.Retries+res.RetriesSkipped != 40 || res.Retries < 36 {
		t.Errorf("requests %d, retries %d, skipped %d: want 20, about 40, few", res.Requests, res.Retries, res.RetriesSkipped)
	}
	if res.Outcomes["overloaded"] != res.Sent || n.Load() != res.Sent {
		t.Errorf("outcomes %v, server saw %d, sent %d", res.Outcomes, n.Load(), res.Sent)
	}
}

func TestRetryAfter(t *testing.T) {
	var mu sync.Mutex
	seen := map[string][]time.Time{} // body → arrival of each attempt
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		seen[string(b)] = append(seen[string(b)], time.Now())
		mu.Unlock()
		if string(b) == "0" {
			w.WriteHeader(http.StatusUnauthorized) // not retryable
			return
		}
		w.WriteHeader(http.StatusBadGateway)
	}))
	defer ts.Close()
	res, err := Run(t.Context(), Config{
		URL: ts.URL, Rate: 20, Duration: time.Second,
		Body:  func(i int) []byte { return []byte(strconv.Itoa(i)) },
		Retry: RetryPolicy{Mode: RetryAfter, MaxRetries: 1, Delay: 50 * time.Millisecond, MaxDelay: 80 * time.Millisecond},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkAccounting(t, res, nil)
	if res.Requests != 20 || res.Retries+res.RetriesSkipped != 19 || res.Retries < 15 {
		t.Errorf("requests %d, retries %d, skipped %d: want 20 requests, 19 retries less a few skipped at the end", res.Requests, res.Retries, res.RetriesSkipped)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen["0"]) != 1 {
		t.Errorf("a 401 was sent %d times, want once (not retryable)", len(seen["0"]))
	}
	for body, at := range seen {
		if len(at) == 2 {
			if gap := at[1].Sub(at[0]); gap < 50*time.Millisecond {
				t.Errorf("request %s retried after %v, want at least the 50ms delay", body, gap)
			}
		}
	}
}

func TestJitteredDelay(t *testing.T) {
	tests := []struct {
		retryAfter, def, maxDelay time.Duration
		u                         float64
		want                      time.Duration
	}{
		{2 * time.Second, time.Second, time.Minute, 0, 2 * time.Second},
		{2 * time.Second, time.Second, time.Minute, 0.5, 3 * time.Second},
		{-1, time.Second, time.Minute, 0.5, 1500 * time.Millisecond},
		{0, time.Second, time.Minute, 0.9, 0}, // Retry-After: 0 means now
		{20 * time.Second, time.Second, 30 * time.Second, 0.9, 30 * time.Second},
	}
	for _, tt := range tests {
		if got := jitteredDelay(tt.retryAfter, tt.def, tt.maxDelay, tt.u); got != tt.want {
			t.Errorf("jitteredDelay(%v, %v, %v, %v) = %v, want %v", tt.retryAfter, tt.def, tt.maxDelay, tt.u, got, tt.want)
		}
	}
	for in, want := range map[string]time.Duration{"": -1, "3": 3 * time.Second, "0": 0, "-1": -1, "soon": -1, "Wed, 21 Oct 2015 07:28:00 GMT": -1} {
		if got := parseRetryAfter(in); got != want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	ok := Config{URL: "http://127.0.0.1:1/", Rate: 1, Duration: time.Second}
	tests := []struct {
		name string
		mod  func(*Config)
	}{
		{"relative url", func(c *Config) { c.URL = "/v1/login" }},
		{"ftp url", func(c *Config) { c.URL = "ftp://x/" }},
		{"zero rate", func(c *Config) { c.Rate = 0 }},
		{"huge rate", func(c *Config) { c.Rate = 2e6 }},
		{"zero duration", func(c *Config) { c.Duration = 0 }},
		{"negative timeout", func(c *Config) { c.Timeout = -1 }},
		{"negative max in flight", func(c *Config) { c.MaxInFlight = -1 }},
		{"retry mode", func(c *Config) { c.Retry.Mode = "always" }},
		{"too many retries", func(c *Config) { c.Retry = RetryPolicy{Mode: RetryImmediate, MaxRetries: 11} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok
			tt.mod(&c)
			if _, err := Run(t.Context(), c, nil); !errors.Is(err, ErrConfig) {
				t.Errorf("err = %v, want ErrConfig", err)
			}
		})
	}
}

func TestController(t *testing.T) {
	var n atomic.Int64
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { n.Add(1) }))
	defer ts.Close()
	rec := timeline.New(10, nil)
	c, err := NewController(Config{URL: ts.URL, Timeout: time.Second}, rec)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(t.Context(), 100, 10); !errors.Is(err, ErrNotRunning) {
		t.Errorf("Start before Run: err = %v, want ErrNotRunning", err)
	}

	stop := testkit.Go(t, "Run", 5*time.Second, c.Run)
	// Run registers asynchronously: retry Start until it is up.
	deadline := time.Now().Add(5 * time.Second)
	for err := c.Start(t.Context(), 100, 10); err != nil; err = c.Start(t.Context(), 100, 10) {
		if !errors.Is(err, ErrNotRunning) || time.Now().After(deadline) {
			t.Fatalf("Start: %v", err)
		}
		time.Sleep(time.Millisecond) // waiting for the goroutine above to enter Run
	}
	if err := c.Start(t.Context(), 0, 10); !errors.Is(err, ErrConfig) {
		t.Errorf("Start(0 rps): err = %v, want ErrConfig", err)
	}
	if s := c.Status(); !s.Running || s.RPS != 100 {
		t.Errorf("status after Start = %+v", s)
	}
	time.Sleep(200 * time.Millisecond) // let some requests through
	if err := c.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	for c.Status().Running {
		if time.Now().After(deadline) {
			t.Fatal("still running after Stop")
		}
		time.Sleep(time.Millisecond) // polling the load's goroutine's exit
	}
	s := c.Status()
	if s.Last == nil || s.Last.Sent < 10 || s.Last.Lost() != 0 {
		t.Errorf("last result = %+v, want about 20 requests, none lost", s.Last)
	}
	if err := c.Start(t.Context(), 50, 10); err != nil {
		t.Fatal(err)
	}
	if err := stop(); err != nil {
		t.Errorf("Run: %v", err)
	}
	if err := c.Start(t.Context(), 50, 10); !errors.Is(err, ErrNotRunning) {
		t.Errorf("Start after Run: err = %v, want ErrNotRunning", err)
	}
}

// TestOnResult checks the per-attempt hook: one call per attempt, retries
// and dropped attempts included, agreeing with the Result, each with its
// attempt's start and duration.
func TestOnResult(t *testing.T) {
	type record struct {
		start time.Time
		o     health.Outcome
		d     time.Duration
	}
	collect := func(cfg *Config) func() []record {
		var mu sync.Mutex
		var recs []record
		cfg.OnResult = func(start time.Time, o health.Outcome, d time.Duration) {
			mu.Lock()
			recs = append(recs, record{start, o, d})
			mu.Unlock()
		}
		return func() []record {
			mu.Lock()
			defer mu.Unlock()
			return recs
		}
	}
	check := func(t *testing.T, res Result, recs []record, begin time.Time, cfg Config) {
		t.Helper()
		checkAccounting(t, res, nil)
		if int64(len(recs)) != res.Sent {
			t.Fatalf("%d calls, sent %d: want one per attempt", len(recs), res.Sent)
		}
		got := map[string]int64{}
		for _, o := range health.Outcomes {
			got[o.String()] = 0
		}
		for _, r := range recs {
			got[r.o.String()]++
			if r.start.Before(begin) || !r.start.Before(begin.Add(cfg.Duration+100*time.Millisecond)) {
				t.Errorf("attempt started %v after the run began, want within its %v", r.start.Sub(begin), cfg.Duration)
			}
			if r.d < 0 || r.d > cfg.Timeout+time.Second {
				t.Errorf("attempt took %v, want in [0, timeout %v]", r.d, cfg.Timeout)
			}
		}
		if diff := cmp.Diff(res.Outcomes, got); diff != "" {
			t.Errorf("outcomes of the calls differ from the result's (-result +calls):\n%s", diff)
		}
	}

	t.Run("retries", func(t *testing.T) {
		ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			if i, _ := strconv.Atoi(string(b)); i%2 == 1 {
				w.Header().Set("X-Spillway-Reason", "overloaded")
				w.WriteHeader(http.StatusServiceUnavailable)
				return
			}
			io.WriteString(w, `{"token":"x"}`)
		}))
		defer ts.Close()
		cfg := Config{
			URL: ts.URL, Rate: 100, Duration: 300 * time.Millisecond, Timeout: time.Second,
			Body:  func(i int) []byte { return []byte(strconv.Itoa(i)) },
			Retry: RetryPolicy{Mode: RetryImmediate, MaxRetries: 1},
		}
		recs := collect(&cfg)
		begin := time.Now()
		res, err := Run(t.Context(), cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		check(t, res, recs(), begin, cfg)
		if res.Retries == 0 || res.Outcomes["ok"] == 0 || res.Outcomes["overloaded"] == 0 {
			t.Errorf("result %+v: want ok answers, overloaded ones and retries", res)
		}
	})

	t.Run("dropped", func(t *testing.T) {
		ts := newHangServer(t)
		cfg := Config{URL: ts.URL, Rate: 100, Duration: 300 * time.Millisecond, Timeout: 200 * time.Millisecond, MaxInFlight: 5}
		recs := collect(&cfg)
		begin := time.Now()
		res, err := Run(t.Context(), cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		all := recs()
		check(t, res, all, begin, cfg)
		var zero, timedOut int64
		for _, r := range all {
			switch {
			case r.d == 0:
				zero++
			case r.d >= cfg.Timeout:
				timedOut++
			}
		}
		if zero != res.Dropped || zero+timedOut != res.Sent {
			t.Errorf("%d calls took 0 and %d the timeout; want the %d dropped and the rest of %d timed out", zero, timedOut, res.Dropped, res.Sent)
		}
	})
}
