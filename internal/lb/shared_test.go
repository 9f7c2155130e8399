package lb_test

import (
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/internal/lb"
	"github.com/spillway-dev/spillway/internal/testkit"
)

// fleetDecisions is an lb.Shared in the test's hands: the store of the
// fleet's decisions, as registry.Decisions keeps them in etcd. A change
// taken through the balancer is recorded and shared at once (origin
// self), or, while the test has it offline, held as pending (origin
// local); the test changes the fleet's decisions as another balancer
// would.
type fleetDecisions struct {
	mu      sync.Mutex
	self    string
	offline bool
	cur     lb.SharedDecisions
	pending int
	calls   []string
	changed chan struct{}
}

var _ lb.Shared = (*fleetDecisions)(nil)

func newFleetDecisions(self string, cur lb.SharedDecisions) *fleetDecisions {
	if cur.Overrides == nil {
		cur.Overrides = map[string]lb.OverrideDecision{}
	}
	if cur.Drains == nil {
		cur.Drains = map[string]lb.Decision{}
	}
	return &fleetDecisions{self: self, cur: cur, changed: make(chan struct{})}
}

func (f *fleetDecisions) Current() (lb.SharedDecisions, <-chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return lb.SharedDecisions{Overrides: maps.Clone(f.cur.Overrides), Drains: maps.Clone(f.cur.Drains)}, f.changed
}

func (f *fleetDecisions) origin() lb.Decision {
	if f.offline {
		f.pending++
		return lb.Decision{Origin: lb.OriginLocal, At: time.Now(), Pending: true}
	}
	return lb.Decision{Origin: f.self, At: time.Now()}
}

func (f *fleetDecisions) SetOverride(dep string, o lb.Override) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf("override(%s,%s)", dep, o))
	if o == lb.OverrideAuto {
		delete(f.cur.Overrides, dep)
	} else {
		f.cur.Overrides[dep] = lb.OverrideDecision{Mode: o, Decision: f.origin()}
	}
	f.notifyLocked()
	return nil
}

func (f *fleetDecisions) SetDrained(id string, drained bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf("drain(%s,%t)", id, drained))
	if drained {
		f.cur.Drains[id] = f.origin()
	} else {
		delete(f.cur.Drains, id)
	}
	f.notifyLocked()
	return nil
}

func (f *fleetDecisions) Status() lb.SharedStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	return lb.SharedStatus{Store: "test", Self: f.self, Connected: !f.offline, Pending: f.pending}
}

// fleet changes the decisions as another balancer would.
func (f *fleetDecisions) fleet(change func(*lb.SharedDecisions)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cur.Overrides, f.cur.Drains = maps.Clone(f.cur.Overrides), maps.Clone(f.cur.Drains)
	change(&f.cur)
	f.notifyLocked()
}

func (f *fleetDecisions) notifyLocked() {
	close(f.changed)
	f.changed = make(chan struct{})
}

func (f *fleetDecisions) setOffline(v bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.offline = v
}

