// Package telemetry sets up OpenTelemetry for a service: traces (exported
// over OTLP/HTTP when OTEL_EXPORTER_OTLP_ENDPOINT is set), metrics (always
// served on /metrics in the Prometheus format, and pushed over OTLP/HTTP
// when the endpoint is set), W3C trace-context propagation, and the
// instrumentation of the HTTP server and clients, the pgx pools and the
// go-redis clients.
//
// Providers are passed explicitly rather than installed as globals, so that
// several services can run in one test process without sharing telemetry.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"

	"github.com/exaring/otelpgx"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/extra/redisotel/v9"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/tandemhq/tandem/services/kit/config"
)

// Config is the part of the environment contract that concerns telemetry:
// the standard OTEL_* variables the services honour.
type Config struct {
	// ServiceName is OTEL_SERVICE_NAME, defaulting to the service's name.
	ServiceName string
	// Endpoint is OTEL_EXPORTER_OTLP_ENDPOINT, the base URL of an
	// OTLP/HTTP collector (traces go to <endpoint>/v1/traces, metrics to
	// <endpoint>/v1/metrics). Empty means no OTLP export.
	Endpoint string
	// Sampler and SamplerArg are OTEL_TRACES_SAMPLER and
	// OTEL_TRACES_SAMPLER_ARG.
	Sampler    string
	SamplerArg float64
}

// Samplers accepted in OTEL_TRACES_SAMPLER.
var samplers = []string{
	"parentbased_always_on", "parentbased_always_off", "parentbased_traceidratio",
	"always_on", "always_off", "traceidratio",
}

// ReadConfig reads the OTEL_* variables through r.
func ReadConfig(r *config.Reader, service string) Config {
	c := Config{
		ServiceName: r.String("OTEL_SERVICE_NAME", service),
		Endpoint: r.URL("OTEL_EXPORTER_OTLP_ENDPOINT", false,
			"the base URL of an OTLP/HTTP collector, e.g. http://127.0.0.1:4318", "http", "https"),
		Sampler:    r.OneOf("OTEL_TRACES_SAMPLER", "parentbased_always_on", samplers...),
		SamplerArg: r.Fraction("OTEL_TRACES_SAMPLER_ARG", 1),
	}
	return c
}

// Option adjusts Setup; tests use it to record spans in memory.
type Option func(*options)

type options struct {
	spanProcessors []sdktrace.SpanProcessor
}

// WithSpanProcessor adds a span processor next to the OTLP exporter.
func WithSpanProcessor(sp sdktrace.SpanProcessor) Option {
	return func(o *options) { o.spanProcessors = append(o.spanProcessors, sp) }
}

// Telemetry holds a service's providers.
type Telemetry struct {
	tp         *sdktrace.TracerProvider
	mp         *sdkmetric.MeterProvider
	propagator propagation.TextMapPropagator
	registry   *prometheus.Registry
	service    string
}

