package guard_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/spillway-dev/spillway/guard"
	"github.com/spillway-dev/spillway/health"
)

// TestTrip drives the closed breaker with sequences of outcomes:
// s success, f failure, t own timeout, c caller cancellation, and
// . one second of (fake) time.
func TestTrip(t *testing.T) {
	consecutive := guard.Config{ConsecutiveFailures: 3, MinRequests: 1000}
	rate := guard.Config{ConsecutiveFailures: 1000, FailureRate: 0.5, MinRequests: 10, Window: 10 * time.Second}
	tests := []struct {
		name  string
		cfg   guard.Config
		steps string
		want  string
	}{
		{"consecutive below threshold", consecutive, "ff", "closed"},
		{"consecutive at threshold", consecutive, "fff", "open"},
		{"success resets the run", consecutive, "ffsff", "closed"},
		{"timeouts are failures", consecutive, "ftt", "open"},
		{"caller cancellations are not counted", consecutive, "cccccc", "closed"},
		{"caller cancellations do not break the run", consecutive, "ffcf", "open"},
		{"rate below min requests", rate, "sfsfsfsf", "closed"},
		{"rate reached at min requests", rate, "sfsfsfsfsf", "open"},
		{"rate below threshold", rate, "ssfsfsfsfsf", "closed"},
		{"rate counts within the window", rate, "fffff.fffff", "open"},
		{"outcomes age out of the window", rate, "fffff...........fffff", "closed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				g := newTestGuard(t, tt.cfg, guardOptions())
				for i, step := range tt.steps {
					if i > 0 && g.Status().Breaker == "open" {
						t.Fatalf("breaker open after %q", tt.steps[:i])
					}
					runStep(t, g.Guard, step)
				}
				wantBreaker(t, g.Guard, tt.want)
			})
		})
	}
}

func guardOptions() guard.Options { return guard.Options{} }

// runStep makes one call of the kind named by step and checks its error.
func runStep(t *testing.T, g *guard.Guard, step rune) {
	t.Helper()
	switch step {
	case 's':
		if err := g.Do(t.Context(), succeed); err != nil {
			t.Fatalf("Do(succeed) = %v", err)
		}
	case 'f':
		if err := g.Do(t.Context(), fail); !errors.Is(err, guard.ErrUnavailable) {
			t.Fatalf("Do(fail) = %v, want boom matching ErrUnavailable", err)
		}
	case 't':
		if err := g.Do(t.Context(), hang); !errors.Is(err, guard.ErrTimeout) {
			t.Fatalf("Do(hang) = %v, want ErrTimeout", err)
		}
	case 'c':
		ctx, cancel := context.WithCancel(t.Context())
		err := g.Do(ctx, func(ctx context.Context) error {
			cancel()
			return ctx.Err()
		})
		if err != context.Canceled {
			t.Fatalf("Do(canceled) = %v, want context.Canceled", err)
		}
	case '.':
		time.Sleep(time.Second) // fake time: lets outcomes age out
	default:
		t.Fatalf("unknown step %q", step)
	}
}

func TestOpenFailsFast(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newTestGuard(t, guard.Config{ConsecutiveFailures: 1}, guard.Options{})
		runStep(t, g.Guard, 'f')
		wantBreaker(t, g.Guard, "open")

		took, err := refused(t, t.Context(), g.Guard)
		if !errors.Is(err, guard.ErrOpen) || !errors.Is(err, guard.ErrUnavailable) {
			t.Errorf("Do = %v, want ErrOpen matching ErrUnavailable", err)
		}
		if took != 0 {
			t.Errorf("rejection took %v", took)
		}
	})
}

