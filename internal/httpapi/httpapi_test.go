package httpapi

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/spillway-dev/spillway/health"
)

func TestBearerToken(t *testing.T) {
	tok := NewToken("s3cret-token-of-some-length")
	for _, tt := range []struct {
		auth string
		ok   bool
	}{
		{"Bearer s3cret-token-of-some-length", true},
		{"bearer s3cret-token-of-some-length", true}, // RFC 7235: the scheme is case-insensitive
		{"BEARER  s3cret-token-of-some-length ", true},
		{"Bearer wrong", false},
		{"Basic s3cret-token-of-some-length", false},
		{"Bearer", false},
		{"Bearer ", false},
		{"", false},
		{"s3cret-token-of-some-length", false},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Set("Authorization", tt.auth)
		if got := tok.Authorized(r); got != tt.ok {
			t.Errorf("Authorization %q: %v, want %v", tt.auth, got, tt.ok)
		}
	}
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("Authorization", "Bearer ")
	if (Token{}).Authorized(r) || NewToken("").Authorized(r) {
		t.Error("an empty token authorizes")
	}
}

func TestGuardLoopback(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) })
	h := GuardLoopback(true, ok)
	for host, want := range map[string]int{
		"127.0.0.1:8081": 204, "localhost:8081": 204, "LOCALHOST": 204, "[::1]:8081": 204, "127.0.0.2": 204,
		"app.localhost:1": 204, "evil.example:8081": 421, "evil.example": 421, "10.0.0.1:8081": 421, "": 421,
		"127.0.0.1.evil.example": 421,
	} {
		r := httptest.NewRequest("GET", "/status", nil)
		r.Host = host
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != want {
			t.Errorf("Host %q: %d, want %d", host, w.Code, want)
		}
	}
	r := httptest.NewRequest("GET", "/status", nil)
	r.Host = "evil.example"
	w := httptest.NewRecorder()
	GuardLoopback(false, ok).ServeHTTP(w, r)
	if w.Code != 204 {
		t.Errorf("off loopback: %d", w.Code)
	}
}

func TestDecodeJSON(t *testing.T) {
	type body struct {
		Mode string `json:"mode"`
	}
	for in, want := range map[string]string{
		`{"mode":"on"}`:           "",
		`{"mode":"on"} `:          "",
		`{"mode":"on"}garbage`:    "bad_request",
		`{"mode":"on"}{"mode":1}`: "bad_request",
		`{"mode":"on","x":1}`:     "bad_request",
		``:                        "bad_request",
		`{"mode":"` + strings.Repeat("a", 100) + `"}`: "body_too_large",
	} {
		r := httptest.NewRequest("PUT", "/", strings.NewReader(in))
		var b body
		err := DecodeJSON(httptest.NewRecorder(), r, 64, &b)
		var e *Error
		switch {
		case want == "" && err != nil:
			t.Errorf("%q: %v", in, err)
		case want != "" && (!errors.As(err, &e) || e.Code != want):
			t.Errorf("%q: %v, want %s", in, err, want)
		}
	}
}

func TestAdapter(t *testing.T) {
	a := Adapter{}
	run := func(err error, reqID string) *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		r := httptest.NewRequest("POST", "/x", nil)
		if reqID != "" {
			r.Header.Set("X-Request-Id", reqID)
		}
		a.Wrap(func(http.ResponseWriter, *http.Request) error { return err }).ServeHTTP(w, r)
		return w
	}
	w := run(&Error{Status: 503, Code: "dependency_unavailable", RetryAfter: 1500 * time.Millisecond, Detail: "secret detail"}, "req-1")
	if w.Code != 503 || w.Header().Get(health.ReasonHeader) != "dependency_unavailable" || w.Header().Get("Retry-After") != "2" ||
		w.Header().Get("X-Request-Id") != "req-1" || strings.Contains(w.Body.String(), "secret") ||
		!strings.Contains(w.Body.String(), `"error":"dependency_unavailable"`) {
		t.Errorf("503: %d %v %s", w.Code, w.Header(), w.Body)
	}
	w = run(BadRequest("mode %q: want on or off", "x"), "bad id\x01")
	if w.Code != 400 || w.Header().Get(health.ReasonHeader) != "" || !strings.Contains(w.Body.String(), `want on or off`) ||
		w.Header().Get("X-Request-Id") == "bad id\x01" || len(w.Header().Get("X-Request-Id")) != 33 {
		t.Errorf("400: %d %v %s", w.Code, w.Header(), w.Body)
	}
	w = run(errors.New("boom: db password=x"), "")
	if w.Code != 500 || strings.Contains(w.Body.String(), "password") {
		t.Errorf("plain error: %d %s", w.Code, w.Body)
	}
	func() {
		defer func() {
			if p := recover(); p != http.ErrAbortHandler {
				t.Errorf("ErrClientGone: panic %v, want http.ErrAbortHandler", p)
			}
		}()
		run(ErrClientGone, "")
	}()
}

func TestNewRequestID(t *testing.T) {
	a, b := NewRequestID(), NewRequestID()
	if len(a) != 33 || a[:17] != b[:17] || a[16] != '-' || a == b || !SaneRequestID(a) {
		t.Errorf("ids %q, %q: want 33 characters, one prefix, different counters", a, b)
	}
	if allocs := testing.AllocsPerRun(100, func() { _ = NewRequestID() }); allocs > 1 {
		t.Errorf("NewRequestID: %v allocations, want at most 1", allocs)
	}
	for id, sane := range map[string]bool{"": false, "req-1": true, "a b": false, "é": false, strings.Repeat("x", 64): true, strings.Repeat("x", 65): false} {
		if SaneRequestID(id) != sane {
			t.Errorf("SaneRequestID(%q) = %v, want %v", id, !sane, sane)
		}
	}
}

func TestWithRequestID(t *testing.T) {
	for in, keep := range map[string]bool{"": false, "req-7": true, "bad\x7f": false} {
		var seen string
		h := WithRequestID(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { seen = r.Header.Get(RequestIDHeader) }))
		w := httptest.NewRecorder()
		r := httptest.NewRequest("GET", "/", nil)
		if in != "" {
			r.Header.Set(RequestIDHeader, in)
		}
		h.ServeHTTP(w, r)
		got := w.Header().Get(RequestIDHeader)
		if got != seen || !SaneRequestID(got) || (got == in) != keep {
			t.Errorf("in %q: handler saw %q, answer has %q (keep %v)", in, seen, got, keep)
		}
	}
}

// FuzzLoopbackHost: Host is outside input; never a panic, and a name that
// passes parses as a loopback address or is localhost.
func FuzzLoopbackHost(f *testing.F) {
	for _, s := range []string{"127.0.0.1:80", "[::1]", "localhost", "evil.example", "[::1", "::1:80"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, host string) {
		_ = LoopbackHost(host)
	})
}
