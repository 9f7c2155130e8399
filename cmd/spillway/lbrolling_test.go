package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/internal/lb"
	"github.com/spillway-dev/spillway/internal/loadgen"
	"github.com/spillway-dev/spillway/internal/testbin"
	"github.com/spillway-dev/spillway/internal/testkit"
)

// The tests in this file run the built spillway binary as real processes
// on loopback: a backend-sim, login instances and `spillway lb`s, stopped
// with real signals.

const procToken = "proc-test-admin-token-0123"

// proc is a spillway process a test started, with a name for messages.
type proc struct {
	*testbin.Proc
	name string
}

func startProc(t *testing.T, name string, args ...string) *proc {
	t.Helper()
	return &proc{Proc: testbin.StartEnv(t, []string{"SPILLWAY_ADMIN_TOKEN=" + procToken}, args...), name: name}
}

// await waits for a line of the process's output matching re and returns
// its submatches; it fails the test if the process exits first.
func (p *proc) await(t *testing.T, re string, d time.Duration) []string {
	t.Helper()
	return p.Await(t, regexp.MustCompile(re), d)
}

// startSim starts `spillway backend-sim` on a free loopback port, answering
// after latency, and returns its address.
func startSim(t *testing.T, latency string) string {
	t.Helper()
	p := startProc(t, "backend-sim", "backend-sim", "--listen", "127.0.0.1:0", "--latency", latency)
	return p.await(t, `listening on ([0-9.:]+)`, 10*time.Second)[1]
}

// lbProc is a running `spillway lb`.
type lbProc struct {
	*proc
	proxy, admin string
	client       *http.Client
}

// startLBProc starts `spillway lb` on listen in front of instances
// (SERVICE=HEALTH) and waits until its /readyz answers 200.
func startLBProc(t *testing.T, listen string, instances []string) *lbProc {
	t.Helper()
	args := []string{"lb", "--listen", listen, "--admin-listen", "127.0.0.1:0"}
	for _, in := range instances {
		args = append(args, "--instance", in)
	}
	p := startProc(t, "lb "+listen, args...)
	m := p.await(t, `msg=listening proxy=(\S+) admin=(\S+)`, 10*time.Second)
	l := &lbProc{proc: p, proxy: m[1], admin: m[2], client: &http.Client{Timeout: time.Second, Transport: &http.Transport{}}}
	t.Cleanup(l.client.CloseIdleConnections)
	testkit.WaitFor(t, 10*time.Second, l.name+" ready", func() bool { return l.readyz() == http.StatusOK })
	return l
}

// readyz returns the status of the balancer's /readyz, 0 if none.
func (l *lbProc) readyz() int {
	res, err := l.client.Get("http://" + l.admin + "/readyz")
	if err != nil {
		return 0
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res.StatusCode
}

// refused reports whether addr refuses TCP connections.
func refused(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err == nil {
		c.Close()
		return false
	}
	return errors.Is(err, syscall.ECONNREFUSED)
}

// failover is a TCP-level client of two load balancers, as a client with
// two addresses (or a layer-4 balancer in front) behaves: it sends each
// request to the next balancer in turn and, when the connection is
// refused, or reset before any byte of the response came back, sends it to
// the other one instead. Nothing else is retried: an HTTP answer, whatever
// its status, is the answer.
type failover struct {
	addrs [2]string
	tr    *http.Transport
	next  atomic.Uint64

	refused, reset atomic.Int64 // retries, by cause

	mu     sync.Mutex
	served []servedBy // every answer, with the balancer that gave it
}

type servedBy struct {
	lb int
	at time.Time
}

func newFailover(a, b string) *failover {
	return &failover{addrs: [2]string{a, b}, tr: &http.Transport{
		DialContext:           (&net.Dialer{Timeout: time.Second}).DialContext,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       30 * time.Second,
		ResponseHeaderTimeout: 5 * time.Second,
	}}
}

func (f *failover) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		defer req.Body.Close() // each attempt sends a copy
	}
	first := int(f.next.Add(1) % 2)
	var err error
	for attempt := range 3 {
		i := (first + attempt) % 2
		r := req.Clone(req.Context())
		r.URL.Host, r.Host = f.addrs[i], f.addrs[i]
		if req.GetBody != nil {
			if r.Body, err = req.GetBody(); err != nil {
				return nil, err
			}
		}
		var res *http.Response
		res, err = f.tr.RoundTrip(r)
		if err == nil {
			f.mu.Lock()
			f.served = append(f.served, servedBy{lb: i, at: time.Now()})
			f.mu.Unlock()
			return res, nil
		}
		switch {
		case req.Context().Err() != nil:
			return nil, err
		case errors.Is(err, syscall.ECONNREFUSED):
			f.refused.Add(1)
		case resetBeforeResponse(err):
			f.reset.Add(1)
		default:
			return nil, err
		}
	}
	return nil, err
}

