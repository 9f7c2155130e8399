//go:build unix

package main

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/internal/lb"
	"github.com/spillway-dev/spillway/internal/testkit"
	"github.com/spillway-dev/spillway/internal/testkit/tcpproxy"
)

// TestEtcdShared runs two `spillway lb --discovery etcd://` in front of
// two registered login instances; B reaches etcd through a TCP proxy the
// test can cut. An override or a drain on A's admin API is applied by B
// within a second, with A as its origin on B's /status; automatic
// shedding stays each balancer's own. Cut off from etcd, B serves on with
// the instances, decisions and share it knew, says so on /status, and
// applies a change of its own at once, pending; once the link is back it
// resyncs without a restart and the change reaches A.
func TestEtcdShared(t *testing.T) {
	rig := startEtcdRig(t, "shared", "1ms", 2*time.Second)
	url, services := rig.url, rig.services()
	link := tcpproxy.Start(t, rig.etcd.HostPort())
	urlB := "etcd://" + link.Addr() + "/shared"
	a, b := startDiscoveryLB(t, "lb A", url), startDiscoveryLB(t, "lb B", urlB)

	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{}}
	t.Cleanup(client.CloseIdleConnections)
	status := func(l discoveryLB) lb.Status {
		t.Helper()
		st, err := lbStatus(client, l.admin)
		if err != nil {
			t.Fatalf("%s %v", l.name, err)
		}
		return st
	}
	admin := func(l discoveryLB, method, path, body string) {
		t.Helper()
		req, _ := http.NewRequest(method, "http://"+l.admin+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+procToken)
		res, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s %s: %v", l.name, method, path, err)
		}
		msg, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Fatalf("%s %s %s: %d %s", l.name, method, path, res.StatusCode, msg)
		}
	}
	dep := func(st lb.Status) lb.DependencyStatus {
		for _, d := range st.Dependencies {
			if d.Name == "backend" {
				return d
			}
		}
		return lb.DependencyStatus{}
	}
	inst := func(st lb.Status, id string) lb.InstanceView {
		for _, in := range st.Instances {
			if in.ID == id {
				return in
			}
		}
		return lb.InstanceView{}
	}
	login := func(l discoveryLB) int {
		code, _ := loginThrough(client, l.proxy, "user-1") // 0: no answer
		return code
	}
	for _, l := range []discoveryLB{a, b} {
		testkit.WaitFor(t, 5*time.Second, l.name+": both instances routable, half the capacity", func() bool {
			st := status(l)
			return st.Routing.Routable == 2 && st.Capacity.Share == 0.5 && st.Capacity.Peers == 2
		})
	}
	// Automatic shedding is each balancer's own, from the same reports.
	for _, l := range []discoveryLB{a, b} {
		if d := dep(status(l)); d.Override != lb.OverrideAuto || d.State != lb.ShedOK || d.Ready != 2 {
			t.Errorf("%s: backend %+v, want auto and ok, decided from 2 reports", l.name, d)
		}
	}

	// A change on A's admin API, applied by B within a second.
	within := func(what string, cond func(lb.Status) bool) {
		t.Helper()
		took := testkit.WaitFor(t, time.Second, "lb B: "+what, func() bool { return cond(status(b)) })
		t.Logf("lb B: %s %v after lb A's change", what, took.Round(time.Millisecond))
	}
	admin(a, "PUT", "/shedding/backend", `{"mode":"on"}`)
	within("override on from A, shedding", func(st lb.Status) bool {
		d := dep(st)
		return d.Override == lb.OverrideOn && d.OverrideOrigin == a.id && d.State == lb.ShedShedding
	})
	if code := login(b); code != http.StatusServiceUnavailable {
		t.Errorf("lb B, override on from A: login %d, want 503", code)
	}
	admin(a, "PUT", "/shedding/backend", `{"mode":"auto"}`)
	within("back to auto", func(st lb.Status) bool {
		d := dep(st)
		return d.Override == lb.OverrideAuto && d.OverrideOrigin == "" && d.State != lb.ShedShedding
	})
	admin(a, "POST", "/instances/"+services[0]+"/drain", "")
	within("instance 0 drained by A", func(st lb.Status) bool {
		in := inst(st, services[0])
		return in.State == lb.InstanceDrained && in.DrainOrigin == a.id
	})
	admin(a, "PUT", "/shedding/backend", `{"mode":"off"}`)
	within("override off from A", func(st lb.Status) bool { d := dep(st); return d.Override == lb.OverrideOff && d.OverrideOrigin == a.id })

	// B cut off from etcd: it serves on with what it knew.
	link.Cut()
	took := testkit.WaitFor(t, 4*time.Second, "lb B: etcd unreachable on /status", func() bool {
		st := status(b)
		return st.Discovery != nil && !st.Discovery.Connected && !st.Discovery.UnreachableSince.IsZero()
	})
	t.Logf("lb B: etcd unreachable on /status %v after the cut", took.Round(time.Millisecond))
	for i := range 10 {
		if code := login(b); code != http.StatusOK {
			t.Fatalf("lb B cut off: login %d: %d, want 200", i, code)
		}
	}
	st := status(b)
	if d := dep(st); d.Override != lb.OverrideOff || d.OverrideOrigin != a.id {
		t.Errorf("lb B cut off: backend %+v, want off from A still", d)
	}
	if in := inst(st, services[0]); st.Routing.Instances != 2 || in.State != lb.InstanceDrained || in.DrainOrigin != a.id {
		t.Errorf("lb B cut off: %d instances, instance 0 %s by %q; want 2, drained by A", st.Routing.Instances, in.State, in.DrainOrigin)
	}
	if st.Capacity.Share != 0.5 || st.Capacity.Peers != 2 {
		t.Errorf("lb B cut off: share %v of %d, want 0.5 of 2 still", st.Capacity.Share, st.Capacity.Peers)
	}
	// A change on B applies at once, pending.
	admin(b, "PUT", "/shedding/backend", `{"mode":"auto"}`)
	st = status(b)
	if d := dep(st); d.Override != lb.OverrideAuto || st.Shared == nil || st.Shared.Pending != 1 || st.Shared.Connected {
		t.Errorf("lb B cut off, after its own change: backend %+v, shared %+v; want auto, 1 pending, not connected", d, st.Shared)
	}
	if got := scrapeSum(t, client, "http://"+b.admin+"/metrics", "spillway_lb_shared_decisions_pending"); got != 1 {
		t.Errorf("lb B: spillway_lb_shared_decisions_pending %v, want 1", got)
	}
	if d := dep(status(a)); d.Override != lb.OverrideOff {
		t.Errorf("lb A while B is cut off: backend %+v, want off still", d)
	}

	// The link back: B resyncs without a restart; its change reaches A.
	restored := time.Now()
	link.Restore()
	testkit.WaitFor(t, 5*time.Second, "lb B: etcd connected, the change published", func() bool {
		st := status(b)
		return st.Discovery.Connected && st.Shared.Connected && st.Shared.Pending == 0
	})
	testkit.WaitFor(t, time.Second, "lb A: backend back to auto, from B", func() bool { return dep(status(a)).Override == lb.OverrideAuto })
	t.Logf("lb B resynced and its change reached A %v after the link came back", time.Since(restored).Round(time.Millisecond))
	st = status(b)
	if st.Routing.Instances != 2 || inst(st, services[0]).State != lb.InstanceDrained || st.Capacity.Share != 0.5 {
		t.Errorf("lb B after the link came back: %d instances, instance 0 %s, share %v; want 2, drained, 0.5", st.Routing.Instances, inst(st, services[0]).State, st.Capacity.Share)
	}
	select {
	case <-b.Done():
		t.Error("lb B exited")
	default:
	}
}
