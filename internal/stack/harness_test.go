package stack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/health"
	"github.com/spillway-dev/spillway/internal/config"
	"github.com/spillway-dev/spillway/internal/fleet"
	"github.com/spillway-dev/spillway/internal/lb"
	"github.com/spillway-dev/spillway/internal/loadgen"
	"github.com/spillway-dev/spillway/internal/testkit"
)

// The tests in this package run the whole system: an in-process
// backend-sim and load balancer, and a fleet of real `spillway login`
// processes, on loopback ports chosen by the kernel.

// testToken is the admin token of every test stack.
const testToken = "test-admin-token-0123456789"

// upConfig is what `spillway up` runs with no file and no flags (see
// upLoginDefaults in cmd/spillway), except that every listener is on a
// free loopback port and the fleet runs the built spillway binary (the
// test binary is not spillway). mutate, when set, changes the sections
// before defaults and validation, as a configuration file would.
func upConfig(t *testing.T, mutate func(*config.File)) config.File {
	t.Helper()
	c := config.ForUp()
	c.LB.Listen, c.LB.AdminListen, c.Up.BackendListen = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	c.Fleet.Command = []string{spillwayBinary(t), "login"}
	if mutate != nil {
		mutate(&c)
	}
	c.Resolve()
	if err := c.Validate(); err != nil {
		t.Fatalf("configuration: %v", err)
	}
	return c
}

// incident2018 is the 2018 incident's configuration, as the drill runs
// it (config.File.Apply2018).
func incident2018(c *config.File) { c.Apply2018() }

// harness is a running Stack, stopped when the test ends.
type harness struct {
	t    *testing.T
	s    *Stack
	logs *testkit.SyncBuffer

	stopRun  func() error // stops Run, returns its error
	stopOnce sync.Once
}

// startStack builds and runs a Stack from cfg. When the test ends it is
// stopped, and every process its fleet started is checked to be gone; on
// failure its logs and the fleet's events are printed.
func startStack(t *testing.T, cfg config.File) *harness {
	t.Helper()
	h := &harness{t: t, logs: &testkit.SyncBuffer{}}
	// Debug: the balancer's proxy errors and its server's own lines (a
	// handler's panic, an aborted answer) are at debug.
	logger := slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s, err := New(cfg, Options{Logger: logger, InstanceOutput: h.logs, AdminToken: testToken})
	if err != nil {
		t.Fatal(err)
	}
	h.s = s
	h.stopRun = testkit.Go(t, "Run", 30*time.Second, s.Run)
	t.Cleanup(func() {
		h.stop()
		if t.Failed() {
			t.Logf("logs:\n%s", h.logs.String())
			for _, e := range s.Fleet().Events(0) {
				t.Logf("fleet event %s %s %s pid %d %s %s", e.Time.Format("15:04:05.000"), e.Kind, e.Instance, e.PID, e.Reason, e.Detail)
			}
		}
	})
	return h
}

// stop stops the stack and checks that every process the fleet started is
// gone.
func (h *harness) stop() {
	h.t.Helper()
	h.stopOnce.Do(func() {
		if err := h.stopRun(); err != nil {
			h.t.Errorf("Run: %v", err)
		}
		if got := h.s.Fleet().Instances(); len(got) != 0 {
			h.t.Errorf("after Run: fleet instances %v", got)
		}
		var pids []int
		for _, e := range h.s.Fleet().Events(0) {
			if e.Kind == fleet.EventStarted {
				pids = append(pids, e.PID)
			}
		}
		if len(pids) == 0 {
			h.t.Error("the fleet reports no started instance")
		}
		for _, pid := range testkit.StillRunning(2*time.Second, pids...) {
			h.t.Errorf("process %d or its process group still runs after the stack stopped", pid)
		}
	})
}

// running returns the fleet's running instances, by slot.
func (h *harness) running() []fleet.ProcessStatus {
	var out []fleet.ProcessStatus
	for _, s := range h.s.Fleet().Status() {
		if s.State == fleet.StateRunning {
			out = append(out, s)
		}
	}
	return out
}

// routable returns the ids (service addresses) of the instances the load
// balancer routes to.
func (h *harness) routable() []string {
	var out []string
	for _, in := range h.s.Balancer().Status().Instances {
		if in.Routable {
			out = append(out, in.ID)
		}
	}
	sort.Strings(out)
	return out
}

// waitReady waits until the fleet runs exactly n instances and the load
// balancer routes to exactly those, and returns them.
func (h *harness) waitReady(n int, timeout time.Duration) []fleet.ProcessStatus {
	h.t.Helper()
	testkit.WaitFor(h.t, timeout, fmt.Sprintf("%d running instances, all routable", n), func() bool {
		run := h.running()
		if len(run) != n {
			return false
		}
		var ids []string
		for _, r := range run {
			ids = append(ids, r.Service)
		}
		sort.Strings(ids)
		return slices.Equal(ids, h.routable())
	})
	return h.running()
}

// dependency returns the load balancer's shedding state of dep.
func (h *harness) dependency(dep string) (lb.DependencyStatus, bool) {
	for _, d := range h.s.Balancer().Status().Dependencies {
		if d.Name == dep {
			return d, true
		}
	}
	return lb.DependencyStatus{}, false
}

// replacements returns the fleet's replaced events.
func (h *harness) replacements() []fleet.Event {
	var out []fleet.Event
	for _, e := range h.s.Fleet().Events(0) {
		if e.Kind == fleet.EventReplaced {
			out = append(out, e)
		}
	}
	return out
}

