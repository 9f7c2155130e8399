package lb_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/health"
	"github.com/spillway-dev/spillway/internal/lb"
	"github.com/spillway-dev/spillway/internal/testkit"
)

func TestProxyForwarding(t *testing.T) {
	t.Parallel()
	type seen struct {
		Host, XFF, Proto, XHost, Conn, Custom, Path, Body string
	}
	got := make(chan seen, 1)
	up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		got <- seen{r.Host, r.Header.Get("X-Forwarded-For"), r.Header.Get("X-Forwarded-Proto"), r.Header.Get("X-Forwarded-Host"),
			r.Header.Get("Connection"), r.Header.Get("X-Hop"), r.URL.RequestURI(), string(body)}
		w.Header().Set("Connection", "X-Secret")
		w.Header().Set("X-Secret", "hop-by-hop")
		w.Header().Set("X-App", "yes")
		io.WriteString(w, "hello")
	}))
	b := startLB(t, testConfig(up.lbInstance()), nil)
	b.waitRoutable(t, 1)

	req, _ := http.NewRequest("POST", b.url+"/a/b?x=1", strings.NewReader("payload"))
	req.Host = "example.test"
	req.Header.Set("X-Forwarded-For", "203.0.113.9") // a client's claim: replaced
	req.Header.Set("Connection", "X-Hop")
	req.Header.Set("X-Hop", "must not pass")
	resp, err := b.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	s := <-got
	want := seen{Host: "example.test", XFF: "127.0.0.1", Proto: "http", XHost: "example.test", Path: "/a/b?x=1", Body: "payload"}
	if s != want {
		t.Errorf("upstream saw %+v, want %+v", s, want)
	}
	if resp.StatusCode != 200 || string(body) != "hello" || resp.Header.Get("X-App") != "yes" || resp.Header.Get("X-Secret") != "" {
		t.Errorf("client got %d %q %v", resp.StatusCode, body, resp.Header)
	}
}

func TestProxyKeepAliveReuse(t *testing.T) {
	t.Parallel()
	up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	b := startLB(t, testConfig(up.lbInstance()), nil)
	b.waitRoutable(t, 1)
	for range 200 {
		if r := b.get("/"); r.status != 200 {
			t.Fatalf("%d %v", r.status, r.err)
		}
	}
	if n := up.conns.Load(); n > 2 {
		t.Errorf("200 sequential requests opened %d connections to the instance, want 1 (keep-alive)", n)
	}
}

func TestNoHealthyInstance(t *testing.T) {
	t.Parallel()
	b := startLB(t, testConfig(), nil)
	r := b.get("/x")
	if r.status != 503 || r.reason != health.ReasonNoHealthyInstance || !strings.Contains(r.body, `"error":"no_healthy_instance"`) || r.retryAfter == "" {
		t.Errorf("no instance: %d %q %q", r.status, r.reason, r.body)
	}
}

func TestTimeouts(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/slow-header":
			select {
			case <-release:
			case <-r.Context().Done():
			}
		case "/slow-body":
			w.WriteHeader(200)
			io.WriteString(w, "partial")
			w.(http.Flusher).Flush()
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}
	}))
	defer close(release)
	cfg := testConfig(up.lbInstance())
	cfg.Routes = []lb.RouteConfig{
		{Prefix: "/slow-header", ResponseHeaderTimeout: 150 * time.Millisecond, TotalTimeout: time.Second},
		{Prefix: "/slow-body", ResponseHeaderTimeout: 150 * time.Millisecond, TotalTimeout: 300 * time.Millisecond},
	}
	b := startLB(t, cfg, nil)
	b.waitRoutable(t, 1)

	r := b.get("/slow-header")
	if r.status != 504 || r.reason != health.ReasonGatewayTimeout || !strings.Contains(r.body, "gateway_timeout") {
		t.Errorf("slow header: %d %q %q", r.status, r.reason, r.body)
	}
	if d := r.latency(); d < 150*time.Millisecond || d > 600*time.Millisecond {
		t.Errorf("slow header answered after %v, want about 150ms", d)
	}
	r = b.get("/slow-body")
	if r.err == nil {
		t.Errorf("slow body: got a complete response %d %q, want it cut off", r.status, r.body)
	}
	if d := r.latency(); d < 300*time.Millisecond || d > 800*time.Millisecond {
		t.Errorf("slow body cut after %v, want about 300ms (total timeout)", d)
	}
	if st := b.Status().Counters.Requests; st["timeout"] != 1 || st["ok"] != 1 {
		t.Errorf("counters %v, want 1 timeout and 1 ok (headers were sent)", st)
	}
}

