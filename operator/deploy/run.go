package deploy

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tandemhq/tandem/operator/state"
	"github.com/tandemhq/tandem/operator/topology"
	"github.com/tandemhq/tandem/stacks"
)

// Run executes the service's open deploy until it ends or goes idle
// (paused, held for a person, halted on drift), under the service's deploy
// lease. It is how a deploy starts executing and how it resumes after a
// crashed operator: every phase reads the platform's real state first, so a
// phase repeated after a crash does no harm. It returns the deploy as the
// journal has it; the error is for an operator that could not act (lease
// held by a live operator, state store or platform unreachable).
func (e *Engine) Run(ctx context.Context, service string) (*Deploy, error) {
	d, err := e.Current(ctx, service)
	if err != nil {
		return nil, err
	}
	if !d.Open() {
		return d, nil
	}
	// Leases run on the wall clock: they are about real operators that
	// crash, whatever clock the phases use.
	ctx, held, err := state.Hold(ctx, e.Store, "deploy/"+service, e.Holder, d.Request.Policy.LeaseTTL)
	if err != nil {
		var h *state.HeldError
		if errors.As(err, &h) {
			return d, fmt.Errorf("deploy %s of %s is being run by %s (lease epoch %d, renewed until %s); watch it with `tandem deploy watch %s`: %w",
				d.ID, service, h.Lease.Holder, h.Lease.Epoch, h.Lease.Expires.Format(time.TimeOnly), service, state.ErrHeld)
		}
		return d, fmt.Errorf("take the deploy lease of %s: %w", service, err)
	}
	defer held.Release(context.WithoutCancel(ctx), e.Store)
	lease := held.Lease

	resumed := d.Holder != "" || d.Epoch != 0
	d.Epoch, d.Holder = lease.Epoch, e.Holder
	if resumed {
		e.event(d, d.Phase, "%s resumes the deploy at lease epoch %d in phase %s", e.Holder, lease.Epoch, d.Phase)
	} else {
		e.event(d, d.Phase, "%s runs the deploy at lease epoch %d", e.Holder, lease.Epoch)
	}
	if err := e.save(ctx, d, ""); err != nil {
		return d, err
	}
	for {
		if ctx.Err() != nil {
			if lost := held.Lost(); lost != nil {
				return d, fmt.Errorf("deploy lease of %s lost; this operator stopped acting: %w", service, lost)
			}
			return d, ctx.Err()
		}
		fresh, err := e.load(ctx, service, d.ID)
		if err != nil {
			return d, err
		}
		if fresh.Epoch > d.Epoch {
			return fresh, fmt.Errorf("deploy %s was taken over by %s at epoch %d; this operator stops", d.ID, fresh.Holder, fresh.Epoch)
		}
		d.Intent, d.version = fresh.Intent, fresh.version
		handled := e.handleIntent(d)
		changed := handled != ""
		if d.Open() && d.Status == StatusRunning {
			c, err := e.step(ctx, d)
			if err != nil {
				_ = e.save(context.WithoutCancel(ctx), d, handled)
				return d, fmt.Errorf("deploy %s of %s, phase %s: %w (the deploy stays open; `tandem deploy resume %s` continues it)", d.ID, service, d.Phase, err, service)
			}
			changed = changed || c
		}
		if changed {
			if err := e.save(ctx, d, handled); err != nil {
				return d, err
			}
		}
		if !d.Open() || d.Status != StatusRunning {
			return d, nil
		}
	}
}

