package proxy

import (
	"testing"
	"time"
)

func TestBucketsBoundLatency(t *testing.T) {
	t.Parallel()
	for d := time.Microsecond; d < 5*time.Minute; d = d*11/10 + 1 {
		up := bucketUpper(bucketOf(d))
		if d < histMin {
			if up != histMin {
				t.Fatalf("%s: reported %s, want %s", d, up, histMin)
			}
			continue
		}
		if d < 3*time.Minute && (up < d || float64(up) > float64(d)*1.1) {
			t.Fatalf("%s: reported %s, want within 10%% above", d, up)
		}
	}
}

func TestGroupStatsWindow(t *testing.T) {
	t.Parallel()
	base := time.Unix(1_700_000_000, 0)
	var g groupStats
	// A minute ago: slow and failing.
	for i := range 100 {
		status := 200
		if i%2 == 0 {
			status = 500
		}
		g.record(base.Add(-60*time.Second), status, 900*time.Millisecond)
	}
	// The last five seconds: 990 fast requests, 10 slow ones, 3 errors.
	for i := range 1000 {
		status, lat := 200, 10*time.Millisecond
		if i < 10 {
			lat = 400 * time.Millisecond
		}
		if i < 3 {
			status = 502
		}
		g.record(base.Add(-time.Duration(i%5)*time.Second), status, lat)
	}

	tests := []struct {
		name         string
		window       time.Duration
		wantRequests int64
		wantErrors   int64
		wantP99      time.Duration
	}{
		{name: "recent", window: 5 * time.Second, wantRequests: 1000, wantErrors: 3, wantP99: 10 * time.Millisecond},
		{name: "two minutes", window: 2 * time.Minute, wantRequests: 1100, wantErrors: 53, wantP99: 900 * time.Millisecond},
		{name: "beyond the ring is capped", window: time.Hour, wantRequests: 1100, wantErrors: 53, wantP99: 900 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			w := g.window(base, tt.window)
			if w.Requests != tt.wantRequests || w.Errors5xx != tt.wantErrors {
				t.Errorf("window = %+v, want %d requests and %d errors", w, tt.wantRequests, tt.wantErrors)
			}
			if w.P99 < tt.wantP99 || float64(w.P99) > float64(tt.wantP99)*1.1 {
				t.Errorf("p99 = %s, want %s (+10%%)", w.P99, tt.wantP99)
			}
		})
	}
	if got := g.snapshot(); got.Requests != 1100 || got.Errors5xx != 53 {
		t.Errorf("cumulative = %+v", got)
	}
	// Five minutes on, every slot has aged out.
	if w := g.window(base.Add(6*time.Minute), 5*time.Minute); w != (WindowStats{}) {
		t.Errorf("window after the history aged out = %+v", w)
	}
	if rate := (WindowStats{Requests: 200, Errors5xx: 3}).ErrorRate(); rate != 0.015 {
		t.Errorf("ErrorRate = %v", rate)
	}
}
