// Package deploy is tandem's blue/green deploy engine: a state machine that
// launches the idle color with a new version, waits for it to be healthy,
// shifts traffic to it step by step (reading the weights back after every
// change), analyses the new color's error rate at each step, and either
// promotes it and retires the old color or rolls back. It drives a platform
// only through the small interfaces below, which the local platform and the
// AWS driver both satisfy.
package deploy

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tandemhq/tandem/operator/topology"
	"github.com/tandemhq/tandem/stacks"
)

// Traffic sets and reads back a service's weights (an ALB listener rule).
type Traffic interface {
	Weights(ctx context.Context, region, service string) (topology.Weights, error)
	SetWeights(ctx context.Context, region, service string, w topology.Weights) error
}

// Fleet launches, health-checks and retires a color's tasks.
type Fleet interface {
	Launch(ctx context.Context, region, service, color string, spec topology.FleetSpec) error
	Health(ctx context.Context, region, service, color string) (topology.Health, error)
	Retire(ctx context.Context, region, service, color string) error
}

// Metrics reports what a color served over a recent window.
type Metrics interface {
	Window(ctx context.Context, region, service, color string, d time.Duration) (topology.Window, error)
}

// Clock lets tests run bakes without waiting.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Request is one deploy.
type Request struct {
	Region  string
	Service string
	Version string
	Env     map[string]string
	Count   int
	Steps   []int
	// StepBake is how long each step is observed before analysis.
	StepBake       time.Duration
	HealthyTimeout time.Duration
	MaxErrorRate   float64
	MinSamples     int
	// AnalysisTimeout bounds how long a step may stay inconclusive (too
	// few samples) before the deploy rolls back.
	AnalysisTimeout time.Duration
	// SkipAnalysis promotes on health alone, for a service with no traffic
	// to analyse. The operator asks for it explicitly.
	SkipAnalysis bool
}

// Outcomes.
const (
	Promoted   = "promoted"
	RolledBack = "rolled-back"
)

// Event is one decision or step, with its evidence.
type Event struct {
	At      time.Time         `json:"at"`
	Phase   string            `json:"phase"`
	Message string            `json:"message"`
	Weights *topology.Weights `json:"weights,omitempty"`
	Window  *topology.Window  `json:"window,omitempty"`
}

// Result is how a deploy ended.
type Result struct {
	Service  string        `json:"service"`
	Region   string        `json:"region"`
	Version  string        `json:"version"`
	From     string        `json:"fromColor"`
	To       string        `json:"toColor"`
	Outcome  string        `json:"outcome"`
	Reason   string        `json:"reason,omitempty"`
	Started  time.Time     `json:"started"`
	Duration time.Duration `json:"duration"`
	Events   []Event       `json:"events"`
}

// ErrPreflight marks a deploy refused before anything changed.
var ErrPreflight = errors.New("preflight refused the deploy")

// ErrDrift marks weights that someone else changed mid-deploy.
var ErrDrift = errors.New("weights drifted")

// Engine runs deploys.
type Engine struct {
	Traffic Traffic
	Fleet   Fleet
	Metrics Metrics
	Clock   Clock
	// OnEvent, when set, sees every event as it happens (progress output).
	OnEvent func(Event)
}

// FromPolicy fills a request's tuning from the stack's deploy policy.
func FromPolicy(r Request, p stacks.DeployPolicy) Request {
	if len(r.Steps) == 0 {
		r.Steps = p.Steps
	}
	if r.StepBake == 0 {
		r.StepBake = p.StepBake.Duration
	}
	if r.HealthyTimeout == 0 {
		r.HealthyTimeout = p.HealthyTimeout.Duration
	}
	if r.MaxErrorRate == 0 {
		r.MaxErrorRate = p.MaxErrorRate
	}
	if r.MinSamples == 0 {
		r.MinSamples = p.MinSamples
	}
	if r.AnalysisTimeout == 0 {
		r.AnalysisTimeout = p.AnalysisTimeout.Duration
	}
	return r
}

func other(color string) string {
	if color == topology.Blue {
		return topology.Green
	}
	return topology.Blue
}

func split(color string, weight int) topology.Weights {
	if color == topology.Green {
		return topology.Weights{Green: weight, Blue: 100 - weight}
	}
	return topology.Weights{Blue: weight, Green: 100 - weight}
}

type run struct {
	e   *Engine
	req Request
	res *Result
}