// handleIntent applies a pending intent and returns its name, or "".
func (e *Engine) handleIntent(d *Deploy) string {
	now := e.clock().Now()
	switch d.Intent {
	case "":
		return ""
	case IntentPause:
		if d.Status == StatusRunning {
			d.Status = StatusPaused
			e.event(d, d.Phase, "paused on request; traffic stays at %d/%d (blue/green)", d.Verified.Blue, d.Verified.Green)
		}
	case IntentResume:
		if d.Status == StatusPaused || d.Status == StatusHeld || d.Status == StatusHalted {
			e.event(d, d.Phase, "resumed on request from %s", d.Status)
			d.Status, d.PhaseAt, d.NextLook = StatusRunning, now, time.Time{}
		}
	case IntentPromote:
		switch d.Phase {
		case PhaseLaunch, PhaseWaitHealthy, PhaseTestTraffic:
			e.event(d, d.Phase, "promote requested, refused: %s has not passed its health and smoke checks yet", d.To)
		case PhaseRollback, PhaseDone:
		default:
			e.event(d, d.Phase, "promote requested: remaining analysis skipped, shifting %s to 100%%", d.To)
			d.Forced, d.Status, d.PhaseAt = true, StatusRunning, now
			if d.Phase != PhasePromote {
				d.Phase, d.Step = PhaseShift, len(d.Request.Steps)-1
			}
		}
	case IntentAbort:
		if d.Phase != PhaseDone {
			e.event(d, d.Phase, "abort requested: rolling back to %s", d.From)
			d.Phase, d.Status, d.Aborting, d.Reason, d.PhaseAt = PhaseRollback, StatusRunning, true, "aborted on request", now
		}
	}
	return d.Intent
}

func (e *Engine) sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-e.clock().After(d):
		return nil
	}
}

func (e *Engine) rollback(d *Deploy, reason string) {
	d.Reason = reason
	d.Phase, d.PhaseAt = PhaseRollback, e.clock().Now()
	e.event(d, PhaseRollback, "rolling back: %s", reason)
}

// deadline ends a phase that ran out of time with the policy's action.
func (e *Engine) deadline(d *Deploy, reason string) {
	if d.Request.Policy.OnDeadline == stacks.OnDeadlineHold {
		d.Status, d.Reason = StatusHeld, reason
		e.event(d, d.Phase, "ALERT: %s; holding traffic at %d/%d (blue/green) for a person: `tandem deploy promote|abort|resume %s`",
			reason, d.Verified.Blue, d.Verified.Green, d.Request.Service)
		return
	}
	e.rollback(d, reason)
}

// drift halts a deploy whose weights someone else changed, putting traffic
// back on the last verified weights where that color can take it.
func (e *Engine) drift(ctx context.Context, d *Deploy, got topology.Weights) {
	r := d.Request
	d.Status, d.Reason = StatusHalted, fmt.Sprintf("%v: read %d/%d (blue/green), last verified %d/%d", ErrDrift, got.Blue, got.Green, d.Verified.Blue, d.Verified.Green)
	ev := e.event(d, d.Phase, "halted: %s", d.Reason)
	ev.Weights = &got
	for _, c := range []string{"blue", "green"} {
		if d.Verified.Of(c) > 0 {
			if h, err := e.Fleet.Health(ctx, r.Region, r.Service, c); err != nil || h.Healthy == 0 {
				e.event(d, d.Phase, "last verified weights not restored: %s has no healthy target", c)
				return
			}
		}
	}
	if err := e.Traffic.SetWeights(ctx, r.Region, r.Service, d.Verified); err != nil {
		e.event(d, d.Phase, "last verified weights not restored: %v", err)
		return
	}
	if back, err := e.Traffic.Weights(ctx, r.Region, r.Service); err == nil && back == d.Verified {
		ev := e.event(d, d.Phase, "traffic restored to the last verified weights %d/%d and verified; resume or abort the deploy", back.Blue, back.Green)
		ev.Weights = &back
	}
}

