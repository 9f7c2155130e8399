package lb_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/internal/lb"
	"github.com/spillway-dev/spillway/internal/testkit"
)

func TestStaticWatch(t *testing.T) {
	t.Parallel()
	a, b := lb.Instance{Service: "a:1", Health: "a:2"}, lb.Instance{Service: "b:1", Health: "b:2"}
	s := lb.NewStatic([]lb.Instance{a})
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan []lb.Instance, 4)
	done := make(chan error, 1)
	go func() { done <- s.Watch(ctx, func(insts []lb.Instance) { got <- insts }) }()
	if first := <-got; !slices.Equal(first, []lb.Instance{a}) {
		t.Errorf("first set %v", first)
	}
	s.Set([]lb.Instance{a, b})
	if second := <-got; !slices.Equal(second, []lb.Instance{a, b}) {
		t.Errorf("second set %v", second)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Watch after cancel: %v", err)
	}
}

// TestReload: a bad configuration keeps the running one; a good one
// applies at once (instances, routes) without dropping requests in flight,
// even on an instance it removes.
func TestReload(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	slow := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			<-release
		}
		io.WriteString(w, "a")
	}))
	other := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "b") }))
	cfg := testConfig(slow.lbInstance())
	b := startLB(t, cfg, nil)
	b.waitRoutable(t, 1)

	inflight := make(chan result, 1)
	go func() { inflight <- b.get("/slow") }()
	testkit.WaitFor(t, 2*time.Second, "request in flight", func() bool { return b.instance(slow.svc).Outstanding == 1 })

	// A bad file: kept, counted, reported.
	err := b.Reload(func() (*lb.Config, error) {
		c := testConfig(lb.Instance{Service: "x:y", Health: "127.0.0.1:1"})
		return c, nil
	})
	if err == nil || !strings.Contains(err.Error(), `instances[0].service: "x:y"`) {
		t.Errorf("bad reload: %v", err)
	}
	if err := b.Reload(func() (*lb.Config, error) { return nil, errors.New("read: no such file") }); err == nil {
		t.Error("a failed load reloaded")
	}
	if c := b.Status().Counters.Reloads; c["failure"] != 2 || c["success"] != 0 {
		t.Errorf("reload counters %v", c)
	}

	// A good file: the slow instance is replaced by the other one, and a
	// route now needs no dependency.
	err = b.Reload(func() (*lb.Config, error) {
		c := testConfig(other.lbInstance())
		c.Routes = []lb.RouteConfig{{Prefix: "/free", Dependencies: []string{}}}
		q := 5
		c.Admission.QueueSize = q
		return c, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	b.waitRoutable(t, 1)
	testkit.WaitFor(t, 2*time.Second, "new instance routable", func() bool { return b.instance(other.svc).Routable })
	if r := b.get("/x"); r.status != 200 || r.body != "b" {
		t.Errorf("after reload: %d %q", r.status, r.body)
	}
	close(release)
	if r := <-inflight; r.status != 200 || r.body != "a" {
		t.Errorf("request in flight across the reload: %d %q %v", r.status, r.body, r.err)
	}
	if code, _ := b.adminDo("PUT", "/shedding/backend", `{"mode":"on"}`, true); code != 200 {
		t.Fatal(code)
	}
	if r := b.get("/free/x"); r.status != 200 {
		t.Errorf("reloaded route: %d", r.status)
	}
	if r := b.get("/x"); r.status != 503 {
		t.Errorf("unmatched path while shedding: %d", r.status)
	}
	if c := b.Status().Counters.Reloads; c["success"] != 1 {
		t.Errorf("reload counters %v", c)
	}
}

func TestNewNeedsToken(t *testing.T) {
	t.Parallel()
	c := testConfig()
	if _, err := lb.New(*c, lb.Options{}); err == nil {
		t.Error("New without an admin token succeeded")
	}
	c.HealthCheck.Interval = -1
	if _, err := lb.New(*c, lb.Options{AdminToken: testToken}); err == nil {
		t.Error("New with an invalid config succeeded")
	}
}
