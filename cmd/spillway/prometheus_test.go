//go:build unix

package main

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/spillway-dev/spillway/internal/lb"
	"github.com/spillway-dev/spillway/internal/testbin"
	"github.com/spillway-dev/spillway/internal/testkit"
	"github.com/spillway-dev/spillway/internal/testkit/promtest"
)

// TestPrometheusScrapesUp: a real Prometheus scrapes a running `spillway
// up` (the balancer and fleet on the admin address, each login instance's
// health port) and the series an on-call engineer needs arrive; every
// /metrics passes `promtool check metrics`; the Grafana dashboard and the
// alert rules in deploy/ use only metric names that the scrape has, the
// dashboard's queries are valid PromQL for that Prometheus, and the rules
// pass `promtool check rules` and their unit tests.
func TestPrometheusScrapesUp(t *testing.T) {
	t.Parallel()
	promtest.Promtool(t) // skip (or, in CI, fail) before starting anything
	testkit.Binary(t, promtest.PrometheusPath, "prometheus", "prometheus")

	up := testbin.Start(t, "up", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--backend-listen", "127.0.0.1:0",
		"--instances", "2", "--admin-token", fwdToken)
	t.Cleanup(func() { _ = up.Stop(20 * time.Second) })
	lbURL := up.Await(t, regexp.MustCompile(`logins\s+(http://\S+)/v1/login`), 20*time.Second)[1]
	admin := up.Await(t, regexp.MustCompile(`admin API\s+(http://\S+)/status`), time.Second)[1]

	// The instances' health ports, from the balancer's status once both
	// are routable.
	var health []string
	testkit.WaitFor(t, 15*time.Second, "two routable instances", func() bool {
		res, err := http.Get(admin + "/status")
		if err != nil {
			return false
		}
		defer res.Body.Close()
		var st lb.Status
		if json.NewDecoder(res.Body).Decode(&st) != nil || st.Routing.Routable != 2 {
			return false
		}
		health = health[:0]
		for _, in := range st.Instances {
			health = append(health, in.Health)
		}
		return len(health) == 2
	})
	for range 5 {
		res, err := http.Post(lbURL+"/v1/login", "application/json", strings.NewReader(`{"ticket":"valid-alice"}`))
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
	}

	// Lint every /metrics and collect the names they export.
	names := map[string]bool{}
	for _, u := range append([]string{admin}, prefix("http://", health)...) {
		expo := promtest.Scrape(t, u+"/metrics")
		promtest.CheckMetrics(t, u+"/metrics", expo)
		promtest.Names(t, names, expo)
	}

	prom := promtest.Start(t,
		promtest.Job{Name: "spillway-lb", Targets: []string{strings.TrimPrefix(admin, "http://")}},
		promtest.Job{Name: "spillway-login", Targets: health})
	const wait = 15 * time.Second
	count := func(n int) func([]promtest.Sample) bool {
		return func(s []promtest.Sample) bool { return len(s) == n }
	}
	prom.WaitFor(`up{job=~"spillway-.*"} == 1`, wait, "three targets up", count(3))
	prom.WaitFor(`spillway_build_info`, wait, "a build on each target", count(3))
	prom.WaitFor(`sum(spillway_lb_request_duration_seconds_count{route="default",outcome="ok"})`, wait, "the logins in the histogram",
		func(s []promtest.Sample) bool { return len(s) == 1 && s[0].Value >= 5 })
	prom.WaitFor(`spillway_lb_instance_state{state="healthy",upstream!=""} == 1`, wait, "both instances healthy", count(2))
	// No scraped label collides with Prometheus' own target labels
	// (job, instance): such a label would be renamed exported_*.
	if s, err := prom.Query(`{__name__=~"spillway_.+", exported_instance!=""} or {__name__=~"spillway_.+", exported_job!=""}`); err != nil || len(s) != 0 {
		t.Errorf("series with exported_instance or exported_job: %v (%v)", s, err)
	}
	prom.WaitFor(`spillway_guard_breaker_state{dependency="backend",state="closed"} == 1`, wait, "each instance's breaker closed", count(2))
	prom.WaitFor(`spillway_config_last_reload_successful == 1`, wait, "a successful load on each target", count(3))

	t.Run("dashboard", func(t *testing.T) {
		exprs := dashboardExprs(t, filepath.Join("..", "..", "deploy", "grafana", "spillway.json"))
		if len(exprs) < 10 {
			t.Fatalf("the dashboard has %d queries; want its panels' (10 at least)", len(exprs))
		}
		for _, e := range exprs {
			checkNames(t, e, names)
			// Valid PromQL for a real Prometheus, Grafana's variables
			// replaced as Grafana does.
			q := strings.NewReplacer("$__rate_interval", "1m", "$__interval", "1m", "$job", ".*").Replace(e)
			if strings.HasPrefix(q, "label_values(") {
				continue // a Grafana function, not PromQL
			}
			if _, err := prom.Query(q); err != nil {
				t.Errorf("dashboard query: %v", err)
			}
		}
	})
	t.Run("alerts", func(t *testing.T) {
		dir := filepath.Join("..", "..", "deploy", "prometheus")
		if out, ok := promtest.RunPromtool(t, nil, "check", "rules", filepath.Join(dir, "alerts.yaml")); !ok {
			t.Errorf("promtool check rules:\n%s", out)
		}
		if out, ok := promtest.RunPromtool(t, nil, "test", "rules", filepath.Join(dir, "alerts_test.yaml")); !ok {
			t.Errorf("promtool test rules:\n%s", out)
		}
		for _, e := range alertExprs(t, filepath.Join(dir, "alerts.yaml")) {
			checkNames(t, e, names)
		}
	})
}

