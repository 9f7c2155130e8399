package lb_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/internal/lb"
)

// TestAdminRules: one rule everywhere for the bearer scheme (case does
// not matter, RFC 7235), strict bodies (nothing after the JSON object),
// and a loopback admin listener answers only a loopback Host (DNS
// rebinding).
func TestAdminRules(t *testing.T) {
	t.Parallel()
	up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	b := startLB(t, testConfig(up.lbInstance()), nil)
	b.waitRoutable(t, 1)
	do := func(method, path, host, auth, body string) int {
		req, _ := http.NewRequest(method, b.admin+path, strings.NewReader(body))
		if host != "" {
			req.Host = host
		}
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		r := do(b.client, req)
		if r.err != nil {
			t.Fatal(r.err)
		}
		return r.status
	}
	for _, tt := range []struct {
		name, method, path, host, auth, body string
		want                                 int
	}{
		{"lower-case scheme", "PUT", "/shedding/backend", "", "bearer " + testToken, `{"mode":"auto"}`, 200},
		{"trailing garbage", "PUT", "/shedding/backend", "", "Bearer " + testToken, `{"mode":"on"}garbage`, 400},
		{"second object", "PUT", "/shedding/backend", "", "Bearer " + testToken, `{"mode":"on"}{"mode":"off"}`, 400},
		{"unknown field", "PUT", "/shedding/backend", "", "Bearer " + testToken, `{"mode":"on","x":1}`, 400},
		{"foreign Host, read", "GET", "/status", "rebound.example:8081", "", "", 421},
		{"foreign Host, change", "POST", "/instances/" + up.svc + "/drain", "rebound.example", "Bearer " + testToken, "", 421},
		{"localhost Host", "GET", "/status", "localhost", "", "", 200},
		{"unknown instance", "POST", "/instances/10.9.9.9:1/drain", "", "Bearer " + testToken, "", 404},
	} {
		if got := do(tt.method, tt.path, tt.host, tt.auth, tt.body); got != tt.want {
			t.Errorf("%s: %s %s = %d, want %d", tt.name, tt.method, tt.path, got, tt.want)
		}
	}
	if d := b.dependency("backend"); d.State == lb.ShedShedding || d.Override == lb.OverrideOn {
		t.Errorf("a refused body changed the override: %+v", d)
	}
}

// TestHalfClosedClientGetsNoMadeUpStatus: a client that sends a whole
// request and half-closes is, to Go's server, a client that left; the
// balancer then closes the connection without an answer (nginx logs 499
// and sends nothing), never a non-standard 499 on the wire.
func TestHalfClosedClientGetsNoMadeUpStatus(t *testing.T) {
	t.Parallel()
	_, simURL := startSim(t)
	fleet := startFleet(t, 1, simURL, steady)
	b := startLB(t, testConfig(lbInstances(fleet)...), nil)
	b.waitRoutable(t, 1)
	for i := range 20 {
		conn, err := net.Dial("tcp", strings.TrimPrefix(b.url, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		body := `{"ticket":"valid-alice"}`
		fmt.Fprintf(conn, "POST /v1/login HTTP/1.1\r\nHost: lb\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
		conn.(*net.TCPConn).CloseWrite()
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		got, err := io.ReadAll(conn)
		conn.Close()
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		if len(got) > 0 && !strings.HasPrefix(string(got), "HTTP/1.1 200 ") {
			t.Fatalf("half-closed client %d got %q: want a real answer or none", i, got)
		}
	}
}
