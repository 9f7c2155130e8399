package lb_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/health"
	"github.com/spillway-dev/spillway/internal/backendsim"
	"github.com/spillway-dev/spillway/internal/lb"
	"github.com/spillway-dev/spillway/internal/login"
	"github.com/spillway-dev/spillway/internal/testkit"
)

// The harness runs real parts on loopback, in-process: a backend-sim,
// login instances and a balancer, plus plain httptest-style servers where
// a test needs an upstream that misbehaves on purpose.

const testToken = "test-admin-token-0123456789"

// serve runs srv on ln until the test ends.
func serve(t testing.TB, srv *http.Server, ln net.Listener) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	t.Cleanup(func() {
		_ = srv.Close()
		<-done
	})
}

// startSim runs a backend-sim until the test ends.
func startSim(t *testing.T) (*backendsim.Sim, string) {
	t.Helper()
	sim, err := backendsim.New(backendsim.Config{Mode: backendsim.ModeUp, Latency: time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return sim, "http://" + testkit.Serve(t, sim.Serve)
}

// killableListener can close itself and every connection it accepted at
// once: the process's sockets as the kernel closes them when it dies.
type killableListener struct {
	net.Listener
	mu     sync.Mutex
	conns  []net.Conn
	killed bool
}

func (l *killableListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.killed {
		c.Close()
		return nil, net.ErrClosed
	}
	l.conns = append(l.conns, c)
	return c, nil
}

func (l *killableListener) kill() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.killed = true
	l.Listener.Close()
	for _, c := range l.conns {
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0) // RST, as for a dead process with data in flight
		}
		c.Close()
	}
}

// instance is a real login instance on loopback.
type instance struct {
	in          *login.Instance
	svc, health string // addresses
	svcLn, hLn  *killableListener
}

// loginConfig is a login config with short timeouts for tests.
func loginConfig(simURL string) *login.Config {
	d := login.DefaultConfig()
	c := &d
	c.Backend.URL = simURL
	c.Backend.Timeout = 250 * time.Millisecond
	c.Backend.ConsecutiveFailures = 3
	c.Backend.OpenInterval = 500 * time.Millisecond
	c.Backend.ProbeInterval = 100 * time.Millisecond
	c.Health.DrainDelay = 50 * time.Millisecond
	c.RateLimit.PerSecond = 0 // disabled
	c.ShutdownTimeout = 2 * time.Second
	return c
}

func startLogin(t *testing.T, simURL string, mutate func(*login.Config)) *instance {
	t.Helper()
	return startLoginWith(t, simURL, mutate, login.Options{})
}

// startLoginWith is startLogin with Options (in dev mode).
func startLoginWith(t *testing.T, simURL string, mutate func(*login.Config), opts login.Options) *instance {
	t.Helper()
	cfg := loginConfig(simURL)
	if mutate != nil {
		mutate(cfg)
	}
	opts.Dev = true
	in, err := login.New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	s := &instance{in: in, svcLn: &killableListener{Listener: testkit.Listen(t)}}
	s.svc = s.svcLn.Addr().String()
	var hl net.Listener
	if cfg.Health.SharedPort {
		s.health = s.svc
	} else {
		s.hLn = &killableListener{Listener: testkit.Listen(t)}
		s.health = s.hLn.Addr().String()
		hl = s.hLn
	}
	testkit.Go(t, "login instance", 10*time.Second, func(ctx context.Context) error {
		_ = in.Run(ctx, s.svcLn, hl) // fails once kill closed its listeners: not the test's concern
		return nil
	})
	return s
}

// kill closes both of the instance's ports and every connection at once.
func (s *instance) kill() {
	s.svcLn.kill()
	if s.hLn != nil {
		s.hLn.kill()
	}
}

func (s *instance) lbInstance() lb.Instance { return lb.Instance{Service: s.svc, Health: s.health} }

// handled returns how many logins reached the instance's login handler
// (spillway_login_requests_total, every outcome), read from its /metrics.
func (s *instance) handled(t *testing.T) int {
	t.Helper()
	return int(scrape(t, "http://"+s.health+"/metrics", "spillway_login_requests_total"))
}

