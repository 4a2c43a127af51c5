package deploy

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tandemhq/tandem/operator/state"
	"github.com/tandemhq/tandem/operator/topology"
)

// fakePlatform is a hand-written stand-in for a platform driver (the cloud
// API side): weights, fleets and per-color windows, with hooks to misbehave.
// The state store in these tests is a real bbolt file.
type fakePlatform struct {
	mu       sync.Mutex
	weights  topology.Weights
	fleets   map[string]topology.FleetSpec
	healthy  map[string]bool
	window   map[string]topology.Window
	history  []topology.Weights
	retired  []string
	onSet    func(w topology.Weights) // runs after SetWeights (drift injection)
	neverUp  bool
	smokeErr error
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
	for _, c := range []string{"blue", "green"} {
		if w.Of(c) > 0 && !f.healthy[c] {
			f.mu.Unlock()
			return errors.New(c + " has no healthy target")
		}
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
	if _, ok := f.fleets[color]; ok {
		delete(f.fleets, color)
		delete(f.healthy, color)
		f.retired = append(f.retired, color)
	}
	return nil
}

func (f *fakePlatform) Release(_ context.Context, _, _ string) (topology.FleetSpec, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	live := "blue"
	if f.weights.Green == 100 {
		live = "green"
	}
	return f.fleets[live], nil
}

func (f *fakePlatform) Window(_ context.Context, _, _, color string, _ time.Duration) (topology.Window, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.window[color], nil
}

func (f *fakePlatform) Smoke(context.Context, string, string, string) error { return f.smokeErr }

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

func policy() Policy {
	return Policy{StepBake: time.Minute, HealthyTimeout: 5 * time.Minute, AnalysisTimeout: 3 * time.Minute, Bake: 2 * time.Minute,
		ScaleDownDelay: time.Minute, MaxErrorRate: 0.01, MaxErrorRateIncrease: 0.01, MaxP99: 2 * time.Second, MaxP99Ratio: 3,
		MinSamples: 50, OnDeadline: "rollback", LeaseTTL: 10 * time.Second}
}

func request() Request {
	return Request{Region: "local-a", Service: "claims", Version: "v2", Count: 2, Steps: []int{25, 50, 100}, Policy: policy()}
}

func engine(t *testing.T, f *fakePlatform) *Engine {
	t.Helper()
	s, err := state.OpenBolt(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return &Engine{Traffic: f, Fleet: f, Metrics: f, Test: f, Store: s, Clock: &instantClock{now: time.Unix(1_800_000_000, 0)}, Holder: "test-op"}
}

func startAndRun(t *testing.T, e *Engine, req Request) *Deploy {
	t.Helper()
	if _, _, err := e.Start(context.Background(), req); err != nil {
		t.Fatalf("Start: %v", err)
	}
	d, err := e.Run(context.Background(), req.Service)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return d
}

var good = topology.Window{Requests: 500, Errors: 0, P99: 20 * time.Millisecond}

func TestDeployOutcomes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		setup       func(*fakePlatform, *Request)
		wantStatus  string
		wantWeights topology.Weights
		wantRetired []string
		wantHistory []topology.Weights
		wantReason  string
	}{
		{
			name:        "good version is promoted step by step",
			setup:       func(f *fakePlatform, _ *Request) { f.window["green"], f.window["blue"] = good, good },
			wantStatus:  StatusPromoted,
			wantWeights: topology.Weights{Green: 100},
			wantRetired: []string{"blue"},
			wantHistory: []topology.Weights{{Blue: 75, Green: 25}, {Blue: 50, Green: 50}, {Green: 100}},
		},
		{
			name: "error-rate breach rolls back to blue",
			setup: func(f *fakePlatform, _ *Request) {
				f.window["green"], f.window["blue"] = topology.Window{Requests: 500, Errors: 100}, good
			},
			wantStatus:  StatusRolledBack,
			wantWeights: topology.Weights{Blue: 100},
			wantRetired: []string{"green"},
			wantHistory: []topology.Weights{{Blue: 75, Green: 25}, {Blue: 100}},
			wantReason:  "error rate 20.00% above the limit",
		},
		{
			name: "p99 far above the old color's rolls back",
			setup: func(f *fakePlatform, _ *Request) {
				f.window["green"], f.window["blue"] = topology.Window{Requests: 500, P99: 900 * time.Millisecond}, good
			},
			wantStatus:  StatusRolledBack,
			wantWeights: topology.Weights{Blue: 100},
			wantRetired: []string{"green"},
			wantHistory: []topology.Weights{{Blue: 75, Green: 25}, {Blue: 100}},
			wantReason:  "p99 900ms above 3.0× the old color's",
		},
		{
			name:        "a version that never becomes healthy is rolled back before any weight moves",
			setup:       func(f *fakePlatform, _ *Request) { f.neverUp = true },
			wantStatus:  StatusRolledBack,
			wantWeights: topology.Weights{Blue: 100},
			wantRetired: []string{"green"},
			wantReason:  "green not healthy within 5m0s",
		},
		{
			name:        "with onDeadline hold, an unhealthy version holds traffic for a person",
			setup:       func(f *fakePlatform, r *Request) { f.neverUp = true; r.Policy.OnDeadline = "hold" },
			wantStatus:  StatusHeld,
			wantWeights: topology.Weights{Blue: 100},
			wantReason:  "green not healthy",
		},
		{
			name:        "a failed smoke check rolls back before any weight moves",
			setup:       func(f *fakePlatform, _ *Request) { f.smokeErr = errors.New("answered 500") },
			wantStatus:  StatusRolledBack,
			wantWeights: topology.Weights{Blue: 100},
			wantRetired: []string{"green"},
			wantReason:  "test traffic failed: answered 500",
		},
		{
			name: "weights changed behind the engine's back halt the deploy on the last verified weights",
			setup: func(f *fakePlatform, _ *Request) {
				f.window["green"], f.window["blue"] = good, good
				f.onSet = func(w topology.Weights) {
					if w.Green == 50 {
						f.mu.Lock()
						f.weights = topology.Weights{Blue: 90, Green: 10}
						f.mu.Unlock()
					}
				}
			},
			wantStatus:  StatusHalted,
			wantWeights: topology.Weights{Blue: 75, Green: 25},
			wantHistory: []topology.Weights{{Blue: 75, Green: 25}, {Blue: 50, Green: 50}, {Blue: 75, Green: 25}},
			wantReason:  "weights drifted: read 90/10",
		},
		{
			name:        "no traffic: inconclusive holds, then the deadline rolls back",
			setup:       func(*fakePlatform, *Request) {},
			wantStatus:  StatusRolledBack,
			wantWeights: topology.Weights{Blue: 100},
			wantRetired: []string{"green"},
			wantHistory: []topology.Weights{{Blue: 75, Green: 25}, {Blue: 100}},
			wantReason:  "analysis inconclusive at 25% for 3m0s",
		},
		{
			name:        "skip-analysis promotes on health alone",
			setup:       func(_ *fakePlatform, r *Request) { r.Policy.SkipAnalysis = true },
			wantStatus:  StatusPromoted,
			wantWeights: topology.Weights{Green: 100},
			wantRetired: []string{"blue"},
			wantHistory: []topology.Weights{{Blue: 75, Green: 25}, {Blue: 50, Green: 50}, {Green: 100}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFake()
			req := request()
			tc.setup(f, &req)
			e := engine(t, f)
			d := startAndRun(t, e, req)
			if d.Status != tc.wantStatus {
				t.Errorf("status = %q (%s), want %q", d.Status, d.Reason, tc.wantStatus)
			}
			if !strings.Contains(d.Reason, tc.wantReason) {
				t.Errorf("reason %q does not say %q", d.Reason, tc.wantReason)
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
			// The journal holds what Run returned.
			j, err := e.Current(context.Background(), "claims")
			if err != nil || j.Status != d.Status || len(j.Events) != len(d.Events) {
				t.Errorf("journal = %v, %v; want the returned deploy", j, err)
			}
		})
	}
}

func TestBreachIsAuditedWithEvidence(t *testing.T) {
	t.Parallel()
	f := newFake()
	f.window["green"], f.window["blue"] = topology.Window{Requests: 400, Errors: 80}, good
	d := startAndRun(t, engine(t, f), request())
	for _, ev := range d.Events {
		if ev.Phase == PhaseAnalysis && ev.New != nil && ev.New.Errors == 80 && ev.Old != nil && ev.Old.Requests == 500 &&
			strings.HasPrefix(ev.Message, Breach) {
			return
		}
	}
	t.Errorf("no analysis event carries the breach's evidence: %+v", d.Events)
}

func TestPreflightRefusalsChangeNothing(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		setup func(*fakePlatform, *Request)
		want  string
	}{
		{"split weights", func(f *fakePlatform, _ *Request) { f.weights = topology.Weights{Blue: 50, Green: 50} }, "split 50/50"},
		{"live color unhealthy", func(f *fakePlatform, _ *Request) { f.healthy["blue"] = false }, "no healthy target"},
		{"leftover idle fleet", func(f *fakePlatform, _ *Request) { f.fleets["green"] = topology.FleetSpec{Count: 1} }, "still has 1 task"},
		{"bad steps", func(_ *fakePlatform, r *Request) { r.Steps = []int{50} }, "must be 100"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFake()
			req := request()
			tc.setup(f, &req)
			before := f.weights
			_, _, err := engine(t, f).Start(context.Background(), req)
			if !errors.Is(err, ErrPreflight) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Start error = %v, want ErrPreflight mentioning %q", err, tc.want)
			}
			if f.weights != before || len(f.history) != 0 {
				t.Errorf("a refused deploy changed weights: %v, %v", f.weights, f.history)
			}
		})
	}
}

