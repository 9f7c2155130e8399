package health

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/internal/testkit"
)

func TestReportVersion(t *testing.T) {
	clk := testkit.NewClock(time.Date(2018, 3, 1, 12, 0, 0, 0, time.UTC))
	s := New(Options{Warmup: time.Second, Now: clk.Now})
	var state, breaker atomic.Value
	state.Store(DepUp)
	breaker.Store("closed")
	s.AddDependency("backend", func() Dependency {
		return Dependency{State: state.Load().(string), Breaker: breaker.Load().(string), Since: clk.Now()}
	})
	var inFlight atomic.Int64
	s.SetLoad(func() (int, int, int) { return int(inFlight.Load()), 10, 0 })

	seen := map[string]string{}
	step := func(name string, change bool) {
		t.Helper()
		v := s.Report().Version
		if v == "" {
			t.Fatalf("%s: empty version", name)
		}
		if prev := seen["last"]; change == (v == prev) {
			t.Errorf("%s: version %q, before %q: want changed=%v", name, v, prev, change)
		}
		seen["last"] = v
	}
	step("starting", true)
	inFlight.Store(7)
	clk.Advance(100 * time.Millisecond)
	step("load and time only", false)
	s.Start()
	step("warming", true)
	clk.Advance(time.Second)
	step("ready", true)
	state.Store(DepDown)
	step("dependency down", true)
	breaker.Store("half-open")
	step("breaker half-open", true)
	state.Store(DepUp)
	breaker.Store("closed")
	step("back up", true)
	s.Drain()
	step("draining", true)
}

func TestPollParams(t *testing.T) {
	for _, tc := range []struct {
		query   string
		wait    time.Duration
		version string
		bad     bool
	}{
		{query: ""},
		{query: "version=abc", version: "abc"},
		{query: "wait=2s"}, // no version: a plain poll
		{query: "wait=2s&version=abc", wait: 2 * time.Second, version: "abc"},
		{query: "wait=1h&version=abc", wait: MaxWait, version: "abc"},
		{query: "wait=0s&version=abc", version: "abc"},
		{query: "wait=2&version=abc", bad: true},
		{query: "wait=-1s&version=abc", bad: true},
		{query: "wait=%zz", bad: true},
	} {
		wait, version, err := pollParams(tc.query)
		if (err != nil) != tc.bad || wait != tc.wait || version != tc.version {
			t.Errorf("pollParams(%q) = %v, %q, %v; want %v, %q, bad %v", tc.query, wait, version, err, tc.wait, tc.version, tc.bad)
		}
	}
}

// poll GETs /health?version=&wait= on base and returns the report and how
// long the answer took.
func poll(t *testing.T, cl *http.Client, base, version string, wait time.Duration) (Report, time.Duration) {
	t.Helper()
	start := time.Now()
	resp, err := cl.Get(base + "/health?" + url.Values{"version": {version}, "wait": {wait.String()}}.Encode())
	if err != nil {
		t.Errorf("long poll: %v", err)
		return Report{}, time.Since(start)
	}
	defer resp.Body.Close()
	var rep Report
	if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil {
		t.Errorf("long poll: status %d: decode: %v", resp.StatusCode, err)
	}
	return rep, time.Since(start)
}

// waitForWaiters waits until n /health requests are waiting.
func waitForWaiters(t *testing.T, s *Server, n int) {
	t.Helper()
	testkit.WaitFor(t, 10*time.Second, fmt.Sprintf("%d long polls waiting", n), func() bool {
		s.changes.mu.Lock()
		defer s.changes.mu.Unlock()
		return s.changes.waiting >= n
	})
}