// scrape sums the samples of a metric in a Prometheus text exposition.
func scrape(t *testing.T, url, name string) float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sum := 0.0
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		sum += v
	}
	return sum
}

// testConfig is a balancer config with short intervals for tests: health
// every 100ms, thresholds 2/2, slow start off, a 1s recovery ramp, no
// drain delay.
func testConfig(insts ...lb.Instance) *lb.Config {
	zero := time.Duration(0)
	d := lb.DefaultConfig()
	c := &d
	c.Listen, c.AdminListen, c.Instances = "127.0.0.1:0", "127.0.0.1:0", insts
	c.HealthCheck.Interval = 100 * time.Millisecond
	c.HealthCheck.Timeout = 100 * time.Millisecond
	c.HealthCheck.HealthyThreshold = 2
	c.HealthCheck.UnhealthyThreshold = 2
	c.SlowStart.Window = zero
	rw := time.Second
	c.Shedding.RecoveryWindow = rw
	c.Server.ShutdownTimeout = 5 * time.Second
	c.Server.DrainDelay = zero // the drain is tested on its own
	return c
}

// patientChecks gives c active checks that a loaded machine's stalls do
// not fail (500ms interval and timeout, three failures in a row to leave
// rotation), for tests whose point is that an instance stays in rotation
// while something else goes wrong: testConfig's 100ms checks can time out
// twice in a row when the race detector and other work share two cores.
func patientChecks(c *lb.Config) *lb.Config {
	c.HealthCheck.Interval = 500 * time.Millisecond
	c.HealthCheck.Timeout = 500 * time.Millisecond
	c.HealthCheck.UnhealthyThreshold = 3
	return c
}

// balancer is a running Balancer with its addresses.
type balancer struct {
	*lb.Balancer
	url, admin string
	client     *http.Client
	// stop begins the stop (cancels Run's context); done is closed when
	// Run has returned, runErr.
	stop   context.CancelFunc
	done   chan struct{}
	runErr error
}

// startLB runs a balancer built from cfg (New resolves its derived
// defaults)
// until the test ends. disc may be nil (the config's static list).
func startLB(t testing.TB, cfg *lb.Config, disc lb.Discovery) *balancer {
	t.Helper()
	return startLBWith(t, cfg, lb.Options{Discovery: disc})
}

// startLBWith is startLB with Options (the admin token is the test's).
func startLBWith(t testing.TB, cfg *lb.Config, opts lb.Options) *balancer {
	t.Helper()
	opts.AdminToken = testToken
	b, err := lb.New(*cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	ln, aln := testkit.Listen(t), testkit.Listen(t)
	ctx, cancel := context.WithCancel(context.Background())
	lbt := &balancer{Balancer: b, url: "http://" + ln.Addr().String(), admin: "http://" + aln.Addr().String(),
		client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}, stop: cancel, done: make(chan struct{})}
	go func() {
		defer close(lbt.done)
		lbt.runErr = b.Run(ctx, ln, aln)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-lbt.done:
			if lbt.runErr != nil {
				t.Errorf("Run: %v", lbt.runErr)
			}
		case <-time.After(15 * time.Second):
			t.Error("Run did not return within 15s of cancel")
		}
		lbt.client.CloseIdleConnections()
	})
	return lbt
}

// routable waits until n instances are routable.
func (b *balancer) waitRoutable(t testing.TB, n int) {
	t.Helper()
	testkit.WaitFor(t, 5*time.Second, fmt.Sprintf("%d routable instances", n), func() bool { return b.Status().Routing.Routable == n })
}

func (b *balancer) dependency(name string) lb.DependencyStatus {
	for _, d := range b.Status().Dependencies {
		if d.Name == name {
			return d
		}
	}
	return lb.DependencyStatus{Name: name}
}

func (b *balancer) instance(id string) lb.InstanceView {
	for _, in := range b.Status().Instances {
		if in.ID == id {
			return in
		}
	}
	return lb.InstanceView{}
}

// result is one client request's outcome.
type result struct {
	start, end time.Time
	status     int
	reason     string // X-Spillway-Reason
	retryAfter string
	body       string
	err        error
}

func (r result) latency() time.Duration { return r.end.Sub(r.start) }

