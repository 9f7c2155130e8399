//go:build unix

package registry

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/spillway-dev/spillway/internal/lb"
	"github.com/spillway-dev/spillway/internal/testkit"
	"github.com/spillway-dev/spillway/internal/testkit/etcdtest"
)

// testOpts are short timeouts for loopback etcd.
func testOpts(t *testing.T) Options {
	return Options{
		TTL:           2 * time.Second,
		Timeout:       500 * time.Millisecond,
		ProbeInterval: 200 * time.Millisecond,
		Backoff:       Exponential(50*time.Millisecond, 400*time.Millisecond, func() float64 { return 0.5 }),
		Logger:        testLogger(t),
	}
}

// startEtcd starts etcd for the test and returns it, with a client of
// it (dial) and the test's Options (testOpts).
func startEtcd(t *testing.T) (*etcdtest.Server, *clientv3.Client, Options) {
	t.Helper()
	e := etcdtest.Start(t)
	return e, dial(t, e), testOpts(t)
}

func dial(t *testing.T, e *etcdtest.Server) *clientv3.Client {
	t.Helper()
	cli, err := Dial(Target{Endpoints: []string{e.Endpoint()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

func record(id string, port int) Record {
	return Record{
		ID:      id,
		Service: fmt.Sprintf("127.0.0.1:%d", port),
		Health:  fmt.Sprintf("127.0.0.1:%d", port+1000),
		Started: time.Now().UTC().Truncate(time.Second),
	}
}

// register registers rec and keeps it alive until the test ends; cancel
// stops keeping it alive, without revoking.
func register(t *testing.T, cli *clientv3.Client, prefix string, rec Record, opts Options) (r *Registration, cancel func() error) {
	t.Helper()
	r, err := Register(context.Background(), cli, prefix, rec, opts)
	if err != nil {
		t.Fatal(err)
	}
	return r, testkit.Go(t, "keep-alive of "+rec.ID, 5*time.Second, r.Run)
}

// sets records every set a Discovery publishes.
type sets struct {
	mu   sync.Mutex
	all  [][]lb.Instance
	last []lb.Instance
}

func (s *sets) update(insts []lb.Instance) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.all = append(s.all, insts)
	s.last = insts
}

// services returns the latest set's service addresses; nil before any.
func (s *sets) services() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.all == nil {
		return nil
	}
	out := []string{}
	for _, in := range s.last {
		out = append(out, in.Service)
	}
	return out
}

// count returns how many sets were published.
func (s *sets) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.all)
}

// since returns the sets published after the first n.
func (s *sets) since(n int) [][]lb.Instance {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.all[n:])
}

func watch(t *testing.T, d *Discovery) *sets {
	s := &sets{}
	testkit.Go(t, "discovery", 5*time.Second, func(ctx context.Context) error { return d.Watch(ctx, s.update) })
	return s
}

func waitServices(t *testing.T, s *sets, within time.Duration, want ...string) time.Duration {
	t.Helper()
	slices.Sort(want)
	return testkit.WaitFor(t, within, fmt.Sprintf("discovered %v", want), func() bool {
		got := s.services()
		slices.Sort(got)
		return got != nil && slices.Equal(got, want)
	})
}

func TestRegisterDiscoverDeregister(t *testing.T) {
	_, cli, opts := startEtcd(t)
	const prefix = "/test"
	a, _ := register(t, cli, prefix, record("a", 8001), opts)
	register(t, cli, prefix, record("b", 8002), opts)
	if want := "/test/instances/a"; a.Key() != want {
		t.Errorf("Key() = %q, want %q", a.Key(), want)
	}
	d := NewDiscovery(cli, prefix, opts)
	s := watch(t, d)
	waitServices(t, s, 3*time.Second, "127.0.0.1:8001", "127.0.0.1:8002")
	if got := s.since(0)[0]; len(got) != 2 || got[0].Health != "127.0.0.1:9001" {
		t.Errorf("first set %+v: want both, a's health on 9001", got)
	}
	if !d.Connected() || d.LastSync().IsZero() {
		t.Errorf("Connected() = %v, LastSync() = %v after a read", d.Connected(), d.LastSync())
	}

	// A third arrives through the watch; a deregistered one leaves at once.
	register(t, cli, prefix, record("c", 8003), opts)
	waitServices(t, s, 3*time.Second, "127.0.0.1:8001", "127.0.0.1:8002", "127.0.0.1:8003")
	if err := a.Deregister(context.Background()); err != nil {
		t.Fatal(err)
	}
	took := waitServices(t, s, 3*time.Second, "127.0.0.1:8002", "127.0.0.1:8003")
	t.Logf("deregistered instance left the set after %v", took)
	if err := a.Deregister(context.Background()); err != nil {
		t.Errorf("second Deregister = %v", err)
	}

	// A record that does not decode is skipped; the others stay.
	if _, err := cli.Put(context.Background(), Key(prefix, "junk"), "{not json"); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(context.Background(), Key(prefix, "other"), `{"id":"x","service":"127.0.0.1:1","health":"127.0.0.1:2"}`); err != nil {
		t.Fatal(err)
	}
	register(t, cli, prefix, record("d", 8004), opts)
	waitServices(t, s, 3*time.Second, "127.0.0.1:8002", "127.0.0.1:8003", "127.0.0.1:8004")
}