// resetBeforeResponse reports whether err is a connection that ended
// before any byte of the response: reset, or closed by the server (the
// transport's "server closed idle connection" for a keep-alive connection
// closed as the request went out).
func resetBeforeResponse(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		strings.Contains(err.Error(), "server closed idle connection")
}

// servedBetween counts the answers balancer i gave in [from, to).
func (f *failover) servedBetween(i int, from, to time.Time) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, s := range f.served {
		if s.lb == i && !s.at.Before(from) && s.at.Before(to) {
			n++
		}
	}
	return n
}

// TestLBRollingReplacement is issue 8's acceptance for the balancer's own
// life cycle: behind a TCP-level client that retries on connection refused,
// two `spillway lb`s with default settings are replaced one after the
// other (SIGTERM, then a new process on the same port once the old one's
// listener has closed) under 200 logins/s, and no login is lost.
func TestLBRollingReplacement(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real processes under load for about 20 s")
	}
	simAddr := startSim(t, "5ms")
	var instances []string
	for i := range 2 {
		p := startProc(t, fmt.Sprintf("login %d", i), "login", "--dev", "--listen", "127.0.0.1:0", "--health-listen", "127.0.0.1:0",
			"--backend", "http://"+simAddr, "--rate-limit", "0")
		m := p.await(t, `msg=listening service=(\S+) .*health=(\S+)`, 10*time.Second)
		instances = append(instances, m[1]+"="+m[2])
	}
	lbs := [2]*lbProc{startLBProc(t, "127.0.0.1:0", instances), startLBProc(t, "127.0.0.1:0", instances)}
	f := newFailover(lbs[0].proxy, lbs[1].proxy)
	defer f.tr.CloseIdleConnections()

	const rate, loadFor = 200, 18 * time.Second
	cfg := loadgen.Config{
		URL:     "http://spillway-lbs/v1/login", // the failover client picks the balancer
		Method:  http.MethodPost,
		Header:  http.Header{"Content-Type": {"application/json"}},
		Body:    func(i int) []byte { return fmt.Appendf(nil, `{"ticket":"valid-user-%d"}`, i%1000) },
		Rate:    rate,
		Client:  &http.Client{Transport: f},
		Timeout: 5 * time.Second,
	}
	cfg.Duration = loadFor
	type loadResult struct {
		res loadgen.Result
		err error
	}
	loadDone := make(chan loadResult, 1)
	loadStart := time.Now()
	go func() {
		res, err := loadgen.Run(context.Background(), cfg, nil)
		loadDone <- loadResult{res, err}
	}()

	time.Sleep(time.Second) // the load runs on both balancers first
	for i := range lbs {
		old := lbs[i]
		sent := time.Now()
		if err := old.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		testkit.WaitFor(t, 2*time.Second, old.name+" /readyz 503", func() bool { return old.readyz() == http.StatusServiceUnavailable })
		unready := time.Since(sent)
		testkit.WaitFor(t, lb.DefaultDrainDelay+5*time.Second, old.name+" listener closed", func() bool { return refused(old.proxy) })
		closed := time.Since(sent)
		nu := startLBProc(t, old.proxy, instances) // the same port
		ready := time.Since(sent)
		select {
		case <-old.Done():
		case <-time.After(25 * time.Second):
			t.Fatalf("%s still running %s after SIGTERM", old.name, time.Since(sent).Round(time.Millisecond))
		}
		exited := time.Since(sent)
		if old.Err() != nil {
			t.Errorf("%s: %v", old.name, old.Err())
		}
		draining := f.servedBetween(i, sent.Add(unready), sent.Add(closed-100*time.Millisecond))
		t.Logf("balancer %d replaced: /readyz 503 after %s; served %d logins while draining; listener closed after %s; old process exited after %s; new one ready after %s",
			i, unready.Round(time.Millisecond), draining, closed.Round(time.Millisecond), exited.Round(time.Millisecond), ready.Round(time.Millisecond))
		if closed < lb.DefaultDrainDelay {
			t.Errorf("balancer %d closed its listener %s after SIGTERM, before the drain delay (%s)", i, closed, lb.DefaultDrainDelay)
		}
		if draining == 0 {
			t.Errorf("balancer %d served nothing during its drain delay", i)
		}
		lbs[i] = nu
		time.Sleep(time.Second) // the load runs on the new pair before the next replacement, and after the last
	}
	if el := time.Since(loadStart); el > loadFor-500*time.Millisecond {
		t.Fatalf("the replacements took %s, longer than the load (%s)", el.Round(time.Millisecond), loadFor)
	}

	var lr loadResult
	select {
	case lr = <-loadDone:
	case <-time.After(loadFor + 15*time.Second):
		t.Fatal("the load did not end")
	}
	if lr.err != nil {
		t.Fatalf("load: %v", lr.err)
	}
	res := lr.res
	t.Logf("%d logins at %d/s over %s: outcomes %v; retried on the other balancer: %d refused, %d reset before the response",
		res.Requests, rate, loadFor, res.Outcomes, f.refused.Load(), f.reset.Load())
	if ok := res.Outcomes["ok"]; ok != res.Requests || res.Sent != res.Requests || res.Lost() != 0 {
		t.Errorf("%d of %d logins succeeded (sent %d, lost %d): want every one", ok, res.Requests, res.Sent, res.Lost())
	}
}

