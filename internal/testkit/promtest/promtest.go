//go:build unix

// Package promtest runs Prometheus' own tools against spillway in tests:
// promtool to lint a metrics exposition and to check and unit-test rule
// files, and a real Prometheus server that scrapes loopback targets and
// answers PromQL queries. It also says which metric names an exposition
// has and which a PromQL expression uses, so that the dashboards and
// alerts in deploy/ are checked against what spillway exports. It is part
// of the test kit (see internal/testkit), apart so that only the tests
// that need Prometheus use it.
//
// # Contract
//
//   - Only tests import it. Promtool and Start need Debian's prometheus
//     package (/usr/bin/promtool, /usr/bin/prometheus, or both on PATH);
//     without it the test is skipped, except in CI (CI=true), which
//     installs it: there the test fails.
//   - A Server belongs to the test that started it: its methods fail that
//     test (call them from the test's goroutine), and the Prometheus
//     process is stopped by its PID and waited for when the test ends, at
//     the latest. Its data directory is in the test's temporary directory.
//   - Prometheus' own output is kept, and logged when the test fails.
package promtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/spillway-dev/spillway/internal/testkit"
)

// Where Debian's prometheus package installs its binaries.
const (
	PromtoolPath   = "/usr/bin/promtool"
	PrometheusPath = "/usr/bin/prometheus"
)

// StartTimeout bounds how long Start waits for Prometheus to be ready.
const StartTimeout = 15 * time.Second

// Promtool returns promtool's path. It skips t when there is none, or
// fails it in CI (CI=true).
func Promtool(t testing.TB) string {
	t.Helper()
	return testkit.Binary(t, PromtoolPath, "promtool", "prometheus")
}

// RunPromtool runs promtool with args and stdin, and returns its combined
// output and whether it exited 0.
func RunPromtool(t testing.TB, stdin []byte, args ...string) (string, bool) {
	t.Helper()
	cmd := exec.Command(Promtool(t), args...)
	cmd.Stdin = bytes.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		if _, ok := err.(*exec.ExitError); !ok {
			t.Fatalf("promtool %s: %v", strings.Join(args, " "), err)
		}
		return string(out), false
	}
	return string(out), true
}

// CheckMetrics lints exposition (the text format) with `promtool check
// metrics` and fails t with what it says, if anything. what names the
// exposition in the message.
func CheckMetrics(t testing.TB, what string, exposition []byte) {
	t.Helper()
	out, ok := RunPromtool(t, exposition, "check", "metrics")
	if !ok || strings.TrimSpace(out) != "" {
		t.Errorf("promtool check metrics on %s: exit ok=%v:\n%s", what, ok, out)
	}
}

// Scrape GETs url (a /metrics endpoint) in the text format and returns the
// body.
func Scrape(t testing.TB, url string) []byte {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "text/plain; version=0.0.4")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("scrape %s: %d %v", url, res.StatusCode, err)
	}
	return body
}

// Names adds to names every series name that exposition (the text
// format) has, as PromQL sees them: a histogram's _bucket, _sum and _count,
// a summary's _sum and _count besides its name.
func Names(t testing.TB, names map[string]bool, exposition []byte) {
	t.Helper()
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(exposition))
	if err != nil {
		t.Fatalf("parse exposition: %v", err)
	}
	for name, f := range fams {
		names[name] = true
		switch f.GetType().String() {
		case "HISTOGRAM", "GAUGE_HISTOGRAM":
			names[name+"_bucket"], names[name+"_sum"], names[name+"_count"] = true, true, true
		case "SUMMARY":
			names[name+"_sum"], names[name+"_count"] = true, true
		}
	}
}

// spillwayName matches a spillway metric name in PromQL: every such name
// starts with spillway_, which no label name, function or keyword does.
var spillwayName = regexp.MustCompile(`\bspillway_[a-zA-Z0-9_:]*`)

