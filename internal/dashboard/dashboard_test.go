package dashboard

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/spillway-dev/spillway/internal/httpapi"
	"github.com/spillway-dev/spillway/internal/testkit"
	"github.com/spillway-dev/spillway/internal/timeline"
)

const testToken = "s3cret-token"

// do sends a request to h and returns the status and the decoded JSON body
// (nil when not JSON).
func do(t *testing.T, h http.Handler, method, path, auth, body string) (int, map[string]any, http.Header) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, path, rd)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var m map[string]any
	if strings.HasPrefix(rec.Header().Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
			t.Fatalf("%s %s: bad JSON %q: %v", method, path, rec.Body.String(), err)
		}
	}
	return rec.Code, m, rec.Header()
}

func TestState(t *testing.T) {
	f := newFakeSystem(nil)
	h := New(f.Sources(), f.Controls(), Options{Token: testToken})
	code, st, hdr := do(t, h, "GET", "/api/state", "", "")
	if code != 200 {
		t.Fatalf("status %d", code)
	}
	if hdr.Get("Cache-Control") != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store", hdr.Get("Cache-Control"))
	}
	if n := len(st["series"].([]any)); n != SeriesSeconds {
		t.Errorf("series has %d points, want %d", n, SeriesSeconds)
	}
	if insts := st["lb"].(map[string]any)["instances"].([]any); len(insts) != 3 {
		t.Errorf("lb.instances = %d, want 3", len(insts))
	}
	if st["fleet"] == nil || st["backend"].(map[string]any)["mode"] != "up" || len(st["events"].([]any)) == 0 {
		t.Errorf("fleet, backend or events missing: %v", st)
	}
	want := map[string]any{"backend": true, "shedding": true, "drain": true, "restart": true, "load_start": true, "load_stop": true}
	if diff := cmp.Diff(want, st["controls"]); diff != "" {
		t.Errorf("controls (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]any{"max_rps": float64(MaxLoadRPS), "max_seconds": float64(MaxLoadSeconds)}, st["limits"]); diff != "" {
		t.Errorf("limits (-want +got):\n%s", diff)
	}
}

func TestStateEventsBounded(t *testing.T) {
	var evs []Event
	for i := range 250 {
		evs = append(evs, Event{Time: time.Unix(int64(i), 0), Kind: "k", Message: "m"})
	}
	h := New(Sources{Events: func() []Event { return evs }}, Controls{}, Options{Token: testToken})
	_, st, _ := do(t, h, "GET", "/api/state", "", "")
	got := st["events"].([]any)
	if len(got) != MaxEvents {
		t.Fatalf("events = %d, want the last %d", len(got), MaxEvents)
	}
	last, err := time.Parse(time.RFC3339, got[len(got)-1].(map[string]any)["time"].(string))
	if err != nil || !last.Equal(time.Unix(249, 0)) {
		t.Errorf("last event at %v (%v), want the newest", last, err)
	}
}

// TestNilSourcesAndControls: an empty dashboard still answers, with every
// control hidden and refused.
func TestNilSourcesAndControls(t *testing.T) {
	h := New(Sources{}, Controls{}, Options{Token: testToken})
	code, st, _ := do(t, h, "GET", "/api/state", "", "")
	if code != 200 {
		t.Fatalf("status %d", code)
	}
	if st["lb"] != nil || st["fleet"] != nil || len(st["events"].([]any)) != 0 || len(st["series"].([]any)) != 0 {
		t.Errorf("empty state = %v", st)
	}
	for k, v := range st["controls"].(map[string]any) {
		if v != false {
			t.Errorf("controls[%s] = %v with no control set, want false", k, v)
		}
	}
	for _, r := range controlRequests {
		code, body, _ := do(t, h, r.method, r.path, "Bearer "+testToken, r.body)
		if code != http.StatusNotFound || body["error"] != "control_unavailable" {
			t.Errorf("%s %s with no control: %d %v, want 404 control_unavailable", r.method, r.path, code, body)
		}
	}
}

