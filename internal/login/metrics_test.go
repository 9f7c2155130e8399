package login

import (
	"errors"
	"strings"
	"testing"

	"github.com/spillway-dev/spillway/internal/testkit/promtest"
)

// TestMetricsLint: a running instance's /metrics, after logins of every
// kind and a failed and a good reload, passes `promtool check metrics`
// and has the series an on-call engineer looks for.
func TestMetricsLint(t *testing.T) {
	t.Parallel()
	promtest.Promtool(t) // skip (or, in CI, fail) before starting anything
	s := startStack(t, nil)
	s.login("valid-alice")
	s.login("invalid")
	if _, err := s.in.Reload(func() (*Config, error) { return nil, errors.New("bad file") }); err == nil {
		t.Fatal("Reload of a failing load: no error")
	}
	body := string(promtest.Scrape(t, s.hURL+"/metrics"))
	if !strings.Contains(body, "spillway_config_last_reload_successful 0\n") {
		t.Errorf("after a failed reload, metrics lack spillway_config_last_reload_successful 0")
	}
	if _, err := s.in.Reload(func() (*Config, error) { return testConfig(s.simURL), nil }); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	expo := promtest.Scrape(t, s.hURL+"/metrics")
	body = string(expo)
	for _, want := range []string{
		"spillway_build_info{",
		"spillway_config_last_reload_successful 1\n",
		"spillway_config_last_reload_success_timestamp_seconds ",
		`spillway_guard_breaker_state{dependency="backend",state="closed"} 1` + "\n",
		`spillway_guard_breaker_state{dependency="backend",state="open"} 0` + "\n",
		`spillway_login_requests_total{outcome="ok"} 1` + "\n",
		"spillway_login_duration_seconds_bucket{",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	promtest.CheckMetrics(t, "a login instance's /metrics", expo)
}
