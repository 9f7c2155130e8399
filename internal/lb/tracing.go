package lb

import (
	"net/http"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/metric/noop"

	"github.com/spillway-dev/spillway/internal/tracing"
)

// otelOptions are the balancer's otelhttp options: its tracer provider,
// W3C trace context, no metrics (the balancer's own are on /metrics),
// and span names that never hold a path (unbounded): "lb GET" for the
// request, "lb attempt GET" for each attempt.
func (b *Balancer) otelOptions() []otelhttp.Option {
	return []otelhttp.Option{
		otelhttp.WithTracerProvider(b.tracer),
		otelhttp.WithPropagators(tracing.Propagator),
		otelhttp.WithMeterProvider(noop.NewMeterProvider()),
		otelhttp.WithSpanNameFormatter(func(op string, r *http.Request) string {
			if op == "" {
				return "lb attempt " + r.Method // the transport's
			}
			return op + " " + r.Method
		}),
	}
}

// currentTransport sends with the transport in force (a reload may
// replace it), under the client span of Balancer.traced.
type currentTransport struct{ b *Balancer }

func (t currentTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	return t.b.transport.Load().RoundTrip(r)
}
