package guard_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/spillway-dev/spillway/guard"
	"github.com/spillway-dev/spillway/health"
)

// fakeBackend is a dependency inside a synctest bubble: a RoundTripper
// (no socket) that answers probes, and a function that user calls run.
type fakeBackend struct {
	mode   atomic.Value // "up", "error" (503) or "hang"
	rtt    time.Duration
	probes atomic.Int64
}

func newFakeBackend(mode string, rtt time.Duration) *fakeBackend {
	b := &fakeBackend{rtt: rtt}
	b.mode.Store(mode)
	return b
}

func (b *fakeBackend) set(mode string) { b.mode.Store(mode) }

// wait sleeps for the round trip, or fails with the context.
func (b *fakeBackend) wait(ctx context.Context) error {
	timer := time.NewTimer(b.rtt)
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-ctx.Done():
		return ctx.Err()
	}
	if b.mode.Load() == "hang" {
		<-ctx.Done()
		return ctx.Err()
	}
	return nil
}

func (b *fakeBackend) RoundTrip(req *http.Request) (*http.Response, error) {
	b.probes.Add(1)
	if err := b.wait(req.Context()); err != nil {
		return nil, err
	}
	code := http.StatusOK
	if b.mode.Load() != "up" {
		code = http.StatusServiceUnavailable
	}
	return answer(req, code), nil
}

// call is a user call to the backend.
func (b *fakeBackend) call(ctx context.Context) error {
	if err := b.wait(ctx); err != nil {
		return err
	}
	if b.mode.Load() != "up" {
		return errors.New("503 Service Unavailable")
	}
	return nil
}

// runGuard starts g.Run and returns a function that stops it and checks
// that it returned nil.
func runGuard(t *testing.T, g *guard.Guard) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() { errc <- g.Run(ctx) }()
	return func() {
		t.Helper()
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("Run = %v, want nil", err)
		}
	}
}

// TestProbeRecovery proves the recovery requirement: after the dependency
// recovers, the breaker closes without any user call within OpenInterval
// (+1ms) plus a round trip per trial, plus the duration of a trial that
// was in flight at the recovery (a round trip, or ProbeTimeout when the
// dependency hangs), however the outage and the recovery's timing fall.
// That is within the OpenInterval + ProbeInterval + round trip required.
func TestProbeRecovery(t *testing.T) {
	const (
		openInterval  = 5 * time.Second
		probeInterval = time.Second
		rtt           = 30 * time.Millisecond
	)
	tests := []struct {
		outage       string // mode of the backend while down
		halfOpen     int
		recoverAfter time.Duration // after the breaker opened
	}{
		{"error", 1, 0},
		{"error", 1, 2500 * time.Millisecond},
		{"error", 1, 5 * time.Second},
		{"error", 1, 5032 * time.Millisecond}, // just after the first trial failed
		{"error", 1, 7300 * time.Millisecond},
		{"error", 1, 13 * time.Second},
		{"error", 3, 7300 * time.Millisecond},
		{"hang", 1, 7300 * time.Millisecond},
		{"hang", 2, 21 * time.Second},
	}
	for _, tt := range tests {
		name := fmt.Sprintf("%s/half_open_%d/after_%v", tt.outage, tt.halfOpen, tt.recoverAfter)
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				b := newFakeBackend("up", rtt)
				g := newTestGuard(t, guard.Config{
					Timeout:             time.Second,
					ConsecutiveFailures: 3,
					OpenInterval:        openInterval,
					HalfOpenRequests:    tt.halfOpen,
					ProbeURL:            "http://backend.test/healthz",
					ProbeInterval:       probeInterval,
				}, guard.Options{Client: &http.Client{Transport: b}})
				stop := runGuard(t, g.Guard)
				defer stop()

				time.Sleep(rtt) // fake time: the probe at start has answered
				synctest.Wait()
				if got := g.Status(); got.State != health.DepUp || b.probes.Load() != 1 {
					t.Fatalf("after the first probe: Status %+v, %d probes; want up, 1 probe", got, b.probes.Load())
				}
				time.Sleep(time.Minute) // fake time: a closed breaker is not probed
				if n := b.probes.Load(); n != 1 {
					t.Fatalf("%d probes while closed, want 1", n)
				}

				b.set(tt.outage)
				for range 3 {
					if err := g.Do(t.Context(), b.call); !errors.Is(err, guard.ErrUnavailable) {
						t.Fatalf("Do during the outage = %v", err)
					}
				}
				wantBreaker(t, g.Guard, "open")

				// From here on, no user call: the load balancer sheds.
				time.Sleep(tt.recoverAfter) // fake time
				b.set("up")
				recovered := time.Now()
				inFlight := rtt
				if tt.outage == "hang" {
					inFlight = time.Second // ProbeTimeout
				}
				bound := openInterval + time.Millisecond + inFlight + time.Duration(tt.halfOpen)*rtt
				time.Sleep(bound) // fake time
				synctest.Wait()

				st := g.Status()
				if st.Breaker != "closed" || st.State != health.DepUp {
					t.Fatalf("%v after recovery: Status %+v, want up and closed", bound, st)
				}
				took := st.Since.Sub(recovered)
				if took < 0 || took > bound {
					t.Errorf("closed %v after recovery, want within [0, %v]", took, bound)
				}
				t.Logf("closed %v after recovery (bound %v), %d probes", took, bound, b.probes.Load())
			})
		})
	}
}

