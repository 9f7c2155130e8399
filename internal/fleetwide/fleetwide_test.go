//go:build unix

package fleetwide

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"

	"github.com/spillway-dev/spillway/internal/fleet"
	"github.com/spillway-dev/spillway/internal/registry"
	"github.com/spillway-dev/spillway/internal/testkit"
	"github.com/spillway-dev/spillway/internal/testkit/etcdtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testLogger keeps the logs, and prints them if the test fails.
func testLogger(t *testing.T, name string) *slog.Logger {
	buf := &testkit.SyncBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("log of %s:\n%s", name, buf.String())
		}
	})
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func dial(t *testing.T, e *etcdtest.Server) *clientv3.Client {
	t.Helper()
	cli, err := registry.Dial(registry.Target{Endpoints: []string{e.Endpoint()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// host is one host's fleet-wide guardrails, running until stop (or the
// test's end), on a client of its own.
type host struct {
	*Guardrails
	reg  *prometheus.Registry
	stop func() error
}

// startHost runs the guardrails of a fleet of size instances named id
// under prefix, with short etcd timings; set adjusts the fleet's
// configuration.
func startHost(t *testing.T, e *etcdtest.Server, prefix, id string, size int, set func(*fleet.Config)) *host {
	t.Helper()
	cfg := fleet.DefaultConfig()
	cfg.Size = size
	if set != nil {
		set(&cfg)
	}
	reg := prometheus.NewRegistry()
	g, err := New(dial(t, e), prefix, &cfg, Options{
		HostID: id,
		Host:   "127.0.0.1",
		Etcd: registry.Options{
			TTL:           2 * time.Second,
			Timeout:       300 * time.Millisecond,
			ProbeInterval: 100 * time.Millisecond,
			Backoff:       registry.Exponential(20*time.Millisecond, 200*time.Millisecond, func() float64 { return 0.5 }),
			Logger:        testLogger(t, id),
		},
		// Generous: the tests check what is shared, not how fast, on a
		// busy CI machine; without etcd nothing waits for it anyway.
		RequestTimeout: 2 * time.Second,
		Registerer:     reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	return &host{Guardrails: g, reg: reg, stop: testkit.Go(t, "guardrails of "+id, 5*time.Second, g.Run)}
}

// waitSize waits until every host sees a connected fleet of size
// instances.
func waitSize(t *testing.T, size int, hosts ...*host) {
	t.Helper()
	for _, h := range hosts {
		testkit.WaitFor(t, 3*time.Second, fmt.Sprintf("%s seeing a fleet of %d", h.HostID(), size), func() bool {
			st := h.Status()
			return st.Connected && st.Size == size
		})
	}
}

// requests is the count of budget requests with result.
func (h *host) requests(result string) int {
	return int(testutil.ToFloat64(h.m.requests.WithLabelValues(result)))
}

// TestSharedBudget: three hosts of two instances share one budget of 50%
// of the six: three replacements per window, however the requests race;
// once the window has passed, the budget is there again. A host that
// stops leaves the fleet at once (its lease is revoked), and the budget's
// percentage follows the smaller fleet.
func TestSharedBudget(t *testing.T) {
	e := etcdtest.Start(t)
	set := func(c *fleet.Config) { c.Budget.Max = fleet.Percent(50) }
	hosts := []*host{
		startHost(t, e, "/budget", "a", 2, set),
		startHost(t, e, "/budget", "b", 2, set),
		startHost(t, e, "/budget", "c", 2, set),
	}
	waitSize(t, 6, hosts...)
	if st := hosts[0].Status(); st.BudgetMax != 3 || st.BudgetRemaining != 3 || len(st.Hosts) != 3 {
		t.Fatalf("status before any request: %+v; want a budget of 3 of 3 hosts", st)
	}

	// Each host asks three times, all at once: nine requests, three grants.
	now := time.Now()
	var granted atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for _, h := range hosts {
		wg.Go(func() {
			<-start
			for range 3 {
				if h.Request(now) == fleet.Replace {
					granted.Add(1)
				}
			}
		})
	}
	took := time.Now()
	close(start)
	wg.Wait()
	t.Logf("9 concurrent requests decided in %v", time.Since(took).Round(time.Millisecond))
	if n := granted.Load(); n != 3 {
		t.Errorf("granted %d replacements of 9 requests, want the budget's 3", n)
	}
	for _, h := range hosts {
		if n := h.requests(resultFallbackGranted) + h.requests(resultFallbackExhausted); n != 0 {
			t.Errorf("%s: %d requests decided without etcd, want none", h.HostID(), n)
		}
	}
	var rec budgetRecord
	res, err := dial(t, e).Get(context.Background(), "/budget/fleet/budget")
	if err != nil || len(res.Kvs) != 1 || json.Unmarshal(res.Kvs[0].Value, &rec) != nil || len(rec.Spent) != 3 {
		t.Fatalf("budget key: %v %v %+v; want 3 times", err, res, rec)
	}
	for _, h := range hosts {
		testkit.WaitFor(t, 2*time.Second, h.HostID()+" seeing the budget spent", func() bool { return h.Remaining(now) == 0 })
	}

	// A window later the budget is whole again.
	later := now.Add(time.Minute)
	if d := hosts[1].Request(later); d != fleet.Replace {
		t.Errorf("a window later: %v, want replace", d)
	}

	// c stops: the fleet is four instances, the budget 50% of them.
	if err := hosts[2].stop(); err != nil {
		t.Fatal(err)
	}
	waitSize(t, 4, hosts[:2]...)
	if st := hosts[0].Status(); st.BudgetMax != 2 || st.BudgetRemaining != 1 {
		t.Errorf("after c left: budget max %d remaining %d; want 2 and 1", st.BudgetMax, st.BudgetRemaining)
	}
}

// TestFleetWideFreeze: three hosts of three instances, freeze.share 0.3:
// one failure on each host is no correlated failure for any of them alone
// (one is fewer than two), but three of the fleet's nine are more than
// 30%: every host freezes, and replaces nothing. A recovery clears it; a
// gone instance's failure counts for the freeze window, then no more.
func TestFleetWideFreeze(t *testing.T) {
	e := etcdtest.Start(t)
	const window = time.Minute
	set := func(c *fleet.Config) { c.Freeze.Share, c.Freeze.Window = 0.3, window }
	a := startHost(t, e, "/freeze", "a", 3, set)
	b := startHost(t, e, "/freeze", "b", 3, set)
	c := startHost(t, e, "/freeze", "c", 3, set)
	waitSize(t, 9, a, b, c)

	t0 := time.Now()
	local := fleet.NewFreeze(0.3, window, 3) // what one host sees alone
	local.Fail("slot-0", t0)
	if frozen, _ := local.Update(t0); frozen {
		t.Fatal("one failure of three froze a local fleet")
	}
	a.Fail("slot-0", t0)
	b.Fail("slot-1", t0)
	if frozen, _ := a.Update(t0); frozen {
		t.Error("two failures of nine froze the fleet")
	}
	c.Fail("slot-2", t0)
	for _, h := range []*host{a, b, c} {
		took := testkit.WaitFor(t, 2*time.Second, h.HostID()+" frozen", func() bool {
			frozen, _ := h.Update(time.Now())
			return frozen
		})
		t.Logf("%s frozen %v after the third failure", h.HostID(), took.Round(time.Millisecond))
		if d := h.Request(time.Now()); d != fleet.HoldFrozen {
			t.Errorf("%s: Request while frozen = %v, want frozen", h.HostID(), d)
		}
		if n := h.Failing(time.Now()); n != 3 {
			t.Errorf("%s: Failing = %d, want 3", h.HostID(), n)
		}
	}

	// c's instance recovers: two of nine, no longer correlated.
	c.Recover("slot-2")
	testkit.WaitFor(t, 2*time.Second, "a unfrozen", func() bool {
		frozen, _ := a.Update(time.Now())
		return !frozen
	})

	// c fails again and b's instance is replaced (gone at t0): frozen for
	// the freeze window after t0, then b's failure no longer counts.
	c.Fail("slot-2", t0)
	b.Gone("slot-1", t0)
	testkit.WaitFor(t, 2*time.Second, "a seeing c failing and b's instance gone", func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		fb, fc := a.failures["b"]["slot-1"], a.failures["c"]["slot-2"]
		return fb != nil && !fb.Live && fc != nil && fc.Live
	})
	if frozen, _ := a.Update(time.Now()); !frozen {
		t.Error("a not frozen again")
	}
	if frozen, _ := a.Update(t0.Add(window - time.Second)); !frozen {
		t.Error("a gone failure stopped counting before the window ended")
	}
	if frozen, changed := a.Update(t0.Add(window)); frozen || !changed {
		t.Errorf("a window after the replacement: frozen %v, changed %v; want unfrozen", frozen, changed)
	}

	// c stops: its keys go with its lease, its failure with it.
	if err := c.stop(); err != nil {
		t.Fatal(err)
	}
	waitSize(t, 6, a, b)
	if st := a.Status(); st.Failing != 2 || len(st.Hosts) != 2 {
		t.Errorf("after c left: %+v; want a's live failure and b's gone one (within its window), of two hosts", st)
	}
}

// TestEtcdLost: etcd stops. Nothing blocks; the freeze goes on from the
// last known fleet plus this host's failures (the others' live ones for a
// freeze window more); the budget falls back to this host's share, one of
// the fleet's two. etcd back: the view is read afresh, the failure
// published meanwhile reaches the other host, and the replacement granted
// without etcd is written into the fleet-wide budget.
func TestEtcdLost(t *testing.T) {
	e := etcdtest.Start(t)
	const window = time.Minute
	set := func(c *fleet.Config) { c.Budget.Max = fleet.Count(2); c.Freeze.Window = window }
	a := startHost(t, e, "/lost", "a", 2, set)
	b := startHost(t, e, "/lost", "b", 2, set)
	waitSize(t, 4, a, b)
	now := time.Now()
	b.Fail("slot-0", now)
	b.Fail("slot-1", now)
	testkit.WaitFor(t, 2*time.Second, "a seeing b's failures", func() bool { return a.Failing(time.Now()) == 2 })

	e.Stop()
	testkit.WaitFor(t, 2*time.Second, "a seeing etcd lost", func() bool { return !a.Status().Connected })

	// The freeze: b's two and a's own are three of four.
	start := time.Now()
	a.Fail("slot-0", start)
	frozen, _ := a.Update(start)
	if took := time.Since(start); took > 200*time.Millisecond {
		t.Errorf("Fail and Update took %v without etcd; they must not wait for it", took)
	}
	if !frozen {
		t.Error("etcd lost: a's failure and b's last known two did not freeze the fleet")
	}
	if frozen, _ := a.Update(time.Now().Add(window + time.Second)); frozen {
		t.Error("b's failures still count a freeze window after etcd was lost")
	}
	a.Update(time.Now())
	a.Recover("slot-0")
	a.Update(time.Now())

	// The budget: a's share of two for a fleet of four is one.
	start = time.Now()
	first, second := a.Request(start), a.Request(start)
	if took := time.Since(start); took > 200*time.Millisecond {
		t.Errorf("two requests took %v without etcd; they must not wait for it", took)
	}
	if first != fleet.Replace || second != fleet.HoldBudget {
		t.Errorf("requests without etcd: %v, %v; want replace, then budget_exhausted (a's share is 1)", first, second)
	}
	if n := a.requests(resultFallbackGranted); n != 1 {
		t.Errorf("fallback grants %d, want 1", n)
	}
	a.Fail("slot-1", time.Now()) // published once etcd is back

	e.Restart()
	testkit.WaitFor(t, 5*time.Second, "a connected again, its grant written", func() bool {
		st := a.Status()
		return st.Connected && st.Pending == 0
	})
	testkit.WaitFor(t, 2*time.Second, "b seeing a's failure and grant", func() bool {
		st := b.Status()
		return st.Connected && st.Failing == 3 && st.BudgetRemaining == 1
	})
	if d := b.Request(time.Now()); d != fleet.Replace {
		t.Errorf("b's request after the outage: %v, want the budget's last replacement", d)
	}
	if d := a.Request(time.Now()); d != fleet.HoldBudget {
		t.Errorf("a's request after b took the last: %v, want budget_exhausted", d)
	}
}

// TestView: the view ignores what it cannot decode, and a host's own
// keys; it never counts a failure without its host.
func TestView(t *testing.T) {
	cfg := fleet.DefaultConfig()
	g, err := New(nil, "/v", &cfg, Options{HostID: "me"})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	fw := &follower{g: g, v: newView()}
	put := func(key, value string) { fw.put("/v/fleet/"+key, []byte(value), 1); fw.publish() }
	put("hosts/x", `{"id":"x","size":2}`)
	put("hosts/y", `{"id":"z","size":2}`)   // id is not the key's
	put("hosts/w", `{"id":"w","size":0}`)   // no size
	put("hosts/me", `{"id":"me","size":9}`) // own key
	put("failures/x/slot-0", fmt.Sprintf(`{"at":%q,"live":true}`, now.Format(time.RFC3339Nano)))
	put("failures/x/slot-1", `not json`)
	put("failures/q/slot-0", fmt.Sprintf(`{"at":%q,"live":true}`, now.Format(time.RFC3339Nano))) // no host q
	put("failures/me/slot-0", fmt.Sprintf(`{"at":%q,"live":true}`, now.Format(time.RFC3339Nano)))
	put("budget", `{"spent":[]}`)
	if got := g.totalLocked(); got != 5 {
		t.Errorf("size %d, want 3 (own) + 2 (x)", got)
	}
	if got := g.failingLocked(now); got != 1 {
		t.Errorf("failing %d, want x's one", got)
	}
	fw.del("/v/fleet/hosts/x")
	fw.publish()
	if got := g.failingLocked(now); got != 0 {
		t.Errorf("failing %d after x left, want 0", got)
	}
	if _, err := New(nil, "/v", &cfg, Options{HostID: "a/b"}); err == nil {
		t.Error("host id with a slash accepted")
	}
	bad := cfg
	bad.Size = 0
	if _, err := New(nil, "/v", &bad, Options{HostID: "x"}); err == nil {
		t.Error("size 0 accepted")
	}
}

// TestResizeAndHosts: a host whose schedule raises its target (Resize)
// rewrites its key, and every host's fleet size follows; Hosts counts
// the live hosts for the schedule's fleet-scope windows.
func TestResizeAndHosts(t *testing.T) {
	e := etcdtest.Start(t)
	a := startHost(t, e, "/resize", "a", 2, nil)
	b := startHost(t, e, "/resize", "b", 2, nil)
	waitSize(t, 4, a, b)
	if n := a.Hosts(); n != 2 {
		t.Errorf("Hosts = %d, want 2", n)
	}
	a.Resize(5)
	waitSize(t, 7, a, b)
	a.Resize(2)
	waitSize(t, 4, a, b)
}
