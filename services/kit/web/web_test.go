package web

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/tandemhq/tandem/services/kit/config"
	"github.com/tandemhq/tandem/services/kit/logging"
	"github.com/tandemhq/tandem/services/kit/telemetry"
)

type sample struct {
	Name  string `json:"name"`
	Count *int   `json:"count"`
}

func TestDecodeJSON(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		body        string
		contentType string
		wantStatus  int    // 0 means success
		wantDetail  string // substring of the problem detail
		wantField   string
	}{
		{name: "valid", body: `{"name":"a","count":2}`, contentType: "application/json"},
		{name: "valid without content type", body: `{"name":"a"}`},
		{name: "valid with charset", body: `{"name":"a"}`, contentType: "application/json; charset=utf-8"},
		{name: "empty", body: ``, wantStatus: 400, wantDetail: "empty"},
		{name: "malformed", body: `{"name":`, wantStatus: 400, wantDetail: "truncated"},
		{name: "syntax", body: `{"name" "a"}`, wantStatus: 400, wantDetail: "not valid JSON"},
		{name: "unknown field", body: `{"name":"a","extra":1}`, wantStatus: 400, wantDetail: `unknown field "extra"`, wantField: "extra"},
		{name: "wrong type", body: `{"count":"two"}`, wantStatus: 400, wantDetail: "count must be a JSON number", wantField: "count"},
		{name: "not an object", body: `[1,2]`, wantStatus: 400, wantDetail: "must be a JSON object"},
		{name: "trailing data", body: `{"name":"a"} {"name":"b"}`, wantStatus: 400, wantDetail: "single JSON object"},
		{name: "oversized", body: `{"name":"` + strings.Repeat("x", 200) + `"}`, wantStatus: 413, wantDetail: "larger than 128 bytes"},
		{name: "oversized after first value", body: `{"name":"a"}` + strings.Repeat(" ", 200), wantStatus: 413},
		{name: "form content type", body: `{"name":"a"}`, contentType: "application/x-www-form-urlencoded", wantStatus: 415},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(tt.body))
			if tt.contentType != "" {
				r.Header.Set("Content-Type", tt.contentType)
			}
			var dst sample
			err := DecodeJSON(httptest.NewRecorder(), r, &dst, 128)
			if tt.wantStatus == 0 {
				if err != nil {
					t.Fatalf("DecodeJSON: %v", err)
				}
				if dst.Name != "a" {
					t.Fatalf("name = %q, want a", dst.Name)
				}
				return
			}
			var p *Problem
			if !errors.As(err, &p) {
				t.Fatalf("want a *Problem, got %v", err)
			}
			if p.Status != tt.wantStatus {
				t.Errorf("status = %d, want %d (%s)", p.Status, tt.wantStatus, p.Detail)
			}
			if !strings.Contains(p.Detail, tt.wantDetail) {
				t.Errorf("detail %q does not contain %q", p.Detail, tt.wantDetail)
			}
			if tt.wantField != "" && (len(p.Errors) != 1 || p.Errors[0].Field != tt.wantField) {
				t.Errorf("errors = %+v, want field %q", p.Errors, tt.wantField)
			}
		})
	}
}

func TestHandlerFuncRendersProblems(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		err        error
		wantStatus int
		wantDetail string
	}{
		{name: "problem", err: Invalid(FieldError{Field: "state", Detail: "unknown"}), wantStatus: 422, wantDetail: "state: unknown"},
		{name: "wrapped problem", err: errors.Join(errors.New("ctx"), NewProblem(409, "conflict here")), wantStatus: 409, wantDetail: "conflict here"},
		{name: "internal error is hidden", err: errors.New("pq: password authentication failed"), wantStatus: 500, wantDetail: "retry later"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := HandlerFunc(func(http.ResponseWriter, *http.Request) error { return tt.err })
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
			if rec.Code != tt.wantStatus {
				t.Errorf("status = %d, want %d", rec.Code, tt.wantStatus)
			}
			if ct := rec.Header().Get("Content-Type"); ct != ProblemContentType {
				t.Errorf("Content-Type = %q, want %q", ct, ProblemContentType)
			}
			var p Problem
			if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
				t.Fatalf("body is not JSON: %v", err)
			}
			if p.Status != tt.wantStatus || !strings.Contains(p.Detail, tt.wantDetail) {
				t.Errorf("problem = %+v, want status %d detail containing %q", p, tt.wantStatus, tt.wantDetail)
			}
			if strings.Contains(rec.Body.String(), "password") {
				t.Errorf("internal error leaked into the body: %s", rec.Body.String())
			}
		})
	}
}

