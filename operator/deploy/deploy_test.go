package deploy

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tandemhq/tandem/operator/topology"
)

// fakePlatform is a hand-written stand-in for a platform driver: weights,
// fleets and per-color windows, with hooks to misbehave.
type fakePlatform struct {
	mu      sync.Mutex
	weights topology.Weights
	fleets  map[string]topology.FleetSpec
	healthy map[string]bool
	window  map[string]topology.Window
	history []topology.Weights
	retired []string
	onSet   func(w topology.Weights) // runs after SetWeights (drift injection)
	neverUp bool
}

func newFake() *fakePlatform {
	return &fakePlatform{
		weights: topology.Weights{Blue: 100},
		fleets:  map[string]topology.FleetSpec{"blue": {Version: "v1", Count: 2}},
		healthy: map[string]bool{"blue": true},
		window:  map[string]topology.Window{},
	}
}

func (f *fakePlatform) Weights(context.Context, string, string) (topology.Weights, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.weights, nil
}

func (f *fakePlatform) SetWeights(_ context.Context, _, _ string, w topology.Weights) error {
	f.mu.Lock()
	if w.Blue+w.Green != 100 {
		f.mu.Unlock()
		return errors.New("weights must sum to 100")
	}
	f.weights = w
	f.history = append(f.history, w)
	hook := f.onSet
	f.mu.Unlock()
	if hook != nil {
		hook(w)
	}
	return nil
}

func (f *fakePlatform) Launch(_ context.Context, _, _, color string, spec topology.FleetSpec) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.fleets[color]; ok {
		return errors.New("already running")
	}
	f.fleets[color] = spec
	f.healthy[color] = !f.neverUp
	return nil
}

func (f *fakePlatform) Health(_ context.Context, _, _, color string) (topology.Health, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	spec, ok := f.fleets[color]
	if !ok {
		return topology.Health{}, nil
	}
	h := topology.Health{Targets: spec.Count}
	if f.healthy[color] {
		h.Healthy = spec.Count
	}
	return h, nil
}

func (f *fakePlatform) Retire(_ context.Context, _, _, color string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.weights.Of(color) > 0 {
		return errors.New("color still carries traffic")
	}
	delete(f.fleets, color)
	f.retired = append(f.retired, color)
	return nil
}

func (f *fakePlatform) Window(_ context.Context, _, _, color string, _ time.Duration) (topology.Window, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.window[color], nil
}

// instantClock makes every bake and poll return at once while time moves on.
type instantClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *instantClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *instantClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	c.now = c.now.Add(d)
	now := c.now
	c.mu.Unlock()
	ch := make(chan time.Time, 1)
	ch <- now
	return ch
}

func request() Request {
	return Request{Region: "local-a", Service: "claims", Version: "v2", Count: 2, Steps: []int{25, 50, 100},
		StepBake: 10 * time.Minute, HealthyTimeout: time.Minute, MaxErrorRate: 0.01, MinSamples: 50,
		AnalysisTimeout: 30 * time.Minute}
}

