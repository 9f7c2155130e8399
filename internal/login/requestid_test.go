package login

import (
	"bytes"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/spillway-dev/spillway/internal/httpapi"
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
