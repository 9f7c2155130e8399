package lb_test

import (
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/internal/testkit"
)

// TestFrozenInstanceLeavesWithinDocumentedBound: an instance that stops
// answering (a frozen VM, a SIGSTOPped process: connections open, nothing
// answers) is out of rotation within unhealthy_threshold × interval +
// timeout, as docs/LB.md promises. Checks start interval apart whatever
// their outcome, and a check that timed out fetches no report, which
// would only time out too (before: 3 × (timeout + timeout + interval)).
func TestFrozenInstanceLeavesWithinDocumentedBound(t *testing.T) {
	t.Parallel()
	var (
		mu     sync.Mutex
		frozen bool
		thaw   = make(chan struct{})
	)
	t.Cleanup(func() { close(thaw) })
	healthy := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	hl := testkit.Listen(t)
	serve(t, &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		f := frozen
		mu.Unlock()
		if f {
			<-thaw
			return
		}
		answerHealthPort(w, r)
	}), ReadHeaderTimeout: time.Second}, hl)
	victim := healthy.lbInstance()
	victim.Health = hl.Addr().String()
	victim.Service = startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })).svc

	const (
		interval  = time.Second
		timeout   = 500 * time.Millisecond
		threshold = 3
		bound     = threshold*interval + timeout // 3.5s
	)
	cfg := testConfig(healthy.lbInstance(), victim)
	cfg.HealthCheck.Interval, cfg.HealthCheck.Timeout = interval, timeout
	cfg.HealthCheck.UnhealthyThreshold = threshold
	zero := 0.0
	cfg.HealthCheck.Jitter = zero
	b := startLB(t, cfg, nil)
	testkit.WaitFor(t, 5*time.Second, "both instances routable", func() bool { return b.Status().Routing.Routable == 2 })

	// Freeze right after a passing check: the worst case.
	last := b.instance(victim.Service).LastCheckAt
	testkit.WaitFor(t, 3*time.Second, "a fresh check", func() bool { return b.instance(victim.Service).LastCheckAt.After(last) })
	mu.Lock()
	frozen = true
	mu.Unlock()
	start := time.Now()
	took := testkit.WaitFor(t, 10*time.Second, "the frozen instance out of rotation", func() bool { return !b.instance(victim.Service).Routable })
	t.Logf("frozen instance out of rotation after %v (bound %v)", took.Round(time.Millisecond), bound)
	// A margin of 1 s over the bound for a loaded machine; the old
	// schedule took 6 s here.
	if d := time.Since(start); d > bound+time.Second {
		t.Errorf("frozen instance left rotation after %v, want within %v + 1s", d, bound)
	}
}