func TestDeploy(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		setup       func(*fakePlatform)
		wantOutcome string
		wantErr     error
		wantWeights topology.Weights
		wantRetired []string
		wantHistory []topology.Weights
	}{
		{
			name: "good version is promoted step by step",
			setup: func(f *fakePlatform) {
				f.window["green"] = topology.Window{Requests: 500, Errors: 0, P99: 20 * time.Millisecond}
			},
			wantOutcome: Promoted,
			wantWeights: topology.Weights{Green: 100},
			wantRetired: []string{"blue"},
			wantHistory: []topology.Weights{{Blue: 75, Green: 25}, {Blue: 50, Green: 50}, {Green: 100}},
		},
		{
			name:        "error-rate breach rolls back to blue",
			setup:       func(f *fakePlatform) { f.window["green"] = topology.Window{Requests: 500, Errors: 100} },
			wantOutcome: RolledBack,
			wantWeights: topology.Weights{Blue: 100},
			wantRetired: []string{"green"},
			wantHistory: []topology.Weights{{Blue: 75, Green: 25}, {Blue: 100}},
		},
		{
			name:        "a version that never becomes healthy is rolled back before any weight moves",
			setup:       func(f *fakePlatform) { f.neverUp = true },
			wantOutcome: RolledBack,
			wantWeights: topology.Weights{Blue: 100},
			wantRetired: []string{"green"},
			wantHistory: []topology.Weights{{Blue: 100}},
		},
		{
			name: "weights changed behind the engine's back halt the deploy",
			setup: func(f *fakePlatform) {
				f.window["green"] = topology.Window{Requests: 500}
				f.onSet = func(w topology.Weights) {
					if w.Green == 50 {
						f.mu.Lock()
						f.weights = topology.Weights{Blue: 90, Green: 10}
						f.mu.Unlock()
					}
				}
			},
			wantOutcome: "halted",
			wantErr:     ErrDrift,
			wantWeights: topology.Weights{Blue: 90, Green: 10},
			wantHistory: []topology.Weights{{Blue: 75, Green: 25}, {Blue: 50, Green: 50}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFake()
			tc.setup(f)
			e := &Engine{Traffic: f, Fleet: f, Metrics: f, Clock: &instantClock{now: time.Unix(0, 0)}}
			res, err := e.Run(context.Background(), request())
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Run error = %v, want %v", err, tc.wantErr)
			}
			if res.Outcome != tc.wantOutcome {
				t.Errorf("outcome = %q (%s), want %q", res.Outcome, res.Reason, tc.wantOutcome)
			}
			if diff := cmp.Diff(tc.wantWeights, f.weights); diff != "" {
				t.Errorf("final weights (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantRetired, f.retired); diff != "" {
				t.Errorf("retired colors (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantHistory, f.history); diff != "" {
				t.Errorf("weight history (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDeployRecordsEvidenceOfBreach(t *testing.T) {
	t.Parallel()
	f := newFake()
	f.window["green"] = topology.Window{Requests: 400, Errors: 80}
	e := &Engine{Traffic: f, Fleet: f, Metrics: f, Clock: &instantClock{}}
	res, err := e.Run(context.Background(), request())
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, ev := range res.Events {
		if ev.Phase == "analysis" && ev.Window != nil && ev.Window.Errors == 80 && strings.Contains(ev.Message, "20.00%") {
			found = true
		}
	}
	if !found {
		t.Errorf("no analysis event carries the breach's evidence: %+v", res.Events)
	}
}

func TestDeployNoSamplesHoldsThenEndsAtTheDeadline(t *testing.T) {
	t.Parallel()
	f := newFake() // green serves nothing: zero samples at every look
	e := &Engine{Traffic: f, Fleet: f, Metrics: f, Clock: &instantClock{}}
	res, err := e.Run(context.Background(), request())
	if err != nil {
		t.Fatal(err)
	}
	holds := 0
	for _, ev := range res.Events {
		if ev.Phase == "analysis" && strings.HasSuffix(ev.Message, "holding") {
			holds++
		}
	}
	// 30 minutes of 10-minute bakes: three looks hold, the fourth is past
	// the deadline.
	if holds != 3 {
		t.Errorf("want 3 holding analyses at the first step, got %d: %+v", holds, res.Events)
	}
	if res.Outcome != RolledBack || !strings.Contains(res.Reason, "inconclusive at 25%") {
		t.Errorf("outcome %q (%s), want a rollback for inconclusive analysis at 25%%", res.Outcome, res.Reason)
	}
	if diff := cmp.Diff([]topology.Weights{{Blue: 75, Green: 25}, {Blue: 100}}, f.history); diff != "" {
		t.Errorf("zero samples moved traffic beyond the first step (-want +got):\n%s", diff)
	}
}

func TestDeploySkipAnalysisPromotesOnHealth(t *testing.T) {
	t.Parallel()
	f := newFake()
	req := request()
	req.SkipAnalysis = true
	res, err := (&Engine{Traffic: f, Fleet: f, Metrics: f, Clock: &instantClock{}}).Run(context.Background(), req)
	if err != nil || res.Outcome != Promoted {
		t.Fatalf("outcome %v, err %v", res, err)
	}
}

func TestDeployPreflightRefusals(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		setup func(*fakePlatform)
		req   func(Request) Request
		want  string
	}{
		{"split weights", func(f *fakePlatform) { f.weights = topology.Weights{Blue: 50, Green: 50} }, nil, "split 50/50"},
		{"live color unhealthy", func(f *fakePlatform) { f.healthy["blue"] = false }, nil, "no healthy target"},
		{"bad steps", func(*fakePlatform) {}, func(r Request) Request { r.Steps = []int{50}; return r }, "must be 100"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFake()
			tc.setup(f)
			req := request()
			if tc.req != nil {
				req = tc.req(req)
			}
			before := f.weights
			_, err := (&Engine{Traffic: f, Fleet: f, Metrics: f, Clock: &instantClock{}}).Run(context.Background(), req)
			if !errors.Is(err, ErrPreflight) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Run error = %v, want ErrPreflight mentioning %q", err, tc.want)
			}
			if f.weights != before || len(f.history) != 0 || len(f.fleets) != 1 {
				t.Errorf("a refused deploy changed something: weights %v, history %v, fleets %v", f.weights, f.history, f.fleets)
			}
		})
	}
}
