//go:build unix

package registry

import (
	"context"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/spillway-dev/spillway/internal/lb"
	"github.com/spillway-dev/spillway/internal/testkit"
	"github.com/spillway-dev/spillway/internal/testkit/etcdtest"
	"github.com/spillway-dev/spillway/internal/testkit/tcpproxy"
)

// startDecisions makes the Decisions of id under prefix, reads what etcd
// holds (Refresh) and runs it until the test ends.
func startDecisions(t *testing.T, cli *clientv3.Client, prefix, id string, opts Options) *Decisions {
	t.Helper()
	d := NewDecisions(cli, prefix, id, opts)
	if err := d.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	testkit.Go(t, "decisions of "+id, 5*time.Second, d.Run)
	return d
}

func override(d *Decisions, dep string) (lb.OverrideDecision, bool) {
	cur, _ := d.Current()
	o, ok := cur.Overrides[dep]
	return o, ok
}

func drain(d *Decisions, id string) (lb.Decision, bool) {
	cur, _ := d.Current()
	dr, ok := cur.Drains[id]
	return dr, ok
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestDecisionsShared: two balancers on one prefix. One that starts reads
// the decisions in force; a change on either is seen by the other well
// within a second, with its origin; back to auto and undrain delete the
// keys. etcd stopped: the decisions stay, a change applies at once as
// pending and lands once etcd is back; nothing is lost.
func TestDecisionsShared(t *testing.T) {
	e, cli, opts := startEtcd(t)
	const prefix = "/shared"
	const inst = "127.0.0.1:8080"

	a := startDecisions(t, cli, prefix, "lb-a", opts)
	must(t, a.SetOverride("backend", lb.OverrideOn))
	must(t, a.SetDrained(inst, true))
	// In force here at once: local and pending until the publisher has
	// written it, from lb-a then.
	if o, _ := override(a, "backend"); o.Mode != lb.OverrideOn || (o.Origin != lb.OriginLocal || !o.Pending) && o.Origin != "lb-a" {
		t.Errorf("a right after its change: %+v, want on, local and pending, or from lb-a", o)
	}
	testkit.WaitFor(t, time.Second, "a's changes published", func() bool { return a.Status().Pending == 0 })

	// b starts with the decisions in force.
	b := NewDecisions(cli, prefix, "lb-b", opts)
	must(t, b.Refresh(context.Background()))
	if o, ok := override(b, "backend"); !ok || o.Mode != lb.OverrideOn || o.Origin != "lb-a" || o.Pending {
		t.Errorf("b at start: override %+v (%v), want on from lb-a", o, ok)
	}
	if d, ok := drain(b, inst); !ok || d.Origin != "lb-a" {
		t.Errorf("b at start: drain %+v (%v), want from lb-a", d, ok)
	}
	testkit.Go(t, "decisions of lb-b", 5*time.Second, b.Run)

	// A change on b reaches a well within a second, and back.
	took := []time.Duration{}
	for _, step := range []struct {
		do   func(*Decisions) error
		seen func(*Decisions) bool
		what string
	}{
		{func(d *Decisions) error { return d.SetOverride("backend", lb.OverrideOff) }, func(d *Decisions) bool {
			o, ok := override(d, "backend")
			return ok && o.Mode == lb.OverrideOff && o.Origin == "lb-b"
		}, "a: off from lb-b"},
		{func(d *Decisions) error { return d.SetOverride("backend", lb.OverrideAuto) }, func(d *Decisions) bool {
			_, ok := override(d, "backend")
			return !ok
		}, "a: backend back to auto"},
		{func(d *Decisions) error { return d.SetDrained(inst, false) }, func(d *Decisions) bool {
			_, ok := drain(d, inst)
			return !ok
		}, "a: instance undrained"},
	} {
		must(t, step.do(b))
		took = append(took, testkit.WaitFor(t, time.Second, step.what, func() bool { return step.seen(a) }))
	}
	t.Logf("b's changes seen by a after %v", took)
	for _, k := range []string{OverrideKey(prefix, "backend"), DrainKey(prefix, inst)} {
		if res, err := cli.Get(context.Background(), k); err != nil || len(res.Kvs) != 0 {
			t.Errorf("%s: %v, %v; want no key", k, res, err)
		}
	}

	// etcd stopped: what is in force stays; a change is pending here.
	must(t, b.SetDrained("127.0.0.1:9090", true))
	testkit.WaitFor(t, time.Second, "b's drain seen by a", func() bool { _, ok := drain(a, "127.0.0.1:9090"); return ok })
	e.Stop()
	testkit.WaitFor(t, 3*time.Second, "etcd lost", func() bool { return !a.Status().Connected })
	must(t, a.SetOverride("db", lb.OverrideOn))
	if o, ok := override(a, "db"); !ok || o.Origin != lb.OriginLocal || !o.Pending || a.Status().Pending != 1 {
		t.Errorf("etcd stopped: a's override %+v (%v), pending %d; want on, local, pending 1", o, ok, a.Status().Pending)
	}
	if _, ok := drain(a, "127.0.0.1:9090"); !ok {
		t.Error("etcd stopped: a lost b's drain")
	}
	e.Restart()
	took2 := testkit.WaitFor(t, 5*time.Second, "a's pending override seen by b", func() bool {
		o, ok := override(b, "db")
		return ok && o.Mode == lb.OverrideOn && o.Origin == "lb-a"
	})
	t.Logf("etcd back: a's pending change seen by b %v after the restart", took2)
	if st := a.Status(); st.Pending != 0 || st.Superseded != 0 || !st.Connected {
		t.Errorf("etcd back: a's status %+v, want connected, nothing pending or superseded", st)
	}
	for _, d := range []*Decisions{a, b} {
		if _, ok := drain(d, "127.0.0.1:9090"); !ok {
			t.Errorf("%s: the drain taken before the outage is lost", d.id)
		}
	}
}

// TestDecisionsSuperseded: b is cut off from etcd (a proxy between them)
// and overrides backend off while a overrides it on; once the link is
// back, a's change, which etcd took first, stands on both, b's is
// dropped and counted, and b's other change, which nobody contested,
// lands.
func TestDecisionsSuperseded(t *testing.T) {
	e := etcdtest.Start(t)
	opts := testOpts(t)
	const prefix = "/cut"
	p := tcpproxy.Start(t, e.HostPort())
	cliB, err := Dial(Target{Endpoints: []string{"http://" + p.Addr()}})
	must(t, err)
	t.Cleanup(func() { cliB.Close() })
	a := startDecisions(t, dial(t, e), prefix, "lb-a", opts)
	b := startDecisions(t, cliB, prefix, "lb-b", opts)

	p.Cut()
	testkit.WaitFor(t, 2*time.Second, "b cut off", func() bool { return !b.Status().Connected })
	must(t, b.SetOverride("backend", lb.OverrideOff))
	must(t, b.SetDrained("127.0.0.1:7000", true))
	must(t, a.SetOverride("backend", lb.OverrideOn))
	testkit.WaitFor(t, time.Second, "a's override published", func() bool { return a.Status().Pending == 0 })
	if o, _ := override(b, "backend"); o.Mode != lb.OverrideOff || !o.Pending || b.Status().Pending != 2 {
		t.Errorf("b cut off: %+v, pending %d; want its own off, pending, 2 changes pending", o, b.Status().Pending)
	}

	p.Restore()
	testkit.WaitFor(t, 5*time.Second, "b's changes published or dropped", func() bool { return b.Status().Pending == 0 })
	for _, d := range []*Decisions{a, b} {
		testkit.WaitFor(t, time.Second, d.id+": a's override and b's drain", func() bool {
			o, ok := override(d, "backend")
			_, drained := drain(d, "127.0.0.1:7000")
			return ok && o.Mode == lb.OverrideOn && o.Origin == "lb-a" && drained
		})
	}
	if st := b.Status(); st.Superseded != 1 || !st.Connected {
		t.Errorf("b: %+v, want connected and 1 change superseded", st)
	}
}