func TestSecondDeployOfAServiceIsRefused(t *testing.T) {
	t.Parallel()
	f := newFake()
	e := engine(t, f)
	ctx := context.Background()
	first, _, err := e.Start(ctx, request())
	if err != nil {
		t.Fatal(err)
	}
	second := request()
	second.Version = "v3"
	_, _, err = e.Start(ctx, second)
	if !errors.Is(err, ErrPreflight) || !strings.Contains(err.Error(), first.ID) {
		t.Fatalf("second Start = %v, want a refusal naming %s", err, first.ID)
	}
	cur, err := e.Current(ctx, "claims")
	if err != nil || cur.ID != first.ID || cur.Request.Version != "v2" {
		t.Fatalf("the first deploy was disturbed: %+v, %v", cur, err)
	}
}

func TestRequestIDMakesStartIdempotent(t *testing.T) {
	t.Parallel()
	f := newFake()
	f.window["green"], f.window["blue"] = good, good
	e := engine(t, f)
	req := request()
	req.RequestID = "pipeline-42"
	d := startAndRun(t, e, req)
	again, started, err := e.Start(context.Background(), req)
	if err != nil || started || again.ID != d.ID {
		t.Fatalf("retried Start = %v, started %v, %v; want the same deploy %s", again, started, err, d.ID)
	}
	if hist, _ := e.History(context.Background(), "claims"); len(hist) != 1 {
		t.Errorf("history has %d deploys, want 1", len(hist))
	}
}

