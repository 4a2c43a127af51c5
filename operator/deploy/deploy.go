// Package deploy is tandem's blue/green deploy engine: a journaled state
// machine that launches the idle color with a new version, waits until it is
// healthy, smoke-tests it with pinned test traffic, shifts traffic to it step
// by step (reading the weights back after every change), analyses it against
// the old color and absolute limits at each step, bakes it, then promotes it
// and retires the old color — or rolls back. Every phase is journaled in the
// state store before and after it acts and is idempotent, so a crashed
// operator resumes where it stopped; a per-service lease with an epoch keeps
// a second operator from acting at the same time. Every decision is recorded
// with its evidence.
//
// The engine drives a platform only through the small interfaces below,
// which the local platform and the AWS driver both satisfy.
package deploy

import (
	"context"
	"errors"
	"time"

	"github.com/tandemhq/tandem/operator/state"
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
	// Release is what the color carrying all traffic runs.
	Release(ctx context.Context, region, service string) (topology.FleetSpec, error)
}

// Metrics reports what a color served over a recent window.
type Metrics interface {
	Window(ctx context.Context, region, service, color string, d time.Duration) (topology.Window, error)
}

// TestTraffic sends a smoke request pinned to one color (header rule).
type TestTraffic interface {
	Smoke(ctx context.Context, region, service, color string) error
}

// Clock lets tests run bakes without waiting.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Policy is the tuning of one deploy, from the stack's deploy policy and
// flags.
type Policy struct {
	StepBake             time.Duration `json:"stepBake"`
	HealthyTimeout       time.Duration `json:"healthyTimeout"`
	AnalysisTimeout      time.Duration `json:"analysisTimeout"`
	Bake                 time.Duration `json:"bake"`
	ScaleDownDelay       time.Duration `json:"scaleDownDelay"`
	MaxErrorRate         float64       `json:"maxErrorRate"`
	MaxErrorRateIncrease float64       `json:"maxErrorRateIncrease"`
	MaxP99               time.Duration `json:"maxP99"`
	MaxP99Ratio          float64       `json:"maxP99Ratio"`
	MinSamples           int           `json:"minSamples"`
	OnDeadline           string        `json:"onDeadline"`
	LeaseTTL             time.Duration `json:"leaseTTL"`
	SkipAnalysis         bool          `json:"skipAnalysis,omitempty"`
}

// PolicyFrom reads the stack's deploy policy.
func PolicyFrom(p stacks.DeployPolicy) Policy {
	return Policy{
		StepBake: p.StepBake.Duration, HealthyTimeout: p.HealthyTimeout.Duration, AnalysisTimeout: p.AnalysisTimeout.Duration,
		Bake: p.Bake.Duration, ScaleDownDelay: p.ScaleDownDelay.Duration, MaxErrorRate: p.MaxErrorRate,
		MaxErrorRateIncrease: p.MaxErrorRateIncrease, MaxP99: p.MaxP99.Duration, MaxP99Ratio: p.MaxP99Ratio,
		MinSamples: p.MinSamples, OnDeadline: p.OnDeadline, LeaseTTL: p.LeaseTTL.Duration,
	}
}

// Request asks for one deploy.
type Request struct {
	Region    string            `json:"region"`
	Service   string            `json:"service"`
	Version   string            `json:"version"`
	Env       map[string]string `json:"env,omitempty"`
	Count     int               `json:"count"`
	Steps     []int             `json:"steps"`
	RequestID string            `json:"requestId,omitempty"`
	Policy    Policy            `json:"policy"`
}

// Phases, in order.
const (
	PhaseLaunch      = "launch"
	PhaseWaitHealthy = "wait-healthy"
	PhaseTestTraffic = "test-traffic"
	PhaseShift       = "shift"
	PhaseAnalysis    = "analysis"
	PhaseBake        = "bake"
	PhasePromote     = "promote"
	PhaseRollback    = "rollback"
	PhaseDone        = "done"
)