// controlRequests are a valid request for every control and the call it
// must make.
var controlRequests = []struct {
	method, path, body, call string
}{
	{"POST", "/api/backend", `{"mode":"hang"}`, "backend(hang)"},
	{"POST", "/api/backend", `{"mode":"up"}`, "backend(up)"},
	{"POST", "/api/shedding", `{"dependency":"backend","mode":"on"}`, "shedding(backend,on)"},
	{"POST", "/api/shedding", `{"mode":"auto","dependency":"backend"}`, "shedding(backend,auto)"},
	{"POST", "/api/drain", `{"instance":"127.0.0.1:41002","drain":true}`, "drain(127.0.0.1:41002,true)"},
	{"POST", "/api/drain", `{"instance":"127.0.0.1:41002","drain":false}`, "drain(127.0.0.1:41002,false)"},
	{"POST", "/api/restart", ``, "restart()"},
	{"POST", "/api/restart", `{}`, "restart()"},
	{"POST", "/api/load", `{"rps":50,"seconds":120}`, "load(50,120)"},
	{"POST", "/api/load", `{"rps":2000,"seconds":600}`, "load(2000,600)"},
	{"POST", "/api/load", `{"rps":0.5,"seconds":1}`, "load(0.5,1)"},
	{"DELETE", "/api/load", ``, "stop()"},
	{"DELETE", "/api/load", ` {} `, "stop()"},
}

func TestControlsCalled(t *testing.T) {
	for _, r := range controlRequests {
		t.Run(r.method+" "+r.path+" "+r.body, func(t *testing.T) {
			f := newFakeSystem(nil)
			h := New(f.Sources(), f.Controls(), Options{Token: testToken})
			code, body, _ := do(t, h, r.method, r.path, "Bearer "+testToken, r.body)
			if code != 200 || body["ok"] != true {
				t.Fatalf("status %d, body %v", code, body)
			}
			if diff := cmp.Diff([]string{r.call}, f.Calls()); diff != "" {
				t.Errorf("calls (-want +got):\n%s", diff)
			}
		})
	}
}

func TestAuth(t *testing.T) {
	tests := []struct {
		name, token, auth string
		ok                bool
	}{
		{"right token", testToken, "Bearer " + testToken, true},
		{"scheme is case-insensitive", testToken, "bearer " + testToken, true},
		{"no header", testToken, "", false},
		{"wrong token", testToken, "Bearer nope", false},
		{"prefix of the token", testToken, "Bearer " + testToken[:5], false},
		{"token plus more", testToken, "Bearer " + testToken + "x", false},
		{"basic auth", testToken, "Basic " + testToken, false},
		{"bare token", testToken, testToken, false},
		{"empty bearer", testToken, "Bearer ", false},
		{"no token configured", "", "Bearer ", false},
		{"no token configured, any token", "", "Bearer x", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, r := range controlRequests {
				f := newFakeSystem(nil)
				h := New(f.Sources(), f.Controls(), Options{Token: tt.token})
				code, body, hdr := do(t, h, r.method, r.path, tt.auth, r.body)
				if tt.ok {
					if code != 200 {
						t.Errorf("%s %s: status %d %v, want 200", r.method, r.path, code, body)
					}
					continue
				}
				if code != http.StatusUnauthorized || body["error"] != "unauthorized" || !strings.HasPrefix(hdr.Get("WWW-Authenticate"), "Bearer") {
					t.Errorf("%s %s: %d %v (WWW-Authenticate %q), want 401 unauthorized", r.method, r.path, code, body, hdr.Get("WWW-Authenticate"))
				}
				if calls := f.Calls(); len(calls) != 0 {
					t.Errorf("%s %s: unauthorized request called %v", r.method, r.path, calls)
				}
			}
		})
	}
	// Reads need no token.
	h := New(Sources{}, Controls{}, Options{Token: testToken})
	if code, _, _ := do(t, h, "GET", "/api/state", "", ""); code != 200 {
		t.Errorf("GET /api/state without a token: %d, want 200", code)
	}
}

