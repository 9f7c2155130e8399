package guard_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/spillway-dev/spillway/guard"
	"github.com/spillway-dev/spillway/health"
)

// scriptedProbes is a probe target inside a synctest bubble that answers
// from a script, one byte per probe: 's' 200, 'f' 503. Past the end of
// the script its last byte repeats.
type scriptedProbes struct {
	mu     sync.Mutex
	script string
	sent   int
}

func (p *scriptedProbes) RoundTrip(req *http.Request) (*http.Response, error) {
	p.mu.Lock()
	c := p.script[min(p.sent, len(p.script)-1)]
	p.sent++
	p.mu.Unlock()
	code := http.StatusOK
	if c != 's' {
		code = http.StatusServiceUnavailable
	}
	return answer(req, code), nil
}

func (p *scriptedProbes) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.sent
}

// TestRecoveryWithinProbeBound proves issue 11's requirement: once the
// dependency is back, the breaker closes without any user call within
// ProbeInterval × ProbeSuccesses plus a round trip (plus ProbeTimeout
// when a probe was hanging at the recovery), whatever OpenInterval is
// and wherever the recovery falls: while open, or half-open.
func TestRecoveryWithinProbeBound(t *testing.T) {
	const (
		probeInterval = 250 * time.Millisecond
		probeTimeout  = time.Second // the default: min(Timeout, 1s)
		rtt           = 20 * time.Millisecond
	)
	tests := []struct {
		outage       string // mode of the backend while down
		openInterval time.Duration
		successes    int
		recoverAfter time.Duration // after the breaker opened
	}{
		{"error", 5 * time.Second, 2, 0},
		{"error", 5 * time.Second, 2, 100 * time.Millisecond},
		{"error", 5 * time.Second, 2, 249 * time.Millisecond},
		{"error", 5 * time.Second, 2, 3 * time.Second},                     // open
		{"error", 5 * time.Second, 2, 7*time.Second + 10*time.Millisecond}, // half-open
		{"error", time.Hour, 2, 10 * time.Second},
		{"error", 100 * time.Millisecond, 2, 2 * time.Second},
		{"error", 5 * time.Second, 1, 3 * time.Second},
		{"error", 5 * time.Second, 4, 3 * time.Second},
		{"hang", 5 * time.Second, 2, 3 * time.Second},
		{"hang", time.Hour, 3, 10*time.Second + 123*time.Millisecond},
	}
	for _, tt := range tests {
		name := fmt.Sprintf("%s/open_%v/successes_%d/after_%v", tt.outage, tt.openInterval, tt.successes, tt.recoverAfter)
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				b := newFakeBackend("up", rtt)
				g := newTestGuard(t, guard.Config{
					Timeout:             time.Second,
					ConsecutiveFailures: 3,
					OpenInterval:        tt.openInterval,
					ProbeURL:            "http://backend.test/healthz",
					ProbeInterval:       probeInterval,
					ProbeSuccesses:      tt.successes,
				}, guard.Options{Client: &http.Client{Transport: b}})
				stop := runGuard(t, g.Guard)
				defer stop()
				time.Sleep(rtt) // fake time, here and below: the probe at start has answered

				b.set(tt.outage)
				for range 3 {
					if err := g.Do(t.Context(), b.call); !errors.Is(err, guard.ErrUnavailable) {
						t.Fatalf("Do during the outage = %v", err)
					}
				}
				wantBreaker(t, g.Guard, "open")

				// From here on, no user call: the load balancer sheds.
				time.Sleep(tt.recoverAfter)
				synctest.Wait()
				if st := g.Status(); st.State != health.DepDown {
					t.Fatalf("before the recovery: Status %+v, want down", st)
				}
				b.set("up")
				recovered := time.Now()
				bound := probeInterval*time.Duration(tt.successes) + rtt
				if tt.outage == "hang" {
					bound += probeTimeout
				}
				time.Sleep(bound)
				synctest.Wait()

				st := g.Status()
				if st.Breaker != "closed" || st.State != health.DepUp || st.LastError != "" {
					t.Fatalf("%v after recovery: Status %+v, want up, closed, no last error", bound, st)
				}
				took := st.Since.Sub(recovered)
				if took < 0 || took > bound {
					t.Errorf("closed %v after recovery, want within [0, %v]", took, bound)
				}
				t.Logf("closed %v after recovery (bound %v)", took, bound)
			})
		})
	}
}

