package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestRouterPathRouting(t *testing.T) {
	t.Parallel()
	r, ts := startRouter(t, fastOptions())
	setTargets(t, r, "claims", Blue, startBackend(t, "claims-1"))
	setTargets(t, r, "reports", Blue, startBackend(t, "reports-1"))
	setTargets(t, r, "eligibility", Blue, startBackend(t, "eligibility-1"))

	tests := []struct {
		name        string
		path        string
		wantStatus  int
		wantBackend string
		wantGroup   string
	}{
		{name: "exact prefix", path: "/v1/claims", wantStatus: 200, wantBackend: "claims-1", wantGroup: "claims-blue"},
		{name: "below prefix", path: "/v1/claims/42?state=OH", wantStatus: 200, wantBackend: "claims-1", wantGroup: "claims-blue"},
		{name: "longest prefix wins", path: "/v1/claims/reports/monthly", wantStatus: 200, wantBackend: "reports-1", wantGroup: "reports-blue"},
		{name: "second prefix of a service", path: "/v1/households/7", wantStatus: 200, wantBackend: "eligibility-1", wantGroup: "eligibility-blue"},
		{name: "prefix matches whole segments only", path: "/v1/claimsx", wantStatus: 404},
		{name: "no rule", path: "/v2/anything", wantStatus: 404},
		{name: "root", path: "/", wantStatus: 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			res := do(t, ts.Client(), http.MethodGet, ts.URL+tt.path, "", nil)
			if res.status != tt.wantStatus {
				t.Fatalf("status = %d, want %d", res.status, tt.wantStatus)
			}
			if tt.wantStatus == 404 {
				if res.contentType != "application/problem+json" || res.problem.Status != 404 || res.problem.Detail == "" {
					t.Errorf("404 answer = %q %+v, want a problem document", res.contentType, res.problem)
				}
				return
			}
			if res.echo.Backend != tt.wantBackend || res.targetGroup != tt.wantGroup {
				t.Errorf("served by %s (%s), want %s (%s)", res.echo.Backend, res.targetGroup, tt.wantBackend, tt.wantGroup)
			}
		})
	}
}