func TestLiveLeaseHolderBlocksAnotherExecutor(t *testing.T) {
	t.Parallel()
	f := newFake()
	e := engine(t, f)
	ctx := context.Background()
	if _, _, err := e.Start(ctx, request()); err != nil {
		t.Fatal(err)
	}
	if _, err := state.Acquire(ctx, e.Store, "deploy/claims", "other-op", time.Hour, time.Now()); err != nil {
		t.Fatal(err)
	}
	_, err := e.Run(ctx, "claims")
	if err == nil || !strings.Contains(err.Error(), "being run by other-op") {
		t.Fatalf("Run = %v, want a refusal naming other-op", err)
	}
	if len(f.history) != 0 || len(f.fleets) != 1 {
		t.Errorf("a refused executor acted: %v, %v", f.history, f.fleets)
	}
}

func TestResumeAfterInterruptionConverges(t *testing.T) {
	t.Parallel()
	// Interrupt the executor as soon as each phase is reached, then resume
	// with a new operator: the deploy still converges to promoted, with
	// each weight change made once.
	for _, phase := range []string{PhaseWaitHealthy, PhaseTestTraffic, PhaseShift, PhaseAnalysis, PhaseBake, PhasePromote} {
		t.Run(phase, func(t *testing.T) {
			t.Parallel()
			f := newFake()
			f.window["green"], f.window["blue"] = good, good
			e := engine(t, f)
			ctx, cancel := context.WithCancel(context.Background())
			e.OnEvent = func(d *Deploy, _ Event) {
				if d.Phase == phase {
					cancel()
				}
			}
			if _, _, err := e.Start(ctx, request()); err != nil {
				t.Fatal(err)
			}
			if _, err := e.Run(ctx, "claims"); err == nil {
				t.Fatal("the interrupted run reported no error")
			}
			e2 := *e
			e2.OnEvent, e2.Holder = nil, "second-op"
			d, err := e2.Run(context.Background(), "claims")
			if err != nil || d.Status != StatusPromoted {
				t.Fatalf("resume: %v, %+v", err, d)
			}
			if d.Epoch != 2 {
				t.Errorf("resumed at epoch %d, want 2", d.Epoch)
			}
			want := []topology.Weights{{Blue: 75, Green: 25}, {Blue: 50, Green: 50}, {Green: 100}}
			if diff := cmp.Diff(want, f.history); diff != "" {
				t.Errorf("weight history (-want +got):\n%s", diff)
			}
		})
	}
}