// TestProbeSuccessesInARow feeds scripted probe outcomes to an open
// breaker and checks after which probe it closes: only after
// ProbeSuccesses successes in a row, so a flapping dependency never
// closes it and a failure starts the count over.
func TestProbeSuccessesInARow(t *testing.T) {
	const probeInterval = 250 * time.Millisecond
	tests := []struct {
		name      string
		successes int
		script    string // outcomes of the probes after the trip
		closesAt  int    // the probe that closes the breaker; 0: none does
	}{
		{"two in a row close", 2, "ss", 2},
		{"flapping never closes", 2, "sfsfsfsfsf", 0},
		{"success, failure, success does not close", 2, "sfsf", 0},
		{"a failure while counting starts over", 3, "ssfssf", 0},
		{"a failure while counting, then enough", 3, "ssfsss", 6},
		{"failures, then enough", 2, "fffss", 5},
		{"one success when probe_successes is 1", 1, "ffs", 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				p := &scriptedProbes{script: tt.script}
				g := newTestGuard(t, guard.Config{
					ConsecutiveFailures: 1,
					OpenInterval:        time.Hour, // only probes can close it
					ProbeURL:            "http://backend.test/healthz",
					ProbeInterval:       probeInterval,
					ProbeSuccesses:      tt.successes,
				}, guard.Options{Client: &http.Client{Transport: p}})
				runStep(t, g.Guard, 'f') // trips before Run: Run probes at once
				stop := runGuard(t, g.Guard)
				defer stop()

				for k := 1; k <= len(tt.script)+4; k++ {
					synctest.Wait()
					closed := tt.closesAt != 0 && k >= tt.closesAt
					wantProbes := k
					if closed {
						wantProbes = tt.closesAt // none once closed
					}
					if n := p.count(); n != wantProbes {
						t.Fatalf("at probe %d: %d probes sent, want %d", k, n, wantProbes)
					}
					want := "open"
					if closed {
						want = "closed"
					}
					if got := g.Status().Breaker; got != want {
						t.Fatalf("after probe %d of %q: breaker %q, want %q", k, tt.script, got, want)
					}
					time.Sleep(probeInterval) // fake time
				}
			})
		})
	}
}

// TestProbeCountStartsOverWhenBreakerReopens: a success counted before a
// failed user trial reopens the half-open breaker does not count after.
func TestProbeCountStartsOverWhenBreakerReopens(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const probeInterval = 250 * time.Millisecond
		b := newFakeBackend("error", 0)
		g := newTestGuard(t, guard.Config{
			ConsecutiveFailures: 1,
			OpenInterval:        time.Second,
			ProbeURL:            "http://backend.test/healthz",
			ProbeInterval:       probeInterval,
		}, guard.Options{Client: &http.Client{Transport: b}})
		runStep(t, g.Guard, 'f') // trips at 0 before Run: probes at 0, 250ms, ...
		stop := runGuard(t, g.Guard)
		defer stop()

		time.Sleep(900 * time.Millisecond) // fake time, here and below
		b.set("up")
		time.Sleep(200 * time.Millisecond) // the probe at 1s succeeded: one in a row
		synctest.Wait()
		wantBreaker(t, g.Guard, "half-open")
		runStep(t, g.Guard, 'f') // at 1.1s, a failed trial call reopens it
		wantBreaker(t, g.Guard, "open")

		time.Sleep(200 * time.Millisecond) // the probe at 1.25s succeeded: one in a row again
		synctest.Wait()
		wantBreaker(t, g.Guard, "open")
		time.Sleep(250 * time.Millisecond) // and the one at 1.5s: two
		synctest.Wait()
		wantBreaker(t, g.Guard, "closed")
	})
}