func (r *run) event(phase, format string, args ...any) *Event {
	ev := Event{At: r.e.Clock.Now(), Phase: phase, Message: fmt.Sprintf(format, args...)}
	r.res.Events = append(r.res.Events, ev)
	if r.e.OnEvent != nil {
		r.e.OnEvent(ev)
	}
	return &r.res.Events[len(r.res.Events)-1]
}

// Run performs a deploy. It returns a Result for every deploy that started
// (promoted or rolled back); the error is non-nil when the deploy was
// refused (ErrPreflight), halted (ErrDrift) or failed to roll back.
func (e *Engine) Run(ctx context.Context, req Request) (*Result, error) {
	if e.Clock == nil {
		e.Clock = realClock{}
	}
	if err := stacks.ValidateSteps(req.Steps); err != nil {
		return nil, fmt.Errorf("%w: steps: %v", ErrPreflight, err)
	}
	r := &run{e: e, req: req, res: &Result{Service: req.Service, Region: req.Region, Version: req.Version, Started: e.Clock.Now()}}
	defer func() { r.res.Duration = e.Clock.Now().Sub(r.res.Started) }()

	// Preflight: the live color carries all traffic and is healthy.
	w, err := e.Traffic.Weights(ctx, req.Region, req.Service)
	if err != nil {
		return nil, fmt.Errorf("%w: read weights of %s in %s: %v", ErrPreflight, req.Service, req.Region, err)
	}
	var live string
	switch {
	case w.Blue == 100 && w.Green == 0:
		live = topology.Blue
	case w.Green == 100 && w.Blue == 0:
		live = topology.Green
	default:
		return nil, fmt.Errorf("%w: %s in %s is split %d/%d (blue/green); another deploy may be in progress — finish or roll it back first", ErrPreflight, req.Service, req.Region, w.Blue, w.Green)
	}
	h, err := e.Fleet.Health(ctx, req.Region, req.Service, live)
	if err != nil || h.Healthy == 0 {
		return nil, fmt.Errorf("%w: live color %s of %s has no healthy target (%v)", ErrPreflight, live, req.Service, err)
	}
	next := other(live)
	r.res.From, r.res.To = live, next
	ev := r.event("preflight", "%s is live on %s with %d/%d healthy; deploying %s to %s", req.Service, live, h.Healthy, h.Targets, req.Version, next)
	ev.Weights = &w

	// Launch the idle color and wait until every task is healthy.
	if err := e.Fleet.Launch(ctx, req.Region, req.Service, next, topology.FleetSpec{Version: req.Version, Env: req.Env, Count: req.Count}); err != nil {
		return nil, fmt.Errorf("%w: launch %s: %v", ErrPreflight, next, err)
	}
	r.event("launch", "launched %d task(s) of %s on %s", req.Count, req.Version, next)
	if err := r.waitHealthy(ctx, next); err != nil {
		return r.rollback(ctx, live, next, err.Error())
	}

	// Shift step by step, verifying and analysing each.
	last := w
	for _, step := range req.Steps {
		want := split(next, step)
		if err := e.Traffic.SetWeights(ctx, req.Region, req.Service, want); err != nil {
			return r.rollback(ctx, live, next, fmt.Sprintf("set weights %d%%: %v", step, err))
		}
		got, err := e.Traffic.Weights(ctx, req.Region, req.Service)
		if err != nil {
			return r.rollback(ctx, live, next, fmt.Sprintf("read back weights: %v", err))
		}
		if got != want {
			r.res.Outcome, r.res.Reason = "halted", fmt.Sprintf("weights read back %d/%d, expected %d/%d", got.Blue, got.Green, want.Blue, want.Green)
			r.event("shift", "halted: %s; traffic left as last verified (%d/%d)", r.res.Reason, last.Blue, last.Green)
			return r.res, fmt.Errorf("%w: %s", ErrDrift, r.res.Reason)
		}
		last = got
		ev := r.event("shift", "%s now at %d%% (verified)", next, step)
		ev.Weights = &got
		if reason, ok := r.analyse(ctx, next, step); !ok {
			return r.rollback(ctx, live, next, reason)
		}
	}

	// Promote: the old color drains and stops.
	if err := e.Fleet.Retire(ctx, req.Region, req.Service, live); err != nil {
		return r.res, fmt.Errorf("promoted %s but retiring %s failed: %w", next, live, err)
	}
	r.event("promote", "%s promoted on %s; %s drained and stopped", req.Version, next, live)
	r.res.Outcome = Promoted
	return r.res, nil
}

