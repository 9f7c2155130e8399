package lb_test

import (
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/spillway-dev/spillway/health"
	"github.com/spillway-dev/spillway/internal/backendsim"
	"github.com/spillway-dev/spillway/internal/certs"
	"github.com/spillway-dev/spillway/internal/lb"
	"github.com/spillway-dev/spillway/internal/login"
	"github.com/spillway-dev/spillway/internal/testkit"
)

// client returns an HTTP client speaking only the protocols set, trusting
// ca's certificates (nil: no TLS config).
func protoClient(t *testing.T, ca *testkit.CA, set func(*http.Protocols)) *http.Client {
	t.Helper()
	tr := &http.Transport{Protocols: new(http.Protocols)}
	set(tr.Protocols)
	if ca != nil {
		tr.TLSClientConfig = &tls.Config{RootCAs: ca.Pool()}
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 5 * time.Second}
}

type answerSeen struct {
	proto                     int
	status                    int
	reason, retryAfter, ctype string
	body                      string
}

func loginOver(t *testing.T, c *http.Client, url string) answerSeen {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url+"/v1/login", strings.NewReader(`{"ticket":"valid-alice"}`))
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answerSeen{resp.ProtoMajor, resp.StatusCode, resp.Header.Get(health.ReasonHeader), resp.Header.Get("Retry-After"),
		resp.Header.Get("Content-Type"), string(b)}
}

// TestH2AndHTTP1SeeTheSameShedding: with the backend down, the balancer
// sheds; HTTP/1.1 and HTTP/2 clients, over TLS (ALPN) and without (h2c
// by prior knowledge), get the same answer, and a gRPC client gets
// UNAVAILABLE with the reason.
func TestH2AndHTTP1SeeTheSameShedding(t *testing.T) {
	ca := testkit.NewCA(t)
	certFile, keyFile, _ := ca.WritePair(t, t.TempDir(), "lb", "127.0.0.1", "localhost")
	sim, simURL := startSim(t)
	inst := startLogin(t, simURL, nil)

	tcfg := testConfig(inst.lbInstance())
	tcfg.Server.TLS = certs.Config{CertFile: certFile, KeyFile: keyFile}
	tb := startLB(t, tcfg, nil)
	ccfg := testConfig(inst.lbInstance())
	ccfg.Server.H2C = true
	cb := startLB(t, ccfg, nil)
	tb.waitRoutable(t, 1)
	cb.waitRoutable(t, 1)
	tlsURL := "https://" + strings.TrimPrefix(tb.url, "http://")

	h1TLS := protoClient(t, ca, func(p *http.Protocols) { p.SetHTTP1(true) })
	h2TLS := protoClient(t, ca, func(p *http.Protocols) { p.SetHTTP2(true) })
	h1 := protoClient(t, nil, func(p *http.Protocols) { p.SetHTTP1(true) })
	h2c := protoClient(t, nil, func(p *http.Protocols) { p.SetUnencryptedHTTP2(true) })

	// Served while the backend is up, over every protocol.
	for name, c := range map[string]struct {
		c   *http.Client
		url string
		h2  bool
	}{"h1 tls": {h1TLS, tlsURL, false}, "h2 tls": {h2TLS, tlsURL, true}, "h1": {h1, cb.url, false}, "h2c": {h2c, cb.url, true}} {
		if a := loginOver(t, c.c, c.url); a.status != http.StatusOK || (a.proto == 2) != c.h2 {
			t.Errorf("%s, backend up: %+v", name, a)
		}
	}

	if err := sim.SetMode(backendsim.ModeDown); err != nil {
		t.Fatal(err)
	}
	for _, b := range []*balancer{tb, cb} {
		testkit.WaitFor(t, 5*time.Second, "shedding", func() bool {
			loginOver(t, h1, cb.url) // failures the instance's breaker counts
			return b.dependency(login.BackendName).State == lb.ShedShedding
		})
	}
	want := loginOver(t, h1TLS, tlsURL)
	if want.status != http.StatusServiceUnavailable || want.reason != health.ReasonDependencyUnavailable ||
		!strings.Contains(want.body, `"dependency":"`+login.BackendName+`"`) || want.retryAfter == "" {
		t.Fatalf("HTTP/1.1 over TLS, shedding: %+v", want)
	}
	for name, got := range map[string]answerSeen{
		"h2 tls": loginOver(t, h2TLS, tlsURL),
		"h1":     loginOver(t, h1, cb.url),
		"h2c":    loginOver(t, h2c, cb.url),
	} {
		if (got.proto == 2) != strings.HasPrefix(name, "h2") {
			t.Errorf("%s: HTTP/%d", name, got.proto)
		}
		got.proto = want.proto
		if got != want {
			t.Errorf("%s: %+v, want %+v as over HTTP/1.1", name, got, want)
		}
	}

	// gRPC, over TLS and over h2c: UNAVAILABLE, the reason in the message.
	for name, target := range map[string]struct {
		addr  string
		creds credentials.TransportCredentials
	}{
		"tls": {strings.TrimPrefix(tb.url, "http://"), credentials.NewTLS(&tls.Config{RootCAs: ca.Pool()})},
		"h2c": {strings.TrimPrefix(cb.url, "http://"), insecure.NewCredentials()},
	} {
		conn, err := grpc.NewClient(target.addr, grpc.WithTransportCredentials(target.creds))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
		cancel()
		conn.Close()
		if st := status.Convert(err); st.Code() != codes.Unavailable ||
			st.Message() != health.ReasonDependencyUnavailable+": "+login.BackendName {
			t.Errorf("gRPC over %s: %v, want Unavailable %q", name, err, health.ReasonDependencyUnavailable+": "+login.BackendName)
		}
	}
}