// TestProbeSchedule checks when probes are sent: once at start, then
// every ProbeInterval while the breaker is open or half-open, whatever
// OpenInterval is, and none while it is closed.
func TestProbeSchedule(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const (
			openInterval  = 5 * time.Second
			probeInterval = time.Second
		)
		b := newFakeBackend("error", 0)
		g := newTestGuard(t, guard.Config{
			ConsecutiveFailures: 1,
			OpenInterval:        openInterval,
			ProbeURL:            "http://backend.test/healthz",
			ProbeInterval:       probeInterval,
		}, guard.Options{Client: &http.Client{Transport: b}})
		stop := runGuard(t, g.Guard)
		defer stop()

		wantProbes := func(want int64) {
			t.Helper()
			synctest.Wait()
			if n := b.probes.Load(); n != want {
				t.Fatalf("%d probes, want %d", n, want)
			}
		}
		wantProbes(1) // the failed probe at start tripped the breaker
		wantBreaker(t, g.Guard, "open")
		if got := g.Status().LastError; got != "probe: GET http://backend.test/healthz: status 503 Service Unavailable" {
			t.Errorf("LastError = %q", got)
		}
		// Through the open interval and beyond: one probe per interval.
		// The breaker turns half-open and stays so: probes are not its
		// trial calls.
		for i := range int64(8) {
			time.Sleep(probeInterval - time.Millisecond) // fake time, here and below
			wantProbes(1 + i)
			time.Sleep(time.Millisecond)
			wantProbes(2 + i)
			want := "open"
			if time.Duration(i+1)*probeInterval > openInterval {
				want = "half-open"
			}
			wantBreaker(t, g.Guard, want)
		}
		b.set("up")
		time.Sleep(2 * probeInterval) // ProbeSuccesses (2) probes succeed
		wantProbes(11)
		wantBreaker(t, g.Guard, "closed")
		time.Sleep(time.Minute)
		wantProbes(11) // none while closed
	})
}

// TestProbeNeedsNoTrialSlot: when a user call holds the half-open
// breaker's only trial slot, the probes are not held back (they are not
// trial calls) and close the breaker; the trial's late outcome goes to
// the replaced breaker and changes nothing.
func TestProbeNeedsNoTrialSlot(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const openInterval = 5 * time.Second
		b := newFakeBackend("up", 0)
		g := newTestGuard(t, guard.Config{
			ConsecutiveFailures: 1,
			OpenInterval:        openInterval,
			ProbeURL:            "http://backend.test/healthz",
			ProbeInterval:       time.Second,
		}, guard.Options{Client: &http.Client{Transport: b}})
		stop := runGuard(t, g.Guard)
		defer stop()
		synctest.Wait() // the probe at start succeeded

		b.set("error")
		runStep(t, g.Guard, 'f') // trips
		time.Sleep(openInterval + 500*time.Microsecond)
		release := holdCall(t, g.Guard, nil) // the half-open breaker's trial
		wantBreaker(t, g.Guard, "half-open")
		n := b.probes.Load()

		b.set("up")
		time.Sleep(2 * time.Second) // fake time: two probe intervals
		synctest.Wait()
		if got := b.probes.Load() - n; got != 2 {
			t.Errorf("%d probe requests while the trial was in flight, want 2", got)
		}
		if got := counterValue(t, g, "spillway_guard_probes_total", "result", "rejected_open"); got != 0 {
			t.Errorf("rejected probes = %v, want 0", got)
		}
		wantBreaker(t, g.Guard, "closed")
		if err := release(); err != nil {
			t.Errorf("trial call: %v", err)
		}
		wantBreaker(t, g.Guard, "closed")
		n = b.probes.Load()
		time.Sleep(time.Minute)
		synctest.Wait()
		if got := b.probes.Load(); got != n {
			t.Errorf("%d probes once closed, want none", got-n)
		}
	})
}