func TestRetryOnConnectFailure(t *testing.T) {
	t.Parallel()
	up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		io.WriteString(w, "got "+string(body))
	}))
	dead := deadInstance(t)
	cfg := testConfig(up.lbInstance(), dead)
	never := 1000
	cfg.Outlier.ConsecutiveGatewayFailures = never
	b := startLB(t, cfg, nil)
	b.waitRoutable(t, 2) // the dead one's health port says ready

	for i := range 30 {
		req, _ := http.NewRequest("POST", b.url+"/p", strings.NewReader("body"))
		r := do(b.client, req)
		if r.status != 200 || r.body != "got body" {
			t.Fatalf("request %d: %d %q %v", i, r.status, r.body, r.err)
		}
	}
	if n := b.Status().Counters.Retries["ok"]; n == 0 {
		t.Errorf("no successful retry counted")
	}
}

// TestRetryTwiceWhenNothingWasSent: a host that dies takes its instances
// with it: with two dead instances of three, a POST that meets both in a
// row is retried a second time, on the third, and never fails; with all
// three dead it gets 502 after two retries, not more.
func TestRetryTwiceWhenNothingWasSent(t *testing.T) {
	t.Parallel()
	up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		io.WriteString(w, "got "+string(body))
	}))
	never := 1000
	cfg := testConfig(up.lbInstance(), deadInstance(t), deadInstance(t))
	cfg.Outlier.ConsecutiveGatewayFailures = never
	b := startLB(t, cfg, nil)
	b.waitRoutable(t, 3)
	for i := range 60 {
		req, _ := http.NewRequest("POST", b.url+"/p", strings.NewReader("body"))
		r := do(b.client, req)
		if r.status != 200 || r.body != "got body" {
			t.Fatalf("request %d: %d %q %v", i, r.status, r.body, r.err)
		}
	}
	if c := b.Status().Counters.Retries; c["failed"] == 0 || c["ok"] == 0 {
		t.Errorf("retries %v: want some first retries that met the other dead instance, then succeeded", c)
	}

	cfg = testConfig(deadInstance(t), deadInstance(t), deadInstance(t))
	cfg.Outlier.ConsecutiveGatewayFailures = never
	all := startLB(t, cfg, nil)
	all.waitRoutable(t, 3)
	req, _ := http.NewRequest("POST", all.url+"/p", strings.NewReader("body"))
	if r := do(all.client, req); r.status != 502 || r.reason != health.ReasonBadGateway {
		t.Errorf("every instance dead: %d %q, want 502 bad_gateway", r.status, r.reason)
	}
	if c := all.Status().Counters.Retries; c["failed"] != 2 || c["ok"] != 0 {
		t.Errorf("every instance dead: retries %v, want two, failed", c)
	}
}

func TestRetryBudgetExhausted(t *testing.T) {
	t.Parallel()
	dead := deadInstance(t)
	dead2 := deadInstance(t)
	cfg := testConfig(dead, dead2)
	zero := 0.0
	never := 1000
	cfg.RetryBudget.Ratio, cfg.RetryBudget.MinRetriesPerSecond = zero, zero
	cfg.Outlier.ConsecutiveGatewayFailures = never
	b := startLB(t, cfg, nil)
	b.waitRoutable(t, 2)
	r := b.get("/")
	if r.status != 502 || r.reason != health.ReasonBadGateway || !strings.Contains(r.body, "bad_gateway") {
		t.Errorf("dead instance: %d %q %q", r.status, r.reason, r.body)
	}
	if c := b.Status().Counters; c.Retries["budget_exhausted"] != 1 || c.Retries["ok"]+c.Retries["failed"] != 0 {
		t.Errorf("retries %v, want one refused by the budget", c.Retries)
	}
}

func TestGatewayFailuresEject(t *testing.T) {
	t.Parallel()
	var deliberate atomic.Bool
	bad := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if deliberate.Load() {
			w.Header().Set(health.ReasonHeader, "overloaded")
		}
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	good := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	cfg := testConfig(bad.lbInstance(), good.lbInstance())
	b := startLB(t, cfg, nil)
	b.waitRoutable(t, 2)

	// Deliberate 503s (with the reason header) are answers, not failures.
	deliberate.Store(true)
	for range 40 {
		b.get("/")
	}
	if in := b.instance(bad.svc); in.State != lb.InstanceHealthy || in.Ejections != 0 {
		t.Fatalf("deliberate 503s ejected the instance: %+v", in.InstanceStatus)
	}
	// Bare 503s are gateway failures: 5 in a row eject it.
	deliberate.Store(false)
	testkit.WaitFor(t, 2*time.Second, "ejection", func() bool {
		b.get("/")
		return b.instance(bad.svc).State == lb.InstanceEjected
	})
	for range 20 {
		if r := b.get("/"); r.status != 200 {
			t.Fatalf("after ejection: %d", r.status)
		}
	}
	if n := b.Status().Counters.Ejections; n != 1 {
		t.Errorf("ejections = %d, want 1", n)
	}
}