// The long poll answers at once when the reader's version is stale, waits
// while it is current, and answers within a round trip of Notify.
func TestLongPoll(t *testing.T) {
	s := New(Options{})
	var down atomic.Bool
	s.AddDependency("backend", func() Dependency {
		if down.Load() {
			return Dependency{State: DepDown, Breaker: "open"}
		}
		return Dependency{State: DepUp, Breaker: "closed"}
	})
	s.Start()
	ts := serve(t, s)
	cl := client(t)
	v0 := s.Report().Version

	// A stale version: at once.
	if rep, took := poll(t, cl, ts.URL, "stale", 20*time.Second); rep.Version != v0 || took > 5*time.Second {
		t.Errorf("stale version: got %q after %v, want %q at once", rep.Version, took, v0)
	}

	// A current version: waits for the change, answered on Notify.
	type result struct {
		rep  Report
		took time.Duration
	}
	done := make(chan result, 1)
	go func() {
		rep, took := poll(t, cl, ts.URL, v0, 20*time.Second)
		done <- result{rep, took}
	}()
	waitForWaiters(t, s, 1)
	down.Store(true)
	s.Notify()
	r := <-done
	if r.rep.Version == v0 || r.rep.Dependencies["backend"].State != DepDown {
		t.Errorf("after the change: version %q (before %q), backend %+v", r.rep.Version, v0, r.rep.Dependencies["backend"])
	}
	if r.took > 10*time.Second {
		t.Errorf("change answered after %v, want well within the 20s wait", r.took)
	}

	// A change nobody announces is seen at the next re-read.
	v1 := r.rep.Version
	go func() {
		rep, took := poll(t, cl, ts.URL, v1, 20*time.Second)
		done <- result{rep, took}
	}()
	waitForWaiters(t, s, 1)
	down.Store(false)
	r = <-done
	if r.rep.Version != v0 || r.took > 10*time.Second {
		t.Errorf("unannounced change: version %q after %v, want %q well within the 20s wait", r.rep.Version, r.took, v0)
	}

	// Nothing changes: the current report when the wait ends.
	rep, took := poll(t, cl, ts.URL, v0, 50*time.Millisecond)
	if rep.Version != v0 || took < 50*time.Millisecond {
		t.Errorf("no change: version %q after %v, want %q after the 50ms wait", rep.Version, took, v0)
	}

	// Drain is announced.
	go func() {
		rep, took := poll(t, cl, ts.URL, v0, 20*time.Second)
		done <- result{rep, took}
	}()
	waitForWaiters(t, s, 1)
	s.Drain()
	if r = <-done; !r.rep.Draining || r.took > 10*time.Second {
		t.Errorf("drain: draining=%v after %v", r.rep.Draining, r.took)
	}
}

func TestLongPollBadWait(t *testing.T) {
	s := New(Options{})
	got := get(t, serve(t, s), "/health?version=x&wait=forever")
	if got.code != http.StatusBadRequest {
		t.Errorf("bad wait: status %d, want 400", got.code)
	}
}

// Past maxWaiters a long poll is a plain poll.
func TestLongPollWaitersBounded(t *testing.T) {
	s := New(Options{})
	s.changes.waiting = maxWaiters
	ts := serve(t, s)
	rep, took := poll(t, client(t), ts.URL, s.Report().Version, 20*time.Second)
	if rep.Phase != "starting" || took > 5*time.Second {
		t.Errorf("with %d waiting: %+v after %v, want an answer at once", maxWaiters, rep, took)
	}
}

// A long poll outlives the health server's probe timeouts (5 s to read a
// request, 5 s + check budget to write it): it is neither cut nor ended
// early by them.
func TestLongPollOutlivesServerTimeouts(t *testing.T) {
	if testing.Short() {
		t.Skip("waits 7s")
	}
	t.Parallel()
	s := New(Options{})
	ln := testkit.Listen(t)
	testkit.Go(t, "Serve", 10*time.Second, func(ctx context.Context) error { return s.Serve(ctx, ln) })
	cl := client(t)
	cl.Timeout = 20 * time.Second
	const wait = 7 * time.Second
	rep, took := poll(t, cl, "http://"+ln.Addr().String(), s.Report().Version, wait)
	if rep.Version != s.Report().Version || took < wait {
		t.Errorf("answered after %v with version %q, want the current version after %v", took, rep.Version, wait)
	}
	// The connection is still usable.
	resp, err := cl.Get("http://" + ln.Addr().String() + "/livez")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("/livez after the long poll: %d", resp.StatusCode)
	}
}