// step performs the current phase once. It returns whether the deploy
// changed (and needs journaling).
func (e *Engine) step(ctx context.Context, d *Deploy) (bool, error) {
	r, p, now := d.Request, d.Request.Policy, e.clock().Now()
	switch d.Phase {
	case PhaseLaunch:
		h, err := e.Fleet.Health(ctx, r.Region, r.Service, d.To)
		if err != nil {
			return false, err
		}
		if h.Targets == 0 {
			if err := e.Fleet.Launch(ctx, r.Region, r.Service, d.To, topology.FleetSpec{Version: r.Version, Env: r.Env, Count: r.Count}); err != nil {
				return false, fmt.Errorf("launch %s: %w", d.To, err)
			}
			e.event(d, PhaseLaunch, "launched %d task(s) of %s on %s", r.Count, r.Version, d.To)
		} else {
			e.event(d, PhaseLaunch, "%s already has %d task(s) from this deploy; not launching again", d.To, h.Targets)
		}
		d.Phase, d.PhaseAt = PhaseWaitHealthy, now
		return true, nil

	case PhaseWaitHealthy:
		h, err := e.Fleet.Health(ctx, r.Region, r.Service, d.To)
		if err != nil {
			return false, err
		}
		if h.Targets > 0 && h.Healthy == h.Targets {
			e.event(d, PhaseWaitHealthy, "%s healthy: %d/%d targets", d.To, h.Healthy, h.Targets)
			d.Phase, d.PhaseAt = PhaseTestTraffic, now
			return true, nil
		}
		if now.Sub(d.PhaseAt) > p.HealthyTimeout {
			e.deadline(d, fmt.Sprintf("%s not healthy within %s (%d/%d targets healthy)", d.To, p.HealthyTimeout, h.Healthy, h.Targets))
			return true, nil
		}
		return false, e.sleep(ctx, e.poll())

	case PhaseTestTraffic:
		if e.Test != nil {
			if err := e.Test.Smoke(ctx, r.Region, r.Service, d.To); err != nil {
				e.rollback(d, "test traffic failed: "+err.Error())
				return true, nil
			}
			e.event(d, PhaseTestTraffic, "test traffic pinned to %s (X-Tandem-Color) answered as expected", d.To)
		}
		d.Phase, d.Step, d.PhaseAt = PhaseShift, 0, now
		return true, nil

	case PhaseShift:
		target := split(d.To, r.Steps[d.Step])
		w, err := e.Traffic.Weights(ctx, r.Region, r.Service)
		if err != nil {
			return false, err
		}
		if w != target {
			if w != d.Verified {
				e.drift(ctx, d, w)
				return true, nil
			}
			h, err := e.Fleet.Health(ctx, r.Region, r.Service, d.To)
			if err != nil {
				return false, err
			}
			if h.Healthy == 0 {
				e.rollback(d, fmt.Sprintf("%s has no healthy target; no weight moves onto it", d.To))
				return true, nil
			}
			if err := e.Traffic.SetWeights(ctx, r.Region, r.Service, target); err != nil {
				return false, fmt.Errorf("set weights %d/%d: %w", target.Blue, target.Green, err)
			}
			back, err := e.Traffic.Weights(ctx, r.Region, r.Service)
			if err != nil {
				return false, err
			}
			if back != target {
				e.drift(ctx, d, back)
				return true, nil
			}
		}
		d.Verified = target
		ev := e.event(d, PhaseShift, "%s now at %d%% (weights read back %d/%d)", d.To, r.Steps[d.Step], target.Blue, target.Green)
		ev.Weights = &target
		d.Phase, d.PhaseAt, d.NextLook = PhaseAnalysis, now, now.Add(p.StepBake)
		return true, nil

	case PhaseAnalysis, PhaseBake:
		w, err := e.Traffic.Weights(ctx, r.Region, r.Service)
		if err != nil {
			return false, err
		}
		if w != d.Verified {
			e.drift(ctx, d, w)
			return true, nil
		}
		if d.Phase == PhaseBake && (p.Bake == 0 || d.Forced) {
			d.Phase, d.PhaseAt = PhasePromote, now
			e.event(d, PhasePromote, "%s carries all traffic; %s is scaled down after %s", d.To, d.From, p.ScaleDownDelay)
			return true, nil
		}
		if d.NextLook.IsZero() {
			d.NextLook = d.PhaseAt.Add(p.StepBake)
		}
		if now.Before(d.NextLook) {
			return false, e.sleep(ctx, min(e.poll(), d.NextLook.Sub(now)))
		}
		return true, e.analyse(ctx, d)

	case PhasePromote:
		if !d.Forced && now.Sub(d.PhaseAt) < p.ScaleDownDelay {
			return false, e.sleep(ctx, min(e.poll(), p.ScaleDownDelay-now.Sub(d.PhaseAt)))
		}
		h, err := e.Fleet.Health(ctx, r.Region, r.Service, d.To)
		if err != nil {
			return false, err
		}
		if h.Healthy == 0 {
			e.rollback(d, fmt.Sprintf("%s lost its healthy targets before %s was scaled down", d.To, d.From))
			return true, nil
		}
		if err := e.Fleet.Retire(ctx, r.Region, r.Service, d.From); err != nil {
			return false, fmt.Errorf("retire %s: %w", d.From, err)
		}
		e.event(d, PhasePromote, "%s promoted on %s (%d/%d healthy); %s drained and stopped", r.Version, d.To, h.Healthy, h.Targets, d.From)
		d.Phase, d.Status, d.Ended = PhaseDone, StatusPromoted, now
		return true, nil

	case PhaseRollback:
		target := split(d.From, 100)
		w, err := e.Traffic.Weights(ctx, r.Region, r.Service)
		if err != nil {
			return false, err
		}
		if w != target {
			h, err := e.Fleet.Health(ctx, r.Region, r.Service, d.From)
			if err != nil {
				return false, err
			}
			if h.Healthy == 0 {
				nh, err := e.Fleet.Health(ctx, r.Region, r.Service, d.To)
				if err != nil {
					return false, err
				}
				if h.Targets == 0 && nh.Targets == 0 {
					// Neither color has a task here any more (the region
					// was failed away from): there is no traffic to move.
					e.event(d, PhaseRollback, "neither color of %s runs in %s any more; nothing to roll back", r.Service, r.Region)
					d.Phase, d.Ended, d.Status = PhaseDone, now, StatusRolledBack
					if d.Aborting {
						d.Status = StatusAborted
					}
					return true, nil
				}
				d.Status = StatusHeld
				e.event(d, PhaseRollback, "ALERT: cannot roll back: %s has no healthy target; traffic stays at %d/%d", d.From, w.Blue, w.Green)
				return true, nil
			}
			if err := e.Traffic.SetWeights(ctx, r.Region, r.Service, target); err != nil {
				return false, fmt.Errorf("roll back weights: %w", err)
			}
			if w, err = e.Traffic.Weights(ctx, r.Region, r.Service); err != nil {
				return false, err
			}
			if w != target {
				return false, fmt.Errorf("roll back weights: read back %d/%d, want %d/%d", w.Blue, w.Green, target.Blue, target.Green)
			}
		}
		d.Verified = target
		ev := e.event(d, PhaseRollback, "all traffic back on %s (weights read back %d/%d)", d.From, w.Blue, w.Green)
		ev.Weights = &w
		if err := e.Fleet.Retire(ctx, r.Region, r.Service, d.To); err != nil {
			return false, fmt.Errorf("retire %s: %w", d.To, err)
		}
		e.event(d, PhaseRollback, "%s drained and stopped", d.To)
		d.Phase, d.Ended = PhaseDone, now
		d.Status = StatusRolledBack
		if d.Aborting {
			d.Status = StatusAborted
		}
		return true, nil
	}
	return false, fmt.Errorf("unknown phase %q", d.Phase)
}