func TestBadRequests(t *testing.T) {
	tests := []struct {
		name, method, path, body string
		status                   int
	}{
		{"empty body", "POST", "/api/backend", ``, 400},
		{"not JSON", "POST", "/api/backend", `mode=hang`, 400},
		{"unknown field", "POST", "/api/backend", `{"mode":"hang","force":true}`, 400},
		{"trailing data", "POST", "/api/backend", `{"mode":"hang"} {"mode":"up"}`, 400},
		{"trailing garbage", "POST", "/api/backend", `{"mode":"hang"}x`, 400},
		{"array", "POST", "/api/backend", `["hang"]`, 400},
		{"missing mode", "POST", "/api/backend", `{}`, 400},
		{"null mode", "POST", "/api/backend", `{"mode":null}`, 400},
		{"mode wrong type", "POST", "/api/backend", `{"mode":1}`, 400},
		{"mode uppercase", "POST", "/api/backend", `{"mode":"HANG"}`, 400},
		{"mode with space", "POST", "/api/backend", `{"mode":"a b"}`, 400},
		{"mode too long", "POST", "/api/backend", `{"mode":"` + strings.Repeat("a", 33) + `"}`, 400},
		{"shedding mode", "POST", "/api/shedding", `{"dependency":"backend","mode":"maybe"}`, 400},
		{"shedding no dependency", "POST", "/api/shedding", `{"mode":"on"}`, 400},
		{"shedding empty dependency", "POST", "/api/shedding", `{"dependency":"","mode":"on"}`, 400},
		{"shedding control char", "POST", "/api/shedding", `{"dependency":"a\u0000b","mode":"on"}`, 400},
		{"drain no flag", "POST", "/api/drain", `{"instance":"127.0.0.1:41001"}`, 400},
		{"drain flag as string", "POST", "/api/drain", `{"instance":"127.0.0.1:41001","drain":"yes"}`, 400},
		{"drain id too long", "POST", "/api/drain", `{"instance":"` + strings.Repeat("x", 129) + `","drain":true}`, 400},
		{"restart with a field", "POST", "/api/restart", `{"now":true}`, 400},
		{"restart with junk", "POST", "/api/restart", `please`, 400},
		{"load rps zero", "POST", "/api/load", `{"rps":0,"seconds":10}`, 400},
		{"load rps negative", "POST", "/api/load", `{"rps":-5,"seconds":10}`, 400},
		{"load rps over", "POST", "/api/load", `{"rps":2000.5,"seconds":10}`, 400},
		{"load seconds over", "POST", "/api/load", `{"rps":10,"seconds":601}`, 400},
		{"load seconds zero", "POST", "/api/load", `{"rps":10,"seconds":0}`, 400},
		{"load seconds fraction", "POST", "/api/load", `{"rps":10,"seconds":1.5}`, 400},
		{"load rps huge", "POST", "/api/load", `{"rps":1e400,"seconds":10}`, 400},
		{"load missing seconds", "POST", "/api/load", `{"rps":10}`, 400},
		{"stop with a field", "DELETE", "/api/load", `{"all":true}`, 400},
		{"body over 4 KiB", "POST", "/api/backend", `{"mode":"hang"` + strings.Repeat(" ", 5000) + `}`, 413},
		{"empty body over 4 KiB", "POST", "/api/restart", strings.Repeat(" ", 5000), 413},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeSystem(nil)
			h := New(f.Sources(), f.Controls(), Options{Token: testToken})
			code, body, _ := do(t, h, tt.method, tt.path, "Bearer "+testToken, tt.body)
			if code != tt.status {
				t.Errorf("status %d %v, want %d", code, body, tt.status)
			}
			if body["error"] == nil || body["detail"] == nil || body["request_id"] == nil {
				t.Errorf("body %v: want error, detail and request_id", body)
			}
			if calls := f.Calls(); len(calls) != 0 {
				t.Errorf("a bad request called %v", calls)
			}
		})
	}
}