func TestRouterForwardsRequestIntact(t *testing.T) {
	t.Parallel()
	r, ts := startRouter(t, fastOptions())
	setTargets(t, r, "claims", Blue, startBackend(t, "claims-1"))

	req, err := http.NewRequestWithContext(t.Context(), http.MethodPut, ts.URL+"/v1/claims/9?x=1&y=two", strings.NewReader(`{"amount":12}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Host = "api.tandem.example"
	req.Header.Set("X-Forwarded-For", "203.0.113.7")
	req.Header.Set("Idempotency-Key", "k-1")
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status = %d", resp.StatusCode)
	}
	var got echo
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	checks := []struct{ what, got, want string }{
		{"method", got.Method, http.MethodPut},
		{"path", got.Path, "/v1/claims/9"},
		{"query", got.Query, "x=1&y=two"},
		{"body", got.Body, `{"amount":12}`},
		{"Idempotency-Key", got.Header.Get("Idempotency-Key"), "k-1"},
		{"X-Forwarded-For", got.Header.Get("X-Forwarded-For"), "203.0.113.7, 127.0.0.1"},
		{"X-Forwarded-Proto", got.Header.Get("X-Forwarded-Proto"), "http"},
		{"Host", got.Host, "api.tandem.example"},
		{"target group", resp.Header.Get(HeaderTargetGroup), "claims-blue"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.what, c.got, c.want)
		}
	}
}

func TestRouterWeights(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		weights Weights
	}{
		{name: "all blue", weights: Weights{Blue: 100}},
		{name: "all green", weights: Weights{Green: 100}},
		{name: "half and half", weights: Weights{Blue: 50, Green: 50}},
		{name: "canary", weights: Weights{Blue: 90, Green: 10}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r, ts := startRouter(t, fastOptions())
			setTargets(t, r, "claims", Blue, startBackend(t, "blue-1"), startBackend(t, "blue-2"))
			setTargets(t, r, "claims", Green, startBackend(t, "green-1"), startBackend(t, "green-2"))
			if err := r.SetWeights("claims", tt.weights); err != nil {
				t.Fatal(err)
			}
			if got, err := r.Weights("claims"); err != nil || got != tt.weights {
				t.Fatalf("Weights() = %v, %v; want %v", got, err, tt.weights)
			}
			const n = 200
			counts := map[string]int{}
			for range n {
				res := do(t, ts.Client(), http.MethodGet, ts.URL+"/v1/claims", "", nil)
				if res.status != http.StatusOK {
					t.Fatalf("status = %d", res.status)
				}
				counts[res.targetGroup]++
			}
			for _, c := range []Color{Blue, Green} {
				want := n * tt.weights.Of(c) / 100
				got := counts["claims-"+string(c)]
				if got < want-n/20 || got > want+n/20 {
					t.Errorf("%s served %d of %d, want %d ± %d", c, got, n, want, n/20)
				}
				if tt.weights.Of(c) == 0 && got != 0 {
					t.Errorf("%s at 0%% served %d requests", c, got)
				}
				if s := r.Stats("claims", c); s.Requests != int64(got) || s.InFlight != 0 {
					t.Errorf("Stats(%s) = %+v, want %d requests and none in flight", c, s, got)
				}
			}
		})
	}
}

func TestRouterSetWeightsRejectsInvalid(t *testing.T) {
	t.Parallel()
	r := NewRouter("us-east-1", testRoutes, fastOptions())
	before := Weights{Blue: 70, Green: 30}
	if err := r.SetWeights("claims", before); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		service string
		weights Weights
	}{
		{name: "both zero", service: "claims", weights: Weights{}},
		{name: "sum below 100", service: "claims", weights: Weights{Blue: 50, Green: 40}},
		{name: "sum above 100", service: "claims", weights: Weights{Blue: 60, Green: 60}},
		{name: "negative", service: "claims", weights: Weights{Blue: -1, Green: 101}},
		{name: "above 100", service: "claims", weights: Weights{Blue: 101, Green: -1}},
		{name: "unknown service", service: "payments", weights: Weights{Blue: 100}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if err := r.SetWeights(tt.service, tt.weights); err == nil {
				t.Fatalf("SetWeights(%s, %v) succeeded, want an error", tt.service, tt.weights)
			}
			if got, err := r.Weights("claims"); err != nil || got != before {
				t.Errorf("Weights() = %v, %v after a rejected change; want %v", got, err, before)
			}
		})
	}
	if _, err := r.Weights("payments"); err == nil {
		t.Error("Weights of an unknown service succeeded")
	}
}

func TestRouterHeaderRule(t *testing.T) {
	t.Parallel()
	r, ts := startRouter(t, fastOptions())
	setTargets(t, r, "claims", Blue, startBackend(t, "blue-1"))
	setTargets(t, r, "claims", Green, startBackend(t, "green-1"))
	// eligibility has no green target at all.
	setTargets(t, r, "eligibility", Blue, startBackend(t, "eligibility-blue-1"))

	tests := []struct {
		name       string
		path       string
		color      string
		wantStatus int
		wantGroup  string
	}{
		{name: "green at 0% by header", path: "/v1/claims", color: "green", wantStatus: 200, wantGroup: "claims-green"},
		{name: "header is case-insensitive", path: "/v1/claims", color: "Green", wantStatus: 200, wantGroup: "claims-green"},
		{name: "blue by header", path: "/v1/claims", color: "blue", wantStatus: 200, wantGroup: "claims-blue"},
		{name: "no header follows weights", path: "/v1/claims", wantStatus: 200, wantGroup: "claims-blue"},
		{name: "unknown color", path: "/v1/claims", color: "purple", wantStatus: 400},
		{name: "pinned color without healthy target", path: "/v1/eligibility", color: "green", wantStatus: 503, wantGroup: "eligibility-green"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := http.Header{}
			if tt.color != "" {
				h.Set(HeaderColor, tt.color)
			}
			for range 10 {
				res := do(t, ts.Client(), http.MethodGet, ts.URL+tt.path, "", h)
				if res.status != tt.wantStatus || res.targetGroup != tt.wantGroup {
					t.Fatalf("got %d from %q, want %d from %q", res.status, res.targetGroup, tt.wantStatus, tt.wantGroup)
				}
				if res.status >= 400 && res.contentType != "application/problem+json" {
					t.Fatalf("error answer has content type %q", res.contentType)
				}
			}
		})
	}
}

func TestRouterColorWithoutHealthyTarget(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		weights    Weights
		blueReady  bool
		greenReady bool
		wantStatus int
		wantGroup  string
	}{
		{name: "falls back to the other color when it has weight", weights: Weights{Blue: 50, Green: 50}, greenReady: true, wantStatus: 200, wantGroup: "claims-green"},
		{name: "never to a color at 0%", weights: Weights{Blue: 100}, greenReady: true, wantStatus: 503, wantGroup: "claims-blue"},
		{name: "neither healthy", weights: Weights{Blue: 50, Green: 50}, wantStatus: 503},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r, ts := startRouter(t, fastOptions())
			blue, green := startBackend(t, "blue-1"), startBackend(t, "green-1")
			blue.ready.Store(tt.blueReady)
			green.ready.Store(tt.greenReady)
			for c, b := range map[Color]*backend{Blue: blue, Green: green} {
				if err := r.SetTargets("claims", c, []string{b.URL}); err != nil {
					t.Fatal(err)
				}
			}
			if err := r.SetWeights("claims", tt.weights); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "health checks settled", func() bool {
				return r.Health("claims", Blue).Healthy == btoi(tt.blueReady) &&
					r.Health("claims", Green).Healthy == btoi(tt.greenReady)
			})
			for range 10 {
				res := do(t, ts.Client(), http.MethodGet, ts.URL+"/v1/claims", "", nil)
				if res.status != tt.wantStatus {
					t.Fatalf("status = %d, want %d", res.status, tt.wantStatus)
				}
				if tt.wantGroup != "" && res.targetGroup != tt.wantGroup {
					t.Fatalf("target group = %q, want %q", res.targetGroup, tt.wantGroup)
				}
			}
			if tt.wantStatus == 503 {
				errs := r.Stats("claims", Blue).Errors5xx + r.Stats("claims", Green).Errors5xx
				if errs != 10 {
					t.Errorf("5xx counted = %d, want 10", errs)
				}
			}
		})
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestRouterRejectsLargeBody(t *testing.T) {
	t.Parallel()
	r, ts := startRouter(t, fastOptions())
	b := startBackend(t, "blue-1")
	setTargets(t, r, "claims", Blue, b)
	res := do(t, ts.Client(), http.MethodPost, ts.URL+"/v1/claims", strings.Repeat("x", maxBufferedBody+1), nil)
	if res.status != http.StatusRequestEntityTooLarge || res.contentType != "application/problem+json" {
		t.Errorf("got %d %q, want 413 problem", res.status, res.contentType)
	}
	res = do(t, ts.Client(), http.MethodPost, ts.URL+"/v1/claims", strings.Repeat("x", maxBufferedBody), nil)
	if res.status != http.StatusOK || len(res.echo.Body) != maxBufferedBody {
		t.Errorf("body of exactly the limit: got %d with %d bytes forwarded", res.status, len(res.echo.Body))
	}
}

func TestRouterSetTargetsRejectsInvalid(t *testing.T) {
	t.Parallel()
	r := NewRouter("us-east-1", testRoutes, fastOptions())
	good := "http://127.0.0.1:1"
	if err := r.SetTargets("claims", Blue, []string{good}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		service string
		color   Color
		targets []string
	}{
		{name: "unknown service", service: "payments", color: Blue, targets: []string{good}},
		{name: "unknown color", service: "claims", color: "red", targets: []string{good}},
		{name: "no scheme", service: "claims", color: Blue, targets: []string{"127.0.0.1:8080"}},
		{name: "one bad among good", service: "claims", color: Blue, targets: []string{good, "ftp://127.0.0.1:21"}},
		{name: "query", service: "claims", color: Blue, targets: []string{"http://127.0.0.1:8080?x=1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if err := r.SetTargets(tt.service, tt.color, tt.targets); err == nil {
				t.Fatal("SetTargets succeeded, want an error")
			}
			h := r.Health("claims", Blue)
			if h.Targets != 1 || h.PerTarget[0].URL != good {
				t.Errorf("targets after a rejected change = %+v", h.PerTarget)
			}
		})
	}
}

func TestRouterNewTargetsWaitForHealthChecks(t *testing.T) {
	t.Parallel()
	r := NewRouter("us-east-1", testRoutes, fastOptions())
	defer r.Close()
	b := startBackend(t, "blue-1")
	if err := r.SetTargets("claims", Blue, []string{b.URL}); err != nil {
		t.Fatal(err)
	}
	rec := &recorder{header: http.Header{}}
	r.ServeHTTP(rec, mustRequest(t, "/v1/claims"))
	if rec.status != http.StatusServiceUnavailable || b.hits.Load() != 0 {
		t.Fatalf("before any health check: status %d, backend hits %d; want 503 and none", rec.status, b.hits.Load())
	}
	r.Start(t.Context())
	waitFor(t, "target healthy", func() bool { return r.Health("claims", Blue).Healthy == 1 })
	rec = &recorder{header: http.Header{}}
	r.ServeHTTP(rec, mustRequest(t, "/v1/claims"))
	if rec.status != http.StatusOK {
		t.Fatalf("after health checks: status %d, want 200", rec.status)
	}
}

// recorder is a minimal ResponseWriter for calling ServeHTTP directly.
type recorder struct {
	header http.Header
	status int
	body   strings.Builder
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
}
func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.body.Write(b)
}

func mustRequest(t *testing.T, path string) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://router"+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.RemoteAddr = "127.0.0.1:50000"
	return req
}

func TestRouterRetriesRefusedTarget(t *testing.T) {
	t.Parallel()
	// Health is checked once (threshold 1) and then not for an hour, so the router
	// still believes in a target that has gone away: only the retry can save requests.
	opts := fastOptions()
	opts.HealthInterval = time.Hour
	opts.HealthyThreshold = 1
	r, ts := startRouter(t, opts)
	gone, alive := startBackend(t, "blue-gone"), startBackend(t, "blue-alive")
	setTargets(t, r, "claims", Blue, gone, alive)
	gone.srv.Close()

	for i := range 6 {
		res := do(t, ts.Client(), http.MethodPost, ts.URL+"/v1/claims", "claim-"+string(rune('a'+i)), nil)
		if res.status != http.StatusOK || res.echo.Backend != "blue-alive" || res.echo.Body != "claim-"+string(rune('a'+i)) {
			t.Fatalf("request %d: got %d from %q with body %q", i, res.status, res.echo.Backend, res.echo.Body)
		}
	}
	h := r.Health("claims", Blue)
	if h.Healthy != 1 {
		t.Errorf("healthy targets = %d, want 1 (the refusing one ejected)", h.Healthy)
	}
	for _, th := range h.PerTarget {
		if th.URL == gone.URL && (th.Healthy || !strings.Contains(th.LastError, "connection refused")) {
			t.Errorf("refusing target health = %+v, want unhealthy with connection refused", th)
		}
	}
	if s := r.Stats("claims", Blue); s.Requests != 6 || s.Errors5xx != 0 || s.InFlight != 0 {
		t.Errorf("stats = %+v, want 6 requests, no errors", s)
	}
}

func TestRouterRetriesOnOtherColorOnlyWithWeight(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		weights    Weights
		wantStatus int
	}{
		{name: "other color has weight", weights: Weights{Blue: 99, Green: 1}, wantStatus: 200},
		{name: "other color at 0%", weights: Weights{Blue: 100}, wantStatus: 502},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			opts := fastOptions()
			opts.HealthInterval = time.Hour
			opts.HealthyThreshold = 1
			r, ts := startRouter(t, opts)
			blue := startBackend(t, "blue-1")
			setTargets(t, r, "claims", Blue, blue)
			setTargets(t, r, "claims", Green, startBackend(t, "green-1"))
			if err := r.SetWeights("claims", tt.weights); err != nil {
				t.Fatal(err)
			}
			blue.srv.Close()
			// Smooth round-robin sends the first request to blue with either split.
			res := do(t, ts.Client(), http.MethodGet, ts.URL+"/v1/claims", "", nil)
			if res.status != tt.wantStatus {
				t.Fatalf("status = %d (%s), want %d", res.status, res.problem.Detail, tt.wantStatus)
			}
		})
	}
}

func TestRouterStatsCountErrors(t *testing.T) {
	t.Parallel()
	r, ts := startRouter(t, fastOptions())
	setTargets(t, r, "claims", Blue, startBackend(t, "blue-1"))
	for _, q := range []string{"", "?status=500", "?status=503", "?status=404", ""} {
		do(t, ts.Client(), http.MethodGet, ts.URL+"/v1/claims"+q, "", nil)
	}
	if got, want := r.Stats("claims", Blue), (Stats{Requests: 5, Errors5xx: 2}); got != want {
		t.Errorf("Stats = %+v, want %+v", got, want)
	}
	w := r.Window("claims", Blue, 10*time.Second)
	if w.Requests != 5 || w.Errors5xx != 2 || w.P99 <= 0 || w.P50 > w.P99 {
		t.Errorf("Window = %+v, want 5 requests, 2 errors, a p99", w)
	}
	if got := r.Stats("payments", Blue); got != (Stats{}) {
		t.Errorf("Stats of an unknown service = %+v", got)
	}
}

func TestRouterDrain(t *testing.T) {
	t.Parallel()
	r, ts := startRouter(t, fastOptions())
	blue := startBackend(t, "blue-1")
	setTargets(t, r, "claims", Blue, blue)
	setTargets(t, r, "claims", Green, startBackend(t, "green-1"))

	if err := r.Drain(t.Context(), "claims", Blue); err == nil {
		t.Fatal("Drain of a color with weight succeeded")
	}
	blue.holding.Store(true)
	slow := make(chan result, 1)
	go func() {
		res, _ := send(t.Context(), ts.Client(), http.MethodGet, ts.URL+"/v1/claims", "", nil)
		slow <- res
	}()
	waitFor(t, "request in flight on blue", func() bool { return r.Stats("claims", Blue).InFlight == 1 })
	if err := r.SetWeights("claims", Weights{Green: 100}); err != nil {
		t.Fatal(err)
	}

	short, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if err := r.Drain(short, "claims", Blue); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Drain with a request in flight = %v, want deadline exceeded", err)
	}
	drained := make(chan error, 1)
	go func() { drained <- r.Drain(t.Context(), "claims", Blue) }()
	select {
	case err := <-drained:
		t.Fatalf("Drain returned %v while a request was in flight", err)
	case <-time.After(50 * time.Millisecond):
	}
	// New requests go to green meanwhile.
	if res := do(t, ts.Client(), http.MethodGet, ts.URL+"/v1/claims", "", nil); res.targetGroup != "claims-green" {
		t.Errorf("request during the drain went to %q", res.targetGroup)
	}
	close(blue.release)
	if err := <-drained; err != nil {
		t.Fatal(err)
	}
	if res := <-slow; res.status != http.StatusOK || res.targetGroup != "claims-blue" {
		t.Errorf("drained request: %d from %q, want 200 from blue", res.status, res.targetGroup)
	}
	if err := r.Drain(t.Context(), "payments", Blue); err == nil {
		t.Error("Drain of an unknown service succeeded")
	}
}

func TestValidateRoutes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		routes  []ServiceRoute
		wantErr string
	}{
		{name: "valid", routes: testRoutes},
		{name: "empty name", routes: []ServiceRoute{{PathPrefixes: []string{"/a"}}}, wantErr: "name is empty"},
		{name: "duplicate name", routes: []ServiceRoute{{Name: "a", PathPrefixes: []string{"/a"}}, {Name: "a", PathPrefixes: []string{"/b"}}}, wantErr: "used twice"},
		{name: "relative prefix", routes: []ServiceRoute{{Name: "a", PathPrefixes: []string{"a"}}}, wantErr: "must start with /"},
		{name: "shared prefix", routes: []ServiceRoute{{Name: "a", PathPrefixes: []string{"/x"}}, {Name: "b", PathPrefixes: []string{"/x"}}}, wantErr: "already belongs"},
		{name: "no prefix", routes: []ServiceRoute{{Name: "a"}}, wantErr: "no path prefixes"},
		{name: "relative health path", routes: []ServiceRoute{{Name: "a", PathPrefixes: []string{"/a"}, HealthPath: "readyz"}}, wantErr: "health path"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := ValidateRoutes(tt.routes)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("ValidateRoutes = %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("ValidateRoutes = %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}