// Statuses. Running, paused, held and halted deploys are open: they hold
// the service's deploy slot until they end in one of the others.
const (
	StatusRunning    = "running"
	StatusPaused     = "paused"
	StatusHeld       = "held"
	StatusHalted     = "halted"
	StatusPromoted   = "promoted"
	StatusRolledBack = "rolled-back"
	StatusAborted    = "aborted"
	StatusFailed     = "failed"
)

// Intents a person (or pipeline) can send to an open deploy.
const (
	IntentPause   = "pause"
	IntentResume  = "resume"
	IntentPromote = "promote"
	IntentAbort   = "abort"
)

// Event is one decision or step, with its evidence.
type Event struct {
	At      time.Time         `json:"at"`
	Phase   string            `json:"phase"`
	Message string            `json:"message"`
	Weights *topology.Weights `json:"weights,omitempty"`
	New     *topology.Window  `json:"newWindow,omitempty"`
	Old     *topology.Window  `json:"oldWindow,omitempty"`
	Epoch   int64             `json:"epoch,omitempty"`
}

// Deploy is the journal record of one deploy.
type Deploy struct {
	ID       string             `json:"id"`
	Request  Request            `json:"request"`
	From     string             `json:"fromColor"`
	To       string             `json:"toColor"`
	Previous topology.FleetSpec `json:"previousRelease"`
	Phase    string             `json:"phase"`
	Step     int                `json:"step"`
	PhaseAt  time.Time          `json:"phaseStarted"`
	Verified topology.Weights   `json:"verifiedWeights"`
	Status   string             `json:"status"`
	Intent   string             `json:"intent,omitempty"`
	Reason   string             `json:"reason,omitempty"`
	Holder   string             `json:"holder,omitempty"`
	Epoch    int64              `json:"epoch"`
	Started  time.Time          `json:"started"`
	Updated  time.Time          `json:"updated"`
	Ended    time.Time          `json:"ended,omitzero"`
	// NextLook is when the analysis of the current phase looks next.
	NextLook time.Time `json:"nextLook,omitzero"`
	// Forced is set by a promote intent: the remaining analysis is skipped.
	Forced bool `json:"forced,omitempty"`
	// Aborting is set by an abort intent: the rollback ends as aborted.
	Aborting bool    `json:"aborting,omitempty"`
	Events   []Event `json:"events"`
	version  int64
}

// Open reports whether the deploy still holds the service's deploy slot.
func (d *Deploy) Open() bool {
	switch d.Status {
	case StatusRunning, StatusPaused, StatusHeld, StatusHalted:
		return true
	}
	return false
}

// Errors a caller maps to exit codes.
var (
	// ErrPreflight marks a deploy refused before anything changed.
	ErrPreflight = errors.New("preflight refused the deploy")
	// ErrDrift marks weights that someone else changed mid-deploy.
	ErrDrift = errors.New("weights drifted")
	// ErrNoDeploy means the service has no deploy to act on.
	ErrNoDeploy = errors.New("no deploy")
	// ErrRequestIDReused means a request id came back with another request.
	ErrRequestIDReused = errors.New("request id reused")
)

// Engine runs deploys.
type Engine struct {
	Traffic Traffic
	Fleet   Fleet
	Metrics Metrics
	Test    TestTraffic
	Store   state.Store
	Clock   Clock
	// Holder names this operator in leases and the journal.
	Holder string
	// OnEvent sees every event as it is recorded (progress output).
	OnEvent func(*Deploy, Event)
	// Poll is how often waiting phases look again (default 200ms).
	Poll time.Duration
}

func (e *Engine) clock() Clock {
	if e.Clock == nil {
		return realClock{}
	}
	return e.Clock
}

func (e *Engine) poll() time.Duration {
	if e.Poll == 0 {
		return 200 * time.Millisecond
	}
	return e.Poll
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
