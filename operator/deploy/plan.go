package deploy

import (
	"fmt"
	"time"
)

// PlanStep is one phase of a deploy as --dry-run shows it.
type PlanStep struct {
	Phase    string        `json:"phase"`
	Action   string        `json:"action"`
	Gate     string        `json:"gate,omitempty"`
	Deadline time.Duration `json:"deadline,omitempty"`
	OnFail   string        `json:"onFail,omitempty"`
	Best     time.Duration `json:"best"`
	Worst    time.Duration `json:"worst"`
}

// Plan is what a deploy would do, changing nothing.
type Plan struct {
	Request Request       `json:"request"`
	Steps   []PlanStep    `json:"steps"`
	Best    time.Duration `json:"bestCase"`
	Worst   time.Duration `json:"worstCase"`
}

// MakePlan lays out the phases, gates and deadlines of a request. Worst
// case counts every deadline running out at the last moment (and, for the
// rollback, the drain).
func MakePlan(req Request, drain time.Duration) Plan {
	p := req.Policy
	onDeadline := "roll back"
	if p.OnDeadline == "hold" {
		onDeadline = "hold traffic and alert"
	}
	gate := fmt.Sprintf("≥%d samples; error rate ≤ %.2f%% and ≤ old + %.2f points; p99 ≤ %s and ≤ %.1f× old + 100ms",
		p.MinSamples, 100*p.MaxErrorRate, 100*p.MaxErrorRateIncrease, p.MaxP99, p.MaxP99Ratio)
	if p.SkipAnalysis {
		gate = "analysis skipped: health only"
	}
	steps := []PlanStep{
		{Phase: "preflight", Action: "check the live color carries 100% and is healthy; take the deploy lease", OnFail: "refuse (nothing changed)"},
		{Phase: PhaseLaunch, Action: fmt.Sprintf("launch %d task(s) of %s on the idle color", req.Count, req.Version)},
		{Phase: PhaseWaitHealthy, Action: "wait until every new task passes health checks", Deadline: p.HealthyTimeout, OnFail: onDeadline, Worst: p.HealthyTimeout},
		{Phase: PhaseTestTraffic, Action: "smoke request pinned to the new color by X-Tandem-Color", OnFail: "roll back", Worst: 5 * time.Second},
	}
	for _, w := range req.Steps {
		steps = append(steps,
			PlanStep{Phase: PhaseShift, Action: fmt.Sprintf("new color to %d%%, weights read back", w), Gate: "new color has a healthy target", OnFail: "halt on drift"},
			PlanStep{Phase: PhaseAnalysis, Action: fmt.Sprintf("observe %s, judge new against old", p.StepBake), Gate: gate, Deadline: p.AnalysisTimeout,
				OnFail: "breach: roll back; inconclusive at deadline: " + onDeadline, Best: p.StepBake, Worst: p.AnalysisTimeout})
	}
	steps = append(steps,
		PlanStep{Phase: PhaseBake, Action: fmt.Sprintf("new color carries 100%% for %s, still judged", p.Bake), Gate: gate, OnFail: "roll back", Best: p.Bake, Worst: p.Bake},
		PlanStep{Phase: PhasePromote, Action: fmt.Sprintf("after %s, drain and stop the old color", p.ScaleDownDelay), Gate: "new color healthy", Best: p.ScaleDownDelay + drain/10, Worst: p.ScaleDownDelay + drain},
	)
	plan := Plan{Request: req, Steps: steps}
	for _, s := range steps {
		plan.Best += s.Best
		plan.Worst += s.Worst
	}
	plan.Worst += drain // a rollback at the last moment drains the new color
	return plan
}
