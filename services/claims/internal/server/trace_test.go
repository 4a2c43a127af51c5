package server

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/tandemhq/tandem/internal/testinfra"
	"github.com/tandemhq/tandem/services/claims/internal/outbox"
	"github.com/tandemhq/tandem/services/kit/config"
	"github.com/tandemhq/tandem/services/kit/events"
	"github.com/tandemhq/tandem/services/kit/logging"
	"github.com/tandemhq/tandem/services/kit/telemetry"
)

// TestTraceContextTravelsThroughTheOutbox submits a claim inside a caller's
// trace: the request, its eligibility call, its SQL and the relay's
// publication are spans of that trace, and the stream entry carries the
// publication span's context for the consumer to continue.
func TestTraceContextTravelsThroughTheOutbox(t *testing.T) {
	t.Parallel()
	rec := tracetest.NewSpanRecorder()
	tel, err := telemetry.Setup(t.Context(), telemetry.Config{ServiceName: Name, Sampler: "parentbased_always_on", SamplerArg: 1},
		config.Base{}, telemetry.WithSpanProcessor(rec))
	if err != nil {
		t.Fatal(err)
	}
	pool, rdb := connectTo(t, testinfra.PostgresDSN(t, "claims"), tel.InstrumentPool)
	cfg := Config{EligibilityURL: newEligibility(t).srv.URL, Eligibility: fastElig}
	a := Build(cfg, logging.Discard(), Deps{Primary: pool, Redis: rdb, Telemetry: tel}, outbox.Options{})

	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	r := httptest.NewRequest(http.MethodPost, "/v1/claims", strings.NewReader(sampleBody))
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("Idempotency-Key", "traced-1")
	r.Header.Set("traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")
	w := httptest.NewRecorder()
	a.Handler.ServeHTTP(w, r)
	if w.Code != http.StatusCreated {
		t.Fatalf("POST = %d %s", w.Code, w.Body)
	}
	if n, err := a.Relay.RelayOnce(t.Context()); err != nil || n != 1 {
		t.Fatalf("RelayOnce = %d, %v", n, err)
	}

	entries, err := rdb.XRange(t.Context(), events.ClaimsStream, "-", "+").Result()
	if err != nil || len(entries) != 1 {
		t.Fatalf("stream = %v, %v", entries, err)
	}
	tp, _ := entries[0].Values["traceparent"].(string)
	if !strings.HasPrefix(tp, "00-"+traceID+"-") {
		t.Fatalf("stream entry traceparent = %q, want one in trace %s", tp, traceID)
	}

	kinds := map[string]bool{}
	for _, s := range rec.Ended() {
		if s.SpanContext().TraceID().String() != traceID {
			continue
		}
		switch {
		case s.SpanKind() == trace.SpanKindServer && s.Name() == "POST /v1/claims":
			kinds["server"] = true
		case s.SpanKind() == trace.SpanKindClient && strings.HasPrefix(s.Name(), "POST "):
			kinds["eligibility call"] = true
		case s.SpanKind() == trace.SpanKindClient && hasAttr(s.Attributes(), "db.system.name", "postgresql"):
			kinds["sql"] = true
		case s.SpanKind() == trace.SpanKindProducer && s.Name() == events.ClaimsStream+" publish":
			kinds["publish"] = true
			if !strings.Contains(tp, s.SpanContext().SpanID().String()) {
				t.Errorf("the entry's parent is not the publish span %s: %s", s.SpanContext().SpanID(), tp)
			}
		}
	}
	for _, k := range []string{"server", "eligibility call", "sql", "publish"} {
		if !kinds[k] {
			t.Errorf("no %s span in trace %s", k, traceID)
		}
	}
}

func hasAttr(attrs []attribute.KeyValue, key, value string) bool {
	for _, a := range attrs {
		if string(a.Key) == key && a.Value.Emit() == value {
			return true
		}
	}
	return false
}
