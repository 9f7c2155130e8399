package admission

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// BenchmarkAcquireRelease is the hot path of a proxied request: admit,
// release, from all Ps at once, with the limit never reached.
func BenchmarkAcquireRelease(b *testing.B) {
	for _, algo := range []string{"static", "aimd"} {
		b.Run(algo, func(b *testing.B) {
			l, err := New(Config{Algorithm: algo, Limit: 1 << 20, MaxLimit: 1 << 20, QueueSize: 64},
				Options{Registerer: prometheus.NewRegistry()})
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				ctx := b.Context()
				for pb.Next() {
					tk, err := l.Acquire(ctx)
					if err != nil {
						b.Error(err)
						return
					}
					tk.Release(Success)
				}
			})
		})
	}
}

// BenchmarkReject is the shedding path: limit 0, no queue.
func BenchmarkReject(b *testing.B) {
	l, err := New(Config{Limit: 1}, Options{Registerer: prometheus.NewRegistry()})
	if err != nil {
		b.Fatal(err)
	}
	l.SetLimit(0)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		ctx := b.Context()
		for pb.Next() {
			if _, err := l.Acquire(ctx); err != ErrQueueFull {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkMiddleware measures the middleware's own cost around a no-op
// handler (the recorder's allocations included).
func BenchmarkMiddleware(b *testing.B) {
	for _, algo := range []string{"static", "aimd"} {
		b.Run(algo, func(b *testing.B) {
			l, err := New(Config{Algorithm: algo, Limit: 1 << 20, MaxLimit: 1 << 20}, Options{})
			if err != nil {
				b.Fatal(err)
			}
			h := l.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) }))
			req := httptest.NewRequest("GET", "/", nil)
			b.ReportAllocs()
			for b.Loop() {
				h.ServeHTTP(discardWriter{}, req)
			}
		})
	}
}

type discardWriter struct{}

func (discardWriter) Header() http.Header         { return nil }
func (discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (discardWriter) WriteHeader(int)             {}