func prefix(p string, ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = p + s
	}
	return out
}

// checkNames fails t for each spillway metric name expr uses that names
// (a scrape's) lacks.
func checkNames(t *testing.T, expr string, names map[string]bool) {
	t.Helper()
	for _, n := range promtest.ExprNames(expr) {
		if !names[n] {
			t.Errorf("%s: spillway exports no %s", expr, n)
		}
	}
}

// dashboardExprs returns every PromQL query of a Grafana dashboard: its
// panels' (rows' nested panels too) and its template variables', and
// checks the dashboard's frame: schema version and the DS_PROMETHEUS
// input that every panel's and query's data source names.
func dashboardExprs(t *testing.T, file string) []string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	type ds struct {
		Type, UID string
	}
	type target struct {
		Expr       string `json:"expr"`
		Datasource *ds    `json:"datasource"`
	}
	type panel struct {
		Title      string   `json:"title"`
		Type       string   `json:"type"`
		Datasource *ds      `json:"datasource"`
		Targets    []target `json:"targets"`
		Panels     []panel  `json:"panels"`
	}
	var d struct {
		Inputs []struct {
			Name, Type, PluginID string
		} `json:"__inputs"`
		SchemaVersion int     `json:"schemaVersion"`
		Panels        []panel `json:"panels"`
		Templating    struct {
			List []struct {
				Query json.RawMessage `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	if d.SchemaVersion < 36 {
		t.Errorf("schemaVersion %d: want a current Grafana's (36 or later)", d.SchemaVersion)
	}
	if len(d.Inputs) != 1 || d.Inputs[0].Name != "DS_PROMETHEUS" || d.Inputs[0].PluginID != "prometheus" {
		t.Errorf("__inputs %+v: want one prometheus datasource input, DS_PROMETHEUS", d.Inputs)
	}
	const uid = "${DS_PROMETHEUS}"
	var exprs []string
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			walk(p.Panels)
			if p.Type == "row" {
				continue
			}
			if p.Datasource == nil || p.Datasource.UID != uid || len(p.Targets) == 0 {
				t.Errorf("panel %q: data source %v and %d queries; want %s and a query at least", p.Title, p.Datasource, len(p.Targets), uid)
			}
			for _, q := range p.Targets {
				if q.Datasource == nil || q.Datasource.UID != uid || q.Expr == "" {
					t.Errorf("panel %q: a query with data source %v, expr %q", p.Title, q.Datasource, q.Expr)
				}
				exprs = append(exprs, q.Expr)
			}
		}
	}
	walk(d.Panels)
	for _, v := range d.Templating.List {
		var q struct {
			Query string `json:"query"`
		}
		if json.Unmarshal(v.Query, &q) == nil && q.Query != "" {
			exprs = append(exprs, q.Query)
		}
	}
	return exprs
}

// alertExprs returns the expressions of a Prometheus rule file.
func alertExprs(t *testing.T, file string) []string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Groups []struct {
			Rules []struct {
				Alert, Expr string
			}
		}
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	var out []string
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			out = append(out, r.Expr)
		}
	}
	if len(out) == 0 {
		t.Fatalf("%s: no rules", file)
	}
	return out
}
