package logging

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"

	"go.opentelemetry.io/otel/trace"

	"github.com/tandemhq/tandem/services/kit/config"
)

func TestNewTagsIdentity(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	l := New(&buf, "claims", config.Base{Region: "us-west-2", Color: "green", Version: "v7"})
	l.Info("claim stored", "claimId", "c-1")

	var line map[string]any
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatalf("log line is not JSON: %v: %s", err, buf.String())
	}
	want := map[string]string{
		"msg": "claim stored", "service": "claims", "region": "us-west-2",
		"color": "green", "version": "v7", "claimId": "c-1",
	}
	for k, v := range want {
		if line[k] != v {
			t.Errorf("%s = %v, want %q", k, line[k], v)
		}
	}
}

func TestFromContext(t *testing.T) {
	t.Parallel()
	l := Discard()
	if got := FromContext(WithLogger(context.Background(), l)); got != l {
		t.Error("FromContext did not return the stored logger")
	}
	if FromContext(context.Background()) == nil {
		t.Error("FromContext returned nil for a bare context")
	}
}

func TestLinesInsideASpanCarryTheTraceID(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	l := New(&buf, "claims", config.Base{})
	tid, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	sid, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	ctx := trace.ContextWithSpanContext(context.Background(),
		trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled}))

	l.InfoContext(ctx, "inside")
	l.With("k", "v").InfoContext(context.Background(), "outside")

	lines := bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n"))
	if len(lines) != 2 {
		t.Fatalf("got %d lines, want 2: %s", len(lines), buf.String())
	}
	var inside, outside map[string]any
	if err := json.Unmarshal(lines[0], &inside); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(lines[1], &outside); err != nil {
		t.Fatal(err)
	}
	if inside["trace_id"] != tid.String() || inside["span_id"] != sid.String() {
		t.Errorf("line logged in a span = %v, want trace_id %s span_id %s", inside, tid, sid)
	}
	if _, ok := outside["trace_id"]; ok {
		t.Errorf("line logged outside any span carries a trace_id: %v", outside)
	}
}
