package eligibility

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/failsafe-go/failsafe-go/bulkhead"
	"github.com/google/go-cmp/cmp"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/tandemhq/tandem/services/kit/logging"
)

var fastOpts = Options{
	Timeout: time.Second, AttemptTimeout: 200 * time.Millisecond, Retries: 2,
	BackoffFirst: time.Millisecond, BackoffMax: 5 * time.Millisecond,
	BreakerFailures: 100, BreakerDelay: 50 * time.Millisecond,
}

var req = Request{Program: "medicaid", State: "OH", HouseholdSize: 1, MonthlyIncomeCents: 100000}

func okAnswer(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"eligible": true, "incomeLimitCents": 179975, "fplPercent": 76.7, "guidelineYear": 2025, "ruleSet": "medicaid-expansion-138-2025",
	})
}

// script answers each attempt with the next status; 200 means a good answer.
func script(t *testing.T, statuses ...int) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != Path || r.Method != http.MethodPost {
			t.Errorf("unexpected %s %s", r.Method, r.URL.Path)
		}
		var got Request
		if err := json.NewDecoder(r.Body).Decode(&got); err != nil || got != req {
			t.Errorf("request body = %+v, %v; want %+v", got, err, req)
		}
		i := int(hits.Add(1)) - 1
		status := statuses[min(i, len(statuses)-1)]
		switch status {
		case http.StatusOK:
			okAnswer(w)
		case -1: // hang past the attempt timeout
			select {
			case <-r.Context().Done():
			case <-time.After(2 * time.Second):
			}
		default:
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(status)
			_, _ = fmt.Fprintf(w, `{"title":"refused","status":%d,"detail":"state: not covered"}`, status)
		}
	}))
	t.Cleanup(srv.Close)
	return srv, &hits
}

func closedPortURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String()
	_ = ln.Close()
	return url
}

func TestDetermine(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		statuses     []int
		wantHits     int32
		wantRejected bool
		wantDown     bool
	}{
		{name: "answer", statuses: []int{200}, wantHits: 1},
		{name: "retries 5xx then answers", statuses: []int{503, 500, 200}, wantHits: 3},
		{name: "retries 429", statuses: []int{429, 200}, wantHits: 2},
		{name: "gives up after retries", statuses: []int{502}, wantHits: 3, wantDown: true},
		{name: "4xx is not retried", statuses: []int{422}, wantHits: 1, wantRejected: true},
		{name: "slow attempt is cut and retried", statuses: []int{-1, 200}, wantHits: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv, hits := script(t, tt.statuses...)
			c := New(srv.URL, fastOpts, logging.Discard())
			d, err := c.Determine(context.Background(), req)
			var rejected *RejectedError
			switch {
			case tt.wantRejected:
				if !errors.As(err, &rejected) || rejected.Status != 422 || rejected.Detail != "state: not covered" {
					t.Fatalf("err = %v, want a 422 RejectedError carrying the detail", err)
				}
			case tt.wantDown:
				if !errors.Is(err, ErrUnavailable) {
					t.Fatalf("err = %v, want ErrUnavailable", err)
				}
			default:
				if err != nil {
					t.Fatal(err)
				}
				if !d.Eligible || d.IncomeLimitCents != 179975 || d.RuleSet != "medicaid-expansion-138-2025" {
					t.Errorf("determination = %+v", d)
				}
			}
			if got := hits.Load(); got != tt.wantHits {
				t.Errorf("attempts = %d, want %d", got, tt.wantHits)
			}
		})
	}
}

func TestDetermineWhenNothingListens(t *testing.T) {
	t.Parallel()
	c := New(closedPortURL(t), fastOpts, logging.Discard())
	start := time.Now()
	_, err := c.Determine(context.Background(), req)
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
	if time.Since(start) > 2*time.Second {
		t.Errorf("took %s, past the overall timeout", time.Since(start))
	}
}

func TestOverallTimeoutBoundsRetries(t *testing.T) {
	t.Parallel()
	srv, _ := script(t, -1)
	o := fastOpts
	o.Timeout, o.AttemptTimeout, o.Retries = 300*time.Millisecond, 250*time.Millisecond, 10
	c := New(srv.URL, o, logging.Discard())
	start := time.Now()
	_, err := c.Determine(context.Background(), req)
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
	if el := time.Since(start); el > time.Second {
		t.Errorf("took %s with a 300ms overall timeout", el)
	}
}