// TestTrialCallStillCloses: the half-open path is unchanged by probes. A
// user call succeeds as a trial while the probes still fail (say, the
// probe URL is broken) and closes the breaker; the probes then stop.
func TestTrialCallStillCloses(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const openInterval = 5 * time.Second
		p := &scriptedProbes{script: "f"}
		g := newTestGuard(t, guard.Config{
			ConsecutiveFailures: 1,
			OpenInterval:        openInterval,
			ProbeURL:            "http://backend.test/healthz",
		}, guard.Options{Client: &http.Client{Transport: p}})
		stop := runGuard(t, g.Guard)
		defer stop()
		synctest.Wait()
		wantBreaker(t, g.Guard, "open") // the probe at start failed

		time.Sleep(openInterval + time.Millisecond) // fake time
		wantBreaker(t, g.Guard, "half-open")
		runStep(t, g.Guard, 's')
		wantBreaker(t, g.Guard, "closed")
		n := p.count()
		time.Sleep(time.Minute) // fake time
		synctest.Wait()
		if got := p.count(); got != n {
			t.Errorf("%d probes once a trial closed the breaker, want none", got-n)
		}
	})
}

// TestProbeCloseIgnoresReplacedBreaker: a trial call in flight when the
// probes close the breaker ends on the replaced breaker, and its failure
// does not reopen the new one.
func TestProbeCloseIgnoresReplacedBreaker(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const openInterval = time.Second
		b := newFakeBackend("error", 0)
		g := newTestGuard(t, guard.Config{
			Timeout:             time.Minute, // the trial below outlasts the probes
			ConsecutiveFailures: 1,
			OpenInterval:        openInterval,
			ProbeURL:            "http://backend.test/healthz",
			ProbeTimeout:        time.Second,
		}, guard.Options{Client: &http.Client{Transport: b}})
		runStep(t, g.Guard, 'f') // trips
		stop := runGuard(t, g.Guard)
		defer stop()

		time.Sleep(openInterval + time.Millisecond) // fake time, here and below
		release := holdCall(t, g.Guard, errBoom)    // the half-open breaker's trial
		b.set("up")
		time.Sleep(time.Second)
		synctest.Wait()
		wantBreaker(t, g.Guard, "closed")

		if err := release(); !errors.Is(err, errBoom) {
			t.Errorf("trial call = %v, want boom", err)
		}
		if st := g.Status(); st.Breaker != "closed" || st.State != health.DepUp || st.LastError != "boom" {
			t.Errorf("after the late trial failure: Status %+v, want up, closed, last error boom", st)
		}
		if got := counterValue(t, g, "spillway_guard_state_changes_total", "to", "open"); got != 1 {
			t.Errorf("opens = %v, want 1", got)
		}
		runStep(t, g.Guard, 's') // the new breaker admits calls
	})
}

