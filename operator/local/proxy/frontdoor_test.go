package proxy

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeClock is a settable clock for DNS TTL tests.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// startRegions starts a router with one blue claims task per region and returns the
// routers' URLs by region.
func startRegions(t *testing.T, regions ...string) map[string]string {
	t.Helper()
	urls := map[string]string{}
	for _, region := range regions {
		r, ts := startRouter(t, fastOptions())
		setTargets(t, r, "claims", Blue, startBackend(t, region+"-claims-1"))
		urls[region] = ts.URL
	}
	return urls
}

func startFrontDoor(t *testing.T, opts FrontDoorOptions) (*FrontDoor, *httptest.Server) {
	t.Helper()
	f := NewFrontDoor(opts)
	ts := httptest.NewServer(f)
	t.Cleanup(func() {
		ts.Close()
		f.Close()
	})
	return f, ts
}

func TestFrontDoorFailover(t *testing.T) {
	t.Parallel()
	f, ts := startFrontDoor(t, FrontDoorOptions{
		Regions: startRegions(t, "us-east-1", "us-west-2"),
		Active:  "us-east-1",
		Logger:  testLogger(),
	})

	steps := []struct {
		name        string
		act         func() error
		wantErr     bool
		wantActive  string
		wantFenced  bool
		wantStatus  int
		wantBackend string
	}{
		{name: "routes to the active region", act: func() error { return nil },
			wantActive: "us-east-1", wantStatus: 200, wantBackend: "us-east-1-claims-1"},
		{name: "fence refuses everything", act: func() error { f.Fence(); return nil },
			wantActive: "us-east-1", wantFenced: true, wantStatus: 503},
		{name: "unknown region is rejected and changes nothing", act: func() error { return f.SetActive("eu-nowhere-1") },
			wantErr: true, wantActive: "us-east-1", wantFenced: true, wantStatus: 503},
		{name: "new region lifts the fence", act: func() error { return f.SetActive("us-west-2") },
			wantActive: "us-west-2", wantStatus: 200, wantBackend: "us-west-2-claims-1"},
		{name: "switchover back without a fence", act: func() error { return f.SetActive("us-east-1") },
			wantActive: "us-east-1", wantStatus: 200, wantBackend: "us-east-1-claims-1"},
	}
	for _, s := range steps {
		if err := s.act(); (err != nil) != s.wantErr {
			t.Fatalf("%s: error = %v, want error %v", s.name, err, s.wantErr)
		}
		if region, fenced := f.Active(); region != s.wantActive || fenced != s.wantFenced {
			t.Fatalf("%s: Active() = %s, %v; want %s, %v", s.name, region, fenced, s.wantActive, s.wantFenced)
		}
		res := do(t, ts.Client(), http.MethodPost, ts.URL+"/v1/claims", `{"n":1}`, nil)
		if res.status != s.wantStatus {
			t.Fatalf("%s: status %d, want %d", s.name, res.status, s.wantStatus)
		}
		if s.wantStatus == 503 {
			if res.contentType != "application/problem+json" || res.retryAfter != "1" {
				t.Errorf("%s: fenced answer %q with Retry-After %q, want a problem with Retry-After 1", s.name, res.contentType, res.retryAfter)
			}
			continue
		}
		if res.echo.Backend != s.wantBackend || res.region != s.wantActive || res.targetGroup != "claims-blue" || res.echo.Body != `{"n":1}` {
			t.Errorf("%s: answered by %s via region %q and %q with body %q", s.name, res.echo.Backend, res.region, res.targetGroup, res.echo.Body)
		}
		// The client, then the front door, as the task sees them behind two proxies.
		if xff := res.echo.Header.Get("X-Forwarded-For"); xff != "127.0.0.1, 127.0.0.1" {
			t.Errorf("%s: X-Forwarded-For = %q", s.name, xff)
		}
	}
}

