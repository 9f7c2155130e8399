package health

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"

	"github.com/spillway-dev/spillway/internal/testkit"
)

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "reports", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDecodeReportFormats(t *testing.T) {
	at := time.Date(2026, 11, 29, 19, 0, 0, 0, time.UTC)
	draft := time.Date(2018, 1, 17, 3, 36, 48, 0, time.UTC)
	for _, tc := range []struct {
		file, ctype string
		format      Format
		want        Report
	}{
		{"spillway.json", "application/json", FormatSpillway, Report{
			Ready: true, ReadyForSeconds: 12.5, Phase: "ready", InFlight: 4, Limit: 32, Version: "7",
			Dependencies: map[string]Dependency{"backend": {State: DepDown, Breaker: "open", Since: at, LastError: "context deadline exceeded"}},
		}},
		// The draft's own example: "cassandra" from two measurements
		// (pass and warn: up); uptime, cpu and memory are the system's.
		{"ietf-draft.json", "application/health+json", FormatIETF, Report{
			Ready: true, Phase: "ready",
			Dependencies: map[string]Dependency{"cassandra": {State: DepUp, Since: draft}},
		}},
		// The same, told by shape with a plain JSON type.
		{"ietf-draft.json", "application/json", FormatIETF, Report{
			Ready: true, Phase: "ready",
			Dependencies: map[string]Dependency{"cassandra": {State: DepUp, Since: draft}},
		}},
		// Overall fail, explained by a failing dependency: still ready, so
		// that it votes; the extension carries the load.
		{"ietf-backend-down.json", "application/health+json; charset=utf-8", FormatIETF, Report{
			Ready: true, Phase: "ready", Limit: 40, InFlight: 3,
			Dependencies: map[string]Dependency{"backend": {State: DepDown, Since: at, LastError: "GET /v1/validate: context deadline exceeded"}},
		}},
		{"spring-down.json", "application/vnd.spring-boot.actuator.v3+json", FormatSpring, Report{
			Ready: true, Phase: "ready", Limit: 25, InFlight: 2,
			Dependencies: map[string]Dependency{
				"db":      {State: DepUp},
				"backend": {State: DepDown, LastError: `org.springframework.web.client.ResourceAccessException: I/O error on GET request for "http://backend/v1/validate": Read timed out`},
			},
		}},
		{"spring-up-composite.json", "application/json", FormatSpring, Report{
			Ready: true, Phase: "ready",
			Dependencies: map[string]Dependency{"db": {State: DepUp}},
		}},
		{"spring-minimal.json", "", FormatSpring, Report{Ready: true, Phase: "ready", Dependencies: map[string]Dependency{}}},
		{"spring-out-of-service.json", "application/json", FormatSpring, Report{
			Draining: true, Phase: "draining",
			Dependencies: map[string]Dependency{"redis": {State: DepUp}},
		}},
	} {
		t.Run(tc.file+" "+tc.ctype, func(t *testing.T) {
			rep, f, err := DecodeReport(tc.ctype, readTestdata(t, tc.file))
			if err != nil {
				t.Fatal(err)
			}
			if f != tc.format {
				t.Errorf("format = %q, want %q", f, tc.format)
			}
			if diff := cmp.Diff(tc.want, rep); diff != "" {
				t.Errorf("report (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDecodeReportUnusable(t *testing.T) {
	for _, tc := range []struct {
		name, ctype, body string
		want              error
		detail            string
	}{
		{"livez ok", "text/plain; charset=utf-8", "ok", ErrReportNotJSON, `body "ok" is not JSON`},
		{"html", "text/html", "<html><body>It works!</body></html>", ErrReportNotJSON, `"<html><body>It works!</body></ht"...`},
		{"empty", "application/json", "", ErrReportNotJSON, "(empty)"},
		{"string", "application/json", `"ok"`, ErrReportWrongShape, "not a JSON object"},
		{"array", "application/json", `[{"ready":true}]`, ErrReportWrongShape, "not a JSON object"},
		{"null", "application/json", `null`, ErrReportWrongShape, "not a JSON object"},
		{"no known field", "application/json", `{"healthy":true,"uptime":3}`, ErrReportWrongShape, "fields: healthy, uptime"},
		{"empty object", "application/json", `{}`, ErrReportWrongShape, "fields: none"},
		{"custom status", "application/json", `{"status":"green"}`, ErrReportWrongShape, "fields: status"},
		{"too large", "application/json", `{"ready":true,"x":"` + strings.Repeat("x", MaxReportBytes) + `"}`, ErrReportTooLarge, "the limit is 65536"},
		{"ready not bool", "application/json", `{"ready":"yes"}`, ErrReportBadValue, "wrong type"},
		{"negative limit", "application/json", `{"ready":true,"limit":-1}`, ErrReportBadValue, "limit -1 is negative"},
		{"bad dep state", "application/json", `{"dependencies":{"backend":{"state":"degraded"}}}`, ErrReportBadValue, `dependencies.backend.state "degraded"`},
		{"ietf bad status", "application/health+json", `{"status":"green"}`, ErrReportBadValue, `IETF status "green"`},
		{"ietf no status", "application/health+json", `{"checks":{}}`, ErrReportBadValue, `without "status"`},
		{"ietf bad checks", "application/health+json", `{"status":"pass","checks":{"db":{"status":"pass"}}}`, ErrReportBadValue, "not an object of arrays"},
		{"ietf bad check status", "", `{"status":"pass","checks":{"db":[{"status":"meh"}]}}`, ErrReportBadValue, `checks["db"][0].status "meh"`},
		{"ietf negative limit", "", `{"status":"pass","spillway":{"limit":-3}}`, ErrReportBadValue, "limit -3 is negative"},
		{"spring component", "", `{"status":"UP","components":{"db":"UP"}}`, ErrReportBadValue, `component "db"`},
		{"spring type", "application/vnd.spring-boot.actuator.v3+json", `{"ready":true}`, ErrReportBadValue, `without "status"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := DecodeReport(tc.ctype, []byte(tc.body))
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			var re *ReportError
			if !errors.As(err, &re) || !strings.Contains(re.Detail, tc.detail) {
				t.Errorf("detail of %v does not contain %q", err, tc.detail)
			}
			if got, want := ReasonOf(err), tc.want.(*ReportError).Reason; got != want {
				t.Errorf("ReasonOf = %q, want %q", got, want)
			}
			for _, other := range []error{ErrReportUnreachable, ErrReportBadStatus, ErrReportTooLarge, ErrReportNotJSON, ErrReportWrongShape, ErrReportBadValue} {
				if other != tc.want && errors.Is(err, other) {
					t.Errorf("errors.Is(%v, %v) = true", err, other)
				}
			}
		})
	}
}

func TestReadReport(t *testing.T) {
	resp := func(code int, ctype, body string) *http.Response {
		return &http.Response{StatusCode: code, Header: http.Header{"Content-Type": {ctype}}, Body: io.NopCloser(strings.NewReader(body))}
	}
	if _, _, err := ReadReport(resp(404, "text/plain", "not found")); !errors.Is(err, ErrReportBadStatus) || !strings.Contains(err.Error(), "status 404") {
		t.Errorf("404: err = %v, want bad_status", err)
	}
	// Spring Boot answers 503 with its document when it is DOWN.
	rep, f, err := ReadReport(resp(503, "application/vnd.spring-boot.actuator.v3+json", string(readTestdata(t, "spring-down.json"))))
	if err != nil || f != FormatSpring || rep.Dependencies["backend"].State != DepDown {
		t.Errorf("503 Spring: %v %q %+v", err, f, rep)
	}
	big := `{"ready":true,"x":"` + strings.Repeat("x", 2*MaxReportBytes) + `"}`
	if _, _, err := ReadReport(resp(200, "application/json", big)); !errors.Is(err, ErrReportTooLarge) {
		t.Errorf("big: err = %v, want too_large", err)
	}
	if err := Unreachable(errors.New("connection refused")); !errors.Is(err, ErrReportUnreachable) || ReasonOf(err) != UnusableUnreachable {
		t.Errorf("Unreachable: %v", err)
	}
	if ReasonOf(nil) != "" || ReasonOf(io.EOF) != UnusableUnreachable {
		t.Error("ReasonOf of nil or a plain error")
	}
}

// TestHealthAcceptIETF: spillway's own /health answers the IETF document
// when asked, and it decodes back to the same report.
func TestHealthAcceptIETF(t *testing.T) {
	since := time.Date(2018, 3, 1, 11, 40, 0, 0, time.UTC)
	clk := testkit.NewClock(time.Date(2018, 3, 1, 12, 0, 0, 0, time.UTC))
	c := New(Options{Now: clk.Now})
	c.AddDependency("backend", func() Dependency {
		return Dependency{State: DepDown, Breaker: "open", Since: since, LastError: "timeout after 5s"}
	})
	c.AddDependency("cache", func() Dependency { return Dependency{State: DepUp, Breaker: "closed", Since: since} })
	c.SetLoad(func() (int, int, int) { return 7, 20, 3 })
	c.Start()
	ts := serve(t, c)

	for _, tc := range []struct {
		accept string
		ietf   bool
	}{
		{"", false},
		{"*/*", false},
		{"application/json", false},
		{"application/health+json", true},
		{"application/health+json, application/json;q=0.9", true},
		{"application/json, application/health+json;q=0.9, */*;q=0.1", false},
		{"application/json;q=0.5, application/health+json", true},
		{"application/health+json;q=0", false},
	} {
		t.Run(tc.accept, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, ts.URL+"/health", nil)
			if tc.accept != "" {
				req.Header.Set("Accept", tc.accept)
			}
			resp, err := ts.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			ctype := resp.Header.Get("Content-Type")
			if resp.StatusCode != 200 || resp.Header.Get("Vary") != "Accept" {
				t.Errorf("status %d, Vary %q", resp.StatusCode, resp.Header.Get("Vary"))
			}
			wantType := ContentTypeJSON
			if tc.ietf {
				wantType = ContentTypeHealthJSON
				var doc map[string]any
				if err := json.Unmarshal(body, &doc); err != nil {
					t.Fatal(err)
				}
				if doc["status"] != "warn" {
					t.Errorf("IETF status = %v, want warn (ready, a dependency down)", doc["status"])
				}
				if !bytes.Contains(body, []byte(`"backend":[{"componentId":"backend","componentType":"component","status":"fail"`)) {
					t.Errorf("IETF checks: %s", body)
				}
			}
			if ctype != wantType {
				t.Errorf("Content-Type = %q, want %q", ctype, wantType)
			}
			rep, _, err := DecodeReport(ctype, body)
			if err != nil {
				t.Fatal(err)
			}
			want := c.Report()
			if tc.ietf { // the breaker is spillway's own: not in the draft
				for n, d := range want.Dependencies {
					d.Breaker = ""
					want.Dependencies[n] = d
				}
			}
			if diff := cmp.Diff(want, rep); diff != "" {
				t.Errorf("decoded (-want +got):\n%s", diff)
			}
		})
	}
}

func TestMarshalIETFNotReady(t *testing.T) {
	b, err := MarshalIETF(Report{Phase: "warming"})
	if err != nil {
		t.Fatal(err)
	}
	rep, f, err := DecodeReport(ContentTypeHealthJSON, b)
	if err != nil || f != FormatIETF || rep.Ready || rep.Phase != "warming" {
		t.Errorf("%s -> %+v %q %v", b, rep, f, err)
	}
	if !bytes.HasPrefix(b, []byte(`{"status":"fail"`)) {
		t.Errorf("not ready: %s", b)
	}
}

var decodeSeeds = []string{"spillway.json", "ietf-draft.json", "ietf-backend-down.json", "spring-down.json", "spring-up-composite.json", "spring-minimal.json", "spring-out-of-service.json"}

// FuzzDecodeReport: any body, any Content-Type: no panic; an error is a
// *ReportError with one of the reasons; a report has no negative load
// figure and only the three dependency states.
func FuzzDecodeReport(f *testing.F) {
	for _, name := range decodeSeeds {
		b := readTestdata(f, name)
		f.Add("application/json", b)
		f.Add("", b)
	}
	f.Add(ContentTypeHealthJSON, readTestdata(f, "ietf-backend-down.json"))
	f.Add(ContentTypeSpring, readTestdata(f, "spring-down.json"))
	f.Add("text/plain", []byte("ok"))
	f.Add("application/json", []byte(`{"status":"UP","details":{"db":{"status":"DOWN"}}}`))
	f.Fuzz(func(t *testing.T, ctype string, data []byte) {
		rep, format, err := DecodeReport(ctype, data)
		if err != nil {
			var re *ReportError
			if !errors.As(err, &re) {
				t.Fatalf("error %v is not a *ReportError", err)
			}
			known := false
			for _, r := range UnusableReasons {
				known = known || r == re.Reason
			}
			if !known {
				t.Fatalf("unknown reason %q", re.Reason)
			}
			return
		}
		switch format {
		case FormatSpillway, FormatIETF, FormatSpring:
		default:
			t.Fatalf("format %q", format)
		}
		if rep.Limit < 0 || rep.InFlight < 0 || rep.Queue < 0 || rep.ReadyForSeconds < 0 {
			t.Fatalf("negative figures: %+v", rep)
		}
		if rep.Ready && rep.Draining {
			t.Fatalf("ready and draining: %+v", rep)
		}
		for n, d := range rep.Dependencies {
			if d.State != DepUp && d.State != DepDown && d.State != DepUnknown {
				t.Fatalf("dependency %q state %q", n, d.State)
			}
		}
	})
}

// FuzzMarshalIETF: a report MarshalIETF renders decodes back.
func FuzzMarshalIETF(f *testing.F) {
	f.Add(true, false, 3, 10, "backend", "down", "boom")
	f.Add(false, true, 0, 0, "db", "up", "")
	f.Fuzz(func(t *testing.T, ready, draining bool, inFlight, limit int, dep, state, lastErr string) {
		if inFlight < 0 || limit < 0 || dep == "" || strings.Contains(dep, ":") || !utf8.ValidString(dep) {
			return
		}
		if state != DepUp && state != DepDown {
			state = DepUnknown
		}
		in := Report{Ready: ready && !draining, Draining: draining, InFlight: inFlight, Limit: limit,
			Dependencies: map[string]Dependency{dep: {State: state, LastError: lastErr}}}
		b, err := MarshalIETF(in)
		if err != nil {
			t.Fatal(err)
		}
		out, _, err := DecodeReport(ContentTypeHealthJSON, b)
		if err != nil {
			if errors.Is(err, ErrReportTooLarge) {
				return
			}
			t.Fatalf("%s: %v", b, err)
		}
		if out.Ready != in.Ready || out.Draining != in.Draining || out.Limit != in.Limit || out.InFlight != in.InFlight {
			t.Fatalf("%+v -> %s -> %+v", in, b, out)
		}
		if got := out.Dependencies[dep].State; got != state && !(state == DepUnknown && got == DepUp) {
			t.Fatalf("state %q -> %q", state, got)
		}
	})
}