// TestProbeCloseLogsAndMetrics checks what a close by the probes leaves
// behind: one log record, and the metrics.
func TestProbeCloseLogsAndMetrics(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := &scriptedProbes{script: "fss"}
		g := newTestGuard(t, guard.Config{
			ConsecutiveFailures: 1,
			OpenInterval:        time.Hour,
			ProbeURL:            "http://backend.test/healthz",
		}, guard.Options{Client: &http.Client{Transport: p}, Name: "validator"})
		runStep(t, g.Guard, 'f') // trips
		stop := runGuard(t, g.Guard)
		defer stop()
		time.Sleep(2 * guard.DefaultProbeInterval) // fake time: probes at 0, 250ms, 500ms
		synctest.Wait()
		wantBreaker(t, g.Guard, "closed")

		want := []map[string]string{
			{"level": "WARN", "msg": "circuit breaker state changed", "dependency": "validator", "from": "closed", "to": "open", "last_error": "boom"},
			{"level": "INFO", "msg": "circuit breaker closed by recovery probes", "dependency": "validator", "from": "open", "to": "closed", "probes": "2",
				"last_error": "probe: GET http://backend.test/healthz: status 503 Service Unavailable"},
		}
		g.logs.wantRecords(t, want)

		const metrics = `
# HELP spillway_guard_breaker_state Circuit breaker state: 1 for the state it is in (closed, half-open, open), 0 for the others.
# TYPE spillway_guard_breaker_state gauge
spillway_guard_breaker_state{dependency="validator",state="closed"} 1
spillway_guard_breaker_state{dependency="validator",state="half-open"} 0
spillway_guard_breaker_state{dependency="validator",state="open"} 0
# HELP spillway_guard_probe_closes_total Circuit breaker closes made by the recovery probes (each also counted in spillway_guard_state_changes_total{to="closed"}).
# TYPE spillway_guard_probe_closes_total counter
spillway_guard_probe_closes_total{dependency="validator"} 1
# HELP spillway_guard_probes_total Recovery probes sent by the guard, by result: success, failure, timeout, rejected_open, canceled.
# TYPE spillway_guard_probes_total counter
spillway_guard_probes_total{dependency="validator",result="canceled"} 0
spillway_guard_probes_total{dependency="validator",result="failure"} 1
spillway_guard_probes_total{dependency="validator",result="rejected_open"} 0
spillway_guard_probes_total{dependency="validator",result="success"} 2
spillway_guard_probes_total{dependency="validator",result="timeout"} 0
# HELP spillway_guard_state_changes_total Circuit breaker state changes, by the state entered: closed, half-open, open.
# TYPE spillway_guard_state_changes_total counter
spillway_guard_state_changes_total{dependency="validator",to="closed"} 1
spillway_guard_state_changes_total{dependency="validator",to="half-open"} 0
spillway_guard_state_changes_total{dependency="validator",to="open"} 1
`
		if err := testutil.GatherAndCompare(g.reg, strings.NewReader(metrics),
			"spillway_guard_breaker_state", "spillway_guard_probe_closes_total",
			"spillway_guard_probes_total", "spillway_guard_state_changes_total"); err != nil {
			t.Error(err)
		}
	})
}

// changeRecorder is an Options.OnChange that reads Status, as a health
// server does, and keeps each distinct "state/breaker" it sees.
type changeRecorder struct {
	status func() health.Dependency
	mu     sync.Mutex
	calls  int
	seen   []string
}

func (r *changeRecorder) onChange() {
	st := r.status() // OnChange may call Status: the Guard holds no lock
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	s := st.State + "/" + st.Breaker
	if len(r.seen) == 0 || r.seen[len(r.seen)-1] != s {
		r.seen = append(r.seen, s)
	}
}

func (r *changeRecorder) want(t *testing.T, step string, want ...string) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if fmt.Sprint(r.seen) != fmt.Sprint(want) {
		t.Errorf("%s: OnChange saw %v, want %v", step, r.seen, want)
	}
}

func (r *changeRecorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls
}