// quoted matches PromQL's string literals, whose contents are not names.
var quoted = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|` + "`[^`]*`")

// ExprNames returns the spillway metric names that a PromQL expression
// uses, sorted and without duplicates. Names in string literals (label
// values, label_replace's arguments) do not count.
func ExprNames(expr string) []string {
	expr = quoted.ReplaceAllString(expr, `""`)
	seen := map[string]bool{}
	for _, n := range spillwayName.FindAllString(expr, -1) {
		seen[n] = true
	}
	out := make([]string, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Server is one Prometheus process scraping loopback targets. Its
// Daemon's methods are its own (PID, Output, Stop, Kill).
type Server struct {
	*testkit.Daemon
	t   testing.TB
	URL string // http://127.0.0.1:PORT
}

// Job is one scrape job: its name and its targets (host:port).
type Job struct {
	Name    string
	Targets []string
	// Path is the metrics path; default /metrics.
	Path string
}

// Start writes a configuration that scrapes jobs every second into a
// temporary directory, starts Prometheus on a free loopback port with its
// data there, and waits until it is ready. The process is stopped by its
// PID when the test ends.
func Start(t testing.TB, jobs ...Job) *Server {
	t.Helper()
	bin := testkit.Binary(t, PrometheusPath, "prometheus", "prometheus")
	dir := t.TempDir()
	var cfg strings.Builder
	cfg.WriteString("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\nscrape_configs:\n")
	for _, j := range jobs {
		path := j.Path
		if path == "" {
			path = "/metrics"
		}
		targets, _ := json.Marshal(j.Targets)
		fmt.Fprintf(&cfg, "  - job_name: %q\n    metrics_path: %q\n    static_configs:\n      - targets: %s\n", j.Name, path, targets)
	}
	file := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(file, []byte(cfg.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := testkit.FreePort(t)
	s := &Server{t: t, URL: "http://" + addr}
	command := func() *exec.Cmd {
		return exec.Command(bin,
			"--config.file="+file,
			"--storage.tsdb.path="+filepath.Join(dir, "data"),
			"--web.listen-address="+addr,
			"--log.level=warn",
		)
	}
	ready := func(*exec.Cmd) bool {
		res, err := http.Get(s.URL + "/-/ready")
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == http.StatusOK
	}
	s.Daemon = testkit.NewDaemon(t, "prometheus", addr, StartTimeout, "be ready on "+addr, command, ready)
	t.Cleanup(s.Stop)
	s.Restart()
	return s
}

// Sample is one element of an instant vector.
type Sample struct {
	Metric map[string]string
	Value  float64
}

// Query evaluates expr now through /api/v1/query and returns its
// instant vector (a scalar comes back as one sample without labels).
func (s *Server) Query(expr string) ([]Sample, error) {
	res, err := http.Get(s.URL + "/api/v1/query?query=" + url.QueryEscape(expr))
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	var body struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string          `json:"resultType"`
			Result     json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(res.Body).Decode(&body); err != nil {
		return nil, fmt.Errorf("query %q: %w", expr, err)
	}
	if body.Status != "success" {
		return nil, fmt.Errorf("query %q: %s", expr, body.Error)
	}
	switch body.Data.ResultType {
	case "vector":
		var v model.Vector
		if err := json.Unmarshal(body.Data.Result, &v); err != nil {
			return nil, fmt.Errorf("query %q: %w", expr, err)
		}
		out := make([]Sample, len(v))
		for i, e := range v {
			m := map[string]string{}
			for k, val := range e.Metric {
				m[string(k)] = string(val)
			}
			out[i] = Sample{Metric: m, Value: float64(e.Value)}
		}
		return out, nil
	case "scalar":
		var sc model.Scalar
		if err := json.Unmarshal(body.Data.Result, &sc); err != nil {
			return nil, fmt.Errorf("query %q: %w", expr, err)
		}
		return []Sample{{Metric: map[string]string{}, Value: float64(sc.Value)}}, nil
	}
	return nil, fmt.Errorf("query %q: result type %q", expr, body.Data.ResultType)
}

// WaitFor polls expr until cond accepts its result, and fails the test
// if that takes longer than timeout; it returns the last result.
func (s *Server) WaitFor(expr string, timeout time.Duration, what string, cond func([]Sample) bool) []Sample {
	s.t.Helper()
	var last []Sample
	var lastErr error
	deadline := time.Now().Add(timeout)
	for {
		last, lastErr = s.Query(expr)
		if lastErr == nil && cond(last) {
			return last
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("prometheus: %s: %s not so within %v: last %v, error %v", expr, what, timeout, last, lastErr)
		}
		time.Sleep(200 * time.Millisecond) // polling a real process that scrapes every second
	}
}