func TestShedOverrideAndRoutes(t *testing.T) {
	t.Parallel()
	up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	cfg := testConfig(up.lbInstance())
	cfg.Routes = []lb.RouteConfig{
		{Prefix: "/static/", Dependencies: []string{}},       // needs nothing
		{Prefix: "/pay", Dependencies: []string{"payments"}}, // needs payments only
		{Prefix: "/timeouts-only", TotalTimeout: 5 * time.Second},
	}
	b := startLB(t, cfg, nil)
	b.waitRoutable(t, 1)

	if code, _ := b.adminDo("PUT", "/shedding/backend", `{"mode":"on"}`, false); code != 401 {
		t.Errorf("override without token: %d, want 401", code)
	}
	code, body := b.adminDo("PUT", "/shedding/backend", `{"mode":"on"}`, true)
	if code != 200 || !strings.Contains(body, `"state": "shedding"`) {
		t.Fatalf("override on: %d %s", code, body)
	}
	for path, want := range map[string]int{"/login": 503, "/timeouts-only/x": 503, "/static/app.js": 200, "/pay": 200} {
		r := b.get(path)
		if r.status != want {
			t.Errorf("%s: %d, want %d", path, r.status, want)
		}
		if want == 503 && (r.reason != health.ReasonDependencyUnavailable || r.body != `{"error":"dependency_unavailable","dependency":"backend"}`+"\n") {
			t.Errorf("%s: reason %q body %q", path, r.reason, r.body)
		}
	}
	if code, _ := b.adminDo("PUT", "/shedding/backend", `{"mode":"off"}`, true); code != 200 {
		t.Errorf("override off: %d", code)
	}
	if r := b.get("/login"); r.status != 200 {
		t.Errorf("after override off: %d", r.status)
	}
	for _, bad := range []string{`{"mode":"maybe"}`, `{"mode":"on","x":1}`, `not json`} {
		if code, _ := b.adminDo("PUT", "/shedding/backend", bad, true); code != 400 {
			t.Errorf("override %s: %d, want 400", bad, code)
		}
	}
}

func TestAdminAPI(t *testing.T) {
	t.Parallel()
	up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	b := startLB(t, testConfig(up.lbInstance()), nil)
	b.waitRoutable(t, 1)

	code, body := b.adminDo("GET", "/status", "", false) // loopback: reads need no token
	var st lb.Status
	if err := json.Unmarshal([]byte(body), &st); code != 200 || err != nil || len(st.Instances) != 1 || st.Instances[0].Health != up.health {
		t.Fatalf("status: %d %v %s", code, err, body)
	}
	code, body = b.adminDo("GET", "/metrics", "", false)
	for _, m := range []string{"spillway_lb_requests_total{outcome=\"ok\"}", "spillway_lb_panic 0", "spillway_lb_routable_instances 1",
		"spillway_lb_capacity", "spillway_lb_ejections_total", "spillway_lb_retries_total", "spillway_lb_config_reload_total",
		"spillway_build_info{goversion="} {
		if code != 200 || !strings.Contains(body, m) {
			t.Errorf("metrics lack %s", m)
		}
	}

	id := up.svc
	if code, _ := b.adminDo("POST", "/instances/"+id+"/drain", "", false); code != 401 {
		t.Errorf("drain without token: %d", code)
	}
	req, _ := http.NewRequest("POST", b.admin+"/instances/"+id+"/drain", nil)
	req.Header.Set("Authorization", "Bearer wrong-token-of-some-length")
	if r := do(b.client, req); r.status != 401 {
		t.Errorf("drain with a wrong token: %d", r.status)
	}
	if code, body := b.adminDo("POST", "/instances/"+id+"/drain", "", true); code != 200 {
		t.Fatalf("drain: %d %s", code, body)
	}
	if r := b.get("/"); r.status != 503 || r.reason != health.ReasonNoHealthyInstance {
		t.Errorf("drained: %d %q", r.status, r.reason)
	}
	if st := b.instance(id).State; st != lb.InstanceDrained {
		t.Errorf("state %s, want drained", st)
	}
	if code, _ := b.adminDo("POST", "/instances/"+id+"/undrain", "", true); code != 200 {
		t.Fatalf("undrain: %d", code)
	}
	if r := b.get("/"); r.status != 200 {
		t.Errorf("undrained: %d", r.status)
	}
	if code, _ := b.adminDo("POST", "/instances/10.9.9.9:1/drain", "", true); code != 404 {
		t.Errorf("drain of an unknown instance: %d, want 404", code)
	}

	// A non-loopback admin listener: reads need the token too.
	h := b.AdminHandler(true)
	srvLn := testkit.Listen(t)
	serve(t, &http.Server{Handler: h, ReadHeaderTimeout: time.Second}, srvLn)
	if r := do(b.client, mustReq(t, "GET", "http://"+srvLn.Addr().String()+"/status")); r.status != 401 {
		t.Errorf("read without token when reads need it: %d", r.status)
	}
}