func TestStackIdentityAndFaults(t *testing.T) {
	t.Parallel()
	base := config.Base{Region: "us-east-2", Color: "green", Version: "v9"}
	mux := http.NewServeMux()
	RegisterHealth(mux)
	mux.HandleFunc("GET /work", func(w http.ResponseWriter, _ *http.Request) { WriteJSON(w, 200, map[string]bool{"ok": true}) })

	tests := []struct {
		name       string
		rate       float64
		roll       float64
		path       string
		wantStatus int
	}{
		{name: "no faults", rate: 0, roll: 0, path: "/work", wantStatus: 200},
		{name: "fault when the roll is under the rate", rate: 0.3, roll: 0.29, path: "/work", wantStatus: 500},
		{name: "no fault when the roll is at the rate", rate: 0.3, roll: 0.3, path: "/work", wantStatus: 200},
		{name: "every request faults at rate one", rate: 1, roll: 0.999, path: "/work", wantStatus: 500},
		{name: "liveness is never faulted", rate: 1, roll: 0, path: LivenessPath, wantStatus: 200},
		{name: "readiness is never faulted", rate: 1, roll: 0, path: ReadinessPath, wantStatus: 200},
		{name: "unknown route still carries identity", rate: 0, roll: 0, path: "/nope", wantStatus: 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := Chain(mux, Identity(base), Logging(logging.Discard()), Faults(tt.rate, func() float64 { return tt.roll }))
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, tt.path, nil))
			if rec.Code != tt.wantStatus {
				t.Errorf("status = %d, want %d", rec.Code, tt.wantStatus)
			}
			got := []string{rec.Header().Get(HeaderRegion), rec.Header().Get(HeaderColor), rec.Header().Get(HeaderVersion)}
			if diff := cmp.Diff([]string{"us-east-2", "green", "v9"}, got); diff != "" {
				t.Errorf("identity headers (-want +got):\n%s", diff)
			}
			if rec.Header().Get(HeaderRequest) == "" {
				t.Error("no request id on the response")
			}
			if tt.wantStatus == 500 && rec.Header().Get("Content-Type") != ProblemContentType {
				t.Errorf("injected fault is not a problem response")
			}
		})
	}
}

func TestReadiness(t *testing.T) {
	t.Parallel()
	ok := Check{Name: "postgres", Ping: func(context.Context) error { return nil }}
	down := Check{Name: "redis", Ping: func(context.Context) error { return errors.New("connection refused") }}
	hung := Check{Name: "slow", Ping: func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }}
	cacheDown := Check{Name: "cache", Optional: true, Ping: func(context.Context) error { return errors.New("connection refused") }}

	tests := []struct {
		name       string
		checks     []Check
		wantStatus int
		want       Readiness
	}{
		{name: "all up", checks: []Check{ok}, wantStatus: 200,
			want: Readiness{Status: "ready", Checks: []CheckResult{{Name: "postgres", Status: "ok"}}}},
		{name: "one down", checks: []Check{ok, down}, wantStatus: 503,
			want: Readiness{Status: "unavailable", Checks: []CheckResult{
				{Name: "postgres", Status: "ok"}, {Name: "redis", Status: "fail", Error: "connection refused"}}}},
		{name: "hung check times out", checks: []Check{hung}, wantStatus: 503,
			want: Readiness{Status: "unavailable", Checks: []CheckResult{
				{Name: "slow", Status: "fail", Error: context.DeadlineExceeded.Error()}}}},
		{name: "optional dependency down degrades", checks: []Check{ok, cacheDown}, wantStatus: 200,
			want: Readiness{Status: "degraded", Degraded: []string{"cache"}, Checks: []CheckResult{
				{Name: "postgres", Status: "ok"}, {Name: "cache", Status: "fail", Optional: true, Error: "connection refused"}}}},
		{name: "required down wins over degraded", checks: []Check{down, cacheDown}, wantStatus: 503,
			want: Readiness{Status: "unavailable", Degraded: []string{"cache"}, Checks: []CheckResult{
				{Name: "redis", Status: "fail", Error: "connection refused"}, {Name: "cache", Status: "fail", Optional: true, Error: "connection refused"}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			mux := http.NewServeMux()
			RegisterHealth(mux, tt.checks...)
			rec := httptest.NewRecorder()
			mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, ReadinessPath, nil))
			if rec.Code != tt.wantStatus {
				t.Errorf("status = %d, want %d", rec.Code, tt.wantStatus)
			}
			var got Readiness
			if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
				t.Fatalf("body is not JSON: %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("readiness (-want +got):\n%s", diff)
			}
		})
	}
}