func TestIntents(t *testing.T) {
	t.Parallel()
	t.Run("pause then resume", func(t *testing.T) {
		t.Parallel()
		f := newFake()
		f.window["green"], f.window["blue"] = good, good
		e := engine(t, f)
		ctx := context.Background()
		if _, _, err := e.Start(ctx, request()); err != nil {
			t.Fatal(err)
		}
		if _, err := e.Control(ctx, "claims", IntentPause); err != nil {
			t.Fatal(err)
		}
		d, err := e.Run(ctx, "claims")
		if err != nil || d.Status != StatusPaused || len(f.history) != 0 {
			t.Fatalf("paused run: %v, %s, weights %v", err, d.Status, f.history)
		}
		if _, err := e.Control(ctx, "claims", IntentResume); err != nil {
			t.Fatal(err)
		}
		if d, err = e.Run(ctx, "claims"); err != nil || d.Status != StatusPromoted {
			t.Fatalf("resumed run: %v, %+v", err, d)
		}
	})
	t.Run("abort rolls back", func(t *testing.T) {
		t.Parallel()
		f := newFake()
		e := engine(t, f)
		ctx := context.Background()
		e.OnEvent = func(d *Deploy, _ Event) {
			if d.Phase == PhaseAnalysis && d.Intent == "" && !d.Aborting {
				go e.Control(ctx, "claims", IntentAbort)
			}
		}
		if _, _, err := e.Start(ctx, request()); err != nil {
			t.Fatal(err)
		}
		d, err := e.Run(ctx, "claims")
		if err != nil || d.Status != StatusAborted || f.weights != (topology.Weights{Blue: 100}) {
			t.Fatalf("abort: %v, %s, weights %v", err, d.Status, f.weights)
		}
	})
	t.Run("promote skips the remaining analysis", func(t *testing.T) {
		t.Parallel()
		f := newFake() // no traffic: without promote this would hold, then roll back
		e := engine(t, f)
		ctx := context.Background()
		if _, _, err := e.Start(ctx, request()); err != nil {
			t.Fatal(err)
		}
		e.OnEvent = func(d *Deploy, ev Event) {
			if ev.Phase == PhaseAnalysis && strings.HasPrefix(ev.Message, Inconclusive) && !d.Forced {
				if _, err := e.Control(ctx, "claims", IntentPromote); err != nil {
					t.Error(err)
				}
			}
		}
		d, err := e.Run(ctx, "claims")
		if err != nil || d.Status != StatusPromoted || f.weights != (topology.Weights{Green: 100}) {
			t.Fatalf("promote: %v, %s (%s), weights %v", err, d.Status, d.Reason, f.weights)
		}
	})
	t.Run("intents to an ended deploy are refused", func(t *testing.T) {
		t.Parallel()
		f := newFake()
		f.window["green"], f.window["blue"] = good, good
		e := engine(t, f)
		startAndRun(t, e, request())
		if _, err := e.Control(context.Background(), "claims", IntentAbort); !errors.Is(err, ErrNoDeploy) {
			t.Fatalf("abort after promotion = %v, want ErrNoDeploy", err)
		}
	})
}