// rawRequest sends raw bytes on a new connection and returns the first
// response line, or the read error.
func rawRequest(t *testing.T, addr, raw string) (string, error) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		return "", err
	}
	return bufio.NewReader(c).ReadString('\n')
}

func TestHostileClients(t *testing.T) {
	t.Parallel()
	up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	cfg := testConfig(up.lbInstance())
	cfg.Server.ReadHeaderTimeout = 200 * time.Millisecond
	cfg.Server.MaxHeaderBytes = 4096
	b := startLB(t, cfg, nil)
	b.waitRoutable(t, 1)
	addr := strings.TrimPrefix(b.url, "http://")

	tests := []struct{ name, raw, want string }{
		{"oversized headers", "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 16<<10) + "\r\n\r\n", "HTTP/1.1 431"},
		{"garbage request line", "GARBAGE\r\n\r\n", "HTTP/1.1 400"},
		{"bad header", "GET / HTTP/1.1\r\nHost: x\r\nNo colon here\r\n\r\n", "HTTP/1.1 400"},
		{"no host", "GET / HTTP/1.1\r\n\r\n", "HTTP/1.1 400"},
		{"CONNECT", "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", "HTTP/1.1 405"},
		{"asterisk form (answered by net/http)", "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 200"},
		{"bad content length", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n", "HTTP/1.1 400"},
		{"invalid upgrade", "GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: bad\x01proto\r\n\r\n", "HTTP/1.1 400"},
		{"well-formed", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 200"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			line, err := rawRequest(t, addr, tt.raw)
			if err != nil || !strings.HasPrefix(line, tt.want) {
				t.Errorf("got %q %v, want %q", line, err, tt.want)
			}
		})
	}

	t.Run("slowloris", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		start := time.Now()
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ") // and never the rest
		_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
		_, err = io.ReadAll(c)
		took := time.Since(start)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("connection still open after %v, want it closed after the 200ms read header timeout", took)
		}
		if took > time.Second {
			t.Errorf("closed after %v, want about 200ms", took)
		}
		t.Logf("slow headers: connection closed after %v", took)
	})
}

// TestProxyResponseHeaders: the instance's response headers reach the
// client whole (several values of one header, trailers), hop-by-hop ones
// do not, and a protocol upgrade (101, whose headers ReverseProxy reads)
// still works.
func TestProxyResponseHeaders(t *testing.T) {
	t.Parallel()
	up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") == "echo" {
			conn, brw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				t.Error(err)
				return
			}
			defer conn.Close()
			brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
			brw.Flush()
			line, _ := brw.ReadString('\n')
			brw.WriteString(line)
			brw.Flush()
			return
		}
		h := w.Header()
		h.Add("Set-Cookie", "a=1")
		h.Add("Set-Cookie", "b=2")
		h.Set("Connection", "X-Hop")
		h.Set("X-Hop", "must not pass")
		h.Set("Trailer", "X-Sum")
		io.WriteString(w, "body")
		h.Set("X-Sum", "42")
	}))
	b := startLB(t, testConfig(up.lbInstance()), nil)
	b.waitRoutable(t, 1)

	resp, err := b.client.Get(b.url + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if got := resp.Header.Values("Set-Cookie"); len(got) != 2 || got[0] != "a=1" || got[1] != "b=2" {
		t.Errorf("Set-Cookie = %q, want [a=1 b=2]", got)
	}
	if resp.Header.Get("X-Hop") != "" || string(body) != "body" || resp.Trailer.Get("X-Sum") != "42" {
		t.Errorf("client got %q, header %v, trailer %v", body, resp.Header, resp.Trailer)
	}

	c, err := net.Dial("tcp", strings.TrimPrefix(b.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	br := bufio.NewReader(c)
	up101, err := http.ReadResponse(br, nil)
	if err != nil || up101.StatusCode != http.StatusSwitchingProtocols || up101.Header.Get("Upgrade") != "echo" {
		t.Fatalf("upgrade: %v %v", up101, err)
	}
	io.WriteString(c, "ping\n")
	if line, err := br.ReadString('\n'); err != nil || line != "ping\n" {
		t.Errorf("after the upgrade: %q %v, want the echo", line, err)
	}
}