// analyse bakes a step and judges the new color over everything it served
// since the step began. Too few samples is inconclusive: the step holds and
// keeps observing until AnalysisTimeout, then fails. It returns the reason
// and false when the deploy must roll back.
func (r *run) analyse(ctx context.Context, color string, step int) (string, bool) {
	req := r.req
	started := r.e.Clock.Now()
	deadline := started.Add(req.AnalysisTimeout)
	for {
		if err := r.sleep(ctx, req.StepBake); err != nil {
			return "interrupted: " + err.Error(), false
		}
		if req.SkipAnalysis {
			r.event("analysis", "skipped at %d%% (--skip-analysis): the step passes on health alone", step)
			return "", true
		}
		win, err := r.e.Metrics.Window(ctx, req.Region, req.Service, color, r.e.Clock.Now().Sub(started))
		if err != nil {
			return fmt.Sprintf("read metrics: %v", err), false
		}
		switch {
		case win.Requests < int64(req.MinSamples):
			if r.e.Clock.Now().After(deadline) {
				ev := r.event("analysis", "inconclusive at %d%% for %s: %d samples < %d; the deadline ends the deploy", step, req.AnalysisTimeout, win.Requests, req.MinSamples)
				ev.Window = &win
				return ev.Message, false
			}
			ev := r.event("analysis", "inconclusive at %d%%: %d samples < %d; holding", step, win.Requests, req.MinSamples)
			ev.Window = &win
		case float64(win.Errors)/float64(win.Requests) > req.MaxErrorRate:
			ev := r.event("analysis", "breach at %d%%: error rate %.2f%% > %.2f%% (%d/%d)", step,
				100*float64(win.Errors)/float64(win.Requests), 100*req.MaxErrorRate, win.Errors, win.Requests)
			ev.Window = &win
			return ev.Message, false
		default:
			ev := r.event("analysis", "pass at %d%%: %d requests, %d errors, p99 %s", step, win.Requests, win.Errors, win.P99.Round(time.Millisecond))
			ev.Window = &win
			return "", true
		}
	}
}

func (r *run) sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-r.e.Clock.After(d):
		return nil
	}
}

func (r *run) waitHealthy(ctx context.Context, color string) error {
	deadline := r.e.Clock.Now().Add(r.req.HealthyTimeout)
	for {
		h, err := r.e.Fleet.Health(ctx, r.req.Region, r.req.Service, color)
		if err == nil && h.Targets > 0 && h.Healthy == h.Targets {
			r.event("healthy", "%s healthy: %d/%d targets", color, h.Healthy, h.Targets)
			return nil
		}
		if r.e.Clock.Now().After(deadline) {
			return fmt.Errorf("%s not healthy within %s (%d/%d targets healthy)", color, r.req.HealthyTimeout, h.Healthy, h.Targets)
		}
		if err := r.sleep(ctx, 200*time.Millisecond); err != nil {
			return err
		}
	}
}

// rollback puts all traffic back on the live color (verified), then
// retires the new color.
func (r *run) rollback(ctx context.Context, live, next, reason string) (*Result, error) {
	ctx = context.WithoutCancel(ctx)
	r.res.Outcome, r.res.Reason = RolledBack, reason
	r.event("rollback", "rolling back: %s", reason)
	want := split(live, 100)
	if err := r.e.Traffic.SetWeights(ctx, r.req.Region, r.req.Service, want); err != nil {
		return r.res, fmt.Errorf("rollback of %s: set weights: %w", r.req.Service, err)
	}
	got, err := r.e.Traffic.Weights(ctx, r.req.Region, r.req.Service)
	if err != nil || got != want {
		return r.res, fmt.Errorf("rollback of %s: weights read back %v, want %v (%v)", r.req.Service, got, want, err)
	}
	ev := r.event("rollback", "all traffic back on %s (verified)", live)
	ev.Weights = &got
	if err := r.e.Fleet.Retire(ctx, r.req.Region, r.req.Service, next); err != nil {
		return r.res, fmt.Errorf("rollback of %s: retire %s: %w", r.req.Service, next, err)
	}
	r.event("rollback", "%s drained and stopped", next)
	return r.res, nil
}