func TestBreakerOpensAndRecovers(t *testing.T) {
	t.Parallel()
	var healthy atomic.Bool
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		if healthy.Load() {
			okAnswer(w)
			return
		}
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	o := fastOpts
	o.BreakerFailures, o.BreakerDelay = 3, 200*time.Millisecond
	c := New(srv.URL, o, logging.Discard())

	// Three failed attempts (one call with two retries) open the breaker.
	if _, err := c.Determine(context.Background(), req); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("first call: %v", err)
	}
	if !c.BreakerOpen() {
		t.Fatal("breaker still closed after 3 consecutive failures")
	}
	before := hits.Load()
	if _, err := c.Determine(context.Background(), req); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("call with the breaker open: %v", err)
	}
	if hits.Load() != before {
		t.Errorf("the open breaker let %d calls through", hits.Load()-before)
	}

	healthy.Store(true)
	time.Sleep(250 * time.Millisecond) // past the breaker delay: half-open
	if _, err := c.Determine(context.Background(), req); err != nil {
		t.Fatalf("trial call after recovery: %v", err)
	}
	if c.BreakerOpen() {
		t.Error("breaker still open after a successful trial call")
	}
}

// outcomes reads the claims.eligibility.calls counter by its attributes.
func outcomes(t *testing.T, r *sdkmetric.ManualReader) map[string]int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != "claims.eligibility.calls" {
				continue
			}
			for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
				o, _ := dp.Attributes.Value("outcome")
				why, _ := dp.Attributes.Value("reason")
				got[strings.TrimSuffix(o.AsString()+"/"+why.AsString(), "/")] += dp.Value
			}
		}
	}
	return got
}

func TestBulkheadBoundsCallsInFlightAndFallsBack(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	var inFlight, peak atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		<-release
		okAnswer(w)
	}))
	defer srv.Close()
	reader := sdkmetric.NewManualReader()
	o := fastOpts
	o.Timeout, o.AttemptTimeout = 5*time.Second, 5*time.Second
	o.MaxConcurrency, o.MaxWait = 2, 20*time.Millisecond
	o.Meter = sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)).Meter("test")
	c := New(srv.URL, o, logging.Discard())

	results := make(chan error, 2)
	for range 2 {
		go func() {
			_, err := c.Determine(context.Background(), req)
			results <- err
		}()
	}
	deadline := time.Now().Add(5 * time.Second)
	for inFlight.Load() < 2 {
		if time.Now().After(deadline) {
			t.Fatal("the first two calls never reached the server")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// A third call finds both slots taken and falls back at once.
	start := time.Now()
	_, err := c.Determine(context.Background(), req)
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, bulkhead.ErrFull) {
		t.Fatalf("third call: err = %v, want ErrUnavailable caused by a full bulkhead", err)
	}
	if el := time.Since(start); el > time.Second {
		t.Errorf("the fallback took %s", el)
	}
	close(release)
	for range 2 {
		if err := <-results; err != nil {
			t.Errorf("call inside the bulkhead: %v", err)
		}
	}
	if p := peak.Load(); p != 2 {
		t.Errorf("peak calls in flight = %d, want 2", p)
	}
	want := map[string]int64{"ok": 2, "unavailable/bulkhead_full": 1}
	if diff := cmp.Diff(want, outcomes(t, reader)); diff != "" {
		t.Errorf("outcomes (-want +got):\n%s", diff)
	}
}

func TestFallbackReasons(t *testing.T) {
	t.Parallel()
	reader := sdkmetric.NewManualReader()
	o := fastOpts
	o.BreakerFailures, o.BreakerDelay = 3, time.Minute
	o.Meter = sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)).Meter("test")
	srv, _ := script(t, 503)
	c := New(srv.URL, o, logging.Discard())
	for range 2 {
		if _, err := c.Determine(context.Background(), req); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("err = %v, want ErrUnavailable", err)
		}
	}
	want := map[string]int64{"unavailable/error": 1, "unavailable/breaker_open": 1}
	if diff := cmp.Diff(want, outcomes(t, reader)); diff != "" {
		t.Errorf("outcomes (-want +got):\n%s", diff)
	}
}