func do(client *http.Client, req *http.Request) result {
	r := result{start: time.Now()}
	resp, err := client.Do(req)
	if err != nil {
		r.err, r.end = err, time.Now()
		return r
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	r.end = time.Now()
	r.status, r.body, r.err = resp.StatusCode, string(body), err
	r.reason, r.retryAfter = resp.Header.Get(health.ReasonHeader), resp.Header.Get("Retry-After")
	return r
}

func (b *balancer) login(ctx context.Context) result {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, b.url+"/v1/login", strings.NewReader(`{"ticket":"valid-alice"}`))
	req.Header.Set("Content-Type", "application/json")
	return do(b.client, req)
}

func (b *balancer) get(path string) result {
	req, _ := http.NewRequest(http.MethodGet, b.url+path, nil)
	return do(b.client, req)
}

// load runs workers closed-loop clients sending logins until stop is
// called, which returns every result in start order.
func (b *balancer) load(workers int) (stop func() []result) {
	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	var out []result
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for ctx.Err() == nil {
				r := b.login(context.Background())
				mu.Lock()
				out = append(out, r)
				mu.Unlock()
			}
		})
	}
	return func() []result {
		cancel()
		wg.Wait()
		sortByStart(out)
		return out
	}
}

func sortByStart(rs []result) {
	for i := 1; i < len(rs); i++ {
		for j := i; j > 0 && rs[j].start.Before(rs[j-1].start); j-- {
			rs[j], rs[j-1] = rs[j-1], rs[j]
		}
	}
}

// readinessGate fronts an instance's real health port and can make its
// /readyz answer 503 (an instance that says it is not ready, e.g. its own
// overload) while everything else passes through.
type readinessGate struct {
	addr    string
	unready atomic.Bool
}

func startGate(t *testing.T, health string) *readinessGate {
	t.Helper()
	g := &readinessGate{}
	target, _ := url.Parse("http://" + health)
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.Transport = &http.Transport{}
	ln := testkit.Listen(t)
	g.addr = ln.Addr().String()
	serve(t, &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/readyz" && g.unready.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		rp.ServeHTTP(w, r)
	}), ReadHeaderTimeout: time.Second}, ln)
	t.Cleanup(rp.Transport.(*http.Transport).CloseIdleConnections)
	return g
}

// upstream is a plain test server standing in for an instance whose
// behaviour a test controls (a deliberate misbehaviour), with a health
// port that reports it ready.
type upstream struct {
	svc, health string
	conns       atomic.Int64 // connections accepted on the service port
}

func startUpstream(t testing.TB, h http.Handler) *upstream {
	t.Helper()
	u := &upstream{}
	ln, hl := testkit.Listen(t), testkit.Listen(t)
	u.svc, u.health = ln.Addr().String(), hl.Addr().String()
	serve(t, &http.Server{Handler: h, ReadHeaderTimeout: time.Second, ConnState: func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			u.conns.Add(1)
		}
	}}, ln)
	serve(t, &http.Server{Handler: http.HandlerFunc(answerHealthPort), ReadHeaderTimeout: time.Second}, hl)
	return u
}

// answerHealthPort answers as a healthy instance's health port does: a
// ready report without dependencies at /health, "ok" anywhere else.
func answerHealthPort(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/health" {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"ready":true,"limit":0,"dependencies":{}}`)
		return
	}
	io.WriteString(w, "ok")
}

func (u *upstream) lbInstance() lb.Instance { return lb.Instance{Service: u.svc, Health: u.health} }

// deadInstance returns an instance whose health port says ready but whose
// service port refuses connections.
func deadInstance(t testing.TB) lb.Instance {
	t.Helper()
	u := startUpstream(t, http.NotFoundHandler())
	return lb.Instance{Service: testkit.RefusingAddr(t), Health: u.health}
}

// adminDo sends an admin request with the test token (or none).
func (b *balancer) adminDo(method, path, body string, withToken bool) (int, string) {
	req, _ := http.NewRequest(method, b.admin+path, strings.NewReader(body))
	if withToken {
		req.Header.Set("Authorization", "Bearer "+testToken)
	}
	r := do(b.client, req)
	if r.err != nil {
		return 0, r.err.Error()
	}
	return r.status, r.body
}