// analyse judges the new color over what it served since the phase began.
func (e *Engine) analyse(ctx context.Context, d *Deploy) error {
	r, p, now := d.Request, d.Request.Policy, e.clock().Now()
	span := max(now.Sub(d.PhaseAt), time.Second)
	label := fmt.Sprintf("at %d%%", r.Steps[d.Step])
	if d.Phase == PhaseBake {
		label = "in bake"
	}
	if p.SkipAnalysis || d.Forced {
		e.event(d, d.Phase, "analysis skipped %s: promoting on health alone", label)
		e.advance(d)
		return nil
	}
	nw, err := e.Metrics.Window(ctx, r.Region, r.Service, d.To, span)
	if err != nil {
		return err
	}
	ow, err := e.Metrics.Window(ctx, r.Region, r.Service, d.From, span)
	if err != nil {
		return err
	}
	verdict, why := Judge(p, nw, ow)
	ev := e.event(d, d.Phase, "%s %s: %s", verdict, label, why)
	ev.New, ev.Old = &nw, &ow
	switch verdict {
	case Breach:
		e.rollback(d, fmt.Sprintf("analysis breach %s: %s", label, why))
	case Pass:
		e.advance(d)
	case Inconclusive:
		if d.Phase == PhaseBake && now.Sub(d.PhaseAt) >= p.Bake {
			// The step at 100% already passed; a quiet bake promotes.
			e.advance(d)
			return nil
		}
		if now.Sub(d.PhaseAt) >= p.AnalysisTimeout {
			e.deadline(d, fmt.Sprintf("analysis inconclusive %s for %s: %s", label, p.AnalysisTimeout, why))
			return nil
		}
		d.NextLook = now.Add(p.StepBake)
	}
	return nil
}