// Setup builds the providers. identity is the platform's identity of the
// process (region, color, version), recorded on every span and metric.
func Setup(ctx context.Context, cfg Config, identity config.Base, opts ...Option) (*Telemetry, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	host, _ := os.Hostname()
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(
		attribute.String("service.name", cfg.ServiceName),
		attribute.String("service.version", identity.Version),
		attribute.String("service.instance.id", fmt.Sprintf("%s-%d", host, os.Getpid())),
		attribute.String("tandem.region", identity.Region),
		attribute.String("tandem.color", identity.Color),
	))
	if err != nil {
		return nil, fmt.Errorf("build telemetry resource: %w", err)
	}

	tpOpts := []sdktrace.TracerProviderOption{
		sdktrace.WithResource(res),
		sdktrace.WithSampler(newSampler(cfg.Sampler, cfg.SamplerArg)),
	}
	for _, sp := range o.spanProcessors {
		tpOpts = append(tpOpts, sdktrace.WithSpanProcessor(sp))
	}
	base := strings.TrimRight(cfg.Endpoint, "/")
	if base != "" {
		exp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(base+"/v1/traces"))
		if err != nil {
			return nil, fmt.Errorf("create OTLP trace exporter: %w", err)
		}
		// The batcher honours the standard OTEL_BSP_* variables.
		tpOpts = append(tpOpts, sdktrace.WithBatcher(exp))
	}

	registry := prometheus.NewRegistry()
	registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	promExp, err := otelprom.New(otelprom.WithRegisterer(registry), otelprom.WithoutScopeInfo())
	if err != nil {
		return nil, fmt.Errorf("create Prometheus exporter: %w", err)
	}
	mpOpts := []sdkmetric.Option{sdkmetric.WithResource(res), sdkmetric.WithReader(promExp)}
	if base != "" {
		mexp, err := otlpmetrichttp.New(ctx, otlpmetrichttp.WithEndpointURL(base+"/v1/metrics"))
		if err != nil {
			return nil, fmt.Errorf("create OTLP metric exporter: %w", err)
		}
		mpOpts = append(mpOpts, sdkmetric.WithReader(sdkmetric.NewPeriodicReader(mexp)))
	}
	return &Telemetry{
		tp:         sdktrace.NewTracerProvider(tpOpts...),
		mp:         sdkmetric.NewMeterProvider(mpOpts...),
		propagator: propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}),
		registry:   registry,
		service:    cfg.ServiceName,
	}, nil
}

// Discard returns telemetry that exports nothing and serves an empty
// /metrics, for tests that do not look at telemetry. Spans still get trace
// ids, so log lines carry them as in production.
func Discard() *Telemetry {
	return &Telemetry{
		tp:         sdktrace.NewTracerProvider(),
		mp:         sdkmetric.NewMeterProvider(),
		propagator: propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}),
		registry:   prometheus.NewRegistry(),
		service:    "test",
	}
}

// Shutdown flushes pending spans and metrics.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	return errors.Join(t.tp.Shutdown(ctx), t.mp.Shutdown(ctx))
}

// TracerProvider returns the tracer provider.
func (t *Telemetry) TracerProvider() trace.TracerProvider { return t.tp }

// MeterProvider returns the meter provider.
func (t *Telemetry) MeterProvider() metric.MeterProvider { return t.mp }

// Propagator returns the W3C trace-context and baggage propagator.
func (t *Telemetry) Propagator() propagation.TextMapPropagator { return t.propagator }

// Tracer returns a tracer for an instrumentation scope.
func (t *Telemetry) Tracer(scope string) trace.Tracer { return t.tp.Tracer(scope) }

// Meter returns a meter for an instrumentation scope.
func (t *Telemetry) Meter(scope string) metric.Meter { return t.mp.Meter(scope) }

// MetricsHandler serves the Prometheus exposition of every metric.
func (t *Telemetry) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(t.registry, promhttp.HandlerOpts{})
}

// untraced lists paths the platform polls constantly; tracing them would
// drown the traces of real work.
func untraced(r *http.Request) bool {
	switch r.URL.Path {
	case "/healthz", "/readyz", "/metrics":
		return false
	}
	return true
}

// Middleware traces and measures every request except health checks and
// metric scrapes, continuing the caller's trace when the request carries
// a traceparent header.
func (t *Telemetry) Middleware(next http.Handler) http.Handler {
	return otelhttp.NewHandler(next, t.service,
		otelhttp.WithTracerProvider(t.tp),
		otelhttp.WithMeterProvider(t.mp),
		otelhttp.WithPropagators(t.propagator),
		otelhttp.WithFilter(untraced),
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string {
			if r.Pattern != "" {
				return r.Pattern
			}
			return r.Method
		}),
	)
}

// TagRoute names the request's span after the route pattern that matched
// it and labels its metrics with the route, so that /v1/claims/{id} is one
// series rather than one per claim. Middleware that copies the request (as
// most do) hides the pattern the mux sets from the tracing middleware, so
// the router reports it here instead.
func TagRoute(ctx context.Context, pattern string) {
	route := pattern
	if _, path, ok := strings.Cut(pattern, " "); ok {
		route = path
	}
	span := trace.SpanFromContext(ctx)
	span.SetName(pattern)
	span.SetAttributes(attribute.String("http.route", route))
	if l, ok := otelhttp.LabelerFromContext(ctx); ok {
		l.Add(attribute.String("http.route", route))
	}
}