func (f *fleetDecisions) called() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// TestSharedDecisions: a balancer with Options.Shared starts with the
// fleet's override; a drain of an instance it does not know waits for
// it; its own admin changes apply at once and go to Shared; the fleet's
// changes apply as they come, with their origin on /status; an undrain
// of an instance that a shared drain waits for is accepted; the pending
// count is a metric.
func TestSharedDecisions(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	u1, u2 := startUpstream(t, ok), startUpstream(t, ok)
	const waiting = "10.9.9.9:1"
	at := time.Now().Add(-time.Minute).UTC()
	f := newFleetDecisions("lb-a", lb.SharedDecisions{
		Overrides: map[string]lb.OverrideDecision{"backend": {Mode: lb.OverrideOn, Decision: lb.Decision{Origin: "lb-b", At: at}}},
		Drains:    map[string]lb.Decision{u2.svc: {Origin: "lb-b", At: at}, waiting: {Origin: "lb-b", At: at}},
	})
	disc := lb.NewStatic([]lb.Instance{u1.lbInstance()})
	b := startLBWith(t, testConfig(), lb.Options{Discovery: disc, Shared: f})
	b.waitRoutable(t, 1)

	// The fleet's decisions from the start.
	if d := b.dependency("backend"); d.State != lb.ShedShedding || d.Override != lb.OverrideOn || d.OverrideOrigin != "lb-b" || !d.OverrideAt.Equal(at) {
		t.Errorf("at start: %+v, want shedding, on from lb-b at %v", d, at)
	}
	if r := b.get("/"); r.status != http.StatusServiceUnavailable {
		t.Errorf("at start: GET / = %d, want 503 (shed)", r.status)
	}
	st := b.Status()
	if want := slices.Sorted(slices.Values([]string{u2.svc, waiting})); !slices.Equal(st.DrainsWaiting, want) {
		t.Errorf("drains_waiting %v, want %v", st.DrainsWaiting, want)
	}
	if st.Shared == nil || st.Shared.Self != "lb-a" {
		t.Errorf("shared %+v, want self lb-a", st.Shared)
	}
	// The instance a drain waited for appears drained.
	disc.Set([]lb.Instance{u1.lbInstance(), u2.lbInstance()})
	testkit.WaitFor(t, 2*time.Second, "u2 drained as it appears", func() bool {
		in := b.instance(u2.svc)
		return in.State == lb.InstanceDrained && in.DrainOrigin == "lb-b"
	})

	// An admin change applies at once and goes to Shared.
	if code, body := b.adminDo("PUT", "/shedding/backend", `{"mode":"off"}`, true); code != 200 {
		t.Fatalf("PUT /shedding/backend off: %d %s", code, body)
	}
	if d := b.dependency("backend"); d.State != lb.ShedOK || d.Override != lb.OverrideOff || d.OverrideOrigin != "lb-a" {
		t.Errorf("after the admin change: %+v, want ok, off from lb-a", d)
	}
	if r := b.get("/"); r.status != http.StatusOK {
		t.Errorf("after the admin change: GET / = %d, want 200", r.status)
	}

	// The fleet's changes apply as they come.
	f.fleet(func(d *lb.SharedDecisions) {
		d.Overrides["backend"] = lb.OverrideDecision{Mode: lb.OverrideOn, Decision: lb.Decision{Origin: "lb-c", At: time.Now()}}
		delete(d.Drains, u2.svc)
		d.Drains[u1.svc] = lb.Decision{Origin: "lb-c", At: time.Now()}
	})
	testkit.WaitFor(t, time.Second, "the fleet's changes applied", func() bool {
		d := b.dependency("backend")
		return d.Override == lb.OverrideOn && d.OverrideOrigin == "lb-c" && d.State == lb.ShedShedding &&
			b.instance(u1.svc).DrainOrigin == "lb-c" && b.instance(u2.svc).State == lb.InstanceHealthy
	})
	f.fleet(func(d *lb.SharedDecisions) { delete(d.Overrides, "backend"); delete(d.Drains, u1.svc) })
	testkit.WaitFor(t, time.Second, "back to auto, undrained", func() bool {
		d := b.dependency("backend")
		return d.Override == lb.OverrideAuto && d.OverrideOrigin == "" && d.State != lb.ShedShedding &&
			b.instance(u1.svc).State == lb.InstanceHealthy
	})

	// Offline: a change applies here, pending; the metric counts it.
	f.setOffline(true)
	if code, body := b.adminDo("POST", "/instances/"+u1.svc+"/drain", "", true); code != 200 {
		t.Fatalf("drain: %d %s", code, body)
	}
	if in := b.instance(u1.svc); in.State != lb.InstanceDrained || in.DrainOrigin != lb.OriginLocal || !in.DrainPending {
		t.Errorf("drained offline: %+v, want drained, local, pending", in)
	}
	if got := scrape(t, b.admin+"/metrics", "spillway_lb_shared_decisions_pending"); got != 1 {
		t.Errorf("spillway_lb_shared_decisions_pending = %v, want 1", got)
	}
	// An undrain for an instance only a shared drain knows.
	if code, body := b.adminDo("POST", "/instances/"+waiting+"/undrain", "", true); code != 200 {
		t.Errorf("undrain of a waiting drain: %d %s", code, body)
	}
	if code, _ := b.adminDo("POST", "/instances/"+waiting+"/undrain", "", true); code != 404 {
		t.Errorf("undrain again: %d, want 404", code)
	}
	want := []string{"override(backend,off)", "drain(" + u1.svc + ",true)", "drain(" + waiting + ",false)"}
	if got := f.called(); !slices.Equal(got, want) {
		t.Errorf("Shared called %v, want %v", got, want)
	}
}

// TestLocalDecisionsOrigin: without Shared, an override and a drain are
// the balancer's own: origin "local".
func TestLocalDecisionsOrigin(t *testing.T) {
	u := startUpstream(t, http.NotFoundHandler())
	b := startLB(t, testConfig(u.lbInstance()), nil)
	b.waitRoutable(t, 1)
	if code, body := b.adminDo("PUT", "/shedding/backend", `{"mode":"on"}`, true); code != 200 {
		t.Fatalf("PUT: %d %s", code, body)
	}
	if code, body := b.adminDo("POST", "/instances/"+u.svc+"/drain", "", true); code != 200 {
		t.Fatalf("drain: %d %s", code, body)
	}
	st := b.Status()
	if d := b.dependency("backend"); d.OverrideOrigin != lb.OriginLocal || d.OverrideAt.IsZero() || d.OverridePending {
		t.Errorf("override %+v, want origin local, a time, not pending", d)
	}
	if in := b.instance(u.svc); in.DrainOrigin != lb.OriginLocal || in.DrainedAt.IsZero() {
		t.Errorf("instance %+v, want drained by local", in)
	}
	if st.Shared != nil || st.DrainsWaiting != nil {
		t.Errorf("shared %+v, waiting %v; want neither", st.Shared, st.DrainsWaiting)
	}
	if code, _ := b.adminDo("PUT", "/shedding/backend", `{"mode":"auto"}`, true); code != 200 {
		t.Fatal("auto refused")
	}
	if d := b.dependency("backend"); d.OverrideOrigin != "" {
		t.Errorf("back to auto: origin %q, want none", d.OverrideOrigin)
	}
}