// attempt is one login the load sent, as the client saw it.
type attempt struct {
	start, end time.Time
	status     int
	reason     string // X-Spillway-Reason
	err        error
	conn       string // the client's connection: new, or reused after how long idle
}

func (a attempt) ok() bool { return a.err == nil && a.status == http.StatusOK }

func (a attempt) String() string {
	if a.err != nil {
		return fmt.Sprintf("%s +%s: %v (%s)", a.start.Format("15:04:05.000"), a.end.Sub(a.start).Round(time.Millisecond), a.err, a.conn)
	}
	return fmt.Sprintf("%s +%s: %d %s", a.start.Format("15:04:05.000"), a.end.Sub(a.start).Round(time.Millisecond), a.status, a.reason)
}

// attemptLog is a RoundTripper that records every attempt.
type attemptLog struct {
	next http.RoundTripper

	mu       sync.Mutex
	attempts []attempt
}

func (l *attemptLog) RoundTrip(req *http.Request) (*http.Response, error) {
	a := attempt{start: time.Now()}
	// Which connection to the load balancer the attempt went on tells a
	// transport error's cause apart: a reused one the balancer had closed,
	// or a new one.
	var conn atomic.Pointer[string]
	trace := &httptrace.ClientTrace{GotConn: func(ci httptrace.GotConnInfo) {
		c := fmt.Sprintf("new connection from %s", ci.Conn.LocalAddr())
		if ci.Reused {
			c = fmt.Sprintf("connection from %s reused, idle %s", ci.Conn.LocalAddr(), ci.IdleTime.Round(time.Millisecond))
		}
		conn.Store(&c)
	}}
	res, err := l.next.RoundTrip(req.WithContext(httptrace.WithClientTrace(req.Context(), trace)))
	a.end, a.err = time.Now(), err
	if c := conn.Load(); c != nil {
		a.conn = *c
	} else {
		a.conn = "no connection"
	}
	if err == nil {
		a.status, a.reason = res.StatusCode, res.Header.Get(health.ReasonHeader)
	}
	l.mu.Lock()
	l.attempts = append(l.attempts, a)
	l.mu.Unlock()
	return res, err
}

// between returns the attempts that started in [from, to).
func (l *attemptLog) between(from, to time.Time) []attempt {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []attempt
	for _, a := range l.attempts {
		if !a.start.Before(from) && a.start.Before(to) {
			out = append(out, a)
		}
	}
	return out
}

// load is a steady open-loop stream of valid logins through the load
// balancer.
type load struct {
	t      *testing.T
	log    *attemptLog
	cancel context.CancelFunc
	done   chan struct{}
	res    loadgen.Result
	err    error
	bound  time.Duration
}

// startLoad sends rate logins per second, each with a valid ticket, to the
// stack's load balancer for d (or until stop). The test waits for it to
// end before the stack stops.
func (h *harness) startLoad(rate float64, d time.Duration) *load {
	h.t.Helper()
	tr := &http.Transport{
		Proxy:                 nil,
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConns:          64,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       30 * time.Second,
		ResponseHeaderTimeout: 5 * time.Second,
	}
	l := &load{t: h.t, log: &attemptLog{next: tr}, done: make(chan struct{}), bound: d + 15*time.Second}
	ctx, cancel := context.WithCancel(context.Background())
	l.cancel = cancel
	cfg := loadgen.Config{
		URL:     "http://" + h.s.LBAddr() + "/v1/login",
		Method:  http.MethodPost,
		Header:  http.Header{"Content-Type": {"application/json"}},
		Body:    func(i int) []byte { return fmt.Appendf(nil, `{"ticket":"valid-user-%d"}`, i%1000) },
		Rate:    rate,
		Client:  &http.Client{Transport: l.log},
		Timeout: 5 * time.Second,
	}
	cfg.Duration = d
	go func() {
		defer close(l.done)
		defer tr.CloseIdleConnections()
		l.res, l.err = loadgen.Run(ctx, cfg, nil)
	}()
	h.t.Cleanup(func() {
		cancel()
		<-l.done
	})
	return l
}

// wait waits for the load to end and returns its result.
func (l *load) wait() loadgen.Result {
	l.t.Helper()
	select {
	case <-l.done:
	case <-time.After(l.bound):
		l.cancel()
		<-l.done
		l.t.Fatalf("the load did not end within %s", l.bound)
	}
	l.check()
	return l.res
}

// stop cuts the load short (requests in flight count as Canceled) and
// returns its result.
func (l *load) stop() loadgen.Result {
	l.t.Helper()
	l.cancel()
	<-l.done
	if l.err != nil && !errors.Is(l.err, context.Canceled) {
		l.t.Fatalf("load: %v", l.err)
	}
	l.err = nil
	l.check()
	return l.res
}

func (l *load) check() {
	l.t.Helper()
	if l.err != nil {
		l.t.Fatalf("load: %v", l.err)
	}
	if n := l.res.Lost(); n != 0 {
		l.t.Errorf("load: %d attempts without an outcome", n)
	}
}

// failures returns the attempts that did not get a 200.
func (l *load) failures() []attempt {
	var out []attempt
	for _, a := range l.log.between(time.Time{}, time.Now().Add(time.Hour)) {
		if !a.ok() {
			out = append(out, a)
		}
	}
	return out
}