// TestNoProbeURL shows recovery without a probe: the breaker waits
// half-open for a user call to be its trial.
func TestNoProbeURL(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newTestGuard(t, guard.Config{ConsecutiveFailures: 1}, guard.Options{})
		stop := runGuard(t, g.Guard)
		defer stop()

		runStep(t, g.Guard, 'f')
		time.Sleep(time.Hour) // fake time
		wantBreaker(t, g.Guard, "half-open")
		runStep(t, g.Guard, 's')
		wantBreaker(t, g.Guard, "closed")
	})
}

func TestRunTwice(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newTestGuard(t, guard.Config{}, guard.Options{})
		stop := runGuard(t, g.Guard)
		defer stop()
		synctest.Wait()
		if err := g.Run(t.Context()); err == nil {
			t.Error("second Run = nil, want an error")
		}
	})
}

// TestProbeRecoveryRealServer runs the recovery on loopback in real time:
// a real HTTP backend goes down, user calls trip the breaker, the backend
// comes back and the probe alone closes the breaker.
func TestProbeRecoveryRealServer(t *testing.T) {
	var up atomic.Bool
	var userCalls atomic.Int64
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			userCalls.Add(1)
		}
		if !up.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	}))
	defer backend.Close()

	const (
		openInterval  = 50 * time.Millisecond
		probeInterval = 20 * time.Millisecond
	)
	logs := &logRecorder{ch: make(chan map[string]string, 1024)}
	g, err := guard.New(guard.Config{
		Timeout:             time.Second,
		ConsecutiveFailures: 2,
		OpenInterval:        openInterval,
		ProbeURL:            backend.URL + "/healthz",
		ProbeInterval:       probeInterval,
	}, guard.Options{Name: "backend", Logger: slog.New(logs)})
	if err != nil {
		t.Fatal(err)
	}
	stop := runGuard(t, g)
	defer stop()

	client := backend.Client()
	login := func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, backend.URL+"/validate", nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("validate: %s", resp.Status)
		}
		return nil
	}
	// The backend is down: user calls (and the probe at start) fail until
	// the breaker opens and rejects them.
	for range 10 {
		if err := g.Do(t.Context(), login); errors.Is(err, guard.ErrOpen) {
			break
		}
	}
	waitLog(t, logs, "open")

	up.Store(true)
	recovered := time.Now()
	calls := userCalls.Load()
	waitLog(t, logs, "closed")
	took := time.Since(recovered)
	// The bound is OpenInterval + ProbeInterval plus a round trip; the
	// assertion is generous so that a loaded machine does not flake it.
	if took > 2*time.Second {
		t.Errorf("breaker closed %v after recovery, want about %v", took, openInterval+probeInterval)
	}
	if n := userCalls.Load(); n != calls {
		t.Errorf("%d user calls after recovery, want none", n-calls)
	}
	if st := g.Status(); st.State != health.DepUp {
		t.Errorf("Status = %+v, want up", st)
	}
	if err := g.Do(t.Context(), login); err != nil {
		t.Errorf("Do after recovery: %v", err)
	}
}

// waitLog waits for the state change log record that enters state to.
func waitLog(t *testing.T, logs *logRecorder, to string) {
	t.Helper()
	timeout := time.NewTimer(10 * time.Second)
	defer timeout.Stop()
	for {
		select {
		case rec := <-logs.ch:
			if rec["to"] == to {
				return
			}
		case <-timeout.C:
			t.Fatalf("no state change to %s within 10s", to)
		}
	}
}
