// Package logging builds the JSON slog logger every service uses and carries
// the request-scoped logger in a context.
//
// Every line carries the service, region, color and version so that, during
// a blue/green deploy or a region failover, logs from both sides can be told
// apart without knowing which host wrote them.
package logging

import (
	"context"
	"io"
	"log/slog"

	"go.opentelemetry.io/otel/trace"

	"github.com/tandemhq/tandem/services/kit/config"
)

// New returns a JSON logger writing to w and tagged with the identity the
// platform gave the process. A line logged with a context that carries a
// span (InfoContext and friends) also carries its trace_id and span_id, so
// that logs and traces of one request can be joined.
func New(w io.Writer, service string, b config.Base) *slog.Logger {
	h := TraceHandler(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
	return slog.New(h).With(
		slog.String("service", service),
		slog.String("region", b.Region),
		slog.String("color", b.Color),
		slog.String("version", b.Version),
	)
}

type ctxKey struct{}

// WithLogger returns a context carrying l.
func WithLogger(ctx context.Context, l *slog.Logger) context.Context {
	return context.WithValue(ctx, ctxKey{}, l)
}

// FromContext returns the logger carried by ctx, or slog.Default when there
// is none, so library code never has to check for nil.
func FromContext(ctx context.Context) *slog.Logger {
	if l, ok := ctx.Value(ctxKey{}).(*slog.Logger); ok {
		return l
	}
	return slog.Default()
}

// Discard is a logger that writes nothing, for tests that do not look at logs.
func Discard() *slog.Logger {
	return slog.New(slog.DiscardHandler)
}

// TraceHandler wraps h so that records logged with a span in their context
// carry the span's trace_id and span_id.
func TraceHandler(h slog.Handler) slog.Handler { return traceHandler{h} }

type traceHandler struct{ slog.Handler }

func (h traceHandler) Handle(ctx context.Context, r slog.Record) error {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		r.AddAttrs(slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String()))
	}
	return h.Handler.Handle(ctx, r)
}

func (h traceHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return traceHandler{h.Handler.WithAttrs(attrs)}
}

func (h traceHandler) WithGroup(name string) slog.Handler {
	return traceHandler{h.Handler.WithGroup(name)}
}
