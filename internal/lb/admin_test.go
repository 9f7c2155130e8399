package lb_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

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