// advance moves past a passed analysis: to the next step, the bake, or
// (a bake that has run its course) the promotion.
func (e *Engine) advance(d *Deploy) {
	now := e.clock().Now()
	p := d.Request.Policy
	switch {
	case d.Phase == PhaseAnalysis && d.Step+1 < len(d.Request.Steps):
		d.Phase, d.Step, d.PhaseAt = PhaseShift, d.Step+1, now
	case d.Phase == PhaseAnalysis:
		d.Phase, d.PhaseAt, d.NextLook = PhaseBake, now, now.Add(min(p.StepBake, max(p.Bake, time.Millisecond)))
	case d.Phase == PhaseBake && now.Sub(d.PhaseAt) < p.Bake:
		d.NextLook = now.Add(min(p.StepBake, p.Bake-now.Sub(d.PhaseAt)))
	default:
		d.Phase, d.PhaseAt = PhasePromote, now
		e.event(d, PhasePromote, "%s passed every gate; %s is scaled down after %s", d.To, d.From, p.ScaleDownDelay)
	}
}

// Verdicts of an analysis.
const (
	Pass         = "pass"
	Breach       = "breach"
	Inconclusive = "inconclusive"
)

// Judge compares the new color's window with the old color's and with the
// policy's absolute limits. Too few samples is inconclusive, never a pass
// or a failure.
func Judge(p Policy, nw, ow topology.Window) (string, string) {
	if nw.Requests < int64(p.MinSamples) {
		return Inconclusive, fmt.Sprintf("%d samples < %d required", nw.Requests, p.MinSamples)
	}
	rate := float64(nw.Errors) / float64(nw.Requests)
	evidence := fmt.Sprintf("new %d requests, %d errors (%.2f%%), p99 %s", nw.Requests, nw.Errors, 100*rate, nw.P99.Round(time.Millisecond))
	oldOK := ow.Requests >= int64(p.MinSamples)
	var oldRate float64
	if oldOK {
		oldRate = float64(ow.Errors) / float64(ow.Requests)
		evidence += fmt.Sprintf("; old %d requests, %d errors (%.2f%%), p99 %s", ow.Requests, ow.Errors, 100*oldRate, ow.P99.Round(time.Millisecond))
	}
	switch {
	case rate > p.MaxErrorRate:
		return Breach, fmt.Sprintf("error rate %.2f%% above the limit %.2f%% (%s)", 100*rate, 100*p.MaxErrorRate, evidence)
	case oldOK && rate > oldRate+p.MaxErrorRateIncrease:
		return Breach, fmt.Sprintf("error rate %.2f%% exceeds the old color's %.2f%% by more than %.2f points (%s)", 100*rate, 100*oldRate, 100*p.MaxErrorRateIncrease, evidence)
	case p.MaxP99 > 0 && nw.P99 > p.MaxP99:
		return Breach, fmt.Sprintf("p99 %s above the limit %s (%s)", nw.P99.Round(time.Millisecond), p.MaxP99, evidence)
	case oldOK && p.MaxP99Ratio > 0 && nw.P99 > time.Duration(float64(ow.P99)*p.MaxP99Ratio)+100*time.Millisecond:
		return Breach, fmt.Sprintf("p99 %s above %.1f× the old color's %s + 100ms (%s)", nw.P99.Round(time.Millisecond), p.MaxP99Ratio, ow.P99.Round(time.Millisecond), evidence)
	}
	return Pass, evidence
}