func TestHalfOpen(t *testing.T) {
	const openInterval = 5 * time.Second
	tests := []struct {
		name     string
		halfOpen int
		steps    string
		want     string
	}{
		{"one trial success closes", 1, "s", "closed"},
		{"trial failure reopens", 1, "f", "open"},
		{"trial timeout reopens", 1, "t", "open"},
		{"all trials must succeed", 3, "ss", "half-open"},
		{"all trials succeeded", 3, "sss", "closed"},
		{"a failure after successes reopens", 3, "ssf", "open"},
		{"a canceled trial is not counted", 1, "c", "half-open"},
		{"a canceled trial frees its slot", 1, "cs", "closed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				g := newTestGuard(t, guard.Config{
					ConsecutiveFailures: 1,
					OpenInterval:        openInterval,
					HalfOpenRequests:    tt.halfOpen,
				}, guard.Options{})
				runStep(t, g.Guard, 'f')
				time.Sleep(openInterval) // fake time: the open interval has not passed yet
				wantBreaker(t, g.Guard, "open")
				time.Sleep(time.Millisecond) // fake time: now it has
				wantBreaker(t, g.Guard, "half-open")
				for _, step := range tt.steps {
					runStep(t, g.Guard, step)
				}
				wantBreaker(t, g.Guard, tt.want)
			})
		})
	}
}

func TestHalfOpenLimitsTrials(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newTestGuard(t, guard.Config{ConsecutiveFailures: 1, HalfOpenRequests: 1}, guard.Options{})
		runStep(t, g.Guard, 'f')
		time.Sleep(guard.DefaultOpenInterval + time.Millisecond) // fake time
		wantBreaker(t, g.Guard, "half-open")

		release := holdCalls(t, g.Guard, 1) // the trial

		if _, err := refused(t, t.Context(), g.Guard); !errors.Is(err, guard.ErrOpen) {
			t.Errorf("second call while the trial is in flight: err %v, want ErrOpen", err)
		}
		release()
		wantBreaker(t, g.Guard, "closed")
	})
}

func TestBulkhead(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newTestGuard(t, guard.Config{MaxConcurrent: 2, ConsecutiveFailures: 1}, guard.Options{})
		release := holdCalls(t, g.Guard, 2)
		if got := gaugeValue(t, g, "spillway_guard_in_flight"); got != 2 {
			t.Errorf("in_flight = %v, want 2", got)
		}

		took, err := refused(t, t.Context(), g.Guard)
		if !errors.Is(err, guard.ErrBulkheadFull) || !errors.Is(err, guard.ErrUnavailable) {
			t.Errorf("Do = %v, want ErrBulkheadFull matching ErrUnavailable", err)
		}
		if took != 0 {
			t.Errorf("rejected call after %v, want at once", took)
		}
		wantBreaker(t, g.Guard, "closed") // a full bulkhead is not a dependency failure

		release()
		if got := gaugeValue(t, g, "spillway_guard_in_flight"); got != 0 {
			t.Errorf("in_flight after release = %v, want 0", got)
		}
		runStep(t, g.Guard, 's')
	})
}

func TestPanicReleasesSlot(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newTestGuard(t, guard.Config{MaxConcurrent: 1, ConsecutiveFailures: 2}, guard.Options{})
		func() {
			defer func() {
				if recover() == nil {
					t.Error("Do swallowed the panic")
				}
			}()
			_ = g.Do(t.Context(), func(context.Context) error { panic("bug") })
		}()
		if got := g.Status().LastError; got != "panic in call" {
			t.Errorf("LastError = %q, want %q", got, "panic in call")
		}
		runStep(t, g.Guard, 'f') // second failure in a row: the panic counted
		wantBreaker(t, g.Guard, "open")
		if got := gaugeValue(t, g, "spillway_guard_in_flight"); got != 0 {
			t.Errorf("in_flight = %v, want 0", got)
		}
	})
}

