package health

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// discardWriter is the cheapest possible ResponseWriter, so that the
// benchmark counts the handler's own allocations only.
type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (d *discardWriter) WriteHeader(int)             {}

// BenchmarkProbe measures the probe handlers: "recorder" includes
// httptest.NewRecorder's own allocations; "handler" reuses a writer and
// shows the handler allocates nothing.
func BenchmarkProbe(b *testing.B) {
	c := New(Options{})
	c.Start()
	h := c.Handler()
	for _, path := range []string{"/livez", "/readyz"} {
		req := httptest.NewRequest(http.MethodGet, path, nil)
		b.Run(path[1:]+"/recorder", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				if rec.Code != http.StatusOK {
					b.Fatalf("status %d", rec.Code)
				}
			}
		})
		b.Run(path[1:]+"/handler", func(b *testing.B) {
			w := &discardWriter{h: make(http.Header)}
			b.ReportAllocs()
			for b.Loop() {
				h.ServeHTTP(w, req)
			}
		})
	}
}

func TestProbesDoNotAllocate(t *testing.T) {
	if testing.Short() {
		t.Skip("allocation count")
	}
	c := New(Options{})
	c.Start()
	h := c.Handler()
	for _, path := range []string{"/livez", "/readyz"} {
		req := httptest.NewRequest(http.MethodGet, path, nil)
		w := &discardWriter{h: make(http.Header)}
		if n := testing.AllocsPerRun(100, func() { h.ServeHTTP(w, req) }); n != 0 {
			t.Errorf("%s: %v allocations per request, want 0", path, n)
		}
	}
}
