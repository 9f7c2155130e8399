package lb_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/spillway-dev/spillway/internal/lb"
	"github.com/spillway-dev/spillway/internal/testkit"
)

// probe GETs an admin path without a token and returns status and body.
func (b *balancer) probe(path string) (int, string) {
	return b.adminDo(http.MethodGet, path, "", false)
}

// refused reports whether the proxy's listener refuses connections.
func (b *balancer) refused() bool {
	c, err := net.DialTimeout("tcp", strings.TrimPrefix(b.url, "http://"), time.Second)
	if err == nil {
		c.Close()
		return false
	}
	return errors.Is(err, syscall.ECONNREFUSED)
}

// TestAdminProbesNeedNoToken: /livez and /readyz answer without a token
// even where every other read needs one (a non-loopback admin listener):
// they are what a load balancer in front of this one polls.
func TestAdminProbesNeedNoToken(t *testing.T) {
	cfg := testConfig()
	b, err := lb.New(*cfg, lb.Options{AdminToken: testToken})
	if err != nil {
		t.Fatal(err)
	}
	h := b.AdminHandler(true)
	for _, tt := range []struct {
		method, path string
		code         int
		body         string
	}{
		{"GET", "/livez", 200, "ok"},
		{"HEAD", "/livez", 200, ""},
		{"GET", "/readyz", 503, "starting\n"}, // not running yet
		{"POST", "/readyz", 405, "method not allowed\n"},
		{"GET", "/status", 401, `"unauthorized"`},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(tt.method, tt.path, nil))
		if got := strings.TrimSpace(rec.Body.String()); rec.Code != tt.code || !strings.Contains(got, strings.TrimSpace(tt.body)) {
			t.Errorf("%s %s: %d %q, want %d %q", tt.method, tt.path, rec.Code, got, tt.code, tt.body)
		}
	}
	if st := b.Status(); st.Lifecycle != "starting" || st.Draining {
		t.Errorf("before Run: lifecycle %q, draining %v", st.Lifecycle, st.Draining)
	}
}

// TestServesAfterFirstChecks: a balancer does not answer
// no_healthy_instance merely because it has not checked its instances
// yet. Until the first check of each is done, /readyz says "starting" and
// the proxy's listener is not served: a request waits in the backlog and
// is then served by the instance.
func TestServesAfterFirstChecks(t *testing.T) {
	t.Parallel()
	up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "served") }))
	checked := make(chan struct{})
	hl := testkit.Listen(t)
	serve(t, &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select { // the first check hangs until the test lets it pass
		case <-checked:
		case <-r.Context().Done():
			return
		}
		io.WriteString(w, "ok")
	}), ReadHeaderTimeout: time.Second}, hl)
	cfg := testConfig(lb.Instance{Service: up.svc, Health: hl.Addr().String()})
	cfg.HealthCheck.Interval, cfg.HealthCheck.Timeout = 10*time.Second, 5*time.Second
	empty := ""
	cfg.HealthCheck.ReportPath = empty
	b := startLB(t, cfg, nil)

	testkit.WaitFor(t, 5*time.Second, "admin API up", func() bool { code, _ := b.probe("/livez"); return code == 200 })
	if code, body := b.probe("/readyz"); code != 503 || body != "starting\n" {
		t.Errorf("/readyz during the first checks: %d %q, want 503 starting", code, body)
	}
	if st := b.Status(); st.Lifecycle != "starting" {
		t.Errorf("lifecycle %q, want starting", st.Lifecycle)
	}
	answer := make(chan result, 1)
	go func() { answer <- b.get("/") }()
	// The request is in the listener's backlog, unanswered, while the
	// check hangs. (No way to observe "not yet" without waiting a little.)
	select {
	case r := <-answer:
		t.Fatalf("answered during the first health check: %d %q %v", r.status, r.body, r.err)
	case <-time.After(200 * time.Millisecond):
	}
	close(checked)
	r := <-answer
	if r.status != 200 || r.body != "served" {
		t.Errorf("request sent before the first check: %d %q %v, want the instance's answer", r.status, r.body, r.err)
	}
	if code, body := b.probe("/readyz"); code != 200 || body != "ok" {
		t.Errorf("/readyz once serving: %d %q", code, body)
	}
}