// TestDeadline checks that fn's deadline is the smaller of Timeout and the
// caller's, and that only the Guard's own timeout counts as a failure.
func TestDeadline(t *testing.T) {
	const timeout = time.Second
	tests := []struct {
		name           string
		callerDeadline time.Duration // 0: none
		wantDeadline   time.Duration
		wantTimeout    bool // ErrTimeout, counted; else the caller's context.DeadlineExceeded, not counted
	}{
		{"no caller deadline", 0, timeout, true},
		{"caller deadline later", 5 * time.Second, timeout, true},
		{"caller deadline sooner", 200 * time.Millisecond, 200 * time.Millisecond, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				g := newTestGuard(t, guard.Config{Timeout: timeout, ConsecutiveFailures: 1}, guard.Options{})
				ctx := t.Context()
				if tt.callerDeadline > 0 {
					var cancel context.CancelFunc
					ctx, cancel = context.WithTimeout(ctx, tt.callerDeadline)
					defer cancel()
				}
				start := time.Now()
				var deadline time.Time
				err := g.Do(ctx, func(ctx context.Context) error {
					deadline, _ = ctx.Deadline()
					return hang(ctx)
				})
				if got := deadline.Sub(start); got != tt.wantDeadline {
					t.Errorf("fn's deadline in %v, want %v", got, tt.wantDeadline)
				}
				if got := time.Since(start); got != tt.wantDeadline {
					t.Errorf("Do returned after %v, want %v", got, tt.wantDeadline)
				}
				if tt.wantTimeout {
					if !errors.Is(err, guard.ErrTimeout) || !errors.Is(err, guard.ErrUnavailable) {
						t.Errorf("Do = %v, want ErrTimeout matching ErrUnavailable", err)
					}
					if want := "guard backend: timed out after 1s: context deadline exceeded"; err.Error() != want {
						t.Errorf("Do = %q, want %q", err, want)
					}
					wantBreaker(t, g.Guard, "open")
				} else {
					if err != context.DeadlineExceeded {
						t.Errorf("Do = %v, want the caller's context.DeadlineExceeded", err)
					}
					wantBreaker(t, g.Guard, "closed")
					if got := g.Status().State; got != health.DepUnknown {
						t.Errorf("State = %q, want %q: the call had no outcome", got, health.DepUnknown)
					}
				}
			})
		})
	}
}

func TestCanceledBeforeCall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newTestGuard(t, guard.Config{}, guard.Options{})
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		_, err := refused(t, ctx, g.Guard)
		if err != context.Canceled {
			t.Errorf("Do = %v, want context.Canceled", err)
		}
		if errors.Is(err, guard.ErrUnavailable) {
			t.Error("a caller cancellation matches ErrUnavailable")
		}
		if got := counterValue(t, g, "spillway_guard_calls_total", "result", "canceled"); got != 1 {
			t.Errorf("canceled calls = %v, want 1", got)
		}
	})
}

func TestFailureKeepsFnError(t *testing.T) {
	type codeErr struct{ error }
	synctest.Test(t, func(t *testing.T) {
		g := newTestGuard(t, guard.Config{}, guard.Options{})
		err := g.Do(t.Context(), func(context.Context) error { return fmt.Errorf("validate: %w", codeErr{errBoom}) })
		var ce codeErr
		if !errors.As(err, &ce) || !errors.Is(err, guard.ErrUnavailable) {
			t.Errorf("Do = %v: fn's error is not reachable or does not match ErrUnavailable", err)
		}
		if want := "guard backend: validate: boom"; err.Error() != want {
			t.Errorf("Do = %q, want %q", err, want)
		}
	})
}

func TestStatus(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const openInterval = 5 * time.Second
		t0 := time.Now()
		g := newTestGuard(t, guard.Config{ConsecutiveFailures: 2, OpenInterval: openInterval}, guard.Options{})
		want := func(step string, wantDep health.Dependency) {
			t.Helper()
			if got := g.Status(); got != wantDep {
				t.Errorf("%s: Status = %+v, want %+v", step, got, wantDep)
			}
		}
		want("new", health.Dependency{State: health.DepUnknown, Breaker: "closed", Since: t0})

		time.Sleep(time.Second) // fake time, here and below: moves Since
		runStep(t, g.Guard, 's')
		t1 := time.Now()
		want("first success", health.Dependency{State: health.DepUp, Breaker: "closed", Since: t1})

		time.Sleep(time.Second)
		runStep(t, g.Guard, 'f')
		want("one failure", health.Dependency{State: health.DepUp, Breaker: "closed", Since: t1, LastError: "boom"})

		time.Sleep(time.Second)
		runStep(t, g.Guard, 't')
		t2 := time.Now()
		want("tripped", health.Dependency{State: health.DepDown, Breaker: "open", Since: t2,
			LastError: "timed out after 1s: context deadline exceeded"})

		time.Sleep(openInterval + time.Millisecond)
		want("half-open", health.Dependency{State: health.DepDown, Breaker: "half-open", Since: t2,
			LastError: "timed out after 1s: context deadline exceeded"})

		runStep(t, g.Guard, 's')
		t3 := time.Now()
		want("closed again", health.Dependency{State: health.DepUp, Breaker: "closed", Since: t3})
	})
}

