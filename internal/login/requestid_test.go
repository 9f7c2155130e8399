package login

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/spillway-dev/spillway/internal/backendsim"
	"github.com/spillway-dev/spillway/internal/httpapi"
	"github.com/spillway-dev/spillway/internal/testkit"
)

// The instance echoes the request's id (the load balancer's, or one it
// makes) and logs it as request_id on its line about the request.
func TestRequestIDEchoedAndLogged(t *testing.T) {
	var logs bytes.Buffer
	c := DefaultConfig()
	c.Backend.URL = "http://127.0.0.1:1" // never called: the requests are malformed
	in, err := New(&c, Options{Dev: true, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	for _, sent := range []string{"req-from-lb", ""} {
		logs.Reset()
		r := httptest.NewRequest("POST", "/v1/login", strings.NewReader("not json"))
		if sent != "" {
			r.Header.Set(httpapi.RequestIDHeader, sent)
		}
		w := httptest.NewRecorder()
		in.ServiceHandler().ServeHTTP(w, r)
		id := w.Header().Get(httpapi.RequestIDHeader)
		if w.Code != 400 || !httpapi.SaneRequestID(id) || (sent != "" && id != sent) {
			t.Errorf("sent %q: %d, answer's id %q", sent, w.Code, id)
		}
		if !strings.Contains(logs.String(), "request_id="+id+" ") {
			t.Errorf("sent %q: log %q lacks request_id=%s", sent, logs.String(), id)
		}
	}
}

// A login that succeeds is logged too, at debug, with the request's id:
// the line that joins the balancer's access log to the instance.
func TestSuccessfulLoginLoggedAtDebug(t *testing.T) {
	sim, err := backendsim.New(backendsim.Config{Mode: backendsim.ModeUp}, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := testConfig("http://" + testkit.Serve(t, sim.Serve))
	var logs bytes.Buffer
	in, err := New(c, Options{Dev: true, Logger: slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest("POST", "/v1/login", strings.NewReader(`{"ticket":"valid-alice"}`))
	r.Header.Set(httpapi.RequestIDHeader, "from-the-lb-1")
	w := httptest.NewRecorder()
	in.ServiceHandler().ServeHTTP(w, r)
	if w.Code != 200 {
		t.Fatalf("login: %d %s", w.Code, w.Body)
	}
	var line struct{ Level, RequestID, Outcome string }
	for _, l := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil && m["msg"] == "login" {
			line.Level, _ = m["level"].(string)
			line.RequestID, _ = m["request_id"].(string)
			line.Outcome, _ = m["outcome"].(string)
		}
	}
	if line.Level != "DEBUG" || line.RequestID != "from-the-lb-1" || line.Outcome != outcomeOK {
		t.Errorf("no debug line for the login with its id: %+v in %s", line, logs.String())
	}
}