// TestDrainOnStop: once the stop begins, /readyz answers 503 at once; the
// proxy keeps accepting and serving for the drain delay, answering with
// Connection: close; then the listener closes, and a request in flight
// all along still finishes.
func TestDrainOnStop(t *testing.T) {
	t.Parallel()
	inSlow, release := make(chan struct{}), make(chan struct{})
	up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(inSlow)
			<-release
			io.WriteString(w, "slow done")
			return
		}
		io.WriteString(w, "ok")
	}))
	cfg := testConfig(up.lbInstance())
	const delay = 1500 * time.Millisecond
	d := delay
	cfg.Server.DrainDelay = d
	b := startLB(t, cfg, nil)
	b.waitRoutable(t, 1)
	if code, body := b.probe("/readyz"); code != 200 || body != "ok" {
		t.Fatalf("/readyz while serving: %d %q", code, body)
	}
	slow := make(chan result, 1)
	go func() { slow <- b.get("/slow") }()
	<-inSlow

	stopped := time.Now()
	b.stop()
	testkit.WaitFor(t, time.Second, "/readyz 503 draining", func() bool {
		code, body := b.probe("/readyz")
		return code == 503 && body == "draining\n"
	})
	if code, _ := b.probe("/livez"); code != 200 {
		t.Errorf("/livez while draining: %d", code)
	}
	if st := b.Status(); st.Lifecycle != "draining" || !st.Draining {
		t.Errorf("status while draining: lifecycle %q, draining %v", st.Lifecycle, st.Draining)
	}
	if v := scrape(t, b.admin+"/metrics", "spillway_health_draining"); v != 1 {
		t.Errorf("spillway_health_draining = %v, want 1", v)
	}
	// Still serving, on a new connection too, and telling keep-alive
	// clients to go.
	fresh := &http.Client{Transport: &http.Transport{}}
	defer fresh.CloseIdleConnections()
	res, err := fresh.Get(b.url + "/")
	if err != nil {
		t.Fatalf("new connection during the drain delay: %v", err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || string(body) != "ok" || !res.Close { // Close: the answer said Connection: close
		t.Errorf("during the drain delay: %d %q, Connection: close %v", res.StatusCode, body, res.Close)
	}
	if time.Since(stopped) >= delay {
		t.Fatalf("the checks above took the whole drain delay (%s); cannot tell", delay)
	}
	testkit.WaitFor(t, delay+3*time.Second, "listener closed", b.refused)
	closed := time.Since(stopped)
	t.Logf("listener closed %s after the stop began (drain delay %s)", closed.Round(time.Millisecond), delay)
	if closed < delay {
		t.Errorf("listener closed after %s, before the drain delay %s", closed, delay)
	}
	if st := b.Status(); st.Lifecycle != "stopping" {
		t.Errorf("lifecycle %q after the drain delay, want stopping", st.Lifecycle)
	}
	select {
	case r := <-slow:
		t.Fatalf("the request in flight ended early: %d %q %v", r.status, r.body, r.err)
	default:
	}
	close(release)
	if r := <-slow; r.status != 200 || r.body != "slow done" {
		t.Errorf("request in flight across the stop: %d %q %v", r.status, r.body, r.err)
	}
	select {
	case <-b.done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return once the request in flight ended")
	}
	if b.runErr != nil || b.Status().Lifecycle != "stopped" {
		t.Errorf("Run: %v, lifecycle %q", b.runErr, b.Status().Lifecycle)
	}
}

// TestHurry: a second signal (Hurry) ends the drain delay at once; a
// third cuts the requests in flight off instead of waiting the shutdown
// timeout.
func TestHurry(t *testing.T) {
	t.Parallel()
	inSlow := make(chan struct{})
	up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(inSlow)
		<-r.Context().Done() // until the balancer gives up on it
	}))
	cfg := testConfig(up.lbInstance())
	long := time.Minute
	cfg.Server.DrainDelay = long
	cfg.Server.ShutdownTimeout = time.Minute
	cfg.Timeouts.ResponseHeader, cfg.Timeouts.Total = time.Minute, time.Minute
	cfg.Server.ReadTimeout, cfg.Server.WriteTimeout = time.Minute, time.Minute
	b := startLB(t, cfg, nil)
	b.waitRoutable(t, 1)
	slow := make(chan result, 1)
	go func() { slow <- b.get("/") }()
	<-inSlow

	b.stop()
	testkit.WaitFor(t, time.Second, "draining", func() bool { return b.Status().Lifecycle == "draining" })
	hurried := time.Now()
	b.Hurry()
	testkit.WaitFor(t, 3*time.Second, "listener closed", b.refused)
	t.Logf("listener closed %s after Hurry (drain delay %s)", time.Since(hurried).Round(time.Millisecond), long)
	select {
	case r := <-slow:
		t.Fatalf("the request in flight ended with the drain: %d %v", r.status, r.err)
	default:
	}
	hurried = time.Now()
	b.Hurry()
	select {
	case r := <-slow:
		t.Logf("request in flight cut off %s after the second Hurry: %d %v", time.Since(hurried).Round(time.Millisecond), r.status, r.err)
		if r.status == 200 {
			t.Errorf("request in flight was not cut off: %d", r.status)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("the request in flight was not cut off by a second Hurry")
	}
	select {
	case <-b.done:
	case <-time.After(3 * time.Second):
		t.Fatal("Run did not return after the second Hurry")
	}
}