// Transport wraps base so that outbound requests are traced, measured and
// carry the trace context.
func (t *Telemetry) Transport(base http.RoundTripper) http.RoundTripper {
	return otelhttp.NewTransport(base,
		otelhttp.WithTracerProvider(t.tp),
		otelhttp.WithMeterProvider(t.mp),
		otelhttp.WithPropagators(t.propagator),
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string {
			return r.Method + " " + r.URL.Host
		}),
	)
}

// InstrumentPool makes every query of pools built from cfg a span (when
// the caller is inside a trace) and a duration measurement.
func (t *Telemetry) InstrumentPool(cfg *pgxpool.Config) {
	cfg.ConnConfig.Tracer = otelpgx.NewTracer(
		otelpgx.WithTracerProvider(t.tp),
		otelpgx.WithMeterProvider(t.mp),
		otelpgx.WithTrimSQLInSpanName(),
	)
}

// RecordPoolStats reports a pool's connection statistics as metrics.
func (t *Telemetry) RecordPoolStats(pool *pgxpool.Pool, name string) error {
	return otelpgx.RecordStats(pool,
		otelpgx.WithStatsMeterProvider(t.mp),
		otelpgx.WithStatsAttributes(attribute.String("pool", name)))
}

// InstrumentRedis traces and measures every command of rdb.
func (t *Telemetry) InstrumentRedis(rdb *redis.Client) error {
	if err := redisotel.InstrumentTracing(rdb, redisotel.WithTracerProvider(t.tp)); err != nil {
		return fmt.Errorf("instrument redis tracing: %w", err)
	}
	if err := redisotel.InstrumentMetrics(rdb, redisotel.WithMeterProvider(t.mp)); err != nil {
		return fmt.Errorf("instrument redis metrics: %w", err)
	}
	return nil
}

// Inject writes ctx's trace context into a string map, the form it takes
// inside events and database rows.
func (t *Telemetry) Inject(ctx context.Context) map[string]string {
	carrier := propagation.MapCarrier{}
	t.propagator.Inject(ctx, carrier)
	return carrier
}

// Extract returns ctx carrying the trace context found in m.
func (t *Telemetry) Extract(ctx context.Context, m map[string]string) context.Context {
	if len(m) == 0 {
		return ctx
	}
	return t.propagator.Extract(ctx, propagation.MapCarrier(m))
}

// newSampler builds the configured sampler. Whatever the configuration,
// a client span that starts a trace of its own is dropped: those are the
// background polls of PostgreSQL and Redis (relay, consumer, health
// checks), which would otherwise produce a root span every few hundred
// milliseconds and bury the traces of real requests. Work that should be
// traced (a relay batch, a re-adjudication pass) opens a span first.
func newSampler(name string, arg float64) sdktrace.Sampler {
	var root sdktrace.Sampler
	switch strings.TrimPrefix(name, "parentbased_") {
	case "always_off":
		root = sdktrace.NeverSample()
	case "traceidratio":
		root = sdktrace.TraceIDRatioBased(arg)
	default:
		root = sdktrace.AlwaysSample()
	}
	root = noOrphanClients{root}
	if strings.HasPrefix(name, "parentbased_") || name == "" {
		return sdktrace.ParentBased(root)
	}
	return root
}

type noOrphanClients struct{ next sdktrace.Sampler }

func (s noOrphanClients) ShouldSample(p sdktrace.SamplingParameters) sdktrace.SamplingResult {
	psc := trace.SpanContextFromContext(p.ParentContext)
	if !psc.IsValid() && p.Kind == trace.SpanKindClient {
		return sdktrace.SamplingResult{Decision: sdktrace.Drop, Tracestate: psc.TraceState()}
	}
	return s.next.ShouldSample(p)
}

func (s noOrphanClients) Description() string {
	return "NoOrphanClients{" + s.next.Description() + "}"
}