// TestControlError: a control's failure reaches the log with its cause and
// the client as a short code joined to it by the request id.
func TestControlError(t *testing.T) {
	var logs testkit.SyncBuffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	ctl := Controls{SetBackendMode: func(context.Context, string) error {
		return errors.New("dial tcp 127.0.0.1:9: connection refused")
	}}
	h := New(Sources{}, ctl, Options{Token: testToken, Logger: log})
	code, body, _ := do(t, h, "POST", "/api/backend", "Bearer "+testToken, `{"mode":"hang"}`)
	if code != http.StatusBadGateway || body["error"] != "control_failed" {
		t.Fatalf("status %d %v, want 502 control_failed", code, body)
	}
	if strings.Contains(toJSON(t, body), "refused") {
		t.Errorf("the cause leaked to the client: %v", body)
	}
	id, _ := body["request_id"].(string)
	if id == "" || !strings.Contains(logs.String(), id) || !strings.Contains(logs.String(), "connection refused") {
		t.Errorf("log %q: want the request id %q and the cause", logs.String(), id)
	}
	// A successful control is logged too: operators' actions are audited.
	ctl.SetBackendMode = func(context.Context, string) error { return nil }
	h = New(Sources{}, ctl, Options{Token: testToken, Logger: log})
	do(t, h, "POST", "/api/backend", "Bearer "+testToken, `{"mode":"up"}`)
	if !strings.Contains(logs.String(), `"action":"backend_mode"`) || strings.Contains(logs.String(), testToken) {
		t.Errorf("log %q: want the action and never the token", logs.String())
	}
}

func toJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestPageAndAssets(t *testing.T) {
	h := New(Sources{}, Controls{}, Options{Token: testToken})
	tests := []struct {
		method, path string
		status       int
		ctype        string
		contains     string
	}{
		{"GET", "/", 200, "text/html", `id="btn-break"`},
		{"GET", "/assets/app.js", 200, "text/javascript", "/api/state"},
		{"GET", "/assets/app.css", 200, "text/css", "--ok"},
		{"GET", "/assets/favicon.svg", 200, "image/svg+xml", "<svg"},
		{"GET", "/assets/", 404, "", ""},
		{"GET", "/assets/index.html", 404, "", ""},
		{"GET", "/assets/missing.js", 404, "", ""},
		{"GET", "/index.html", 404, "", ""},
		{"GET", "/api/nope", 404, "application/json", "not_found"},
		{"POST", "/", 405, "", ""},
		{"GET", "/api/backend", 405, "", ""},
		{"PUT", "/api/load", 405, "", ""},
	}
	for _, tt := range tests {
		req := httptest.NewRequest(tt.method, tt.path, nil)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != tt.status {
			t.Errorf("%s %s: status %d, want %d", tt.method, tt.path, rec.Code, tt.status)
			continue
		}
		if ct := rec.Header().Get("Content-Type"); tt.ctype != "" && !strings.HasPrefix(ct, tt.ctype) {
			t.Errorf("%s %s: Content-Type %q, want %q", tt.method, tt.path, ct, tt.ctype)
		}
		if !strings.Contains(rec.Body.String(), tt.contains) {
			t.Errorf("%s %s: body lacks %q", tt.method, tt.path, tt.contains)
		}
		if tt.status == 200 && !strings.Contains(rec.Header().Get("Content-Security-Policy"), "default-src 'none'") {
			t.Errorf("%s %s: no Content-Security-Policy", tt.method, tt.path)
		}
	}
}