// TestTLSToInstances: a login instance serving TLS on both its ports,
// behind a balancer with transport TLS (the CA file given) and HTTP/2:
// checks and reports work (it becomes routable, its backend's failure is
// reported and shed), and logins are proxied over HTTP/2.
func TestTLSToInstances(t *testing.T) {
	dir := t.TempDir()
	ca := testkit.NewCA(t)
	certFile, keyFile, _ := ca.WritePair(t, dir, "instance", "127.0.0.1")
	sim, simURL := startSim(t)
	inst := startLogin(t, simURL, func(c *login.Config) { c.TLS = certs.Config{CertFile: certFile, KeyFile: keyFile} })

	// Without transport TLS, the instance's checks fail: it never
	// becomes routable.
	cfg := testConfig(inst.lbInstance())
	cfg.Transport.TLS = lb.TransportTLSConfig{Enabled: true, CAFile: ca.WriteCA(t, dir, "ca.pem")}
	cfg.Transport.Protocol = lb.ProtocolH2
	b := startLB(t, cfg, nil)
	b.waitRoutable(t, 1)
	if r := b.login(context.Background()); r.status != http.StatusOK {
		t.Fatalf("login through a TLS instance: %+v", r)
	}
	if err := sim.SetMode(backendsim.ModeDown); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 5*time.Second, "shedding from the TLS instance's report", func() bool {
		b.login(context.Background()) // a failure the instance's breaker counts
		return b.dependency(login.BackendName).State == lb.ShedShedding
	})
}

// TestH2CToInstances: transport.protocol h2c reaches an instance that
// speaks HTTP/2 without TLS, for requests and checks alike.
func TestH2CToInstances(t *testing.T) {
	var protos [2]atomic.Int32 // service, health: the last request's ProtoMajor
	start := func(i int, h http.HandlerFunc) string {
		ln := testkit.Listen(t)
		srv := &http.Server{ReadHeaderTimeout: time.Second, Protocols: new(http.Protocols),
			Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { protos[i].Store(int32(r.ProtoMajor)); h(w, r) })}
		srv.Protocols.SetUnencryptedHTTP2(true)
		serve(t, srv, ln)
		return ln.Addr().String()
	}
	svc := start(0, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hi") })
	hl := start(1, answerHealthPort)
	cfg := testConfig(lb.Instance{Service: svc, Health: hl})
	cfg.Transport.Protocol = lb.ProtocolH2C
	b := startLB(t, cfg, nil)
	b.waitRoutable(t, 1)
	if r := b.get("/x"); r.status != http.StatusOK || r.body != "hi" {
		t.Fatalf("through an h2c instance: %+v", r)
	}
	if s, h := protos[0].Load(), protos[1].Load(); s != 2 || h != 2 {
		t.Errorf("instance saw HTTP/%d on its service port, HTTP/%d on its health port; want 2 and 2", s, h)
	}
}
