package lb_test

import (
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/health"
	"github.com/spillway-dev/spillway/internal/lb"
	"github.com/spillway-dev/spillway/internal/testkit"
)

func reportFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "health", "testdata", "reports", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// foreignInstance is a service in another language on loopback: a
// service port that answers 200, and a health port whose /readyz says ok
// and whose report path answers status, ctype and body.
func foreignInstance(t *testing.T, status int, ctype, body string) lb.Instance {
	t.Helper()
	svc, hl := testkit.Listen(t), testkit.Listen(t)
	serve(t, &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello")
	}), ReadHeaderTimeout: time.Second}, svc)
	serve(t, &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/health" {
			io.WriteString(w, "ok")
			return
		}
		w.Header().Set("Content-Type", ctype)
		w.WriteHeader(status)
		io.WriteString(w, body)
	}), ReadHeaderTimeout: time.Second}, hl)
	return lb.Instance{Service: svc.Addr().String(), Health: hl.Addr().String()}
}

// spillwayInstance is spillway's own health server (package health, as
// spillway login runs it) with the backend down and a limit of 20.
func spillwayInstance(t *testing.T) lb.Instance {
	t.Helper()
	s := health.New(health.Options{})
	s.AddDependency("backend", func() health.Dependency {
		return health.Dependency{State: health.DepDown, Breaker: "open", Since: time.Now(), LastError: "timeout"}
	})
	s.SetLoad(func() (int, int, int) { return 1, 20, 0 })
	s.Start()
	svc := testkit.Listen(t)
	serve(t, &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello")
	}), ReadHeaderTimeout: time.Second}, svc)
	return lb.Instance{Service: svc.Addr().String(), Health: testkit.Serve(t, s.Serve)}
}

// unusableCount reads spillway_lb_report_unusable_total{reason} from the
// balancer's /metrics.
func unusableCount(t *testing.T, admin, reason string) int {
	t.Helper()
	resp, err := http.Get(admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`(?m)^spillway_lb_report_unusable_total\{reason="` + reason + `"\} (\d+)$`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("no spillway_lb_report_unusable_total{reason=%q} in /metrics", reason)
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// TestReportFormats: the real balancer reads spillway's own report, an
// IETF health+json document and a Spring Boot Actuator document, each
// reporting "backend" down with a limit: each casts a vote (one instance:
// the edge sheds) and bounds the instance.
func TestReportFormats(t *testing.T) {
	for _, tc := range []struct {
		name  string
		inst  func(t *testing.T) lb.Instance
		limit int
	}{
		{"spillway", spillwayInstance, 20},
		{"ietf", func(t *testing.T) lb.Instance {
			return foreignInstance(t, http.StatusServiceUnavailable, health.ContentTypeHealthJSON, reportFile(t, "ietf-backend-down.json"))
		}, 40},
		{"spring", func(t *testing.T) lb.Instance {
			return foreignInstance(t, http.StatusServiceUnavailable, health.ContentTypeSpring, reportFile(t, "spring-down.json"))
		}, 25},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := tc.inst(t)
			var logs testkit.SyncBuffer
			b := startLBWith(t, testConfig(in), lb.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			b.waitRoutable(t, 1)
			testkit.WaitFor(t, 5*time.Second, "backend shedding", func() bool { return b.dependency("backend").State == lb.ShedShedding })
			st := b.Status()
			v := b.instance(in.Service)
			if v.Report == nil || v.Report.Dependencies["backend"].State != health.DepDown || v.ReportError != nil {
				t.Errorf("instance status: report %+v, report_error %+v", v.Report, v.ReportError)
			}
			if !st.Capacity.Bounded || st.Capacity.Limit != tc.limit {
				t.Errorf("capacity = %+v, want bounded at %d", st.Capacity, tc.limit)
			}
			if r := b.login(t.Context()); r.status != http.StatusServiceUnavailable || r.reason != health.ReasonDependencyUnavailable {
				t.Errorf("login: %d %q, want 503 dependency_unavailable", r.status, r.reason)
			}
			if strings.Contains(logs.String(), "health report unusable") {
				t.Errorf("WARN about a usable report:\n%s", logs.String())
			}
		})
	}
}

// TestReportUnusable: a report in the wrong shape, too large, or not JSON
// gives one WARN (rate-limited per instance), a count by reason and the
// reason in /status; the instance is still routed by /readyz, unbounded
// and without a vote.
func TestReportUnusable(t *testing.T) {
	for _, tc := range []struct {
		name, ctype, body, reason, detail string
	}{
		{"wrong shape", "application/json", `{"healthy":true,"uptime":12}`, health.UnusableWrongShape, "none of the fields"},
		{"too large", "application/json", `{"ready":true,"pad":"` + strings.Repeat("x", health.MaxReportBytes) + `"}`, health.UnusableTooLarge, "the limit is 65536"},
		{"not json", "text/plain; charset=utf-8", "ok", health.UnusableNotJSON, `body "ok" is not JSON`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := foreignInstance(t, http.StatusOK, tc.ctype, tc.body)
			var logs testkit.SyncBuffer
			b := startLBWith(t, testConfig(in), lb.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			b.waitRoutable(t, 1)
			testkit.WaitFor(t, 5*time.Second, "three failed reports", func() bool {
				v := b.instance(in.Service)
				return v.ReportError != nil && v.ReportError.Count >= 3
			})
			v := b.instance(in.Service)
			if v.ReportError.Reason != tc.reason || !strings.Contains(v.ReportError.Detail, tc.detail) || v.ReportError.Since.IsZero() {
				t.Errorf("report_error = %+v, want reason %q, detail with %q", v.ReportError, tc.reason, tc.detail)
			}
			if v.Report != nil {
				t.Errorf("report = %+v, want none", v.Report)
			}
			warns := regexp.MustCompile(`level=WARN msg="health report unusable[^"]*" instance=`+regexp.QuoteMeta(in.Service)+` reason=`+tc.reason).FindAllString(logs.String(), -1)
			if len(warns) != 1 {
				t.Errorf("%d WARNs for %d failed reports, want 1:\n%s", len(warns), v.ReportError.Count, logs.String())
			}
			if n := unusableCount(t, b.admin, tc.reason); n < 3 {
				t.Errorf("spillway_lb_report_unusable_total{reason=%q} = %d, want >= 3", tc.reason, n)
			}
			st := b.Status()
			if st.Counters.ReportsUnusable[tc.reason] < 3 {
				t.Errorf("counters.reports_unusable = %v", st.Counters.ReportsUnusable)
			}
			if st.Capacity.Bounded {
				t.Errorf("capacity %+v bounded without a report", st.Capacity)
			}
			if r := b.login(t.Context()); r.status != http.StatusOK {
				t.Errorf("login: %d %q, want 200 (routed by /readyz)", r.status, r.body)
			}
			// The admin API's JSON carries it as report_error.
			code, body := b.adminDo(http.MethodGet, "/status", "", true)
			if code != http.StatusOK || !regexp.MustCompile(`"report_error":\s*\{\s*"reason":\s*"`+tc.reason+`"`).MatchString(body) {
				t.Errorf("/status %d: no report_error with reason %q in %.300s", code, tc.reason, body)
			}
		})
	}
}