func TestServeFinishesInFlightRequests(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	release := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-release
		if r.Context().Err() != nil {
			t.Error("in-flight request context was cancelled by shutdown")
		}
		_, _ = io.WriteString(w, "done")
	})
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- Serve(ctx, ln, h, logging.Discard(), 5*time.Second) }()

	type result struct {
		body string
		err  error
	}
	got := make(chan result, 1)
	go func() {
		resp, err := http.Get("http://" + ln.Addr().String() + "/")
		if err != nil {
			got <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		got <- result{body: string(b), err: err}
	}()
	<-started
	cancel()
	// New connections are refused once draining has begun.
	deadline := time.Now().Add(2 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", ln.Addr().String(), 100*time.Millisecond)
		if err != nil {
			break
		}
		_ = c.Close()
		if time.Now().After(deadline) {
			t.Fatal("listener still accepts connections after shutdown began")
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(release)
	if r := <-got; r.err != nil || r.body != "done" {
		t.Fatalf("in-flight request = %q, %v; want done", r.body, r.err)
	}
	if err := <-served; err != nil {
		t.Fatalf("Serve returned %v after a clean shutdown", err)
	}
}

func TestStackAnswersUnmatchedRoutesWithProblems(t *testing.T) {
	t.Parallel()
	mux := http.NewServeMux()
	RegisterHealth(mux)
	mux.HandleFunc("POST /v1/things", func(w http.ResponseWriter, _ *http.Request) { WriteJSON(w, 201, map[string]bool{"ok": true}) })
	h := Stack(mux, config.Base{Region: "r", Color: "blue", Version: "v"}, logging.Discard(), telemetry.Discard())

	tests := []struct {
		name       string
		method     string
		path       string
		wantStatus int
		wantAllow  string
	}{
		{name: "matched", method: http.MethodPost, path: "/v1/things", wantStatus: 201},
		{name: "no such path", method: http.MethodGet, path: "/v1/nothing", wantStatus: 404},
		{name: "wrong method", method: http.MethodDelete, path: "/v1/things", wantStatus: 405, wantAllow: "POST"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(tt.method, tt.path, nil))
			if rec.Code != tt.wantStatus {
				t.Fatalf("status = %d, want %d: %s", rec.Code, tt.wantStatus, rec.Body)
			}
			if tt.wantStatus < 400 {
				return
			}
			if ct := rec.Header().Get("Content-Type"); ct != ProblemContentType {
				t.Errorf("Content-Type = %q, want %q", ct, ProblemContentType)
			}
			var p Problem
			if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil || p.Status != tt.wantStatus {
				t.Errorf("body = %s (%v), want a problem with status %d", rec.Body, err, tt.wantStatus)
			}
			if got := rec.Header().Get("Allow"); got != tt.wantAllow {
				t.Errorf("Allow = %q, want %q", got, tt.wantAllow)
			}
		})
	}
}

func TestStackServesMetricsOfServedRequests(t *testing.T) {
	t.Parallel()
	tel, err := telemetry.Setup(t.Context(), telemetry.Config{ServiceName: "things", Sampler: "parentbased_always_on", SamplerArg: 1}, config.Base{})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	RegisterHealth(mux)
	mux.HandleFunc("GET /v1/things", func(w http.ResponseWriter, _ *http.Request) { WriteJSON(w, 200, map[string]bool{"ok": true}) })
	h := Stack(mux, config.Base{}, logging.Discard(), tel)
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/v1/things", nil))

	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, MetricsPath, nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("/metrics = %d", rec.Code)
	}
	body := rec.Body.String()
	for _, want := range []string{"http_server_request_duration_seconds_count", `http_route="/v1/things"`, "go_goroutines"} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