func TestJudge(t *testing.T) {
	t.Parallel()
	p := policy()
	for _, tc := range []struct {
		name     string
		nw, ow   topology.Window
		want     string
		contains string
	}{
		{"too few samples", topology.Window{Requests: 10}, good, Inconclusive, "10 samples < 50"},
		{"clean", good, good, Pass, "new 500 requests"},
		{"absolute error limit", topology.Window{Requests: 100, Errors: 2}, topology.Window{}, Breach, "above the limit"},
		{"same errors as old is not the new version's fault", topology.Window{Requests: 1000, Errors: 5}, topology.Window{Requests: 1000, Errors: 5}, Pass, ""},
		{"absolute p99", topology.Window{Requests: 100, P99: 3 * time.Second}, topology.Window{}, Breach, "p99 3s above the limit 2s"},
		{"slow old color allows a slow new one", topology.Window{Requests: 100, P99: time.Second}, topology.Window{Requests: 100, P99: 800 * time.Millisecond}, Pass, ""},
	} {
		got, why := Judge(p, tc.nw, tc.ow)
		if got != tc.want || !strings.Contains(why, tc.contains) {
			t.Errorf("%s: Judge = %s (%s), want %s containing %q", tc.name, got, why, tc.want, tc.contains)
		}
	}
}

func TestPlanWorstCase(t *testing.T) {
	t.Parallel()
	plan := MakePlan(request(), 30*time.Second)
	// healthy 5m + smoke 5s + 3 × analysis 3m + bake 2m + scale-down 1m + drain 30s, plus a rollback's drain.
	want := 5*time.Minute + 5*time.Second + 9*time.Minute + 2*time.Minute + time.Minute + 30*time.Second + 30*time.Second
	if plan.Worst != want {
		t.Errorf("worst case = %s, want %s", plan.Worst, want)
	}
	if plan.Best >= plan.Worst || len(plan.Steps) != 4+2*3+2 {
		t.Errorf("plan = %+v", plan)
	}
}

func TestRequestIDWithAnotherRequestIsRefused(t *testing.T) {
	t.Parallel()
	f := newFake()
	e := engine(t, f)
	req := request()
	req.RequestID = "pipeline-7"
	if _, _, err := e.Start(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	other := req
	other.Version = "v3"
	if _, _, err := e.Start(context.Background(), other); !errors.Is(err, ErrRequestIDReused) {
		t.Fatalf("reused request id with another version = %v, want ErrRequestIDReused", err)
	}
}

func TestRollbackWithNoFleetLeftEnds(t *testing.T) {
	t.Parallel()
	// The region was failed away from mid-deploy: neither color has tasks.
	f := newFake()
	e := engine(t, f)
	ctx := context.Background()
	if _, _, err := e.Start(ctx, request()); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Control(ctx, "claims", IntentPause); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Run(ctx, "claims"); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	f.fleets, f.healthy = map[string]topology.FleetSpec{}, map[string]bool{}
	f.weights = topology.Weights{Blue: 75, Green: 25}
	f.mu.Unlock()
	if _, err := e.Control(ctx, "claims", IntentAbort); err != nil {
		t.Fatal(err)
	}
	d, err := e.Run(ctx, "claims")
	if err != nil || d.Status != StatusAborted {
		t.Fatalf("abort with no fleet left: %v, %s (%s)", err, d.Status, d.Reason)
	}
}