func TestFrontDoorDNSTTL(t *testing.T) {
	t.Parallel()
	const ttl = 60 * time.Second
	clock := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	f := NewFrontDoor(FrontDoorOptions{
		Regions: map[string]string{"us-east-1": "http://127.0.0.1:1", "us-west-2": "http://127.0.0.1:2"},
		Active:  "us-east-1",
		DNSTTL:  ttl,
		Logger:  testLogger(),
	})
	f.now = clock.Now

	check := func(step, wantRegion string, wantFenced bool) {
		t.Helper()
		if region, fenced := f.Active(); region != wantRegion || fenced != wantFenced {
			t.Fatalf("%s: Active() = %s, %v; want %s, %v", step, region, fenced, wantRegion, wantFenced)
		}
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}

	must(f.SetActive("us-west-2"))
	check("switchover just requested", "us-east-1", false)
	clock.Advance(ttl / 2)
	must(f.SetActive("us-west-2")) // asking again does not restart the TTL
	clock.Advance(ttl / 2)
	check("switchover after the TTL", "us-west-2", false)

	f.Fence()
	check("fence is immediate", "us-west-2", true)
	must(f.SetActive("us-east-1"))
	clock.Advance(ttl - time.Second)
	check("failover before the TTL", "us-west-2", true)
	clock.Advance(time.Second)
	check("failover after the TTL", "us-east-1", false)

	must(f.SetActive("us-west-2"))
	f.Fence()
	clock.Advance(2 * ttl)
	check("fence cancels a pending switch", "us-east-1", true)

	must(f.SetActive("us-east-1"))
	clock.Advance(ttl)
	check("unfencing the same region also waits for the TTL", "us-east-1", false)
}

func TestFrontDoorStartsFencedWithoutActiveRegion(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		active string
	}{
		{name: "no active region", active: ""},
		{name: "unknown active region", active: "mars-1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, ts := startFrontDoor(t, FrontDoorOptions{
				Regions: map[string]string{"us-east-1": "http://127.0.0.1:1"},
				Active:  tt.active,
				Logger:  testLogger(),
			})
			if res := do(t, ts.Client(), http.MethodGet, ts.URL+"/", "", nil); res.status != http.StatusServiceUnavailable {
				t.Errorf("status = %d, want 503", res.status)
			}
		})
	}
}

func TestFrontDoorRetriesRefusedConnections(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		refusals   int32
		wantStatus int
		wantDials  int32
	}{
		{name: "router restarting", refusals: 2, wantStatus: 200, wantDials: 3},
		{name: "region down", refusals: 100, wantStatus: 502, wantDials: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f, ts := startFrontDoor(t, FrontDoorOptions{
				Regions: startRegions(t, "us-east-1"),
				Active:  "us-east-1",
				Logger:  testLogger(),
			})
			f.retryWait = time.Millisecond
			// The first dials go to a closed port, as they would while the region's
			// router restarts.
			refused := closedAddr(t)
			var dials atomic.Int32
			dial := f.transport.DialContext
			f.transport.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
				if dials.Add(1) <= tt.refusals {
					addr = refused
				}
				return dial(ctx, network, addr)
			}
			res := do(t, ts.Client(), http.MethodPost, ts.URL+"/v1/claims", "not idempotent", nil)
			if res.status != tt.wantStatus || dials.Load() != tt.wantDials {
				t.Fatalf("status %d after %d dials, want %d after %d", res.status, dials.Load(), tt.wantStatus, tt.wantDials)
			}
			if tt.wantStatus == 502 && (res.region != "us-east-1" || !strings.Contains(res.problem.Detail, "connection refused")) {
				t.Errorf("502 answer: region %q, problem %+v", res.region, res.problem)
			}
			if tt.wantStatus == 200 && res.echo.Body != "not idempotent" {
				t.Errorf("body forwarded = %q", res.echo.Body)
			}
		})
	}
}

func TestFrontDoorOptionsValidate(t *testing.T) {
	t.Parallel()
	regions := map[string]string{"us-east-1": "http://127.0.0.1:8080"}
	tests := []struct {
		name    string
		opts    FrontDoorOptions
		wantErr string
	}{
		{name: "valid", opts: FrontDoorOptions{Regions: regions, Active: "us-east-1"}},
		{name: "fenced start", opts: FrontDoorOptions{Regions: regions}},
		{name: "unknown active", opts: FrontDoorOptions{Regions: regions, Active: "us-west-2"}, wantErr: "not among the regions"},
		{name: "bad URL", opts: FrontDoorOptions{Regions: map[string]string{"us-east-1": "127.0.0.1:8080"}}, wantErr: "region us-east-1"},
		{name: "negative TTL", opts: FrontDoorOptions{Regions: regions, DNSTTL: -time.Second}, wantErr: "negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.opts.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate = %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Validate = %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}
