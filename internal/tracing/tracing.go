// Package tracing is spillway's OpenTelemetry tracing: the `tracing:`
// section of a spillway file (Config), shared by `spillway lb` and
// `spillway login`, and the tracer provider it describes (New), which
// exports spans over OTLP/HTTP. Tracing is off unless a collector is
// named, in the file or in the environment's standard
// OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT; off, New returns nil and the
// components neither wrap their handlers nor create spans.
//
// Context crosses processes as W3C Trace Context (traceparent,
// tracestate): Propagator. Spans are exported in batches from a bounded
// queue by the SDK's own goroutine; a full queue drops spans, never
// blocks a request. The provider New returns must be shut down (Shutdown)
// to send the spans still queued. Nothing here is global: the provider
// and the propagator are handed to the components that trace (lb.Options,
// login.Options), and otel's global provider stays the no-op one.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/url"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/spillway-dev/spillway/internal/buildinfo"
	"github.com/spillway-dev/spillway/internal/field"
)

// Config is the `tracing:` section of a spillway file, read by `spillway
// lb` and `spillway login`. Changes need a restart.
type Config struct {
	// Endpoint is the OTLP/HTTP collector's URL: http://HOST:PORT sends
	// in the clear, https:// over TLS (system roots); spans are POSTed to
	// its /v1/traces, or to the URL's own path when it has one. Default
	// "": the environment's OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or
	// OTEL_EXPORTER_OTLP_ENDPOINT (with the exporter's other OTEL_*
	// variables: headers, timeout, compression) if one is set, else
	// tracing is off.
	Endpoint string `yaml:"endpoint"`
	// SampleRatio is the share of the traces that start here (a request
	// without a traceparent) that are recorded, from 0 to 1. A request
	// with a traceparent follows its caller's decision (parent-based), so
	// a whole trace is kept or dropped. Default 1.
	SampleRatio float64 `yaml:"sample_ratio"`
	// ServiceName is the spans' service.name. Default "": the
	// environment's OTEL_SERVICE_NAME, else spillway-lb or spillway-login
	// (the subcommand).
	ServiceName string `yaml:"service_name"`
}

// DefaultConfig returns the section's defaults: off, every trace
// recorded once on.
func DefaultConfig() Config { return Config{SampleRatio: 1} }

// Validate reports every invalid field.
func (c *Config) Validate() error {
	var errs []error
	if c.Endpoint != "" {
		errs = append(errs, field.HTTPURL("endpoint", c.Endpoint))
	}
	if !(c.SampleRatio >= 0 && c.SampleRatio <= 1) || math.IsNaN(c.SampleRatio) {
		errs = append(errs, field.New("sample_ratio", c.SampleRatio, "must be from 0 to 1"))
	}
	return errors.Join(errs...)
}

// Propagator carries trace context across HTTP: W3C traceparent and
// tracestate.
var Propagator propagation.TextMapPropagator = propagation.TraceContext{}

// Enabled reports whether c (with getenv, the environment) turns tracing
// on.
func (c *Config) Enabled(getenv func(string) string) bool {
	if strings.EqualFold(getenv("OTEL_SDK_DISABLED"), "true") {
		return false
	}
	return c.Endpoint != "" || getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != ""
}

// New returns the tracer provider c describes for the component named
// service ("spillway-lb"), or nil when tracing is off (Enabled). Nothing
// is sent before the first span; an unreachable collector costs dropped
// spans, never a failed start. Shut the provider down at exit.
func New(ctx context.Context, c Config, service string, getenv func(string) string) (*sdktrace.TracerProvider, error) {
	if !c.Enabled(getenv) {
		return nil, nil
	}
	var opts []otlptracehttp.Option
	if c.Endpoint != "" {
		opts = append(opts, otlptracehttp.WithEndpointURL(tracesURL(c.Endpoint)))
	}
	exp, err := otlptracehttp.New(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("tracing: exporter: %w", err)
	}
	return NewProvider(exp, c, service, getenv), nil
}

// NewProvider returns a tracer provider that batches its spans to exp,
// with c's sampler and service name (tests give it an in-memory
// exporter or a tracetest.SpanRecorder's processor instead).
func NewProvider(exp sdktrace.SpanExporter, c Config, service string, getenv func(string) string) *sdktrace.TracerProvider {
	opts := []sdktrace.TracerProviderOption{
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(c.SampleRatio))),
		sdktrace.WithResource(Resource(c, service, getenv)),
	}
	if exp != nil {
		opts = append(opts, sdktrace.WithBatcher(exp))
	}
	return sdktrace.NewTracerProvider(opts...)
}

// Resource is the spans' resource: service.name (ServiceName, else
// OTEL_SERVICE_NAME, else service) and service.version.
func Resource(c Config, service string, getenv func(string) string) *resource.Resource {
	name := c.ServiceName
	if name == "" {
		name = getenv("OTEL_SERVICE_NAME")
	}
	if name == "" {
		name = service
	}
	return resource.NewSchemaless(
		attribute.String("service.name", name),
		attribute.String("service.version", buildinfo.Get().String()),
	)
}

// tracesURL is endpoint with /v1/traces as its path when it has none, as
// for OTEL_EXPORTER_OTLP_ENDPOINT (otlptracehttp.WithEndpointURL takes a
// URL's path as it is, and an empty one would POST to /).
func tracesURL(endpoint string) string {
	u, err := url.Parse(endpoint)
	if err != nil || (u.Path != "" && u.Path != "/") {
		return endpoint
	}
	u.Path = "/v1/traces"
	return u.String()
}
