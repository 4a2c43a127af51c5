package web

import (
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	randv2 "math/rand/v2"
	"net/http"
	"time"

	"github.com/tandemhq/tandem/services/kit/config"
	"github.com/tandemhq/tandem/services/kit/logging"
	"github.com/tandemhq/tandem/services/kit/telemetry"
)

// Platform endpoint paths. The platform's health checks hit the first two
// every 500ms and a metrics scraper hits the third every few seconds, so
// they are exempt from fault injection, tracing and per-request logging.
const (
	LivenessPath  = "/healthz"
	ReadinessPath = "/readyz"
	MetricsPath   = "/metrics"
)

func isHealthPath(p string) bool { return p == LivenessPath || p == ReadinessPath || p == MetricsPath }

// Identity response headers. The operator's analysis reads them to attribute
// each response to a region, color and version during a deploy.
const (
	HeaderRegion  = "X-Tandem-Region"
	HeaderColor   = "X-Tandem-Color"
	HeaderVersion = "X-Tandem-Version"
	HeaderRequest = "X-Request-Id"
)

// Middleware wraps a handler.
type Middleware func(http.Handler) http.Handler

// Chain applies mws so that the first one is outermost.
func Chain(h http.Handler, mws ...Middleware) http.Handler {
	for i := len(mws) - 1; i >= 0; i-- {
		h = mws[i](h)
	}
	return h
}

// Identity stamps the region, color and version on every response,
// including health checks and injected faults.
func Identity(b config.Base) Middleware {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			h := w.Header()
			h.Set(HeaderRegion, b.Region)
			h.Set(HeaderColor, b.Color)
			h.Set(HeaderVersion, b.Version)
			next.ServeHTTP(w, r)
		})
	}
}

// Faults answers the given fraction of non-health requests with a 500
// problem. rnd returns a number in [0, 1); nil means math/rand/v2.
func Faults(rate float64, rnd func() float64) Middleware {
	if rnd == nil {
		rnd = randv2.Float64
	}
	return func(next http.Handler) http.Handler {
		if rate <= 0 {
			return next
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !isHealthPath(r.URL.Path) && rnd() < rate {
				WriteProblem(w, NewProblem(http.StatusInternalServerError,
					"fault injected by TANDEM_FAULT_ERROR_RATE"))
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// Logging gives each request an id (the caller's X-Request-Id when it
// looks sane), puts a logger tagged with it in the request context, and logs
// every completed request except successful health checks.
func Logging(base *slog.Logger) Middleware {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			start := time.Now()
			id := r.Header.Get(HeaderRequest)
			if !saneRequestID(id) {
				id = newRequestID()
			}
			w.Header().Set(HeaderRequest, id)
			l := base.With(slog.String("requestId", id))
			rec := &statusRecorder{ResponseWriter: w}
			next.ServeHTTP(rec, r.WithContext(logging.WithLogger(r.Context(), l)))
			if rec.status == 0 {
				rec.status = http.StatusOK
			}
			if isHealthPath(r.URL.Path) && rec.status < 400 {
				return
			}
			level := slog.LevelInfo
			if rec.status >= 500 {
				level = slog.LevelWarn
			}
			l.Log(r.Context(), level, "http request",
				slog.String("method", r.Method),
				slog.String("path", r.URL.Path),
				slog.Int("status", rec.status),
				slog.Int64("bytes", rec.bytes),
				slog.Duration("duration", time.Since(start)),
			)
		})
	}
}

func saneRequestID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for _, c := range id {
		if c < 0x21 || c > 0x7e {
			return false
		}
	}
	return true
}

func newRequestID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

type statusRecorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	n, err := s.ResponseWriter.Write(b)
	s.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// Stack wraps a service's mux with the middleware every service uses, in the
// order that matters: identity first so even faults carry it, then tracing
// so that the request logger sees the span, then logging so injected faults
// are logged, then fault injection. It also serves /metrics, and answers
// requests no route matches with a problem document.
func Stack(mux *http.ServeMux, b config.Base, l *slog.Logger, tel *telemetry.Telemetry) http.Handler {
	mux.Handle("GET "+MetricsPath, tel.MetricsHandler())
	return Chain(UnmatchedAsProblems(mux), Identity(b), tel.Middleware, Logging(l), Faults(b.FaultErrorRate, nil))
}

// UnmatchedAsProblems lets mux answer requests that match no route (404) or
// match a path with another method (405, with its Allow header), but as
// application/problem+json documents instead of the mux's plain text.
func UnmatchedAsProblems(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h, pattern := mux.Handler(r)
		if pattern != "" {
			telemetry.TagRoute(r.Context(), pattern)
			mux.ServeHTTP(w, r)
			return
		}
		cw := &captureWriter{header: http.Header{}}
		h.ServeHTTP(cw, r)
		switch cw.status {
		case http.StatusNotFound:
			WriteProblem(w, NewProblem(http.StatusNotFound, "no route matches %s", r.URL.Path))
		case http.StatusMethodNotAllowed:
			allow := cw.header.Get("Allow")
			w.Header().Set("Allow", allow)
			WriteProblem(w, NewProblem(http.StatusMethodNotAllowed, "%s does not accept %s; allowed: %s", r.URL.Path, r.Method, allow))
		default:
			// A redirect (a path that needs cleaning, say): pass it on.
			for k, v := range cw.header {
				w.Header()[k] = v
			}
			w.WriteHeader(cw.status)
			_, _ = w.Write(cw.body)
		}
	})
}

// captureWriter records what the mux's fallback handler would have written.
type captureWriter struct {
	header http.Header
	status int
	body   []byte
}

func (c *captureWriter) Header() http.Header { return c.header }
func (c *captureWriter) WriteHeader(status int) {
	if c.status == 0 {
		c.status = status
	}
}
func (c *captureWriter) Write(b []byte) (int, error) {
	if c.status == 0 {
		c.status = http.StatusOK
	}
	c.body = append(c.body, b...)
	return len(b), nil
}