func TestStateChangeLogs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newTestGuard(t, guard.Config{ConsecutiveFailures: 1}, guard.Options{Name: "validator"})
		runStep(t, g.Guard, 'f')
		time.Sleep(guard.DefaultOpenInterval + time.Millisecond) // fake time
		runStep(t, g.Guard, 's')

		want := []map[string]string{
			{"level": "WARN", "msg": "circuit breaker state changed", "dependency": "validator", "from": "closed", "to": "open", "last_error": "boom"},
			{"level": "INFO", "msg": "circuit breaker state changed", "dependency": "validator", "from": "open", "to": "half-open", "last_error": "boom"},
			{"level": "INFO", "msg": "circuit breaker state changed", "dependency": "validator", "from": "half-open", "to": "closed", "last_error": "boom"},
		}
		g.logs.wantRecords(t, want)
	})
}

func TestMetrics(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newTestGuard(t, guard.Config{MaxConcurrent: 1, ConsecutiveFailures: 3, MinRequests: 100}, guard.Options{})

		// One call in flight fills the bulkhead; a second is rejected.
		release := holdCalls(t, g.Guard, 1)
		if err := g.Do(t.Context(), succeed); !errors.Is(err, guard.ErrBulkheadFull) {
			t.Fatalf("Do = %v, want ErrBulkheadFull", err)
		}
		if got := gaugeValue(t, g, "spillway_guard_in_flight"); got != 1 {
			t.Errorf("in_flight = %v, want 1", got)
		}
		release()

		for _, step := range "scttf" { // success, canceled, then three failures trip
			runStep(t, g.Guard, step)
		}
		if err := g.Do(t.Context(), succeed); !errors.Is(err, guard.ErrOpen) {
			t.Fatalf("Do = %v, want ErrOpen", err)
		}

		const want = `
# HELP spillway_guard_breaker_state Circuit breaker state: 1 for the state it is in (closed, half-open, open), 0 for the others.
# TYPE spillway_guard_breaker_state gauge
spillway_guard_breaker_state{dependency="backend",state="closed"} 0
spillway_guard_breaker_state{dependency="backend",state="half-open"} 0
spillway_guard_breaker_state{dependency="backend",state="open"} 1
# HELP spillway_guard_calls_total Calls made through the guard, by result: success, failure, timeout, rejected_open, rejected_bulkhead, canceled.
# TYPE spillway_guard_calls_total counter
spillway_guard_calls_total{dependency="backend",result="canceled"} 1
spillway_guard_calls_total{dependency="backend",result="failure"} 1
spillway_guard_calls_total{dependency="backend",result="rejected_bulkhead"} 1
spillway_guard_calls_total{dependency="backend",result="rejected_open"} 1
spillway_guard_calls_total{dependency="backend",result="success"} 2
spillway_guard_calls_total{dependency="backend",result="timeout"} 2
# HELP spillway_guard_in_flight Calls in flight through the guard (probes excluded).
# TYPE spillway_guard_in_flight gauge
spillway_guard_in_flight{dependency="backend"} 0
# HELP spillway_guard_state_changes_total Circuit breaker state changes, by the state entered: closed, half-open, open.
# TYPE spillway_guard_state_changes_total counter
spillway_guard_state_changes_total{dependency="backend",to="closed"} 0
spillway_guard_state_changes_total{dependency="backend",to="half-open"} 0
spillway_guard_state_changes_total{dependency="backend",to="open"} 1
`
		if err := testutil.GatherAndCompare(g.reg, strings.NewReader(want),
			"spillway_guard_breaker_state", "spillway_guard_calls_total",
			"spillway_guard_in_flight", "spillway_guard_state_changes_total"); err != nil {
			t.Error(err)
		}

		// The scrape itself sees the open breaker turn half-open.
		time.Sleep(guard.DefaultOpenInterval + time.Millisecond) // fake time
		if got := breakerState(t, g); got != "half-open" {
			t.Errorf("breaker_state after the open interval = %q, want half-open", got)
		}
		runStep(t, g.Guard, 's')
		if got := breakerState(t, g); got != "closed" {
			t.Errorf("breaker_state after a trial success = %q, want closed", got)
		}
	})
}

