package tracing

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func env(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

func TestValidate(t *testing.T) {
	for _, tt := range []struct {
		c    Config
		want string // in the error; "" for none
	}{
		{DefaultConfig(), ""},
		{Config{Endpoint: "https://otel.example:4318", SampleRatio: 0.1}, ""},
		{Config{Endpoint: "otel:4318", SampleRatio: 1}, `endpoint: "otel:4318": not an absolute http(s) URL`},
		{Config{SampleRatio: 1.5}, "sample_ratio: 1.5: must be from 0 to 1"},
		{Config{SampleRatio: -0.1}, "sample_ratio"},
	} {
		err := tt.c.Validate()
		if (tt.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("%+v: %v, want %q", tt.c, err, tt.want)
		}
	}
}

func TestEnabled(t *testing.T) {
	on := Config{Endpoint: "http://127.0.0.1:4318"}
	for _, tt := range []struct {
		c    Config
		env  func(string) string
		want bool
	}{
		{Config{}, env(), false},
		{on, env(), true},
		{Config{}, env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"), true},
		{Config{}, env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://c:4318/v1/traces"), true},
		{on, env("OTEL_SDK_DISABLED", "true"), false},
	} {
		if got := tt.c.Enabled(tt.env); got != tt.want {
			t.Errorf("%+v: Enabled %v, want %v", tt.c, got, tt.want)
		}
	}
	if tp, err := New(context.Background(), Config{SampleRatio: 1}, "x", env()); tp != nil || err != nil {
		t.Errorf("off: New = %v, %v; want nil, nil", tp, err)
	}
}

func TestTracesURL(t *testing.T) {
	for in, want := range map[string]string{
		"http://c:4318":           "http://c:4318/v1/traces",
		"http://c:4318/":          "http://c:4318/v1/traces",
		"https://c/otlp/v1/spans": "https://c/otlp/v1/spans",
	} {
		if got := tracesURL(in); got != want {
			t.Errorf("tracesURL(%q) = %q, want %q", in, got, want)
		}
	}
}

// New's provider exports over OTLP/HTTP to the endpoint's /v1/traces,
// with the service name, when it is shut down.
func TestNewExportsToEndpoint(t *testing.T) {
	var mu sync.Mutex
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.Method+" "+r.URL.Path+" "+r.Header.Get("Content-Type"))
		mu.Unlock()
	}))
	defer srv.Close()
	tp, err := New(context.Background(), Config{Endpoint: srv.URL, SampleRatio: 1}, "spillway-test", env())
	if err != nil || tp == nil {
		t.Fatalf("New: %v, %v", tp, err)
	}
	_, span := tp.Tracer("t").Start(context.Background(), "op")
	span.End()
	if err := tp.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 || got[0] != "POST /v1/traces application/x-protobuf" {
		t.Errorf("collector got %q, want one POST /v1/traces", got)
	}
	if name, _ := Resource(Config{}, "spillway-lb", env("OTEL_SERVICE_NAME", "edge")).Set().Value("service.name"); name.AsString() != "edge" {
		t.Errorf("service.name %q, want OTEL_SERVICE_NAME's", name.AsString())
	}
}