// TestOnChange checks that OnChange reports each change of Status as it
// happens: the first outcome, the breaker opening (from the call that
// trips it, before Do returns), turning half-open, and closing by the
// probes or by a trial call.
func TestOnChange(t *testing.T) {
	t.Run("probes", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			const probeInterval = 250 * time.Millisecond
			b := newFakeBackend("up", 10*time.Millisecond)
			rec := &changeRecorder{}
			g := newTestGuard(t, guard.Config{
				ConsecutiveFailures: 2,
				OpenInterval:        time.Second,
				ProbeURL:            "http://backend.test/healthz",
				ProbeInterval:       probeInterval,
			}, guard.Options{Client: &http.Client{Transport: b}, OnChange: rec.onChange})
			rec.status = g.Status
			stop := runGuard(t, g.Guard)
			defer stop()

			synctest.Wait()
			rec.want(t, "before the probe at start answered")
			time.Sleep(10 * time.Millisecond) // fake time, here and below
			synctest.Wait()
			rec.want(t, "probe at start", "up/closed")

			b.set("error")
			for range 2 {
				_ = g.Do(t.Context(), b.call)
			}
			rec.want(t, "tripped", "up/closed", "down/open") // at once, no wait

			time.Sleep(time.Second + probeInterval) // Run looks at the breaker as it probes
			synctest.Wait()
			rec.want(t, "open interval passed", "up/closed", "down/open", "down/half-open")

			b.set("up")
			time.Sleep(2 * probeInterval)
			synctest.Wait()
			rec.want(t, "closed by probes", "up/closed", "down/open", "down/half-open", "up/closed")
			n := rec.count()
			if n != 4 {
				t.Errorf("OnChange called %d times for 4 changes", n)
			}
			time.Sleep(time.Minute)
			for range 10 {
				runStep(t, g.Guard, 's')
				_ = g.Status()
			}
			synctest.Wait()
			if got := rec.count(); got != n {
				t.Errorf("OnChange called %d times without a change", got-n)
			}
		})
	})
	t.Run("trial call, no Run", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			rec := &changeRecorder{}
			g := newTestGuard(t, guard.Config{ConsecutiveFailures: 1}, guard.Options{OnChange: rec.onChange})
			rec.status = g.Status
			runStep(t, g.Guard, 'f')
			rec.want(t, "tripped", "down/open")

			time.Sleep(guard.DefaultOpenInterval + time.Millisecond) // fake time
			n := rec.count()
			wantBreaker(t, g.Guard, "half-open") // Status noticed it...
			if got := rec.count(); got != n {
				t.Errorf("Status called OnChange %d times, want never", got-n)
			}
			runStep(t, g.Guard, 's') // ...and the next call reports it, with the close
			rec.want(t, "closed by a trial call", "down/open", "up/closed")
		})
	})
}

// TestRunStopsDuringHangingProbe: Run returns at once when its context
// ends during a probe to a hanging dependency, and leaves no goroutine
// behind (synctest.Test fails if one is left in the bubble; goleak checks
// the package).
func TestRunStopsDuringHangingProbe(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newFakeBackend("hang", 0)
		g := newTestGuard(t, guard.Config{
			ConsecutiveFailures: 1,
			ProbeURL:            "http://backend.test/healthz",
			ProbeTimeout:        time.Minute,
		}, guard.Options{Client: &http.Client{Transport: b}})
		runStep(t, g.Guard, 'f') // trips before Run: Run probes at once
		ctx, cancel := context.WithCancel(t.Context())
		errc := make(chan error, 1)
		go func() { errc <- g.Run(ctx) }()
		synctest.Wait()
		if n := b.probes.Load(); n != 1 {
			t.Fatalf("%d probes in flight, want 1", n)
		}

		start := time.Now()
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("Run = %v, want nil", err)
		}
		if d := time.Since(start); d != 0 {
			t.Errorf("Run returned %v after its context ended, want at once", d)
		}
		if got := counterValue(t, g, "spillway_guard_probes_total", "result", "canceled"); got != 1 {
			t.Errorf("canceled probes = %v, want 1", got)
		}
	})
}

func TestProbeSuccessesConfig(t *testing.T) {
	if c := guard.DefaultConfig(); c.ProbeSuccesses != 2 || c.ProbeInterval != 250*time.Millisecond {
		t.Errorf("DefaultConfig: probe_successes %d, probe_interval %v; want 2, 250ms", c.ProbeSuccesses, c.ProbeInterval)
	}
	var c guard.Config
	c.SetDefaults()
	if c.ProbeSuccesses != guard.DefaultProbeSuccesses {
		t.Errorf("SetDefaults: probe_successes %d, want %d", c.ProbeSuccesses, guard.DefaultProbeSuccesses)
	}
	c.ProbeSuccesses = -1
	const want = `probe_successes: "-1": must be between 1 and 4294967295`
	if err := c.Validate(); err == nil || err.Error() != want {
		t.Errorf("Validate = %v, want %q", err, want)
	}
	c.ProbeSuccesses = 1
	if err := c.Validate(); err != nil {
		t.Errorf("Validate with probe_successes 1 = %v", err)
	}
}