func TestMetricsRegistration(t *testing.T) {
	tg := newTestGuard(t, guard.Config{}, guard.Options{Name: "backend"})
	if _, err := guard.New(guard.Config{}, guard.Options{Name: "other", Registerer: tg.reg}); err != nil {
		t.Errorf("second dependency on one registry: %v", err)
	}
	_, err := guard.New(guard.Config{}, guard.Options{Name: "backend", Registerer: tg.reg})
	if err == nil || !strings.Contains(err.Error(), `dependency "backend" already registered`) {
		t.Errorf("same dependency twice on one registry: err %v", err)
	}
	// The failed New left nothing behind: the first guard's series are intact.
	if n, err := testutil.GatherAndCount(tg.reg, "spillway_guard_breaker_state"); err != nil || n != 6 {
		t.Errorf("breaker_state series = %d (%v), want 6 (3 states of 2 dependencies)", n, err)
	}

	g, err := guard.New(guard.Config{}, guard.Options{Name: "unmetered"})
	if err != nil {
		t.Fatalf("New without a Registerer: %v", err)
	}
	if err := g.Do(t.Context(), succeed); err != nil {
		t.Errorf("Do without a Registerer: %v", err)
	}
}

func TestNewErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  guard.Config
		opts guard.Options
		want string
	}{
		{"no name", guard.Config{}, guard.Options{}, "guard: empty name"},
		{"bad config", guard.Config{Timeout: -time.Second}, guard.Options{Name: "backend"},
			`guard backend: timeout: "-1s": must be a positive duration`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Validate reports every invalid field; the first is the one set.
			_, err := guard.New(tt.cfg, tt.opts)
			if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
				t.Errorf("New = %v, want it to begin with %q", err, tt.want)
			}
		})
	}
}

// gaugeValue gathers g's registry and returns the value of the gauge name.
func gaugeValue(t *testing.T, g *testGuard, name string) float64 {
	t.Helper()
	mfs, err := g.reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no single series of %s", name)
	return 0
}

// breakerState gathers g's registry and returns the state whose
// spillway_guard_breaker_state series is 1, checking that exactly one is.
func breakerState(t *testing.T, g *testGuard) string {
	t.Helper()
	mfs, err := g.reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	var on []string
	for _, mf := range mfs {
		if mf.GetName() != "spillway_guard_breaker_state" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetGauge().GetValue() != 1 {
				continue
			}
			for _, l := range m.GetLabel() {
				if l.GetName() == "state" {
					on = append(on, l.GetValue())
				}
			}
		}
	}
	if len(on) != 1 {
		t.Fatalf("spillway_guard_breaker_state: states at 1: %v, want exactly one", on)
	}
	return on[0]
}

// counterValue gathers g's registry and returns the value of the series
// of counter name whose label has the value value.
func counterValue(t *testing.T, g *testGuard, name, label, value string) float64 {
	t.Helper()
	mfs, err := g.reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label && lp.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no series %s{%s=%q}", name, label, value)
	return 0
}
