package main

import (
	"context"
	"log/slog"
	"os"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/spillway-dev/spillway/internal/tracing"
)

// startTracing returns the tracer provider the `tracing:` section c (and
// the environment) asks for, named service, or nil when tracing is off;
// stop sends the spans still queued, within 5 seconds, and must be called
// once the component has stopped.
func startTracing(ctx context.Context, c tracing.Config, service string, logger *slog.Logger) (tp trace.TracerProvider, stop func(), err error) {
	p, err := tracing.New(ctx, c, service, os.Getenv)
	if err != nil || p == nil {
		return nil, func() {}, err
	}
	endpoint := c.Endpoint
	if endpoint == "" {
		endpoint = "$OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT"
	}
	logger.Info("tracing on", "endpoint", endpoint, "sample_ratio", c.SampleRatio)
	return p, func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := p.Shutdown(sctx); err != nil {
			logger.Warn("tracing: spans not sent at exit", "error", err)
		}
	}, nil
}
