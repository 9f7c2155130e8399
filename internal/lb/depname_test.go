package lb_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/spillway-dev/spillway/internal/lb"
	"github.com/spillway-dev/spillway/internal/testkit"
)

// TestDependencyNamesCannotBreakMetrics: dependency names are outside
// input (the admin API, the instances' reports) and become metric labels.
// A name that is not valid UTF-8 once made every /metrics scrape answer
// 500; now the override is refused and the report entry ignored.
func TestDependencyNamesCannotBreakMetrics(t *testing.T) {
	t.Parallel()
	hl := testkit.Listen(t)
	serve(t, &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/health" {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, "{\"ready\":true,\"limit\":4,\"dependencies\":{\"\xff\xfe\":{\"state\":\"down\"},"+
				`"a{b=\"c\"}":{"state":"down"},"backend":{"state":"up"}}}`)
			return
		}
		io.WriteString(w, "ok")
	})}, hl)
	up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	inst := up.lbInstance()
	inst.Health = hl.Addr().String()
	b := startLB(t, testConfig(inst), nil)
	b.waitRoutable(t, 1)
	testkit.WaitFor(t, 3e9, "the report read", func() bool { return b.instance(inst.Service).Report != nil })

	for _, name := range []string{"%ff%fe", "a%7Bb%3D%22c%22%7D", "-x", strings.Repeat("d", 65)} {
		if code, body := b.adminDo("PUT", "/shedding/"+name, `{"mode":"on"}`, true); code != 400 {
			t.Errorf("PUT /shedding/%s: %d %s, want 400", name, code, body)
		}
	}
	if code, _ := b.adminDo("PUT", "/shedding/db:primary", `{"mode":"off"}`, true); code != 200 {
		t.Errorf("a valid name refused: %d", code)
	}
	code, body := b.adminDo("GET", "/metrics", "", false)
	if code != 200 || !strings.Contains(body, `spillway_lb_shedding_ratio{dependency="backend"} 0`) || !strings.Contains(body, `dependency="db:primary"`) {
		t.Fatalf("/metrics: %d\n%s", code, body)
	}
	for _, d := range b.Status().Dependencies {
		if !lb.ValidDependencyName(d.Name) {
			t.Errorf("tracking a dependency with an invalid name %q", d.Name)
		}
	}
}
