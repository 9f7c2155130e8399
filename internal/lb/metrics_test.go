package lb_test

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/internal/lb"
	"github.com/spillway-dev/spillway/internal/testkit"
	"github.com/spillway-dev/spillway/internal/testkit/promtest"
)

// TestMetricsLint: a running balancer's /metrics, with a route, two
// instances and requests of several outcomes, passes `promtool check
// metrics` and has the duration histogram by route and outcome, the
// per-instance series and the reload gauges. A reload that drops an
// instance and a route drops their series.
func TestMetricsLint(t *testing.T) {
	t.Parallel()
	promtest.Promtool(t) // skip (or, in CI, fail) before starting anything
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/missing" {
			http.NotFound(w, r)
			return
		}
		io.WriteString(w, "ok")
	})
	ok, other := startUpstream(t, h), startUpstream(t, h)
	cfg := testConfig(ok.lbInstance(), other.lbInstance())
	cfg.Routes = []lb.RouteConfig{{Prefix: "/api/", TotalTimeout: 5 * time.Second}}
	b := startLB(t, cfg, nil)
	b.waitRoutable(t, 2)
	for _, p := range []string{"/api/x", "/api/missing", "/other"} {
		b.get(p)
	}

	scrape := func() string { return string(promtest.Scrape(t, b.admin+"/metrics")) }
	body := scrape()
	for _, want := range []string{
		`spillway_lb_request_duration_seconds_bucket{outcome="ok",route="/api/",le="+Inf"} `,
		`spillway_lb_request_duration_seconds_count{outcome="ok",route="default"} `,
		`spillway_lb_request_duration_seconds_count{outcome="shed",route="/api/"} 0`,
		`spillway_lb_instance_state{state="healthy",upstream="` + ok.svc + `"} 1`,
		`spillway_lb_instance_state{state="ejected",upstream="` + ok.svc + `"} 0`,
		`spillway_lb_instance_in_flight{upstream="` + other.svc + `"} 0`,
		`spillway_lb_instance_ejections_total{upstream="` + other.svc + `"} 0`,
		`spillway_lb_instance_checks_total{result="pass",upstream="` + other.svc + `"} `,
		`spillway_lb_instance_checks_total{result="connect_error",upstream="` + other.svc + `"} 0`,
		"spillway_config_last_reload_successful 1",
		"spillway_config_last_reload_success_timestamp_seconds ",
		"spillway_build_info{",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	// The outcomes: one ok and one 4xx on /api/, one ok elsewhere (the
	// count of any bucket line above is at least one).
	for name, want := range map[string]float64{
		`spillway_lb_request_duration_seconds_count{outcome="ok",route="/api/"}`:           1,
		`spillway_lb_request_duration_seconds_count{outcome="client_error",route="/api/"}`: 1,
		`spillway_lb_request_duration_seconds_count{outcome="ok",route="default"}`:         1,
	} {
		if got := scrape1(body, name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	promtest.CheckMetrics(t, "the balancer's /metrics", []byte(body))

	// A failed reload: successful 0, the timestamp kept.
	if err := b.Reload(func() (*lb.Config, error) { return nil, errors.New("bad file") }); err == nil {
		t.Fatal("Reload of a failing load: no error")
	}
	if body := scrape(); !strings.Contains(body, "spillway_config_last_reload_successful 0\n") {
		t.Error("after a failed reload: no spillway_config_last_reload_successful 0")
	}
	// One instance and the route gone: their series go too.
	cfg2 := testConfig(ok.lbInstance())
	if err := b.Reload(func() (*lb.Config, error) { c := *cfg2; return &c, nil }); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	testkit.WaitFor(t, 5*time.Second, "the removed instance's series gone", func() bool {
		return !strings.Contains(scrape(), `upstream="`+other.svc+`"`)
	})
	body = scrape()
	if strings.Contains(body, `route="/api/"`) {
		t.Error(`after a reload without the route, metrics still have route="/api/"`)
	}
	if !strings.Contains(body, `spillway_lb_instance_state{state="healthy",upstream="`+ok.svc+`"} 1`) ||
		!strings.Contains(body, "spillway_config_last_reload_successful 1\n") {
		t.Errorf("after the reload: the remaining instance's state or the reload gauge is wrong:\n%s", body)
	}
}

// scrape1 returns the value of the series whose exposition line starts
// with name (labels included), or -1.
func scrape1(body, name string) float64 {
	for _, line := range strings.Split(body, "\n") {
		if rest, ok := strings.CutPrefix(line, name+" "); ok {
			var v float64
			if _, err := fmt.Sscan(rest, &v); err == nil {
				return v
			}
		}
	}
	return -1
}