// TestLBSecondSignal: a second SIGTERM during the drain delay ends it at
// once (the listener closes long before the 5 s default), and the process
// exits cleanly.
func TestLBSecondSignal(t *testing.T) {
	svc, hl := fakeInstance(t)
	l := startLBProc(t, "127.0.0.1:0", []string{svc + "=" + hl})
	sent := time.Now()
	if err := l.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	l.await(t, `msg="signal received: stopping"`, 2*time.Second)
	testkit.WaitFor(t, 2*time.Second, "/readyz 503", func() bool { return l.readyz() == http.StatusServiceUnavailable })
	if refused(l.proxy) {
		t.Fatal("listener closed before the drain delay")
	}
	if err := l.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-l.Done():
	case <-time.After(lb.DefaultDrainDelay - time.Second):
		t.Fatalf("still running %s after the second SIGTERM", time.Since(sent).Round(time.Millisecond))
	}
	t.Logf("exited %s after the first SIGTERM (drain delay %s)", time.Since(sent).Round(time.Millisecond), lb.DefaultDrainDelay)
	if l.Err() != nil {
		t.Errorf("exit: %v", l.Err())
	}
	out := l.Output()
	for _, want := range []string{`msg="signal received again: hurrying the stop"`, `msg="drain delay cut short`, "msg=stopped"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %s:\n%s", want, out)
		}
	}
}