// TestAssetsOffline: the page loads nothing from another origin and runs
// no inline script (the CSP would block it).
func TestAssetsOffline(t *testing.T) {
	url := regexp.MustCompile(`(?i)(https?:)?//[a-z0-9.-]+\.[a-z]{2,}`)
	err := fs.WalkDir(assets, "assets", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(assets, path)
		if err != nil {
			return err
		}
		for _, m := range url.FindAllString(string(b), -1) {
			if !strings.HasSuffix(m, "www.w3.org") { // the SVG namespace, not a fetch
				t.Errorf("%s refers to %s: the dashboard must work offline", path, m)
			}
		}
		if strings.HasSuffix(path, ".html") && regexp.MustCompile(`<script(?:\s[^>]*)?>[^<\s]`).Match(b) {
			t.Errorf("%s has an inline script", path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestStateSeriesLength: the series asked for is the last five minutes.
func TestStateSeriesLength(t *testing.T) {
	var asked int
	h := New(Sources{Series: func(n int) []timeline.Point { asked = n; return nil }}, Controls{}, Options{})
	do(t, h, "GET", "/api/state", "", "")
	if asked != 300 {
		t.Errorf("Series asked for %d seconds, want 300", asked)
	}
}

func FuzzControlBodies(f *testing.F) {
	for _, r := range controlRequests {
		f.Add(r.path, r.body)
	}
	f.Add("/api/load", `{"rps":1e308,"seconds":-1}`)
	f.Fuzz(func(t *testing.T, path, body string) {
		paths := []string{"/api/backend", "/api/shedding", "/api/drain", "/api/restart", "/api/load"}
		if !strings.HasPrefix(path, "/api/") {
			path = paths[len(path)%len(paths)]
		}
		ok := func(context.Context) error { return nil }
		h := New(Sources{}, Controls{
			SetBackendMode: func(context.Context, string) error { return nil },
			SetShedding:    func(context.Context, string, string) error { return nil },
			Drain:          func(context.Context, string, bool) error { return nil },
			RollingRestart: ok,
			StartLoad: func(_ context.Context, rps float64, secs int) error {
				if !(rps > 0 && rps <= MaxLoadRPS) || secs < 1 || secs > MaxLoadSeconds {
					t.Errorf("StartLoad(%v, %d) out of bounds", rps, secs)
				}
				return nil
			},
			StopLoad: ok,
		}, Options{Token: testToken})
		req := httptest.NewRequest("POST", "/", strings.NewReader(body))
		req.URL.Path = path
		req.Header.Set("Authorization", "Bearer "+testToken)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Errorf("POST %s %q: status %d", path, body, rec.Code)
		}
	})
}

// TestStateReadsNeedTokenOffLoopback: on a listener other machines reach,
// the state document is as protected as /status and /metrics.
func TestStateReadsNeedTokenOffLoopback(t *testing.T) {
	h := New(Sources{LB: func() any { return map[string]any{"secret": "topology"} }}, Controls{}, Options{Token: testToken, ReadsNeedToken: true})
	ts := httptest.NewServer(h)
	defer ts.Close()
	get := func(auth string) (int, string) {
		req, _ := http.NewRequest("GET", ts.URL+"/api/state", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		res, err := ts.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	if code, body := get(""); code != 401 || strings.Contains(body, "topology") {
		t.Fatalf("without the token: %d %s", code, body)
	}
	if code, body := get("bearer " + testToken); code != 200 || !strings.Contains(body, "topology") {
		t.Fatalf("with the token: %d %s", code, body)
	}
}

// TestStateIsBuiltAtMostOncePerMaxAge: a flood of GET /api/state costs the
// sources a few calls a second, not one per request.
func TestStateIsBuiltAtMostOncePerMaxAge(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	calls := 0
	h := New(Sources{LB: func() any { calls++; return map[string]int{"n": calls} }}, Controls{},
		Options{StateMaxAge: 250 * time.Millisecond, Now: func() time.Time { return now }})
	get := func() string {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/api/state", nil))
		return rec.Body.String()
	}
	first := get()
	for range 1000 {
		if get() != first {
			t.Fatal("state rebuilt within its max age")
		}
	}
	now = now.Add(250 * time.Millisecond)
	if get() == first || calls != 2 {
		t.Fatalf("state not rebuilt after its max age: %d builds", calls)
	}
}

// TestControlErrorsKeepTheirStatus: a control may say what is wrong; an
// unknown instance is 404, not a gateway error.
func TestControlErrorsKeepTheirStatus(t *testing.T) {
	h := New(Sources{}, Controls{Drain: func(context.Context, string, bool) error {
		return &httpapi.Error{Status: 404, Code: "unknown_instance"}
	}}, Options{Token: testToken})
	req := httptest.NewRequest("POST", "/api/drain", strings.NewReader(`{"instance":"nope:1","drain":true}`))
	req.Header.Set("Authorization", "Bearer "+testToken)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != 404 || !strings.Contains(rec.Body.String(), `"error":"unknown_instance"`) {
		t.Fatalf("drain of an unknown instance: %d %s", rec.Code, rec.Body)
	}
}