// TestStopWaitsForUpgradedConnections: http.Server.Shutdown forgets
// hijacked connections; the balancer does not. A WebSocket open when the
// stop begins keeps working after the listener closes; the stop waits for
// it to end, and cuts one still open when the shutdown timeout is over.
func TestStopWaitsForUpgradedConnections(t *testing.T) {
	t.Parallel()
	up, _ := wsUpstream(t)
	cfg := testConfig(up.lbInstance())
	const timeout = 1500 * time.Millisecond
	cfg.Server.ShutdownTimeout = timeout
	b := startLB(t, cfg, nil)
	b.waitRoutable(t, 1)
	closing := dialWS(t, b, "/echo") // the client ends it during the stop
	defer closing.CloseNow()
	held := dialWS(t, b, "/echo") // still open at the shutdown timeout
	defer held.CloseNow()
	echo := func(c *websocket.Conn, msg string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
			return err
		}
		_, got, err := c.Read(ctx)
		if err == nil && string(got) != msg {
			err = errors.New("echo " + string(got))
		}
		return err
	}

	stopped := time.Now()
	b.stop()
	testkit.WaitFor(t, 3*time.Second, "listener closed", b.refused)
	if err := echo(closing, "after the listener closed"); err != nil {
		t.Fatalf("WebSocket after the listener closed: %v", err)
	}
	if err := closing.Close(websocket.StatusNormalClosure, "bye"); err != nil {
		t.Errorf("close: %v", err)
	}
	if err := echo(held, "still here"); err != nil {
		t.Fatalf("second WebSocket: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout+5*time.Second)
	defer cancel()
	_, _, err := held.Read(ctx)
	took := time.Since(stopped)
	t.Logf("WebSocket still open at the stop cut off after %s (shutdown timeout %s): %v", took.Round(time.Millisecond), timeout, err)
	if ctx.Err() != nil || took < timeout {
		t.Errorf("cut off after %s, want at the shutdown timeout %s", took, timeout)
	}
	select {
	case <-b.done:
	case <-time.After(3 * time.Second):
		t.Fatal("Run did not return after the shutdown timeout")
	}
}
