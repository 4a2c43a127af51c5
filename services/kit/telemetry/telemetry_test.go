package telemetry

import (
	"context"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/tandemhq/tandem/services/kit/config"
)

func TestReadConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		env     map[string]string
		want    Config
		problem string
	}{
		{name: "defaults", env: map[string]string{},
			want: Config{ServiceName: "claims", Sampler: "parentbased_always_on", SamplerArg: 1}},
		{name: "collector and ratio", env: map[string]string{
			"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_SERVICE_NAME": "claims-canary",
			"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.25"},
			want: Config{ServiceName: "claims-canary", Endpoint: "http://127.0.0.1:4318", Sampler: "parentbased_traceidratio", SamplerArg: 0.25}},
		{name: "grpc endpoint scheme", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "grpc://collector:4317"},
			problem: "OTEL_EXPORTER_OTLP_ENDPOINT is not a valid http or https URL"},
		{name: "unknown sampler", env: map[string]string{"OTEL_TRACES_SAMPLER": "jaeger_remote"},
			problem: `OTEL_TRACES_SAMPLER="jaeger_remote" is not allowed`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := config.NewReader(config.MapLookup(tt.env))
			got := ReadConfig(r, "claims")
			err := r.Err()
			if tt.problem != "" {
				if err == nil || !strings.Contains(err.Error(), tt.problem) {
					t.Fatalf("err = %v, want %q", err, tt.problem)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("config (-want +got):\n%s", diff)
			}
		})
	}
}

// TestSamplerDropsOrphanClientSpans: a client span that would start a trace
// of its own (a background poll) is dropped; the same span inside a trace,
// and a server span starting a trace, are kept.
func TestSamplerDropsOrphanClientSpans(t *testing.T) {
	t.Parallel()
	rec := tracetest.NewSpanRecorder()
	tel, err := Setup(t.Context(), Config{ServiceName: "test", Sampler: "parentbased_always_on", SamplerArg: 1}, config.Base{}, WithSpanProcessor(rec))
	if err != nil {
		t.Fatal(err)
	}
	tr := tel.Tracer("test")
	_, orphan := tr.Start(context.Background(), "XREADGROUP", trace.WithSpanKind(trace.SpanKindClient))
	orphan.End()
	ctx, server := tr.Start(context.Background(), "POST /v1/claims", trace.WithSpanKind(trace.SpanKindServer))
	_, child := tr.Start(ctx, "INSERT", trace.WithSpanKind(trace.SpanKindClient))
	child.End()
	server.End()

	var names []string
	for _, s := range rec.Ended() {
		names = append(names, s.Name())
	}
	if diff := cmp.Diff([]string{"INSERT", "POST /v1/claims"}, names); diff != "" {
		t.Errorf("recorded spans (-want +got):\n%s", diff)
	}
}

func TestInjectExtractRoundTrip(t *testing.T) {
	t.Parallel()
	tel := Discard()
	ctx, span := tel.Tracer("test").Start(context.Background(), "work")
	defer span.End()
	carrier := tel.Inject(ctx)
	if !strings.Contains(carrier["traceparent"], span.SpanContext().TraceID().String()) {
		t.Fatalf("carrier = %v, want the span's traceparent", carrier)
	}
	got := trace.SpanContextFromContext(tel.Extract(context.Background(), carrier))
	if got.TraceID() != span.SpanContext().TraceID() || got.SpanID() != span.SpanContext().SpanID() || !got.IsRemote() {
		t.Errorf("extracted %v, want the remote context of %v", got, span.SpanContext())
	}
	if ctx := tel.Extract(context.Background(), nil); trace.SpanContextFromContext(ctx).IsValid() {
		t.Error("an empty carrier produced a span context")
	}
}
