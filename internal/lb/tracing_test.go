package lb_test

import (
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/spillway-dev/spillway/internal/httpapi"
	"github.com/spillway-dev/spillway/internal/lb"
	"github.com/spillway-dev/spillway/internal/login"
	"github.com/spillway-dev/spillway/internal/testkit"
)

// One login through a traced balancer and a traced login instance is one
// trace: the balancer's server span, its client span for the attempt,
// the instance's server span, its client span for the backend call, and
// the backend receives that trace's traceparent. Real loopback servers,
// a span recorder per process.
func TestTraceCrossesBalancerInstanceAndBackend(t *testing.T) {
	var mu sync.Mutex
	var backendGot []string // traceparent of each validate call
	backend := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/validate" {
			mu.Lock()
			backendGot = append(backendGot, r.Header.Get("Traceparent"))
			mu.Unlock()
			io.WriteString(w, `{"valid":true,"account_id":"alice"}`)
			return
		}
		io.WriteString(w, "ok") // the guard's probe
	})
	bln := testkit.Listen(t)
	serve(t, &http.Server{Handler: backend, ReadHeaderTimeout: time.Second}, bln)

	lbSpans, loginSpans := tracetest.NewSpanRecorder(), tracetest.NewSpanRecorder()
	provider := func(rec *tracetest.SpanRecorder) *sdktrace.TracerProvider {
		tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
		t.Cleanup(func() { _ = tp.Shutdown(t.Context()) })
		return tp
	}
	inst := startLoginWith(t, "http://"+bln.Addr().String(), nil, login.Options{TracerProvider: provider(loginSpans)})
	lbt := startLBWith(t, testConfig(inst.lbInstance()), lb.Options{TracerProvider: provider(lbSpans)})
	lbt.waitRoutable(t, 1)

	req, _ := http.NewRequest(http.MethodPost, lbt.url+"/v1/login", strings.NewReader(`{"ticket":"valid-alice"}`))
	req.Header.Set("Content-Type", "application/json")
	resp, err := lbt.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("login: %d", resp.StatusCode)
	}
	if ids := resp.Header.Values(httpapi.RequestIDHeader); len(ids) != 1 {
		t.Errorf("X-Request-Id %q: want the one id, echoed by the instance", ids)
	}

	// A server span ends once its handler has returned, after the
	// client may have read the answer.
	testkit.WaitFor(t, 5*time.Second, "the spans", func() bool {
		return len(lbSpans.Ended()) >= 2 && len(loginSpans.Ended()) >= 2
	})
	find := func(rec *tracetest.SpanRecorder, kind trace.SpanKind) sdktrace.ReadOnlySpan {
		t.Helper()
		var found []sdktrace.ReadOnlySpan
		for _, s := range rec.Ended() {
			if s.SpanKind() == kind {
				found = append(found, s)
			}
		}
		if len(found) != 1 {
			t.Fatalf("%d spans of kind %s, want 1", len(found), kind)
		}
		return found[0]
	}
	lbServer, lbClient := find(lbSpans, trace.SpanKindServer), find(lbSpans, trace.SpanKindClient)
	inServer, inClient := find(loginSpans, trace.SpanKindServer), find(loginSpans, trace.SpanKindClient)
	tid := lbServer.SpanContext().TraceID()
	for _, link := range []struct {
		name          string
		child, parent sdktrace.ReadOnlySpan
	}{
		{"lb attempt under lb request", lbClient, lbServer},
		{"login request under lb attempt", inServer, lbClient},
		{"login backend call under login request", inClient, inServer},
	} {
		if link.child.SpanContext().TraceID() != tid || link.child.Parent().SpanID() != link.parent.SpanContext().SpanID() {
			t.Errorf("%s: span %q (trace %s, parent %s), want trace %s, parent %q %s", link.name,
				link.child.Name(), link.child.SpanContext().TraceID(), link.child.Parent().SpanID(), tid, link.parent.Name(), link.parent.SpanContext().SpanID())
		}
	}
	if !inServer.Parent().IsRemote() {
		t.Error("the login request's parent is not remote: the trace context did not cross the wire")
	}
	mu.Lock()
	defer mu.Unlock()
	want := "00-" + tid.String() + "-" + inClient.SpanContext().SpanID().String() + "-01"
	if len(backendGot) != 1 || backendGot[0] != want {
		t.Errorf("backend got traceparent %q, want [%q]", backendGot, want)
	}
	t.Logf("spans: %q %q %q %q", lbServer.Name(), lbClient.Name(), inServer.Name(), inClient.Name())
}
