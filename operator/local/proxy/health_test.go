package proxy

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

func TestHealthChecksFollowTheTarget(t *testing.T) {
	t.Parallel()
	r, ts := startRouter(t, fastOptions())
	b := startBackend(t, "blue-1")
	dead := "http://" + closedAddr(t)
	if err := r.SetTargets("claims", Blue, []string{b.URL, dead}); err != nil {
		t.Fatal(err)
	}
	targetHealth := func(url string) TargetHealth {
		for _, th := range r.Health("claims", Blue).PerTarget {
			if th.URL == url {
				return th
			}
		}
		t.Fatalf("target %s not registered", url)
		return TargetHealth{}
	}

	steps := []struct {
		name      string
		ready     bool
		wantUp    bool
		wantError string
	}{
		{name: "ready target becomes healthy", ready: true, wantUp: true},
		{name: "failing health path makes it unhealthy", ready: false, wantUp: false, wantError: "503"},
		{name: "recovered target becomes healthy again", ready: true, wantUp: true},
	}
	for _, s := range steps {
		b.ready.Store(s.ready)
		waitFor(t, s.name, func() bool {
			th := targetHealth(b.URL)
			return th.Healthy == s.wantUp && strings.Contains(th.LastError, s.wantError) && (s.wantError != "" || th.LastError == "")
		})
		res := do(t, ts.Client(), http.MethodGet, ts.URL+"/v1/claims", "", nil)
		if wantStatus := map[bool]int{true: 200, false: 503}[s.wantUp]; res.status != wantStatus {
			t.Errorf("%s: request status %d, want %d", s.name, res.status, wantStatus)
		}
	}

	waitFor(t, "dead target reports why", func() bool {
		return strings.Contains(targetHealth(dead).LastError, "connection refused")
	})
	if h := r.Health("claims", Blue); h.Targets != 2 || h.Healthy != 1 || targetHealth(dead).Healthy {
		t.Errorf("Health = %+v, want 2 targets with the dead one unhealthy", h)
	}
}

func TestHealthSurvivesTargetReplacement(t *testing.T) {
	t.Parallel()
	r, _ := startRouter(t, fastOptions())
	a, b := startBackend(t, "blue-a"), startBackend(t, "blue-b")
	setTargets(t, r, "claims", Blue, a)
	// a stays registered, so it keeps its health; b must pass its checks first.
	if err := r.SetTargets("claims", Blue, []string{a.URL, b.URL}); err != nil {
		t.Fatal(err)
	}
	h := r.Health("claims", Blue)
	if h.Targets != 2 || !h.PerTarget[0].Healthy {
		t.Fatalf("after adding a target: %+v, want the kept target still healthy", h)
	}
	waitFor(t, "new target healthy", func() bool { return r.Health("claims", Blue).Healthy == 2 })
	if err := r.SetTargets("claims", Blue, []string{b.URL}); err != nil {
		t.Fatal(err)
	}
	if h := r.Health("claims", Blue); h.Targets != 1 || h.PerTarget[0].URL != b.URL || !h.PerTarget[0].Healthy {
		t.Errorf("after removing a target: %+v", h)
	}
}

func TestTargetThresholds(t *testing.T) {
	t.Parallel()
	fail := errors.New("status 503")
	tests := []struct {
		name    string
		results []error
		want    []bool // health after each result
	}{
		{name: "healthy after two successes", results: []error{nil, nil, nil}, want: []bool{false, true, true}},
		{name: "one failure is tolerated", results: []error{nil, nil, fail, nil}, want: []bool{false, true, true, true}},
		{name: "unhealthy after two failures", results: []error{nil, nil, fail, fail}, want: []bool{false, true, true, false}},
		{name: "a success resets the failure streak", results: []error{nil, nil, fail, nil, fail, nil}, want: []bool{false, true, true, true, true, true}},
		{name: "recovery needs two successes", results: []error{nil, nil, fail, fail, nil, nil}, want: []bool{false, true, true, false, false, true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tg := newTarget(mustParse(t, "http://127.0.0.1:1"))
			for i, err := range tt.results {
				tg.observe(err, 2, 2)
				if got := tg.healthy.Load(); got != tt.want[i] {
					t.Fatalf("after result %d: healthy = %v, want %v", i, got, tt.want[i])
				}
			}
		})
	}
}

func TestTargetMarkDown(t *testing.T) {
	t.Parallel()
	tg := newTarget(mustParse(t, "http://127.0.0.1:1"))
	tg.observe(nil, 2, 2)
	tg.observe(nil, 2, 2)
	if !tg.markDown(errors.New("connect: connection refused"), 2) {
		t.Fatal("markDown of a healthy target reported no change")
	}
	if tg.markDown(errors.New("connect: connection refused"), 2) {
		t.Error("markDown of an unhealthy target reported a change")
	}
	tg.observe(nil, 2, 2)
	if tg.healthy.Load() {
		t.Error("one success after ejection made the target healthy; want two")
	}
	tg.observe(nil, 2, 2)
	if !tg.healthy.Load() {
		t.Error("two successes after ejection left the target unhealthy")
	}
}

func mustParse(t *testing.T, raw string) *url.URL {
	t.Helper()
	u, err := parseTarget(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