func TestExpiresWithoutKeepAlive(t *testing.T) {
	e, cli, opts := startEtcd(t)
	const prefix = "/expiry"
	_, stopA := register(t, cli, prefix, record("a", 8001), opts)
	register(t, cli, prefix, record("b", 8002), opts)

	// c has a client of its own, which it loses: a process gone.
	cliC := dial(t, e)
	_, stopC := register(t, cliC, prefix, record("c", 8003), opts)

	s := watch(t, NewDiscovery(cli, prefix, opts))
	waitServices(t, s, 3*time.Second, "127.0.0.1:8001", "127.0.0.1:8002", "127.0.0.1:8003")
	time.Sleep(opts.TTL + 500*time.Millisecond) // kept alive past its TTL
	waitServices(t, s, time.Millisecond, "127.0.0.1:8001", "127.0.0.1:8002", "127.0.0.1:8003")

	// Stop keeping a alive, without revoking.
	if err := stopA(); err != nil {
		t.Fatal(err)
	}
	took := waitServices(t, s, opts.TTL+time.Second, "127.0.0.1:8002", "127.0.0.1:8003")
	t.Logf("instance that stopped keeping alive left after %v (TTL %v)", took, opts.TTL)

	// Close c's client under its Run: Run returns an error saying so.
	cliC.Close()
	took = waitServices(t, s, opts.TTL+time.Second, "127.0.0.1:8002")
	t.Logf("instance whose client closed left after %v (TTL %v)", took, opts.TTL)
	if err := stopC(); err == nil || !strings.Contains(err.Error(), "client closed") {
		t.Errorf("Run with its client closed = %v, want the client closed", err)
	}
}

func TestEtcdLostKeepsTheSet(t *testing.T) {
	e, cli, opts := startEtcd(t)
	log := &testkit.SyncBuffer{}
	opts.Logger = bufLogger(log)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("registry log:\n%s", log.String())
		}
	})
	const prefix = "/lost"
	register(t, cli, prefix, record("a", 8001), opts)
	register(t, cli, prefix, record("b", 8002), opts)
	d := NewDiscovery(cli, prefix, opts)
	s := watch(t, d)
	waitServices(t, s, 3*time.Second, "127.0.0.1:8001", "127.0.0.1:8002")
	n := s.count()
	synced := d.LastSync()

	// Longer than the TTL: the registrations' keep-alives give up and
	// register again once etcd is back.
	e.Stop()
	testkit.WaitFor(t, 3*time.Second, "Connected() false", func() bool { return !d.Connected() })
	time.Sleep(3 * time.Second) // etcd stays away past the TTL
	e.Restart()
	testkit.WaitFor(t, 5*time.Second, "Connected() true", d.Connected)
	if !d.LastSync().After(synced) {
		t.Errorf("LastSync %v, not after the outage (before it: %v)", d.LastSync(), synced)
	}
	// The instances' old leases expire a TTL after etcd's restart; their
	// keys must survive that, re-put under new leases.
	time.Sleep(opts.TTL + time.Second) // past the old leases' expiry
	waitServices(t, s, time.Millisecond, "127.0.0.1:8001", "127.0.0.1:8002")
	for _, set := range s.since(n) {
		if len(set) < 2 {
			t.Errorf("a set with %d instances was published around the outage: %+v", len(set), set)
		}
	}
	// The watch follows changes again.
	register(t, cli, prefix, record("c", 8003), opts)
	waitServices(t, s, 3*time.Second, "127.0.0.1:8001", "127.0.0.1:8002", "127.0.0.1:8003")

	out := log.String()
	for _, want := range []string{"etcd unreachable; keeping the last set", "etcd answers again", "etcd lease lost", "registered again"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	if c := strings.Count(out, "etcd unreachable; keeping the last set"); c != 1 {
		t.Errorf("warned %d times of one outage, want once:\n%s", c, out)
	}
}

func TestRegisterDeadEndpoint(t *testing.T) {
	ln := testkit.Listen(t)
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	cli, err := Dial(Target{Endpoints: []string{"http://" + addr}})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	start := time.Now()
	_, err = Register(context.Background(), cli, "/dead", record("a", 8001), testOpts(t))
	if err == nil || !strings.Contains(err.Error(), addr) || !strings.Contains(err.Error(), "grant lease") {
		t.Errorf("Register against a dead endpoint = %v, want an error naming %s", err, addr)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("Register took %v to fail, want about its 500ms timeout", took)
	}
}

// TestFollowProbesWhileTheWatchOpens: etcd lost between the read and the
// watch (the watch stream never opens) is still noticed by the probes.
// cli.Watch waits for etcd to open the stream; were it called inline the
// follower would stay "connected" through the outage.
func TestFollowProbesWhileTheWatchOpens(t *testing.T) {
	e, cli, opts := startEtcd(t)
	rev, err := ReadPrefix(context.Background(), cli, "/opening", opts, PrefixHooks{})
	if err != nil {
		t.Fatal(err)
	}
	e.Stop() // after the read, before the watch

	lost := make(chan error, 1)
	testkit.Go(t, "follow", 5*time.Second, func(ctx context.Context) error {
		return followPrefix(ctx, cli, "/opening", rev, opts, PrefixHooks{Lost: func(err error) {
			select {
			case lost <- err:
			default:
			}
		}}.withDefaults())
	})
	select {
	case err := <-lost:
		t.Logf("lost: %v", err)
	case <-time.After(3 * time.Second): // a probe every 200 ms
		t.Fatal("followPrefix did not call Lost within 3s of etcd stopping before its watch opened")
	}
}
